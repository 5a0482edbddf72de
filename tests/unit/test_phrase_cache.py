"""Phrase cache: keys, tiers, invalidation, hit counters and the TTS wrapper (no TTS call on a hit)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest
from livekit import rtc
from livekit.agents import tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

from orchestrator.providers.phrase_cache import (
    CachedTTS,
    PhraseCache,
    SynthesisJournal,
    SynthesisRecord,
    phrase_key,
    split_sentences,
)

pytestmark = pytest.mark.unit


class CountingTTS(tts.TTS[Any]):
    """A fake engine: a tone whose length depends on the text; counts its calls."""

    def __init__(self, voice: str = "a") -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=16000, num_channels=1)
        self.voice = voice
        self.calls: list[str] = []

    def cache_identity(self) -> dict[str, object]:
        return {"provider": "fake", "voice": self.voice, "sample_rate": self.sample_rate}

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        self.calls.append(text)
        return _Stream(tts=self, input_text=text, conn_options=conn_options)


class _Stream(tts.ChunkedStream):
    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=16000, num_channels=1, mime_type="audio/pcm"
        )
        output_emitter.push(b"\x01\x00" * 160 * len(self._input_text))
        output_emitter.flush()


@pytest.fixture
async def cache() -> AsyncIterator[PhraseCache]:
    c = PhraseCache(local_entries=4)
    yield c
    await c.aclose()


def test_key_changes_with_voice_text_and_version() -> None:
    base = phrase_key({"voice": "a"}, "Let me look that up.", "1")
    assert base == phrase_key({"voice": "a"}, "Let me  look that up. ", "1")
    assert base != phrase_key({"voice": "b"}, "Let me look that up.", "1")
    assert base != phrase_key({"voice": "a"}, "Let me check that.", "1")
    assert base != phrase_key({"voice": "a"}, "Let me look that up.", "2")
    assert base != phrase_key({"voice": "a", "sample_rate": 8000}, "Let me look that up.", "1")


async def test_hit_plays_without_a_tts_call(cache: PhraseCache) -> None:
    engine = CountingTTS()
    wrapper = CachedTTS(engine, cache, phrases=["Let me look that up."])
    first = await wrapper.synthesize("Let me look that up.").collect()
    second = await wrapper.synthesize("Let me look that up.").collect()
    assert engine.calls == ["Let me look that up."]
    assert first.data.tobytes() == second.data.tobytes()
    assert (cache.stats.hits, cache.stats.misses) == (1, 1)
    assert wrapper.journal.records[-1].cached


async def test_sentences_outside_the_phrase_set_bypass_the_cache(cache: PhraseCache) -> None:
    engine = CountingTTS()
    wrapper = CachedTTS(engine, cache, phrases=["Let me look that up."])
    await wrapper.synthesize("Your balance is forty two dollars.").collect()
    await wrapper.synthesize("Your balance is forty two dollars.").collect()
    assert len(engine.calls) == 2
    assert cache.stats.bypass == 2
    assert cache.stats.hit_rate == 0.0


async def test_voice_change_invalidates(cache: PhraseCache) -> None:
    a, b = CountingTTS("a"), CountingTTS("b")
    await CachedTTS(a, cache, phrases=None).synthesize("Thanks for your patience.").collect()
    await CachedTTS(b, cache, phrases=None).synthesize("Thanks for your patience.").collect()
    assert a.calls
    assert b.calls


async def test_local_tier_is_bounded() -> None:
    cache = PhraseCache(local_entries=2)
    frame = rtc.AudioFrame(b"\0\0" * 160, 16000, 1, 160)
    for i in range(3):
        await cache.put({"v": 1}, f"phrase {i}", frame)
    assert await cache.get({"v": 1}, "phrase 0") is None
    assert await cache.get({"v": 1}, "phrase 2") is not None


async def test_redis_outage_costs_a_synthesis_not_the_turn() -> None:
    cache = PhraseCache(redis=PhraseCache.connect("redis://127.0.0.1:1/0", timeout_s=0.2), local_entries=0)
    engine = CountingTTS()
    wrapper = CachedTTS(engine, cache, phrases=None)
    for _ in range(3):
        frame = await wrapper.synthesize("One moment while I check.").collect()
        assert frame.duration > 0
    assert len(engine.calls) == 3
    assert cache.stats.errors == 1, "the breaker skips Redis after the first failure"
    await cache.aclose()


async def test_split_matches_the_session_tokenizer() -> None:
    sentences = await split_sentences("Thanks for calling Northwind Broadband. How can I help you today?")
    assert sentences == ["Thanks for calling Northwind Broadband.", "How can I help you today?"]


async def test_listeners_see_each_count_as_the_cache_makes_it(cache: PhraseCache) -> None:
    seen: list[str] = []

    def broken(_result: str) -> None:
        raise RuntimeError("a metrics backend is down")

    cache.on_lookup(broken)
    cache.on_lookup(seen.append)
    wrapper = CachedTTS(CountingTTS(), cache, phrases=["Let me look that up."])
    for text in ("Let me look that up.", "Let me look that up.", "Anything else?"):
        frame = await wrapper.synthesize(text).collect()
        assert frame.duration > 0, "a failing listener never costs the sentence its audio"
    assert seen == ["miss", "hit", "bypass"]
    assert (cache.stats.hits, cache.stats.misses, cache.stats.bypass) == (1, 1, 1)


def test_the_journal_reads_what_came_since_a_mark_after_it_dropped_its_oldest() -> None:
    journal = SynthesisJournal(limit=3)
    for n in range(4):
        journal.add(SynthesisRecord(text=f"s{n}", started=float(n)))
    mark = journal.added
    journal.add(SynthesisRecord(text="s4", started=4.0))
    # The list is full, so positions moved: the mark, not the length seen before, finds the new record.
    assert [r.text for r in journal.since(mark)] == ["s4"]
    assert [r.text for r in journal.since(0)] == ["s2", "s3", "s4"]
    assert journal.since(journal.added) == []
