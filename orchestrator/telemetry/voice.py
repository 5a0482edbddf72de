"""Voice telemetry: a turn's latency by stage, STT/TTS errors and fallbacks, and phrase-cache lookups as metrics."""

from __future__ import annotations

import logging
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from functools import partial
from typing import Any, Protocol

from livekit.agents import stt, tts

from orchestrator.telemetry import names as n
from orchestrator.telemetry.metrics import CallMetrics

__all__ = ["turn_stages", "watch_voice"]

log = logging.getLogger(__name__)


class _LookupCounter(Protocol):
    """The phrase cache's side of the hit counter (`providers.phrase_cache.PhraseCache.on_lookup`)."""

    def on_lookup(self, listener: Callable[[Any], None]) -> None: ...


def _seconds(report: Mapping[str, Any], key: str) -> float | None:
    value = report.get(key)
    return float(value) if isinstance(value, int | float) else None


def turn_stages(caller: Mapping[str, Any], reply: Mapping[str, Any]) -> dict[str, float]:
    """A voice turn's latency by stage, in ms (`names.STAGES`), from livekit's per-message metrics.

    Args:
        caller: The caller message's metrics (``transcription_delay``, ``end_of_turn_delay``: seconds after
            the end of speech).
        reply: The reply's metrics (``llm_node_ttft``: the graph's first speakable token; ``tts_node_ttfb``;
            ``e2e_latency``: end of caller speech to the first agent audio).

    Stages the session did not measure (a reply cut off before its first audio) are left out. Overhead is
    what the first audio took beyond end-of-turn detection, the graph's first token and the TTS's first
    byte: queues, scheduling, resampling, the console check before the turn.
    """
    stt_final = _seconds(caller, "transcription_delay")
    end_of_turn = _seconds(caller, "end_of_turn_delay")
    first_token = _seconds(reply, "llm_node_ttft")
    first_byte = _seconds(reply, "tts_node_ttfb")
    first_audio = _seconds(reply, "e2e_latency")
    out: dict[str, float] = {}
    if first_audio is not None:
        out[n.STAGE_E2E] = first_audio
    if stt_final is not None:
        out[n.STAGE_STT] = stt_final
        if end_of_turn is not None:
            out[n.STAGE_ENDPOINTING] = max(0.0, end_of_turn - stt_final)
    if first_token is not None:
        out[n.STAGE_LLM_TTFT] = first_token
    if first_byte is not None:
        out[n.STAGE_TTS_TTFB] = first_byte
    if first_audio is not None and end_of_turn is not None and first_token is not None and first_byte is not None:
        out[n.STAGE_OVERHEAD] = max(0.0, first_audio - end_of_turn - first_token - first_byte)
    return {stage: round(s * 1000, 2) for stage, s in out.items()}


def _engines(engine: Any, seen: set[int]) -> Iterator[Any]:
    """``engine`` and every engine it wraps: stream adapters, answer deadlines, fallback chains, the cache."""
    if engine is None or id(engine) in seen:
        return
    seen.add(id(engine))
    yield engine
    for attr in ("wrapped", "wrapped_stt", "inner"):
        yield from _engines(getattr(engine, attr, None), seen)
    for child in (*getattr(engine, "_stt_instances", ()), *getattr(engine, "_tts_instances", ())):
        yield from _engines(child, seen)


def watch_voice(
    metrics: CallMetrics, *, stt_engine: Any, tts_engine: Any, cache: _LookupCounter | None = None
) -> Callable[[], None]:
    """Count a voice session's provider errors and fallbacks, and its phrase-cache lookups.

    Every engine in the STT and TTS chains reports its failures (`cc.provider.errors{provider, kind,
    error}`); a fallback chain that gives up on an engine counts a fallback (`cc.provider.fallbacks{kind,
    reason=<provider>_unavailable}`); the phrase cache reports each sentence as it counts it
    (`cc.phrase_cache.lookups{result}`). Metrics never raise into the session.

    Returns:
        A function that stops watching the engines (the cache's listener lives as long as the cache).
    """
    detach: list[Callable[[], None]] = []
    # A wrapper whose inner engine failed reports the same exception again (the cache, a plain adapter):
    # one failure is one error, reported under the innermost engine, which reports it first.
    counted: deque[BaseException] = deque(maxlen=64)

    def watch(root: Any, kind: str) -> None:
        for engine in _engines(root, set()):
            provider = n.safe_suffix(str(getattr(engine, "provider", "") or type(engine).__name__))

            def on_error(ev: Any, provider: str = provider) -> None:
                error = getattr(ev, "error", ev)
                if any(error is seen for seen in counted):
                    return
                if isinstance(error, BaseException):
                    counted.append(error)
                _safely(metrics.observe_provider_error, provider, kind, type(error).__name__)

            emitter: Any = engine  # livekit types each engine's event names; these are the base class's
            emitter.on("error", on_error)
            detach.append(partial(emitter.off, "error", on_error))
            if isinstance(engine, stt.FallbackAdapter | tts.FallbackAdapter):
                event = f"{kind}_availability_changed"

                def on_availability(ev: Any) -> None:
                    if not ev.available:
                        lost = getattr(ev, kind, None)
                        name = n.safe_suffix(str(getattr(lost, "provider", "") or "provider"))
                        _safely(metrics.observe_fallback, kind, f"{name}_unavailable")

                emitter.on(event, on_availability)
                detach.append(partial(emitter.off, event, on_availability))

    watch(stt_engine, "stt")
    watch(tts_engine, "tts")
    if cache is not None:
        cache.on_lookup(lambda result: _safely(metrics.observe_phrase_cache, str(result)))

    def stop() -> None:
        for undo in detach:
            _safely(undo)

    return stop


def _safely(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.debug("voice telemetry hook failed", exc_info=True)
