#!/usr/bin/env bash
# Install (from Debian) and start the development services the tests use when they are down: Redis 7 and
# PostgreSQL on loopback, with a password login for the tests' role (a fresh cluster trusts no TCP login).
set -euo pipefail

PG_ROLE=switchboard
PG_PASSWORD=switchboard
PG_DATABASE=test

redis_up() { (exec 3<>/dev/tcp/127.0.0.1/6379) 2>/dev/null; }
pg_up() { (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; }

apt_updated=0
apt_install() {
  if [ "$apt_updated" = 0 ]; then apt-get update -qq; apt_updated=1; fi
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "$@" >/dev/null
}

if ! redis_up; then
  [ -x /usr/bin/redis-server ] || { echo "services: installing redis-server"; apt_install redis-server; }
  mkdir -p /var/lib/redis /var/log/redis
  /usr/bin/redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log
fi

# The failover tests run a primary, a replica and three sentinels of their own (Debian's redis-sentinel).
[ -x /usr/bin/redis-sentinel ] || { echo "services: installing redis-sentinel"; apt_install redis-sentinel; }

if ! pg_up; then
  if ! ls /etc/postgresql/*/main >/dev/null 2>&1; then
    echo "services: installing postgresql"
    apt_install postgresql
  fi
  cluster="$(ls /etc/postgresql | sort -V | tail -n1)"
  pg_ctlcluster --skip-systemctl-redirect "$cluster" main start
fi

for _ in $(seq 1 100); do
  if redis_up && pg_up; then break; fi
  sleep 0.1
done
if ! redis_up || ! pg_up; then
  echo "services: Redis on 127.0.0.1:6379 or PostgreSQL on 127.0.0.1:5432 did not come up" >&2
  exit 1
fi

# The tests log in over TCP as their own role with a password (scram, the cluster's default for host lines),
# so pg_hba.conf stays as Debian wrote it. Idempotent: the role and database are made once per cluster.
as_postgres() { runuser -u postgres -- psql -X -q -v ON_ERROR_STOP=1 "$@"; }
if ! as_postgres -tAc "SELECT 1 FROM pg_roles WHERE rolname = '$PG_ROLE'" | grep -q 1; then
  as_postgres -c "CREATE ROLE $PG_ROLE LOGIN PASSWORD '$PG_PASSWORD'"
fi
if ! as_postgres -tAc "SELECT 1 FROM pg_database WHERE datname = '$PG_DATABASE'" | grep -q 1; then
  as_postgres -c "CREATE DATABASE $PG_DATABASE OWNER $PG_ROLE"
fi
