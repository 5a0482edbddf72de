"""The real Deepgram and Cartesia clients (livekit plugins, deepgram-sdk) on loopback stand-ins, faults included."""

from __future__ import annotations

import asyncio
import io
import logging
import shutil
import wave
from collections.abc import AsyncIterator, Iterator
from typing import Any

import aiohttp
import pytest
from livekit import rtc
from livekit.agents import stt, tts, utils, vad
from livekit.agents.types import APIConnectOptions

from orchestrator.bench.providers.cartesia_ws import CartesiaStandin, Cut, Fail, Speak, Stall, pcm_tone
from orchestrator.bench.providers.deepgram_ws import (
    BatchError,
    BatchTranscript,
    Close,
    DeepgramStandin,
    Drop,
    Hang,
    Reject,
    Say,
    Stream,
)
from orchestrator.config import Settings, load_settings
from orchestrator.providers.phrase_cache import CachedTTS, PhraseCache
from orchestrator.providers.stt import WhisperSTT, load_vad
from orchestrator.providers.tts import FliteTTS
from orchestrator.providers.voice import VoiceStack, batch_transcribe, build_stt, build_tts, open_voice
from tests.voice_fakes import ListeningSTT

pytestmark = [
    pytest.mark.contract,
    # deepgram-sdk 7.17 imports a websockets name deprecated in websockets 14 (deepgram/core/websocket_compat.py);
    # the project filter only covers warnings attributed to websockets itself.
    pytest.mark.filterwarnings("ignore:websockets.exceptions.InvalidStatusCode is deprecated:DeprecationWarning"),
    pytest.mark.skipif(shutil.which("flite") is None, reason="the local fallback voice needs Debian flite"),
]

DG_KEY = "dg-standin-key"
CARTESIA_KEY = "sk_car_standin"
UTTERANCE = "What's my balance?"
RATE = 16000
FRAME = RATE // 50  # 20 ms, as the session's audio input delivers it
# Short enough to keep the suite fast, long enough for a loaded 2-core box to connect to loopback.
FALLBACK_TIMEOUT_S = 1.5
# How long a test waits before it calls itself hung: a cap, not a speed claim (no test asserts a wall-clock bound).
CAP_S = 60


# -- fixtures -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def silero() -> vad.VAD:
    return load_vad()


@pytest.fixture(scope="module")
def caller_pcm() -> bytes:
    # The caller's words as 16 kHz speech, so the Whisper fallback has something real to hear.
    return FliteTTS().render(UTTERANCE)


@pytest.fixture
async def deepgram_standin() -> AsyncIterator[DeepgramStandin]:
    async with DeepgramStandin() as standin:
        yield standin


@pytest.fixture
async def cartesia_standin() -> AsyncIterator[CartesiaStandin]:
    async with CartesiaStandin() as standin:
        yield standin


@pytest.fixture
async def http() -> AsyncIterator[aiohttp.ClientSession]:
    # The plugins take their session from a LiveKit job; outside one the factory takes it explicitly.
    async with utils.http_context.open(), aiohttp.ClientSession() as session:
        yield session


def settings_for(
    deepgram: DeepgramStandin | None = None, cartesia: CartesiaStandin | None = None, **overrides: Any
) -> Settings:
    values: dict[str, Any] = {
        "local_tts_engine": "flite",
        "voice_fallback_timeout_s": FALLBACK_TIMEOUT_S,
        "phrase_cache_enabled": False,
    }
    if deepgram is not None:
        values |= {"stt_provider": "deepgram", "deepgram_api_key": DG_KEY, "deepgram_base_url": deepgram.listen_url}
    if cartesia is not None:
        values |= {"tts_provider": "cartesia", "cartesia_api_key": CARTESIA_KEY, "cartesia_base_url": cartesia.base_url}
    return load_settings(**(values | overrides))


def frames_of(pcm: bytes) -> Iterator[rtc.AudioFrame]:
    step = FRAME * 2
    for start in range(0, len(pcm), step):
        chunk = pcm[start : start + step]
        chunk += b"\0" * (step - len(chunk))
        yield rtc.AudioFrame(chunk, RATE, 1, FRAME)


def padded(pcm: bytes) -> bytes:
    """`pcm` as the line delivers it: whole 20 ms frames."""
    return b"".join(bytes(frame.data.cast("B")) for frame in frames_of(pcm))


def silence(seconds: float) -> bytes:
    return b"\0\0" * int(RATE * seconds)


