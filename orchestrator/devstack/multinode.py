"""Two livekit-server nodes on one Redis (LiveKit's distributed mode) behind one URL, with the rest of the voice stack.

Both nodes live in the server's namespace on its veth address, each with its own signalling and media ports; a
small TCP balancer holds the one URL everything else uses (as a Kubernetes Service or a load balancer does):
callers, the API, the queue worker and the agent worker. Usage of the balancer on its own:
``multinode.py balance LISTEN_HOST:PORT[,HOST:PORT...] UPSTREAM_PORT[,UPSTREAM_PORT...]``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from orchestrator.devstack.netns import NetnsPair
from orchestrator.devstack.stack import (
    AGENT_HEALTH_PORT,
    API_PORT,
    LIVEKIT_SERVER,
    PREFIX,
    ROOT,
    SIGNAL_PORT,
    Proc,
    RealStack,
    StackFailed,
    livekit_config,
)

# The Redis that LiveKit's nodes and Switchboard share, on the server namespace's own loopback.
REDIS_PORT = 6379
# Each node's signalling, WebRTC TCP and WebRTC UDP ports; the balancer holds SIGNAL_PORT for all of them.
NODE_PORTS = ((7890, 7891, 7892), (7900, 7901, 7902))
# The keys livekit-server keeps in Redis: its nodes, and which node hosts each room.
NODES_KEY = "nodes"
ROOM_NODE_KEY = "room_node_map"
DEPLOYED_CONFIG = ROOT / "deploy" / "livekit.yaml"
_NODE_ID = re.compile(r'"nodeID":\s*"(ND_[A-Za-z0-9]+)"')


def node_config(pair: NetnsPair, index: int, *, key: str, secret: str) -> str:
    """One node's YAML: the single-node config of the stack, with its own ports, the shared Redis and the selector.

    The node selector is deploy/livekit.yaml's (the fewest rooms first), so the spread the test sees is the one
    a deployment gets; a draining node (SHUTTING_DOWN) is never chosen.
    """
    import yaml

    signal_port, tcp_port, udp_port = NODE_PORTS[index]
    config = json.loads(livekit_config(pair, key=key, secret=secret))
    config["port"] = signal_port
    config["rtc"].update(tcp_port=tcp_port, udp_port=udp_port)
    config["redis"] = {"address": f"127.0.0.1:{REDIS_PORT}"}
    config["node_selector"] = yaml.safe_load(DEPLOYED_CONFIG.read_text(encoding="utf-8"))["node_selector"]
    return json.dumps(config, indent=2)


@dataclass
class Node:
    """A livekit-server node of the pair: its process, its signalling port and the id it registered in Redis."""

    index: int
    proc: Proc
    port: int
    node_id: str = ""

    def signal(self, sig: signal.Signals) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.popen.pid, sig)


@dataclass
class MultiNodeStack(RealStack):
    """The real stack with two livekit-server nodes; ``redis_url`` is the shared Redis's Unix socket."""

    nodes: list[Node] = field(default_factory=list)

    def room_nodes(self) -> dict[str, str]:
        """Which node hosts each live room (room name to node id), as livekit-server records it in Redis."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            raw: dict[bytes, bytes] = client.hgetall(ROOM_NODE_KEY)  # type: ignore[assignment]  # sync client
            return {k.decode(): v.decode() for k, v in raw.items()}
        finally:
            client.close()

    def registered_nodes(self) -> set[str]:
        """The ids of the nodes registered in livekit-server's Redis hash (a node leaves it when it stops)."""
        import redis

        client = redis.Redis.from_url(self.redis_url)
        try:
            return {k.decode() for k in client.hkeys(NODES_KEY)}  # type: ignore[union-attr]  # sync client
        finally:
            client.close()

    def create_room_on(self, name: str, node_id: str, metadata: dict[str, object]) -> None:
        """Create a room on node ``node_id`` (CreateRoom's override), as a front end does before its caller joins."""
        from livekit import api

        async def create() -> None:
            lk = api.LiveKitAPI(f"http://127.0.0.1:{SIGNAL_PORT}", self.key, self.secret)
            try:
                await lk.room.create_room(
                    api.CreateRoomRequest(name=name, node_id=node_id, metadata=json.dumps(metadata))
                )
            finally:
                await lk.aclose()

        self.pair.call_in(self.pair.server_ns, lambda: asyncio.run(create()))

    def placements(self) -> dict[str, str]:
        """Every room a node was chosen for (room name to node id), from the nodes' "selected node for room" lines."""
        placed: dict[str, str] = {}
        for node in self.nodes:
            for line in node.proc.log.read_text(errors="replace").splitlines():
                if "selected node for room" in line:
                    room, chosen = (
                        re.search(r'"room":\s*"([^"]+)"', line),
                        re.search(r'"selectedNodeID":\s*"([^"]+)"', line),
                    )
                    if room and chosen:
                        placed[room.group(1)] = chosen.group(1)
        return placed

    def node_by_id(self, node_id: str) -> Node:
        return next(n for n in self.nodes if n.node_id == node_id)


