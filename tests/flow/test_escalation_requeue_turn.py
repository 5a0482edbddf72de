"""A caller whose supervisor accepted and then vanished before the caller spoke again hears the AI on that turn."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import pytest
import redis.asyncio as aioredis

from orchestrator.live import LiveFeed
from orchestrator.runtime import Services
from orchestrator.session.text import TextCall
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.flow


@pytest.fixture
async def feed() -> AsyncIterator[LiveFeed]:
    redis = aioredis.from_url(REDIS_TEST_URL, decode_responses=True)
    feed = LiveFeed(redis, prefix=f"requeue-turn-{uuid.uuid4().hex[:8]}")
    yield feed
    keys = [k async for k in redis.scan_iter(f"{feed.prefix}:*")]
    if keys:
        await redis.delete(*keys)
    await redis.aclose()


async def turn(call: TextCall, feed: LiveFeed, utterance: str) -> str:
    await feed.before_turn(call)  # what the worker does before the graph runs each caller turn
    return (await call.say(utterance)).agent


async def test_a_take_over_undone_before_the_caller_speaks_leaves_the_ai_answering(
    services: Services, feed: LiveFeed
) -> None:
    call = TextCall(services, caller_id="+15550100001")
    try:
        assert await turn(call, feed, "I want to speak to a real person please.")
        # Sam accepts, joins nobody, and the console puts the call back in the queue, all between two turns.
        await feed.push_command(call.call_id, {"kind": "take_over", "mode": "escalation", "by": "sam"})
        await feed.push_command(call.call_id, {"kind": "requeue", "by": "sam"})
        reply = await turn(call, feed, "Hello? Is anybody there?")
        assert reply == services.prompts.reply("escalation.hold")
        assert await feed.pending_commands(call.call_id) == []
        # A person accepting for good is still a person on the line: the AI stays silent.
        await feed.push_command(call.call_id, {"kind": "take_over", "mode": "escalation", "by": "kim"})
        assert await turn(call, feed, "Hello?") == ""
    finally:
        await call.aclose()


async def test_a_take_over_released_to_a_specialist_still_goes_through(services: Services, feed: LiveFeed) -> None:
    call = TextCall(services, caller_id="+15550100001")
    try:
        await turn(call, feed, "What's my balance?")
        await feed.push_command(call.call_id, {"kind": "take_over", "by": "sam"})
        await feed.push_command(call.call_id, {"kind": "release", "agent": "scheduling", "by": "sam"})
        await feed.before_turn(call)
        assert [c["kind"] for c in await feed.pending_commands(call.call_id)] == ["release"]
    finally:
        await call.aclose()
