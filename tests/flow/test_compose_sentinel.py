"""The compose file's Redis Sentinel profile run as compose runs it, through a real failover.

The primary (`redis`), the replica and the three sentinels start with the compose file's own commands, each in a
folder of its own (its /data), inside a network namespace of the test's own, whose loopback holds the compose
ports (6379, 6380, 26379-26381) apart from the machine's Redis. Our processes' client, opened on sentinel.env's
REDIS_URL, writes before the primary's SIGKILL and after the sentinels' promotion; once the old primary is back
(compose's restart policy) as the new one's replica, a write reaches a replica again (`WAIT 1`).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest
import redis
import yaml

from orchestrator.config import REPO_ROOT
from orchestrator.devstack.netns import NamespacesUnavailable, NetnsPair, netns_pair, netns_supported
from orchestrator.redis_client import open_redis

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(
        shutil.which("redis-server") is None or shutil.which("redis-sentinel") is None,
        reason="no redis-server or redis-sentinel: run deploy/dev/services.sh",
    ),
]

DEPLOY = REPO_ROOT / "deploy"
SET = ("redis", "redis-replica", "sentinel-1", "sentinel-2", "sentinel-3")
CAP_S = 90.0
T = TypeVar("T")


def sentinel_env() -> dict[str, str]:
    lines = (DEPLOY / "sentinel.env").read_text(encoding="utf-8").splitlines()
    return dict(line.split("=", 1) for line in lines if line.strip() and not line.startswith("#"))


class Service:
    """One service of the compose file, started with its command and environment in the namespace."""

    def __init__(self, pair: NetnsPair, name: str, spec: dict[str, Any], data: Path) -> None:
        self.pair, self.name, self.data = pair, name, data
        data.mkdir(parents=True)
        # Compose writes a literal $ as $$; the service's volume is mounted at /data, its working directory.
        self.argv = [str(a).replace("$$", "$").replace("/data", str(data)) for a in spec["command"]]
        self.env = {**os.environ, **{k: str(v) for k, v in (spec.get("environment") or {}).items()}}
        self.log = data / "service.log"
        self.popen: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.popen = subprocess.Popen(
                self.pair.command(self.pair.server_ns, self.argv),
                cwd=self.data,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

    def kill(self) -> None:
        if self.popen is not None and self.popen.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.popen.pid, signal.SIGKILL)
            self.popen.wait()


def _poll(pair: NetnsPair, check: Callable[[], T], what: str, services: dict[str, Service]) -> T:
    """Run ``check`` in the namespace until it returns something truthy (Redis errors are "not yet"); capped."""

    def attempt() -> T | None:
        try:
            return check()
        except (redis.RedisError, OSError):
            return None

    deadline = time.monotonic() + CAP_S
    while time.monotonic() < deadline:
        value = pair.call_in(pair.server_ns, attempt)
        if value:
            return value
        time.sleep(0.1)
    logs = "\n".join(f"--- {n}\n{s.log.read_text(errors='replace')[-1500:]}" for n, s in services.items())
    raise AssertionError(f"{what}: not within {CAP_S:.0f} s\n{logs}")


def _client(port: int) -> redis.Redis:
    return redis.Redis(host="127.0.0.1", port=port, socket_connect_timeout=0.5, socket_timeout=5)


def _ours(pair: NetnsPair, url: str, *commands: tuple[Any, ...]) -> list[Any]:
    """Commands through the client our processes open on ``url`` (a new one, as a process after a restart)."""

    async def run() -> list[Any]:
        client = open_redis(url)
        try:
            # redis-py leaves execute_command unannotated.
            return [await client.execute_command(*command) for command in commands]  # type: ignore[no-untyped-call]
        finally:
            await client.aclose()

    return pair.call_in(pair.server_ns, lambda: asyncio.run(run()))


@pytest.fixture(scope="module")
def failover(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The set up and watching, a write, the primary killed, the promotion, a write, the old primary back."""
    specs = yaml.safe_load((DEPLOY / "docker-compose.yml").read_text(encoding="utf-8"))["services"]
    url = sentinel_env()["REDIS_URL"]
    root = tmp_path_factory.mktemp("compose-sentinel")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        services = {name: Service(pair, name, specs[name], root / name) for name in SET}
        for service in services.values():
            cleanup.callback(service.kill)
        for name in SET:
            services[name].start()
        result: dict[str, Any] = {}

        def poll(check: Callable[[], T], what: str) -> T:
            return _poll(pair, check, what, services)

        def watching() -> bool:
            for port in (26379, 26380, 26381):
                sentinel = _client(port)
                # The sync client's methods are typed for the async one too: read them as Any.
                replicas: Any = sentinel.sentinel_slaves("switchboard")
                others: Any = sentinel.sentinel_sentinels("switchboard")
                if (len(replicas), len(others)) != (1, 2):
                    return False
            return bool(_client(6380).info("replication")["master_link_status"] == "up")

        poll(watching, "three sentinels that know each other and the replica")
        result["before"] = _ours(pair, url, ("SET", "before", "1"), ("WAIT", "1", "1000"))

        killed_at = time.monotonic()
        services["redis"].kill()

        def promoted() -> bool:
            primary: Any = _client(26379).sentinel_get_master_addr_by_name("switchboard")
            return bool(primary[1] == 6380)

        poll(promoted, "the promotion")
        result["promoted_s"] = round(time.monotonic() - killed_at, 1)
        result["after"] = poll(
            lambda: _ours(pair, url, ("SET", "after", "1"), ("GET", "before")), "a write through REDIS_URL"
        )
        result["primary_port"] = _ours(pair, url, ("CONFIG", "GET", "port"))[0]

        # Compose restarts the old primary (restart: unless-stopped), with its own command and data.
        services["redis"].start()
        poll(lambda: _client(6379).info("replication").get("master_port") == 6380, "the old primary as a replica")
        result["synced"] = poll(
            lambda: _ours(pair, url, ("SET", "synced", "1"), ("WAIT", "1", "1000"))[1] == 1, "a write on a replica"
        )
        result["rejoined_s"] = round(time.monotonic() - killed_at, 1)
        print(
            f"\ncompose sentinel: promoted {result['promoted_s']} s after the kill, replicated {result['rejoined_s']} s"
        )
        yield result


def test_our_client_on_sentinel_env_writes_to_the_primary_and_its_replica(failover: dict[str, Any]) -> None:
    # The write, and WAIT's count of the replicas that have it.
    assert failover["before"] == [True, 1]


def test_after_the_primarys_kill_the_sentinels_promote_the_replica_and_our_client_follows(
    failover: dict[str, Any],
) -> None:
    # The same URL, a new connection: the write lands on the promoted replica, which had the earlier write.
    assert failover["after"] == [True, "1"]
    assert failover["primary_port"] == {"port": "6380"}


def test_the_restarted_primary_rejoins_as_a_replica_so_synced_writes_go_on(failover: dict[str, Any]) -> None:
    assert failover["synced"] is True
