"""Voice telemetry: a turn's stages from livekit's turn metrics; provider errors, fallbacks and cache counts."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from livekit.agents import APIConnectionError, tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from orchestrator.config import load_settings
from orchestrator.providers.phrase_cache import CachedTTS, PhraseCache
from orchestrator.telemetry import names
from orchestrator.telemetry.metrics import CallMetrics
from orchestrator.telemetry.setup import TelemetryHandles, setup_telemetry
from orchestrator.telemetry.voice import turn_stages, watch_voice

pytestmark = pytest.mark.unit


def test_turn_stages_split_the_first_audio() -> None:
    stages = turn_stages(
        {"transcription_delay": 0.15, "end_of_turn_delay": 0.35},
        {"llm_node_ttft": 0.30, "tts_node_ttfb": 0.08, "e2e_latency": 0.74},
    )
    assert stages == pytest.approx(
        {
            names.STAGE_E2E: 740.0,
            names.STAGE_STT: 150.0,
            names.STAGE_ENDPOINTING: 200.0,
            names.STAGE_LLM_TTFT: 300.0,
            names.STAGE_TTS_TTFB: 80.0,
            names.STAGE_OVERHEAD: 10.0,
        }
    )


def test_a_reply_cut_off_before_its_audio_has_no_first_audio_or_overhead() -> None:
    stages = turn_stages({"transcription_delay": 0.2, "end_of_turn_delay": 0.4}, {"llm_node_ttft": 0.3})
    assert set(stages) == {names.STAGE_STT, names.STAGE_ENDPOINTING, names.STAGE_LLM_TTFT}


class ToneTTS(tts.TTS[Any]):
    """A fake engine: a short tone per sentence, or an outage."""

    def __init__(self, name: str, *, down: bool = False) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=16000, num_channels=1)
        self.name = name
        self.down = down
        self.calls = 0

    @property
    def provider(self) -> str:
        return self.name

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        self.calls += 1
        return _ToneStream(tts=self, input_text=text, conn_options=conn_options)


class _ToneStream(tts.ChunkedStream):
    _tts: ToneTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        if self._tts.down:
            raise APIConnectionError(f"{self._tts.name} is down")
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=16000, num_channels=1, mime_type="audio/pcm"
        )
        output_emitter.push(b"\x01\x00" * 1600)
        output_emitter.flush()


@pytest.fixture
def meter(tmp_path: Path) -> Iterator[tuple[CallMetrics, InMemoryMetricReader, TelemetryHandles]]:
    reader = InMemoryMetricReader()
    handles = setup_telemetry(load_settings(data_dir=tmp_path), join_livekit=False, metric_readers=[reader])
    yield CallMetrics(handles.meter), reader, handles
    handles.shutdown()


def points(reader: InMemoryMetricReader, name: str) -> dict[tuple[tuple[str, Any], ...], float]:
    data = reader.get_metrics_data()
    assert data is not None
    return {
        tuple(sorted(p.attributes.items())): p.value
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    }


async def test_a_fallback_counts_the_providers_error_the_fallback_and_the_cache_lookups(
    meter: tuple[CallMetrics, InMemoryMetricReader, TelemetryHandles],
) -> None:
    metrics, reader, _ = meter
    cloud = ToneTTS("cloudvoice", down=True)
    chain = tts.FallbackAdapter([cloud, ToneTTS("localvoice")], max_retry_per_tts=0)
    cache = PhraseCache(local_entries=8)
    engine = CachedTTS(chain, cache, phrases=["One moment please."])
    stop = watch_voice(metrics, stt_engine=None, tts_engine=engine, cache=cache)
    try:
        for text in ("One moment please.", "One moment please.", "Your balance is due."):
            frame = await engine.synthesize(text).collect()
            assert frame.duration > 0
        # The chain retries a lost engine in the background on later requests: wait for those attempts to end.
        recoveries = [s.recovering_synthesize_task for s in chain._status if s.recovering_synthesize_task is not None]
        await asyncio.gather(*recoveries, return_exceptions=True)
    finally:
        stop()
        await cache.aclose()

    errors = points(reader, names.M_PROVIDER_ERRORS)
    # Every request the cloud voice failed counts once (the wrappers re-raising it do not count again).
    assert cloud.calls >= 1
    assert errors == {(("error", "APIConnectionError"), ("kind", "tts"), ("provider", "cloudvoice")): cloud.calls}
    assert points(reader, names.M_PROVIDER_FALLBACKS) == {(("kind", "tts"), ("reason", "cloudvoice_unavailable")): 1}
    # The metric is the cache's own count: the phrase missed, then hit; the other sentence bypassed it.
    lookups = {dict(k)["result"]: v for k, v in points(reader, names.M_PHRASE_CACHE).items()}
    assert lookups == {names.CACHE_MISS: 1, names.CACHE_HIT: 1, names.CACHE_BYPASS: 1}
    assert (cache.stats.hits, cache.stats.misses, cache.stats.bypass) == (1, 1, 1)


async def test_cache_hits_are_counted_once_by_the_cache(
    meter: tuple[CallMetrics, InMemoryMetricReader, TelemetryHandles],
) -> None:
    metrics, reader, _ = meter
    cache = PhraseCache(local_entries=8)
    engine = CachedTTS(ToneTTS("localvoice"), cache, phrases=None)
    watch_voice(metrics, stt_engine=None, tts_engine=engine, cache=cache)
    for _ in range(3):
        await engine.synthesize("Thanks for calling.").collect()
    await cache.aclose()
    lookups = {dict(k)["result"]: v for k, v in points(reader, names.M_PHRASE_CACHE).items()}
    # Every result's series exists from the start, at 0 until the cache counts one.
    assert lookups == {names.CACHE_MISS: 1, names.CACHE_HIT: 2, names.CACHE_BYPASS: 0}
    assert cache.stats.hit_rate == pytest.approx(2 / 3)
    assert points(reader, names.M_PROVIDER_ERRORS) == {}