async def next_final(stream: stt.RecognizeStream) -> stt.SpeechEvent:
    async for event in stream:
        if event.type == stt.SpeechEventType.FINAL_TRANSCRIPT and event.alternatives[0].text:
            return event
    raise AssertionError("the stream ended without a final transcript")


async def next_event(stream: stt.RecognizeStream) -> stt.SpeechEvent:
    async for event in stream:
        if event.type != stt.SpeechEventType.RECOGNITION_USAGE:
            return event
    raise AssertionError("the stream ended early")


def push(stream: stt.RecognizeStream, pcm: bytes) -> None:
    for frame in frames_of(pcm):
        stream.push_frame(frame)


# -- Deepgram streaming ---------------------------------------------------------------------------


async def test_deepgram_streaming_transcribes(
    deepgram_standin: DeepgramStandin, http: aiohttp.ClientSession, silero: vad.VAD, caller_pcm: bytes
) -> None:
    deepgram_standin.enqueue(Stream.of(Say(UTTERANCE, after_bytes=len(caller_pcm) // 2)))
    engine = build_stt(settings_for(deepgram_standin), vad=silero, http_session=http)
    audio = padded(silence(0.2) + caller_pcm + silence(0.3))
    try:
        stream = engine.stream()
        push(stream, audio)
        stream.end_input()
        async with asyncio.timeout(CAP_S):
            final = await next_final(stream)
            after = await next_event(stream)
            # The plugin's keepalive loop sleeps 5 s before it notices the close: wait on the server side.
            await deepgram_standin.streams[0].ended.wait()
        await stream.aclose()
    finally:
        await engine.aclose()

    assert final.alternatives[0].text == UTTERANCE
    assert final.alternatives[0].confidence == pytest.approx(0.97)
    assert [str(w) for w in final.alternatives[0].words or []] == UTTERANCE.split()
    assert after.type == stt.SpeechEventType.END_OF_SPEECH
    deepgram_standin.assert_complete()
    (seen,) = deepgram_standin.streams
    assert seen.path == "/v1/listen"
    assert seen.header("Authorization") == f"Token {DG_KEY}"
    assert seen.param("model") == "nova-3"
    assert seen.param("encoding") == "linear16"
    assert seen.param("sample_rate") == "16000"
    assert seen.param("channels") == "1"
    assert seen.param("interim_results") == "true"
    assert seen.query.get("keyterm") == ["Northwind Broadband"]
    # Every byte the caller said reached Deepgram, in 50 ms messages, then the stream was closed politely.
    assert bytes(seen.audio) == audio
    assert seen.audio_messages == -(-len(audio) // (RATE // 20 * 2))
    # (KeepAlive is only sent once the audio stops flowing, so a burst like this one has none.)
    assert seen.control_types[-2:] == ["Finalize", "CloseStream"]


class Availability:
    """Records the fallback adapter's availability changes and when each came, so a test can wait for the switch."""

    def __init__(self, engine: stt.STT[Any] | tts.TTS[Any], event: str) -> None:
        self.changes: list[tuple[str, bool]] = []
        self.down = asyncio.Event()
        self.up = asyncio.Event()
        self.down_at: float | None = None
        engine.on(event, self._on)

    def _on(self, ev: Any) -> None:
        engine = getattr(ev, "stt", None) or ev.tts
        self.changes.append((engine.provider, ev.available))
        if not ev.available and self.down_at is None:
            self.down_at = asyncio.get_running_loop().time()
        (self.up if ev.available else self.down).set()


def switch_times(availability: Availability, local: ListeningSTT) -> tuple[float, float, float]:
    """When the primary was dropped, when the local STT got its first audio, and when it answered."""
    assert availability.down_at is not None, "the primary was never dropped"
    assert local.first_audio_at is not None, "the local STT got no audio"
    assert local.answered_at is not None, "the local STT never heard the caller's words"
    return availability.down_at, local.first_audio_at, local.answered_at


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Stream.of(Close(1011, "NET-0001", after_bytes=3200)), id="error-close"),
        pytest.param(Stream.of(Drop(after_bytes=3200)), id="disconnect-mid-stream"),
        pytest.param(Reject(401), id="handshake-refused"),
    ],
)
async def test_deepgram_fault_falls_back_to_whisper(
    fault: Stream | Reject,
    deepgram_standin: DeepgramStandin,
    http: aiohttp.ClientSession,
    silero: vad.VAD,
    caller_pcm: bytes,
) -> None:
    deepgram_standin.enqueue(fault)
    engine = build_stt(settings_for(deepgram_standin), vad=silero, http_session=http)
    availability = Availability(engine, "stt_availability_changed")
    try:
        stream = engine.stream()
        async with asyncio.timeout(CAP_S):
            # The line is open before the caller speaks; Deepgram fails on that lead-in, and the
            # caller's words go to the fallback (livekit does not replay audio a failed STT consumed).
            push(stream, silence(0.3))
            await availability.down.wait()
            push(stream, caller_pcm + silence(1.0))
            stream.end_input()
            final = await next_final(stream)
        await stream.aclose()
    finally:
        await engine.aclose()

    assert availability.changes[0] == ("Deepgram", False)
    assert "balance" in final.alternatives[0].text.lower(), final.alternatives[0].text
    deepgram_standin.assert_complete()
    assert deepgram_standin.streams[0].header("Authorization") == f"Token {DG_KEY}"
    # Any later connection is the adapter's recovery probe, refused by the stand-in's default (a 503).
    assert all(probe.rejected == 503 for probe in deepgram_standin.streams[1:])


async def test_deepgram_hung_handshake_falls_back_after_the_timeout(
    deepgram_standin: DeepgramStandin, http: aiohttp.ClientSession, silero: vad.VAD, caller_pcm: bytes
) -> None:
    deepgram_standin.enqueue(Hang())
    settings = settings_for(deepgram_standin, voice_fallback_timeout_s=0.5)
    local = ListeningSTT(words=caller_pcm, text=UTTERANCE)
    engine = build_stt(settings, vad=silero, http_session=http, local=local)
    availability = Availability(engine, "stt_availability_changed")
    try:
        started = asyncio.get_running_loop().time()
        stream = engine.stream()
        # The caller speaks while the handshake hangs: the fallback is handed what Deepgram never took.
        push(stream, silence(0.3) + caller_pcm + silence(1.0))
        async with asyncio.timeout(CAP_S):
            final = await next_final(stream)
        await stream.aclose()
    finally:
        await engine.aclose()

    assert final.alternatives[0].text == UTTERANCE
    assert availability.changes[0] == ("Deepgram", False)
    # Deepgram had the whole timeout to connect; only then did the local STT get any audio, and answer.
    down, first_audio, answered = switch_times(availability, local)
    assert down - started >= settings.voice_fallback_timeout_s
    assert down <= first_audio <= answered


async def test_deepgram_silent_after_connect_falls_back(
    deepgram_standin: DeepgramStandin, http: aiohttp.ClientSession, silero: vad.VAD, caller_pcm: bytes
) -> None:
    deepgram_standin.enqueue(Stream.of())  # accepts every byte, never says a word
    settings = settings_for(deepgram_standin, voice_fallback_timeout_s=0.5)
    local = ListeningSTT(words=caller_pcm, text=UTTERANCE)
    engine = build_stt(settings, vad=silero, http_session=http, local=local)
    availability = Availability(engine, "stt_availability_changed")
    try:
        started = asyncio.get_running_loop().time()
        stream = engine.stream()
        push(stream, silence(0.3) + caller_pcm + silence(1.0))
        # No end_input: on a live call the line stays open, so only a timeout can notice the silence.
        async with asyncio.timeout(CAP_S):
            final = await next_final(stream)
        await stream.aclose()
    finally:
        await engine.aclose()

    assert final.alternatives[0].text == UTTERANCE
    assert availability.changes[0] == ("Deepgram", False)
    # Deepgram connected and heard the whole utterance, and was given the timeout to answer it; the local
    # STT then got the caller's words (replayed: they had all been pushed before the switch), and answered.
    assert len(deepgram_standin.streams[0].audio) >= len(caller_pcm)
    down, first_audio, answered = switch_times(availability, local)
    assert down - started >= settings.voice_fallback_timeout_s
    assert down <= first_audio <= answered


# -- Cartesia -------------------------------------------------------------------------------------

SENTENCE = "Your balance is forty two dollars."


async def open_cartesia_voice(
    standin: CartesiaStandin, http: aiohttp.ClientSession, silero: vad.VAD, **overrides: Any
) -> VoiceStack:
    # The production wiring: settings → open_voice → CachedTTS over the Cartesia→flite fallback chain.
    return await open_voice(
        settings_for(cartesia=standin, **overrides), phrases=[SENTENCE], vad_instance=silero, http_session=http
    )


def session_tts(settings: Settings, http: aiohttp.ClientSession) -> CachedTTS:
    """The session's TTS as `open_voice` builds it, without loading Whisper for the STT (keeps the suite fast).

    `test_cartesia_bytes_synthesizes_the_sessions_speech` checks that `open_voice` wires it the same way.
    """
    cache = PhraseCache(local_entries=16) if settings.phrase_cache_enabled else None
    return CachedTTS(
        build_tts(settings, http_session=http),
        cache,
        phrases=[SENTENCE],
        inner_conn_options=APIConnectOptions(max_retry=0, timeout=settings.voice_fallback_timeout_s),
    )


async def close_tts(engine: CachedTTS) -> None:
    await engine.aclose()
    await engine.inner.aclose()


def tone(ms: int, chunk_ms: int = 100) -> bytes:
    # The stand-in renders each chunk separately, so its audio is this concatenation.
    full, rest = divmod(ms, chunk_ms)
    return pcm_tone(chunk_ms, RATE) * full + (pcm_tone(rest, RATE) if rest else b"")


def assert_intact(frame: rtc.AudioFrame, sent: bytes) -> None:
    """The stand-in's PCM arrived unresampled and whole (livekit may pad the last 20 ms frame with silence)."""
    pcm = bytes(frame.data.cast("B"))
    assert pcm[: len(sent)] == sent
    assert len(pcm) - len(sent) <= FRAME * 2
    assert not any(pcm[len(sent) :])


async def test_cartesia_bytes_synthesizes_the_sessions_speech(
    cartesia_standin: CartesiaStandin, http: aiohttp.ClientSession, silero: vad.VAD
) -> None:
    cartesia_standin.enqueue(Speak(audio_ms=600))
    voice = await open_cartesia_voice(cartesia_standin, http, silero)
    try:
        async with asyncio.timeout(CAP_S):
            frame = await voice.tts.synthesize(SENTENCE).collect()
    finally:
        await voice.aclose()

    # The fallback chain gets one attempt per engine, bounded by the fallback timeout (what session_tts copies).
    assert voice.tts.inner_conn_options == APIConnectOptions(max_retry=0, timeout=FALLBACK_TIMEOUT_S)
    assert isinstance(voice.tts.inner, tts.FallbackAdapter)
    assert [engine.provider for engine in voice.tts.inner._tts_instances] == ["Cartesia", "local"]

    # Cartesia is asked for the local voice's rate, so a fallback mid-call never changes the line format.
    assert frame.sample_rate == RATE
    assert frame.num_channels == 1
    assert_intact(frame, tone(600))
    cartesia_standin.assert_complete()
    (seen,) = cartesia_standin.requests
    assert seen.transport == "bytes"
    assert seen.header("X-API-Key") == CARTESIA_KEY
    assert seen.header("Cartesia-Version") == "2025-04-16"
    assert seen.request["transcript"] == SENTENCE
    assert seen.request["model_id"] == "sonic-3"
    assert seen.request["voice"] == {"mode": "id", "id": load_settings().cartesia_voice}
    assert seen.request["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE}
    assert seen.request["language"] == "en"


async def test_cartesia_websocket_streams_a_context(
    cartesia_standin: CartesiaStandin, http: aiohttp.ClientSession
) -> None:
    cartesia_standin.enqueue(Speak(audio_ms=500))
    engine = build_tts(settings_for(cartesia=cartesia_standin), http_session=http)
    try:
        async with asyncio.timeout(CAP_S):
            stream = engine.stream()
            stream.push_text("Thanks for calling. ")
            stream.push_text(SENTENCE)
            stream.end_input()
            frames = [ev.frame async for ev in stream]
            await stream.aclose()
    finally:
        await engine.aclose()

    audio = rtc.combine_audio_frames(frames)
    assert audio.sample_rate == RATE
    assert_intact(audio, tone(500))
    cartesia_standin.assert_complete()
    (connection,) = cartesia_standin.connections
    assert connection["query"]["cartesia_version"] == ["2025-04-16"]
    (seen,) = cartesia_standin.requests
    assert seen.transport == "websocket"
    assert seen.header("X-API-Key") == CARTESIA_KEY
    assert {p["context_id"] for p in seen.packets} == {seen.context_id}
    # Text goes sentence by sentence with continue=true, and one continue=false packet closes the context.
    assert [p["continue"] for p in seen.packets] == [True] * (len(seen.packets) - 1) + [False]
    assert " ".join(seen.transcript.split()) == f"Thanks for calling. {SENTENCE}"
    first = seen.request
    assert first["model_id"] == "sonic-3"
    assert first["voice"] == {"mode": "id", "id": load_settings().cartesia_voice}
    assert first["output_format"] == {"container": "raw", "encoding": "pcm_s16le", "sample_rate": RATE}
    assert first["add_timestamps"] is True


def assert_flite(frame: rtc.AudioFrame, cartesia_pcm: bytes = b"") -> None:
    """The caller heard the local voice: real speech, not the stand-in's tone."""
    assert frame.sample_rate == RATE
    assert frame.duration > 1.0, "a whole sentence of flite speech"
    pcm = bytes(frame.data.cast("B"))
    assert pcm != cartesia_pcm
    assert pcm_tone(100, RATE) not in pcm


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fail(500), id="http-500"),
        pytest.param(Fail(401, "Unauthorized", "Invalid API key"), id="http-401"),
        pytest.param(Cut(after_chunks=0), id="disconnect-before-audio"),
        pytest.param(Stall(after_chunks=0), id="timeout"),
    ],
)
async def test_cartesia_bytes_fault_falls_back_to_flite(
    fault: Fail | Cut | Stall, cartesia_standin: CartesiaStandin, http: aiohttp.ClientSession
) -> None:
    cartesia_standin.enqueue(fault)
    settings = settings_for(cartesia=cartesia_standin, voice_fallback_timeout_s=0.5)
    engine = session_tts(settings, http)
    availability = Availability(engine.inner, "tts_availability_changed")
    try:
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(CAP_S):
            frame = await engine.synthesize(SENTENCE).collect()
    finally:
        await close_tts(engine)
    assert_flite(frame)
    assert availability.changes == [("Cartesia", False)]
    assert_stall_waited(fault, availability, started, settings.voice_fallback_timeout_s)
    cartesia_standin.assert_complete()


