"""Voice provider factory: settings pick Deepgram/Cartesia or the local engines, with fallback chains to local."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass, field
from typing import Any

import aiohttp
from livekit import rtc
from livekit.agents import stt, tts, vad
from livekit.agents.types import APIConnectOptions
from livekit.agents.vad import VAD

from orchestrator.config import Settings
from orchestrator.providers.fallbacks import fallback_stt, fallback_tts
from orchestrator.providers.phrase_cache import CachedTTS, PhraseCache, phrase_sentences
from orchestrator.providers.stt import TURN_SILENCE_S, WhisperSTT, _to_float32_16k, load_vad, local_stt
from orchestrator.providers.tts import local_tts

# Plugins register themselves on import and must be imported on the main thread (livekit rule).
from livekit.plugins import cartesia, deepgram  # isort: skip

__all__ = ["VoiceStack", "batch_transcribe", "build_stt", "build_tts", "open_voice"]

log = logging.getLogger(__name__)

DEFAULT_DEEPGRAM_URL = "https://api.deepgram.com/v1/listen"
DEFAULT_CARTESIA_URL = "https://api.cartesia.ai"


def _missing(setting: str, provider: str, choice: str) -> None:
    log.warning("%s=%s but %s is not set: using the local provider instead", choice, provider, setting)


def build_stt(
    settings: Settings,
    *,
    vad: vad.VAD,
    http_session: aiohttp.ClientSession | None = None,
    local: stt.STT[Any] | None = None,
) -> stt.STT[Any]:
    """The session STT: Deepgram streaming with a timed fallback to local Whisper, or local Whisper alone.

    A Deepgram choice without DEEPGRAM_API_KEY logs a warning naming the setting and uses the local STT.
    `local` replaces Whisper as that local STT (a test measures the switch without a real recognition).
    """
    if local is None:
        local = local_stt(
            vad=vad,
            model_path=settings.local_stt_model,
            cpu_threads=settings.local_stt_threads,
            hotwords=settings.stt_hotwords,
        )
    if settings.stt_provider != "deepgram":
        return local
    if settings.deepgram_api_key is None:
        _missing("DEEPGRAM_API_KEY", "deepgram", "SWITCHBOARD_STT_PROVIDER")
        return local
    primary = deepgram.STT(
        api_key=settings.deepgram_api_key.get_secret_value(),
        base_url=settings.deepgram_base_url or DEFAULT_DEEPGRAM_URL,
        model=settings.deepgram_model,
        keyterm=[w.strip() for w in settings.stt_hotwords.split(",") if w.strip()],
        http_session=http_session,
    )
    return fallback_stt(primary, local, vad=vad, timeout_s=settings.voice_fallback_timeout_s)


def build_tts(settings: Settings, *, http_session: aiohttp.ClientSession | None = None) -> tts.TTS[Any]:
    """The engine behind the phrase cache: Cartesia with a fallback to the local TTS, or the local TTS alone."""
    local = local_tts(settings.local_tts_engine, voice=settings.local_tts_voice)
    if settings.tts_provider != "cartesia":
        return local
    if settings.cartesia_api_key is None:
        _missing("CARTESIA_API_KEY", "cartesia", "SWITCHBOARD_TTS_PROVIDER")
        return local
    primary = cartesia.TTS(
        api_key=settings.cartesia_api_key.get_secret_value(),
        base_url=settings.cartesia_base_url or DEFAULT_CARTESIA_URL,
        model=settings.cartesia_model,
        voice=settings.cartesia_voice,
        sample_rate=local.sample_rate if local.sample_rate in (16000, 22050, 24000) else 24000,
        http_session=http_session,
    )
    return fallback_tts(primary, local, identity=_cartesia_identity(settings, primary))


def _cartesia_identity(settings: Settings, engine: tts.TTS[Any]) -> dict[str, Any]:
    return {
        "provider": "cartesia",
        "model": settings.cartesia_model,
        "voice": settings.cartesia_voice,
        "sample_rate": engine.sample_rate,
    }


@dataclass
class VoiceStack:
    """Everything a voice session needs from providers; close with `aclose`.

    `vad` cuts the caller's speech into stretches for the STT; `turn_vad` is the session's (`AgentSession(vad=)`),
    which ends a speech sooner so that the turn detector can end a finished turn sooner.
    """

    vad: VAD
    turn_vad: VAD
    stt: stt.STT[Any]
    tts: CachedTTS
    cache: PhraseCache
    whisper: WhisperSTT | None = None
    _owned: list[Any] = field(default_factory=list)

    async def aclose(self) -> None:
        await self.tts.aclose()
        await self.tts.inner.aclose()
        await self.stt.aclose()
        await self.cache.aclose()


def _whisper_of(engine: stt.STT[Any]) -> WhisperSTT | None:
    if isinstance(engine, WhisperSTT):
        return engine
    if isinstance(engine, stt.StreamAdapter):
        return _whisper_of(engine.wrapped_stt)
    for inner in getattr(engine, "_stt_instances", []):
        found = _whisper_of(inner)
        if found is not None:
            return found
    return None


async def open_voice(
    settings: Settings,
    *,
    phrases: list[str],
    redis_url: str | None = None,
    vad_instance: vad.VAD | None = None,
    turn_vad_instance: vad.VAD | None = None,
    http_session: aiohttp.ClientSession | None = None,
) -> VoiceStack:
    """Build VAD, STT, TTS and the phrase cache from settings, loading local models off the event loop.

    Args:
        settings: provider choice, keys, URLs and cache settings.
        phrases: phrases for the cache (`Prompts.phrases()`).
        redis_url: the cache's shared tier; None keeps it in process.
        vad_instance: a VAD already loaded (a worker's prewarm); default loads silero.
        turn_vad_instance: the session's VAD already loaded (`TURN_SILENCE_S`); default loads it.
        http_session: for cloud plugins outside a LiveKit job (see `livekit.agents.utils.http_context`).
    """
    # silero.VAD.load is blocking (~1 s) but must not run on a worker thread before the plugin is imported;
    # providers.stt imported it above, so a thread is fine now.
    the_vad: vad.VAD = vad_instance if vad_instance is not None else await asyncio.to_thread(load_vad)
    session_stt = build_stt(settings, vad=the_vad, http_session=http_session)
    whisper = _whisper_of(session_stt)
    if whisper is not None:
        await whisper.load()
    engine = build_tts(settings, http_session=http_session)
    redis_client = PhraseCache.connect(redis_url) if redis_url and settings.phrase_cache_enabled else None
    cache = PhraseCache(
        redis=redis_client,
        local_entries=settings.phrase_cache_local_entries if settings.phrase_cache_enabled else 0,
        ttl_s=settings.phrase_cache_ttl_s,
        version=settings.phrase_cache_version,
    )
    sentences = await phrase_sentences(phrases) if settings.phrase_cache_enabled else []
    cached = CachedTTS(
        engine,
        cache if settings.phrase_cache_enabled else None,
        phrases=sentences,
        inner_conn_options=APIConnectOptions(max_retry=0, timeout=settings.voice_fallback_timeout_s),
    )
    turn_vad = (
        turn_vad_instance
        if turn_vad_instance is not None
        else await asyncio.to_thread(load_vad, min_silence_s=TURN_SILENCE_S)
    )
    return VoiceStack(vad=the_vad, turn_vad=turn_vad, stt=session_stt, tts=cached, cache=cache, whisper=whisper)


async def batch_transcribe(settings: Settings, audio: bytes, *, mimetype: str = "audio/wav") -> str:
    """Re-transcribe a recording: Deepgram's batch API (deepgram-sdk) when configured, else local Whisper.

    Args:
        settings: DEEPGRAM_API_KEY / DEEPGRAM_BASE_URL select Deepgram.
        audio: the recording file's bytes (WAV).
    """
    if settings.deepgram_api_key is not None:
        from deepgram import AsyncDeepgramClient
        from deepgram.environment import DeepgramClientEnvironment

        base = (settings.deepgram_base_url or DEFAULT_DEEPGRAM_URL).split("/v1/")[0]
        ws = base.replace("http://", "ws://").replace("https://", "wss://")
        client = AsyncDeepgramClient(
            api_key=settings.deepgram_api_key.get_secret_value(),
            environment=DeepgramClientEnvironment(base=base, production=ws, agent=ws, agent_rest=base),
        )
        response = await client.listen.v1.media.transcribe_file(
            request=audio, model=settings.deepgram_model, smart_format=True
        )
        results = getattr(response, "results", None)
        if results is None:
            return ""
        return str(results.channels[0].alternatives[0].transcript or "")
    import io
    import wave

    import numpy as np

    with wave.open(io.BytesIO(audio)) as wav:
        rate, pcm = wav.getframerate(), np.frombuffer(wav.readframes(wav.getnframes()), dtype=np.int16)

    whisper = WhisperSTT(model_path=settings.local_stt_model, hotwords=settings.stt_hotwords)
    samples = _to_float32_16k(rtc.AudioFrame(pcm.tobytes(), rate, 1, len(pcm)))
    return await asyncio.to_thread(whisper.transcribe, samples)
