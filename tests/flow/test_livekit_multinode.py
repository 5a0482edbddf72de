"""Two livekit-server nodes on one Redis behind one URL: calls spread over both, and one node stopped mid-call.

The nodes, the shared Redis, a balancer (the one URL of the callers, the API and both workers), the API and
the workers run in the server's namespace; WebRTC callers in the caller's. A call is held open on the first
node (the one the agent worker registered with), a second call lands on the other node by the selector; the
first node gets SIGTERM: it takes no new rooms, the call in progress goes on to its end and its record, and
then the node exits; new calls are answered through the other node, the agent worker registered with it again.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import secrets
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.devstack import caller as caller_module
from orchestrator.devstack.multinode import MultiNodeStack, multinode_stack
from orchestrator.devstack.netns import NamespacesUnavailable, NetnsPair, netns_pair, netns_supported
from orchestrator.devstack.stack import LIVEKIT_SERVER, PREFIX

pytestmark = [
    pytest.mark.flow,
    pytest.mark.skipif(not LIVEKIT_SERVER.exists(), reason="no livekit-server: run deploy/dev/tools.sh (make tools)"),
    pytest.mark.skipif(netns_supported() is not None, reason=str(netns_supported())),
    pytest.mark.skipif(shutil.which("flite") is None, reason="no flite: apt-get install -y flite"),
    # Four spoken calls one after another on a shared 2-core box; every wait inside has its own cap.
    pytest.mark.timeout(1200),
]

CALLER = "+15550100001"
SCRIPT = ["What's my balance?", "1 0 0 2 7"]
CALLER_SCRIPT = Path(caller_module.__file__)
ROOT = Path(__file__).resolve().parents[2]
CALL_CAP_S = 300
WAIT_CAP_S = 180


def _wait_for(check: Any, cap_s: float, what: str, stack: MultiNodeStack) -> Any:
    """Poll ``check()`` until it returns something truthy, for at most ``cap_s``."""
    deadline = time.monotonic() + cap_s
    while True:
        value = check()
        if value:
            return value
        if time.monotonic() >= deadline:
            raise AssertionError(f"{what} not within {cap_s:.0f} s\n{stack.logs()}")
        time.sleep(0.2)


class Call:
    """A WebRTC caller placed through the balancer's URL; ``pause_after`` holds it on the line after that turn."""

    def __init__(self, stack: MultiNodeStack, pair: NetnsPair, name: str, token: str, pause_after: int | None = None):
        self.stack, self.name = stack, name
        heard = stack.run_dir / name
        heard.mkdir()
        argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(heard), json.dumps(SCRIPT)]
        if pause_after is not None:
            argv.append(str(pause_after))
        self.errors = stack.run_dir / f"{name}.log"
        with self.errors.open("w") as errors:
            self.popen = subprocess.Popen(
                pair.command(pair.caller_ns, argv),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=errors,
                text=True,
                env=stack.env(),
                cwd=ROOT,
            )

    def paused(self) -> dict[str, Any]:
        assert self.popen.stdout is not None
        line = self.popen.stdout.readline()
        assert line, f"{self.name} ended before its pause\n{self.errors.read_text()[-2000:]}\n{self.stack.logs()}"
        out: dict[str, Any] = json.loads(line)
        assert "paused" in out, out
        return out

    def finish(self) -> dict[str, Any]:
        """Let a paused caller go on, and wait for its last line (its turns, its room's sid)."""
        try:
            out, _ = self.popen.communicate("\n", timeout=CALL_CAP_S)
        finally:
            if self.popen.poll() is None:
                self.popen.kill()
                self.popen.wait()
        lines = out.strip().splitlines()
        assert lines, f"{self.name} printed nothing\n{self.errors.read_text()[-3000:]}\n{self.stack.logs()}"
        result: dict[str, Any] = json.loads(lines[-1])
        assert self.popen.returncode == 0, f"{self.name}: {result.get('error')}\n{self.stack.logs()}"
        return result


async def _records(stack: MultiNodeStack, call_ids: list[str]) -> dict[str, Any]:
    from orchestrator.api.app import open_queue
    from orchestrator.config import load_settings
    from orchestrator.runtime import Services
    from orchestrator.store.records import CallStore

    settings = load_settings(data_dir=stack.data_dir)
    queue = open_queue(settings, stack.redis_url, prefix=PREFIX)
    try:
        deadline = time.monotonic() + WAIT_CAP_S
        while True:
            stats = (await queue.stats()).model_dump(mode="json")
            if stats["completed"] == len(call_ids) and stats["in_flight"] == 0 or time.monotonic() > deadline:
                break
            await asyncio.sleep(0.2)
    finally:
        await queue.aclose()
    async with await Services.open(settings, seed=False) as services:
        store = CallStore(services.engine)
        views = {c: await store.get_call(c) for c in call_ids}
        return {"stats": stats, "records": {c: v.to_json() if v else None for c, v in views.items()}}


def _logged(stack: MultiNodeStack, index: int, text: str) -> int:
    return stack.nodes[index].proc.log.read_text(errors="replace").count(text)