def assert_stall_waited(fault: object, availability: Availability, started: float, timeout_s: float) -> None:
    """A stalled Cartesia is given the whole per-attempt timeout before the chain switches (no sooner)."""
    if isinstance(fault, Stall):
        assert availability.down_at is not None
        assert availability.down_at - started >= timeout_s


async def test_cartesia_bytes_disconnect_after_audio_keeps_what_was_said(
    cartesia_standin: CartesiaStandin, http: aiohttp.ClientSession
) -> None:
    # livekit's fallback never restarts a sentence the caller already started hearing in another voice:
    # the partial audio is kept, the call goes on, and the next sentence goes to flite.
    cartesia_standin.enqueue(Cut(after_chunks=2), Speak(audio_ms=600))  # the second answers the recovery probe
    engine = session_tts(settings_for(cartesia=cartesia_standin), http)
    availability = Availability(engine.inner, "tts_availability_changed")
    try:
        async with asyncio.timeout(CAP_S):
            partial = await engine.synthesize(SENTENCE).collect()
            following = await engine.synthesize("Is there anything else?").collect()
    finally:
        await close_tts(engine)
    assert 0 < partial.duration <= 0.2 + 0.02
    assert availability.changes[0] == ("Cartesia", False)
    assert_flite(following)


@pytest.mark.parametrize(
    "fault",
    [
        pytest.param(Fail(500), id="error"),
        pytest.param(Fail(500, done=False), id="error-not-done"),
        pytest.param(Cut(after_chunks=0), id="disconnect-before-audio"),
        pytest.param(Stall(after_chunks=0), id="timeout"),
    ],
)
async def test_cartesia_websocket_fault_falls_back_to_flite(
    fault: Fail | Cut | Stall, cartesia_standin: CartesiaStandin, http: aiohttp.ClientSession
) -> None:
    cartesia_standin.enqueue(fault)
    settings = settings_for(cartesia=cartesia_standin, voice_fallback_timeout_s=0.5)
    engine = build_tts(settings, http_session=http)
    availability = Availability(engine, "tts_availability_changed")
    deadline = settings.voice_fallback_timeout_s
    try:
        started = asyncio.get_running_loop().time()
        async with asyncio.timeout(CAP_S):
            # Streaming callers pass the per-attempt deadline themselves, as CachedTTS does for synthesize.
            stream = engine.stream(conn_options=APIConnectOptions(max_retry=0, timeout=deadline))
            stream.push_text(SENTENCE)
            stream.end_input()
            frames = [ev.frame async for ev in stream]
            await stream.aclose()
    finally:
        await engine.aclose()
    assert_flite(rtc.combine_audio_frames(frames))
    assert availability.changes[0] == ("Cartesia", False)
    assert_stall_waited(fault, availability, started, deadline)


