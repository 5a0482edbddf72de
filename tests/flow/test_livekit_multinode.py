"""Two livekit-server nodes on one Redis behind one URL: calls spread over both, and one node stopped mid-call.

The nodes, the shared Redis, a balancer (the one URL of the callers, the API and both workers), the API and
the workers run in the server's namespace; WebRTC callers in the caller's. A call is held open on the first
node (the one the agent worker registered with), a second call lands on the other node by the selector; the
first node gets SIGTERM: it takes no new rooms, the call in progress goes on to its end and its record, and
then the node exits; new calls are answered through the other node, the agent worker registered with it again.
In a second run the first node is SIGKILLed under a held call: the caller's and the agent's SDKs reconnect
through the URL, the room comes back on the other node with its sid (the same call), and the call goes on.
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


class Call:
    """A WebRTC caller placed through the balancer's URL; ``pause_after`` holds it on the line after that turn."""

    def __init__(
        self,
        stack: MultiNodeStack,
        pair: NetnsPair,
        name: str,
        token: str,
        pause_after: int | None = None,
        script: list[str] = SCRIPT,
    ):
        self.stack, self.name = stack, name
        heard = stack.run_dir / name
        heard.mkdir()
        argv = [sys.executable, str(CALLER_SCRIPT), stack.caller_url, token, str(heard), json.dumps(script)]
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
    from orchestrator.config import load_settings
    from orchestrator.queue import open_queue
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


@contextlib.contextmanager
def _stack(tmp_path_factory: pytest.TempPathFactory, name: str) -> Iterator[tuple[MultiNodeStack, NetnsPair]]:
    run_dir = tmp_path_factory.mktemp(name)
    with contextlib.ExitStack() as cleanup:
        # The held call's caller stays silent while the other calls are placed and a node is stopped, longer than
        # the 15 s after which an agent asks if a silent caller is still there and then ends the call.
        cleanup.enter_context(pytest.MonkeyPatch.context()).setenv("SWITCHBOARD_CALLER_AWAY_S", "600")
        try:
            pair = cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            pytest.skip(f"no network namespaces here: {exc}")
        stack = cleanup.enter_context(multinode_stack(pair, run_dir))
        stack.start_queue_worker()
        yield stack, pair


