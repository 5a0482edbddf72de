#!/usr/bin/env bash
# Start the development services the tests use (Redis 7 and PostgreSQL on loopback) when they are down.
set -euo pipefail

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

if ! redis_up; then
  if ! command -v /usr/bin/redis-server >/dev/null; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q redis-server
  fi
  mkdir -p /var/lib/redis /var/log/redis
  /usr/bin/redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

if ! pg_up; then
  if ! ls /etc/postgresql >/dev/null 2>&1; then
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql
  fi
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
fi

for _ in $(seq 1 50); do
  if redis_up && pg_up; then exit 0; fi
  sleep 0.2
done
echo "services: Redis on 127.0.0.1:6379 or PostgreSQL on 127.0.0.1:5432 did not come up" >&2
exit 1