# -- the phrase cache over a failing Cartesia -----------------------------------------------------


async def test_phrase_rendered_by_the_fallback_is_not_cached_as_cartesia(
    cartesia_standin: CartesiaStandin, http: aiohttp.ClientSession
) -> None:
    # 1: the outage (flite speaks); 2: the adapter's recovery probe; 3: the next call's request.
    cartesia_standin.enqueue(Fail(503), Speak(audio_ms=600), Speak(audio_ms=600))
    engine = session_tts(settings_for(cartesia=cartesia_standin, phrase_cache_enabled=True), http)
    availability = Availability(engine.inner, "tts_availability_changed")
    try:
        async with asyncio.timeout(CAP_S):
            during = await engine.synthesize(SENTENCE).collect()
            await availability.up.wait()  # the recovery probe runs in the adapter's own task
            after = await engine.synthesize(SENTENCE).collect()
    finally:
        await close_tts(engine)
    assert_flite(during)
    assert_intact(after, tone(600))


async def test_truncated_sentence_is_not_cached(cartesia_standin: CartesiaStandin, http: aiohttp.ClientSession) -> None:
    cartesia_standin.enqueue(Cut(after_chunks=2), Speak(audio_ms=600), Speak(audio_ms=600))
    engine = session_tts(settings_for(cartesia=cartesia_standin, phrase_cache_enabled=True), http)
    try:
        async with asyncio.timeout(CAP_S):
            cut = await engine.synthesize(SENTENCE).collect()
            again = await engine.synthesize(SENTENCE).collect()
    finally:
        await close_tts(engine)
    assert cut.duration < 0.3
    assert again.duration > 0.5, "the next call hears the whole sentence, not the cached fragment"


