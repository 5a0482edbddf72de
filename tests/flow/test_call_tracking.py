"""What every call gets around its session (`orchestrator.worker.tracking`), on real Redis and a real store."""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator.contracts import CallJob
from orchestrator.live import LiveFeed
from orchestrator.queue import ClaimedCall
from orchestrator.runtime import Services
from orchestrator.worker.runner import TextCallRunner, checkpoint_state
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.flow

MARIA = "+15550100001"
SCRIPT = ["What's my balance?", "10027"]


@pytest.fixture
async def feed() -> AsyncIterator[LiveFeed]:
    client = aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    live = LiveFeed(client, prefix=f"trk-{uuid.uuid4().hex[:10]}")
    try:
        yield live
    finally:
        keys = [k async for k in client.scan_iter(f"{live.prefix}:*")]
        if keys:
            await client.delete(*keys)
        await client.aclose()


def claimed(job: CallJob) -> ClaimedCall:
    return ClaimedCall(
        job=job, entry_id="1-0", priority=1, deliveries=1, waited_s=0.0, consumer="w-track", claimed_at=time.monotonic()
    )


async def test_supervisor_lines_after_the_callers_last_turn_reach_the_checkpoint(
    services: Services, feed: LiveFeed
) -> None:
    call_id = f"call-track-{uuid.uuid4().hex[:8]}"

    async def after_turn(call: str, done: int) -> None:
        if done < len(SCRIPT):
            return
        # After the caller's last turn a supervisor takes the call over and speaks, as the console's
        # take-over and say do (`ConsoleService.take_over`/`say`): transcript lines plus commands.
        await feed.push_command(call, {"kind": "take_over", "by": "sam"})
        for text in ("Hi Maria, this is Sam from billing.", "I've noted that for you."):
            await feed.append(call, "human", "sam", text, turn=done)
            await feed.push_command(call, {"kind": "say", "text": text, "by": "sam"})

    runner = TextCallRunner(services, live=feed, on_turn=after_turn, worker_name="w-track")
    job = CallJob(call_id=call_id, source="simulate", caller_id=MARIA, script=SCRIPT)
    outcome = await runner.run(claimed(job))

    assert outcome.turns == len(SCRIPT)
    state = await checkpoint_state(services, call_id)
    transcript = state["transcript"]
    # What the caller heard, in order, is what the checkpoint holds: the lines come after the last reply.
    assert [(t["role"], t["text"]) for t in transcript[-2:]] == [
        ("human", "Hi Maria, this is Sam from billing."),
        ("human", "I've noted that for you."),
    ]
    assert transcript[-3]["role"] == "agent"
    console = [line.text for line in await feed.lines(call_id) if line.role == "human"]
    assert console == [t["text"] for t in transcript if t["role"] == "human"]
    assert await feed.pending_commands(call_id) == []


async def test_commands_before_a_turn_still_wait_for_it(services: Services, feed: LiveFeed) -> None:
    """The end-of-call flush does not change when commands apply during the call: before the next turn."""
    call_id = f"call-track-{uuid.uuid4().hex[:8]}"

    async def after_turn(call: str, done: int) -> None:
        if done == 1:
            await feed.push_command(call, {"kind": "say", "text": "One moment, please.", "by": "sam"})

    runner = TextCallRunner(services, live=feed, on_turn=after_turn, worker_name="w-track")
    await runner.run(claimed(CallJob(call_id=call_id, source="simulate", caller_id=MARIA, script=SCRIPT)))

    roles = [(t["role"], t["text"]) for t in (await checkpoint_state(services, call_id))["transcript"]]
    # Turn 1 (caller, agent), the supervisor's line, then turn 2 (caller, agent).
    assert roles[2] == ("human", "One moment, please.")
    assert [role for role, _ in roles] == ["caller", "agent", "human", "caller", "agent"]


@pytest.mark.parametrize("script", [SCRIPT, []], ids=["then-two-turns", "call-ends-with-no-turn"])
async def test_supervisor_lines_before_the_first_turn_come_first(
    services: Services, feed: LiveFeed, script: list[str]
) -> None:
    """A line spoken before the caller's first turn is the first line of the checkpoint, even with no turn at all."""
    call_id = f"call-track-{uuid.uuid4().hex[:8]}"

    async def on_start(call: str, _done: int) -> None:
        await feed.push_command(call, {"kind": "say", "text": "Hello, this is Sam.", "by": "sam"})

    runner = TextCallRunner(services, live=feed, on_start=on_start, worker_name="w-track")
    await runner.run(claimed(CallJob(call_id=call_id, source="simulate", caller_id=MARIA, script=script)))

    lines = [(t["role"], t["text"]) for t in (await checkpoint_state(services, call_id))["transcript"]]
    assert lines[0] == ("human", "Hello, this is Sam.")
    assert [role for role, _ in lines] == ["human", *["caller", "agent"] * len(script)]
    assert await feed.pending_commands(call_id) == []