@pytest.fixture(scope="module")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole run (four calls, a node stopped with one in progress); a few minutes on a busy box."""
    run_dir = tmp_path_factory.mktemp("livekit-multinode")
    with contextlib.ExitStack() as cleanup:
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(multinode_stack(pair, run_dir))
        first, second = stack.nodes
        result: dict[str, Any] = {
            "node_ids": [first.node_id, second.node_id],
            "worker_registered_first": _logged(stack, 0, "worker registered"),
        }
        stack.start_queue_worker()
        rooms = {name: f"call-{name}-{secrets.token_hex(3)}" for name in ("held", "spread", "draining", "after")}

        # A call on the first node (where the agent worker registered), held on the line after its first turn.
        stack.create_room_on(rooms["held"], first.node_id, {"caller_id": CALLER})
        held = Call(stack, pair, "held", stack.token(rooms["held"], "caller-held"), pause_after=1)
        result["held_paused"] = held.paused()
        result["rooms_while_held"] = stack.room_nodes()

        # The next call's room is placed by the selector: the node with the fewest rooms.
        token = stack.token(rooms["spread"], "caller-spread", metadata={"caller_id": CALLER})
        result["spread"] = Call(stack, pair, "spread", token).finish()

        # SIGTERM the first node with the held call on it: it drains (SHUTTING_DOWN, no new rooms).
        first.signal(signal.SIGTERM)
        _wait_for(lambda: _logged(stack, 0, "exit requested"), WAIT_CAP_S, "the first node's drain", stack)
        token = stack.token(rooms["draining"], "caller-draining", metadata={"caller_id": CALLER})
        result["draining"] = Call(stack, pair, "draining", token).finish()
        result["first_alive_after_draining_call"] = first.proc.popen.poll() is None

        # The held call goes on to its second turn on the draining node; the node exits once it has hung up.
        result["held"] = held.finish()
        result["first_exit"] = _wait_for(lambda: first.proc.popen.poll() is not None, WAIT_CAP_S, "node exit", stack)
        result["first_exit_code"] = first.proc.popen.returncode
        stack.procs.remove(first.proc)  # gone on purpose: check_alive must not count it
        result["registered_after_exit"] = stack.registered_nodes()

        # One URL still: the agent worker registers with the second node, which answers the next call.
        token = stack.token(rooms["after"], "caller-after", metadata={"caller_id": CALLER})
        result["after"] = Call(stack, pair, "after", token).finish()
        result["worker_registered_second"] = _logged(stack, 1, "worker registered")
        result["placements"] = stack.placements()
        result["rooms"] = rooms
        call_ids = [f"lk-{result[name]['room_sid']}" for name in rooms]
        result.update(asyncio.run(_records(stack, call_ids)))
        result["call_ids"] = dict(zip(rooms, call_ids, strict=True))
        per_node = {n: sorted(name for name, room in rooms.items() if result["placements"].get(room) == n)
                    for n in result["node_ids"]}  # fmt: skip
        print(f"\ntwo nodes: rooms per node {per_node}; first node exit code {result['first_exit_code']}")
        yield result


def test_calls_spread_over_both_nodes(two_nodes: dict[str, Any]) -> None:
    first, second = two_nodes["node_ids"]
    rooms, placed = two_nodes["rooms"], two_nodes["placements"]
    assert two_nodes["rooms_while_held"] == {rooms["held"]: first}
    # The selector put the next room on the node without one; each node hosted a call and sent its webhooks
    # (room_started admitted each call, from the node hosting its room).
    assert placed[rooms["spread"]] == second
    assert {placed[rooms[name]] for name in ("held", "spread")} == {first, second}


def test_a_draining_node_takes_no_new_room_and_the_other_answers(two_nodes: dict[str, Any]) -> None:
    first, second = two_nodes["node_ids"]
    assert two_nodes["placements"][two_nodes["rooms"]["draining"]] == second
    assert all(t["answered"] for t in two_nodes["draining"]["turns"])
    # The draining node still relayed that call's signalling (the agent worker's and the caller's) while it lived.
    assert two_nodes["first_alive_after_draining_call"]


def test_the_call_in_progress_on_the_stopped_node_ends_normally_with_its_record(two_nodes: dict[str, Any]) -> None:
    held = two_nodes["held"]
    assert [t["caller"] for t in held["turns"]] == SCRIPT
    assert all(t["answered"] for t in held["turns"])
    record = two_nodes["records"][two_nodes["call_ids"]["held"]]
    assert record is not None
    # Not moved, not re-admitted: the same session on the same node, to the end, on its first attempt.
    assert (record["outcome"], record["turn_count"], record["attempt"]) == ("resolved", 2, 1)
    # The node exited by itself once its last participant had left, and left the nodes' registry.
    assert two_nodes["first_exit_code"] == 0
    assert two_nodes["registered_after_exit"] == {two_nodes["node_ids"][1]}


def test_new_calls_are_answered_through_the_remaining_node(two_nodes: dict[str, Any]) -> None:
    second = two_nodes["node_ids"][1]
    assert two_nodes["placements"][two_nodes["rooms"]["after"]] == second
    assert all(t["answered"] for t in two_nodes["after"]["turns"])
    # The agent worker registered with the first node through the one URL, and with the second once it was gone.
    assert two_nodes["worker_registered_first"] == 1
    assert two_nodes["worker_registered_second"] >= 1


def test_every_call_completed_once_with_a_record(two_nodes: dict[str, Any]) -> None:
    stats = two_nodes["stats"]
    assert (stats["admitted"], stats["completed"], stats["in_flight"], stats["waiting"]) == (4, 4, 0, 0)
    assert stats["dead_letters"] == 0
    for name, record in zip(two_nodes["call_ids"], two_nodes["records"].values(), strict=True):
        assert record is not None, name
        assert (record["outcome"], record["turn_count"]) == ("resolved", 2), (name, record)