# -- missing keys ---------------------------------------------------------------------------------


def test_missing_deepgram_key_uses_whisper_and_names_the_setting(
    silero: vad.VAD, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator.providers.voice"):
        engine = build_stt(load_settings(stt_provider="deepgram", local_tts_engine="flite"), vad=silero)
    assert isinstance(engine, stt.StreamAdapter)
    assert isinstance(engine.wrapped_stt, WhisperSTT)
    (record,) = [r for r in caplog.records if r.name == "orchestrator.providers.voice"]
    assert record.levelno == logging.WARNING
    assert "DEEPGRAM_API_KEY" in record.getMessage()


async def test_missing_cartesia_key_uses_flite_and_names_the_setting(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="orchestrator.providers.voice"):
        engine = build_tts(load_settings(tts_provider="cartesia", local_tts_engine="flite"))
    assert isinstance(engine, FliteTTS)
    (record,) = [r for r in caplog.records if r.name == "orchestrator.providers.voice"]
    assert "CARTESIA_API_KEY" in record.getMessage()
    # And the caller still hears it.
    frame = await engine.synthesize(SENTENCE).collect()
    assert_flite(frame)


# -- Deepgram batch (deepgram-sdk) ----------------------------------------------------------------


def wav_of(pcm: bytes) -> bytes:
    out = io.BytesIO()
    with wave.open(out, "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(RATE)
        wav.writeframes(pcm)
    return out.getvalue()


async def test_deepgram_batch_transcribes_a_recording(deepgram_standin: DeepgramStandin, caller_pcm: bytes) -> None:
    deepgram_standin.enqueue_batch(BatchTranscript(UTTERANCE))
    recording = wav_of(caller_pcm)
    async with asyncio.timeout(CAP_S):
        text = await batch_transcribe(settings_for(deepgram_standin), recording)
    assert text == UTTERANCE
    deepgram_standin.assert_complete()
    (seen,) = deepgram_standin.batches
    assert seen.header("Authorization") == f"Token {DG_KEY}"
    assert seen.param("model") == "nova-3"
    assert seen.param("smart_format") == "true"
    assert seen.body == recording


async def test_deepgram_batch_error_is_raised(deepgram_standin: DeepgramStandin, caller_pcm: bytes) -> None:
    # Re-transcription is off the call path: a failure is reported to the caller of the job, not hidden.
    from deepgram.core.api_error import ApiError

    deepgram_standin.enqueue_batch(BatchError(400, "Bad Request: failed to process audio"))
    with pytest.raises(ApiError) as raised:
        await batch_transcribe(settings_for(deepgram_standin), wav_of(caller_pcm))
    assert raised.value.status_code == 400
