"""The cloud TTS's first-audio deadline on a virtual clock (looptime): kept if in time, dropped right on time."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from livekit import rtc
from livekit.agents.types import APIConnectOptions

from orchestrator.providers.fallbacks import fallback_tts
from tests.voice_fakes import ScriptedTTS

pytestmark = pytest.mark.unit

TIMEOUT_S = 0.5
CLOUD, LOCAL = 1000, 2000  # each engine's constant sample value
CAP_S = 60  # virtual seconds: a hung test ends at once under looptime


async def say(first_audio_after_s: float | None) -> tuple[rtc.AudioFrame, bool, list[tuple[str, bool]], float | None]:
    """One sentence through the chain; what the caller heard, whether it may be cached, and when the cloud was dropped
    (relative to the request)."""
    cloud = ScriptedTTS("cloud", first_audio_after_s=first_audio_after_s, level=CLOUD)
    local = ScriptedTTS("local", first_audio_after_s=0.0, level=LOCAL)
    engine = fallback_tts(cloud, local, identity={"provider": "cloud"})
    changes: list[tuple[str, bool]] = []
    down_at: list[float] = []

    def on_availability(ev: Any) -> None:
        changes.append((ev.tts.provider, ev.available))
        if not ev.available:
            down_at.append(asyncio.get_running_loop().time())

    engine.on("tts_availability_changed", on_availability)
    try:
        # The per-attempt deadline as the session's CachedTTS passes it.
        stream = engine.synthesize(
            "Your balance is forty two dollars.", conn_options=APIConnectOptions(max_retry=0, timeout=TIMEOUT_S)
        )
        async with asyncio.timeout(CAP_S):
            frame = await stream.collect()
        cache_safe = bool(getattr(stream, "cache_safe", False))
    finally:
        await engine.aclose()
    dropped_after = down_at[0] - cloud.requested_at[0] if down_at else None
    return frame, cache_safe, changes, dropped_after


def heard(frame: rtc.AudioFrame) -> set[int]:
    return set(frame.data) - {0}


@pytest.mark.looptime
async def test_first_audio_inside_the_deadline_keeps_the_cloud_voice() -> None:
    frame, cache_safe, changes, dropped_after = await say(TIMEOUT_S - 0.05)
    assert heard(frame) == {CLOUD}
    assert cache_safe, "the cloud voice rendered the whole sentence: it may be cached under its identity"
    assert (changes, dropped_after) == ([], None)


@pytest.mark.looptime
@pytest.mark.parametrize("first_audio_after_s", [pytest.param(TIMEOUT_S + 0.05, id="just-too-late"), None])
async def test_no_audio_by_the_deadline_switches_to_the_local_voice_right_on_time(
    first_audio_after_s: float | None,
) -> None:
    frame, cache_safe, changes, dropped_after = await say(first_audio_after_s)
    assert heard(frame) == {LOCAL}
    assert not cache_safe, "the local voice's audio is never cached as the cloud voice"
    assert changes[0] == ("cloud", False)
    assert dropped_after == pytest.approx(TIMEOUT_S, abs=1e-6)
