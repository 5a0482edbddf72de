"""The console's lease watchdog ends when the console closes, even if a round swallowed its cancellation."""

from __future__ import annotations

import asyncio
import uuid
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from orchestrator.config import load_settings
from orchestrator.console.service import Console
from orchestrator.live import LiveFeed
from tests.conftest import REDIS_TEST_URL

pytestmark = pytest.mark.contract


class Stubborn(Console):
    """A console whose queue-settling round hangs and swallows the cancellation, as a client library can."""

    entered: asyncio.Event

    async def settle_queue(self) -> None:
        self.entered.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            pass  # swallowed: the watchdog is not told to stop


async def test_closing_the_console_ends_a_watchdog_whose_round_swallowed_the_cancel(tmp_path: Path) -> None:
    Stubborn.entered = asyncio.Event()
    redis = aioredis.Redis.from_url(REDIS_TEST_URL, decode_responses=True)
    feed = LiveFeed(redis, prefix=f"wd-{uuid.uuid4().hex[:8]}")

    async def open_and_close() -> None:
        async with Stubborn.open(load_settings(data_dir=tmp_path), feed):
            await Stubborn.entered.wait()  # the round that settles the queue is running

    try:
        # Without the stop signal the watchdog slept into its next round for ever, and this never returned.
        await asyncio.wait_for(open_and_close(), 60)
    finally:
        await redis.aclose()