@pytest.fixture(scope="class")
def two_nodes(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The whole run (four calls, a node stopped with one in progress); a few minutes on a busy box."""
    with _stack(tmp_path_factory, "livekit-multinode") as (stack, pair):
        first, second = stack.nodes
        result: dict[str, Any] = {
            "node_ids": [first.node_id, second.node_id],
            "worker_registered_first": _logged(stack, 0, "worker registered"),
        }
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
        stack.wait_for(lambda: _logged(stack, 0, "exit requested"), WAIT_CAP_S, "the first node's drain")
        token = stack.token(rooms["draining"], "caller-draining", metadata={"caller_id": CALLER})
        result["draining"] = Call(stack, pair, "draining", token).finish()
        result["first_alive_after_draining_call"] = first.proc.popen.poll() is None

        # The held call goes on to its second turn on the draining node; the node exits once it has hung up.
        result["held"] = held.finish()
        result["first_exit"] = stack.wait_for(lambda: first.proc.popen.poll() is not None, WAIT_CAP_S, "node exit")
        result["first_exit_code"] = first.proc.popen.returncode
        stack.procs.remove(first.proc)  # gone on purpose: check_alive must not count it
        result["registered_after_exit"] = stack.registered_nodes()

        # One URL still: the agent worker registers with the second node, which answers the next call.
        token = stack.token(rooms["after"], "caller-after", metadata={"caller_id": CALLER})
        result["after"] = Call(stack, pair, "after", token).finish()
        result["worker_registered_second"] = _logged(stack, 1, "worker registered")
        result["placements"] = stack.placements()
        result["webhooks"] = [
            {what: _logged(stack, i, f"{what} webhook") for what in ("sent", "failed to send", "dropped")}
            for i in (0, 1)
        ]
        result["rooms"] = rooms
        call_ids = [f"lk-{result[name]['room_sid']}" for name in rooms]
        result.update(asyncio.run(_records(stack, call_ids)))
        result["call_ids"] = dict(zip(rooms, call_ids, strict=True))
        per_node = {n: sorted(name for name, room in rooms.items() if result["placements"].get(room) == n)
                    for n in result["node_ids"]}  # fmt: skip
        print(f"\ntwo nodes: rooms per node {per_node}; first node exit code {result['first_exit_code']}")
        yield result


class TestOneNodeStopped:
    """SIGTERM: the node drains, its call ends normally, and the other node takes the new calls."""

    def test_calls_spread_over_both_nodes(self, two_nodes: dict[str, Any]) -> None:
        first, second = two_nodes["node_ids"]
        rooms, placed = two_nodes["rooms"], two_nodes["placements"]
        assert two_nodes["rooms_while_held"] == {rooms["held"]: first}
        # The selector put the next room on the node without one, so each node hosted a call.
        assert placed[rooms["spread"]] == second
        assert {placed[rooms[name]] for name in ("held", "spread")} == {first, second}

    def test_each_node_sends_its_rooms_webhooks_to_the_api(self, two_nodes: dict[str, Any]) -> None:
        # room_started of each call came from the node hosting its room, and the API took every one.
        for sent in two_nodes["webhooks"]:
            assert sent["sent"] > 0, two_nodes["webhooks"]
            assert (sent["failed to send"], sent["dropped"]) == (0, 0), two_nodes["webhooks"]

    def test_a_draining_node_takes_no_new_room_and_the_other_answers(self, two_nodes: dict[str, Any]) -> None:
        first, second = two_nodes["node_ids"]
        assert two_nodes["placements"][two_nodes["rooms"]["draining"]] == second
        assert all(t["answered"] for t in two_nodes["draining"]["turns"])
        # The draining node still relayed that call's signalling (the agent worker's and the caller's) while it lived.
        assert two_nodes["first_alive_after_draining_call"]

    def test_the_call_in_progress_on_the_stopped_node_ends_normally_with_its_record(
        self, two_nodes: dict[str, Any]
    ) -> None:
        held = two_nodes["held"]
        assert [t["caller"] for t in held["turns"]] == SCRIPT
        assert all(t["answered"] for t in held["turns"])
        record = two_nodes["records"][two_nodes["call_ids"]["held"]]
        assert record is not None
        # Not moved, not re-admitted: the same session on the same node, to the end, on its first attempt.
        # The turns as the session heard and answered them say why, if not (an STT mishearing under load, a turn lost).
        turns = [(t.get("caller"), t.get("agent")) for t in record.get("turns") or []]
        assert (record["outcome"], record["turn_count"], record["attempt"]) == ("resolved", 2, 1), turns
        # The node exited by itself once its last participant had left, and left the nodes' registry.
        assert two_nodes["first_exit_code"] == 0
        assert two_nodes["registered_after_exit"] == {two_nodes["node_ids"][1]}

    def test_new_calls_are_answered_through_the_remaining_node(self, two_nodes: dict[str, Any]) -> None:
        second = two_nodes["node_ids"][1]
        assert two_nodes["placements"][two_nodes["rooms"]["after"]] == second
        assert all(t["answered"] for t in two_nodes["after"]["turns"])
        # The agent worker registered with the first node through the one URL, and with the second once it was gone.
        assert two_nodes["worker_registered_first"] == 1
        assert two_nodes["worker_registered_second"] >= 1

    def test_every_call_completed_once_with_a_record(self, two_nodes: dict[str, Any]) -> None:
        stats = two_nodes["stats"]
        assert (stats["admitted"], stats["completed"], stats["in_flight"], stats["waiting"]) == (4, 4, 0, 0)
        assert stats["dead_letters"] == 0
        for name, record in zip(two_nodes["call_ids"], two_nodes["records"].values(), strict=True):
            assert record is not None, name
            assert (record["outcome"], record["turn_count"]) == ("resolved", 2), (name, record)


# After the kill the caller speaks again only once it is back in the room; the words that reach the agent
# before it has subscribed to the caller's new track are lost, so the ZIP code comes after a few words.
KILL_SCRIPT = ["What's my balance?", "My ZIP code is 1 0 0 2 7"]


@pytest.fixture(scope="class")
def killed_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """A call held on the first node, which is SIGKILLed; then the call's second turn, and a new call."""
    with _stack(tmp_path_factory, "livekit-multinode-kill") as (stack, pair):
        first, second = stack.nodes
        result: dict[str, Any] = {"node_ids": [first.node_id, second.node_id]}
        room = f"call-held-{secrets.token_hex(3)}"
        stack.create_room_on(room, first.node_id, {"caller_id": CALLER})
        held = Call(stack, pair, "held", stack.token(room, "caller-held"), pause_after=1, script=KILL_SCRIPT)
        result["held_paused"] = held.paused()
        killed_at = time.monotonic()
        first.signal(signal.SIGKILL)
        first.proc.popen.wait()
        stack.procs.remove(first.proc)  # gone on purpose: check_alive must not count it

        def back_on_the_other_node() -> list[str] | None:
            who = stack.participants(room)
            return who if stack.room_nodes().get(room) == second.node_id and len(who) == 2 else None

        result["rejoined"] = stack.wait_for(back_on_the_other_node, WAIT_CAP_S, "the held call back in its room")
        result["rejoined_s"] = round(time.monotonic() - killed_at, 1)
        result["held"] = held.finish()
        after = f"call-after-{secrets.token_hex(3)}"
        token = stack.token(after, "caller-after", metadata={"caller_id": CALLER})
        result["after"] = Call(stack, pair, "after", token).finish()
        result["placements"] = stack.placements()
        result["rooms"] = {"held": room, "after": after}
        result["call_ids"] = {name: f"lk-{result[name]['room_sid']}" for name in ("held", "after")}
        result.update(asyncio.run(_records(stack, list(result["call_ids"].values()))))
        outcome = result["records"][result["call_ids"]["held"]]
        print(
            f"\nkilled node: {result['rejoined']} back in the held call's room on the other node "
            f"{result['rejoined_s']} s after the kill; the call recorded {outcome and outcome['outcome']}"
        )
        yield result


class TestOneNodeKilled:
    """SIGKILL: the call on the node comes back on the other one, and goes on."""

    def test_a_call_on_a_killed_node_comes_back_on_the_other_node_as_the_same_call(
        self, killed_node: dict[str, Any]
    ) -> None:
        _, second = killed_node["node_ids"]
        # The caller and the agent both reconnected through the one URL; the room was made again on the other
        # node with the sid it had (LiveKit keeps it in Redis), so the call id (lk-<room sid>) did not change.
        assert "caller-held" in killed_node["rejoined"]
        assert any(who.startswith("agent-") for who in killed_node["rejoined"])
        assert killed_node["placements"][killed_node["rooms"]["held"]] == second
        assert killed_node["held"]["room_sid"] == killed_node["held_paused"]["room_sid"]
        assert [t["answered"] for t in killed_node["held"]["turns"]] == [True, True]

    def test_the_killed_nodes_call_is_not_admitted_twice_and_ends_with_one_record(
        self, killed_node: dict[str, Any]
    ) -> None:
        stats = killed_node["stats"]
        # The room's second room_started (from the other node) was a duplicate of the admitted call, not a new one.
        assert (stats["admitted"], stats["duplicates"], stats["completed"], stats["in_flight"]) == (2, 1, 2, 0)
        assert stats["dead_letters"] == 0
        record = killed_node["records"][killed_node["call_ids"]["held"]]
        assert record is not None
        # One session from start to end, on its first attempt: the agent's job outlived the node's death.
        # The turns as the session heard and answered them say why, if not (an STT mishearing under load, a turn lost).
        turns = [(t.get("caller"), t.get("agent")) for t in record.get("turns") or []]
        assert (record["outcome"], record["turn_count"], record["attempt"]) == ("resolved", 2, 1), turns

    def test_after_a_kill_new_calls_are_answered_through_the_remaining_node(self, killed_node: dict[str, Any]) -> None:
        assert killed_node["placements"][killed_node["rooms"]["after"]] == killed_node["node_ids"][1]
        assert all(t["answered"] for t in killed_node["after"]["turns"])
        record = killed_node["records"][killed_node["call_ids"]["after"]]
        assert record is not None
        assert record["outcome"] == "resolved"
