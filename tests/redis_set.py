"""A private Redis primary, its replicas and three sentinels on loopback ports of their own, for failover tests."""

from __future__ import annotations

import os
import shutil
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import redis

from orchestrator.queue.embedded import free_port

REDIS_SERVER = "/usr/bin/redis-server"
SERVICE = "switchboard"


def wait_for(check: Callable[[], bool], what: str, within: float = 60.0) -> None:
    """Poll ``check`` until it holds (Redis errors count as not yet); a generous cap, not a timing assertion."""
    deadline = time.monotonic() + within
    while True:
        try:
            if check():
                return
        except redis.RedisError:
            pass
        if time.monotonic() > deadline:
            raise AssertionError(f"not reached within {within} s: {what}")
        time.sleep(0.05)


class RedisProc:
    """One redis-server (or sentinel) process on its own port and folder, killed and restarted at will."""

    def __init__(self, folder: Path, args: list[str], *, sentinel: bool = False, port: int | None = None) -> None:
        self.dir = folder
        self.dir.mkdir(parents=True, exist_ok=True)
        self.port = port or free_port()
        self.args = args
        self.sentinel = sentinel
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        return redis.Redis(port=self.port, socket_connect_timeout=0.5, socket_timeout=5)

    def start(self) -> None:
        if self.sentinel:
            # Sentinel rewrites its own file, so each sentinel has one in its folder.
            conf = self.dir / "sentinel.conf"
            if not conf.exists():
                conf.write_text("\n".join([f"port {self.port}", "bind 127.0.0.1", *self.args]) + "\n")
            binary = shutil.which("redis-sentinel") or REDIS_SERVER
            argv = [binary, str(conf)] + ([] if binary.endswith("redis-sentinel") else ["--sentinel"])
        else:
            # No delay before a replica's first sync (the default waits 5 s for more replicas to join it).
            argv = [REDIS_SERVER, "--bind", "127.0.0.1", "--port", str(self.port), "--dir", str(self.dir),
                    "--save", "", "--appendonly", "no", "--repl-diskless-sync-delay", "0", *self.args]  # fmt: skip
        log = (self.dir / "server.log").open("ab")
        self.proc = subprocess.Popen(argv, cwd=self.dir, stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                     start_new_session=True)  # fmt: skip
        log.close()
        client = self.client()
        try:
            wait_for(lambda: bool(client.ping()), f"redis on port {self.port}", within=20)
        finally:
            client.close()

    def wait_in_sync(self) -> None:
        """Wait until this replica has loaded its primary's data and follows its stream of writes."""
        client = self.client()
        try:
            wait_for(lambda: client.info("replication").get("master_link_status") == "up", "the replica in sync")
        finally:
            client.close()

    def kill9(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait()
            self.proc = None


def require_redis() -> None:
    if not os.path.exists(REDIS_SERVER):
        pytest.fail(f"{REDIS_SERVER} is required (bash deploy/dev/services.sh installs it)")


class SentinelSet:
    """A primary, ``replicas`` replicas and three sentinels (quorum 2) watching it, all on 127.0.0.1."""

    def __init__(self, folder: Path, *, replicas: int = 1, down_after_ms: int = 1000) -> None:
        self.primary = RedisProc(folder / "primary", [])
        self.replicas = [
            RedisProc(folder / f"replica-{i}", ["--replicaof", "127.0.0.1", str(self.primary.port)])
            for i in range(replicas)
        ]
        monitor = [
            f"sentinel monitor {SERVICE} 127.0.0.1 {self.primary.port} 2",
            f"sentinel down-after-milliseconds {SERVICE} {down_after_ms}",
            f"sentinel failover-timeout {SERVICE} 10000",
            f"sentinel parallel-syncs {SERVICE} 1",
        ]
        self.sentinels = [RedisProc(folder / f"sentinel-{i}", monitor, sentinel=True) for i in range(3)]

    @property
    def url(self) -> str:
        hosts = ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)
        return f"redis+sentinel://{hosts}/{SERVICE}/0"

    def start(self) -> None:
        self.primary.start()
        for replica in self.replicas:
            replica.start()
        for sentinel in self.sentinels:
            sentinel.start()
        for replica in self.replicas:
            replica.wait_in_sync()
        # A failover needs a quorum of sentinels that know each other and the replicas (hello messages).
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                wait_for(
                    lambda c=client: (  # type: ignore[misc]  # the loop variable is bound per sentinel on purpose
                        len(c.sentinel_sentinels(SERVICE)) == 2
                        and len(c.sentinel_slaves(SERVICE)) == len(self.replicas)
                    ),
                    f"sentinel {sentinel.port} knowing the other sentinels and the replicas",
                )
            finally:
                client.close()

    def primary_port(self) -> int:
        """The primary every sentinel names (they agree once a failover is over)."""
        ports = set()
        for sentinel in self.sentinels:
            client = sentinel.client()
            try:
                ports.add(int(client.sentinel_get_master_addr_by_name(SERVICE)[1]))
            finally:
                client.close()
        if len(ports) != 1:
            raise redis.RedisError(f"sentinels disagree on the primary: {sorted(ports)}")
        return ports.pop()

    def kill9(self) -> None:
        for proc in [*self.sentinels, *self.replicas, self.primary]:
            proc.kill9()