def _node_id(proc: Proc) -> str:
    """The node id livekit-server logged at start-up (every line of a node carries it)."""
    found = _NODE_ID.search(proc.log.read_text(errors="replace"))
    return found.group(1) if found else ""


def _shared_redis(pair: NetnsPair, run_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    """redis-server in the server's namespace: TCP on its loopback for livekit-server, a Unix socket for the rest."""
    sock = run_dir / "redis.sock"
    argv = [
        "redis-server", "--port", str(REDIS_PORT), "--bind", "127.0.0.1", "--unixsocket", str(sock),
        "--unixsocketperm", "700", "--save", "", "--appendonly", "no", "--dir", str(run_dir),
    ]  # fmt: skip
    popen = subprocess.Popen(
        pair.command(pair.server_ns, argv),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with contextlib.suppress(OSError), socket.socket(socket.AF_UNIX) as s:
            s.connect(str(sock))
            return popen, f"unix://{sock}?db=0"
        time.sleep(0.05)
    os.killpg(popen.pid, signal.SIGKILL)
    popen.wait()
    raise StackFailed("the shared redis-server did not open its socket")


def _wait_node_ids(stack: MultiNodeStack) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        stack.check_alive()
        for node in stack.nodes:
            node.node_id = node.node_id or _node_id(node.proc)
        registered = stack.registered_nodes()
        if all(n.node_id and n.node_id in registered for n in stack.nodes):
            return
        time.sleep(0.2)
    raise StackFailed(f"the nodes did not both register in Redis\n{stack.logs()}")


@contextlib.contextmanager
def multinode_stack(pair: NetnsPair, run_dir: Path) -> Iterator[MultiNodeStack]:
    """Start the shared Redis, two livekit-server nodes, the balancer, the API and the agent worker; stop them after.

    Yields once both nodes serve, the API is up and the agent worker has registered (through the balancer, so
    with the first node while it runs). The test starts the queue worker (`start_queue_worker`).
    """
    run_dir.mkdir(parents=True, exist_ok=True)
    redis_proc, redis_url = _shared_redis(pair, run_dir)
    key, secret = f"sbtest-{secrets.token_hex(4)}", secrets.token_urlsafe(32)
    stack = MultiNodeStack(pair, run_dir, run_dir / "data", redis_url, key, secret)
    cli = [sys.executable, "-m", "orchestrator.cli"]
    try:
        for index in range(len(NODE_PORTS)):
            config = run_dir / f"livekit-{index + 1}.yaml"
            config.write_text(node_config(pair, index, key=key, secret=secret))
            proc = stack.start(f"livekit-node-{index + 1}", [str(LIVEKIT_SERVER), "--config", str(config)])
            stack.nodes.append(Node(index, proc, NODE_PORTS[index][0]))
        for node in stack.nodes:
            stack.wait_http(node.port, "/", node.proc.name)
        _wait_node_ids(stack)
        listen = f"127.0.0.1:{SIGNAL_PORT},{pair.server_ip}:{SIGNAL_PORT}"
        upstreams = ",".join(str(n.port) for n in stack.nodes)
        stack.start("balancer", [sys.executable, "-m", "orchestrator.devstack.multinode", "balance", listen, upstreams])
        stack.wait_http(SIGNAL_PORT, "/", "the balancer")
        stack.start("api", [*cli, "serve", "--port", str(API_PORT), "--prefix", PREFIX])
        stack.wait_http(API_PORT, "/healthz", "the API")
        stack.start("agent-worker", [*cli, "agent-worker"])
        stack.wait_http(AGENT_HEALTH_PORT, "/readyz", "the agent worker")
        yield stack
    finally:
        stack.stop()
        with contextlib.suppress(ProcessLookupError):
            os.killpg(redis_proc.pid, signal.SIGTERM)
        try:
            redis_proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(redis_proc.pid, signal.SIGKILL)
            redis_proc.wait()


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(65536):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        with contextlib.suppress(ConnectionError, OSError):
            writer.close()


async def balance(listen: list[tuple[str, int]], upstreams: list[int]) -> None:
    """Forward each connection to the first upstream port (on 127.0.0.1) that accepts it, in the order given.

    A stopped node refuses connections, so they go to the next one: what a Service does once a pod has gone.
    """

    async def handle(client_reader: asyncio.StreamReader, client_writer: asyncio.StreamWriter) -> None:
        for port in upstreams:
            try:
                up_reader, up_writer = await asyncio.open_connection("127.0.0.1", port)
            except OSError:
                continue
            await asyncio.gather(_pipe(client_reader, up_writer), _pipe(up_reader, client_writer))
            return
        client_writer.close()

    servers = [await asyncio.start_server(handle, host, port) for host, port in listen]
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    for server in servers:
        server.close()


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


if __name__ == "__main__":
    if len(sys.argv) != 4 or sys.argv[1] != "balance":
        sys.exit("usage: multinode.py balance LISTEN_HOST:PORT[,...] UPSTREAM_PORT[,...]")
    asyncio.run(balance([_address(a) for a in sys.argv[2].split(",")], [int(p) for p in sys.argv[3].split(",")]))
