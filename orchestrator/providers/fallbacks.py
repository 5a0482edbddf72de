"""Provider fallbacks: a cloud STT or TTS that hands over to the local engine when it fails or goes quiet.

These subclass livekit-agents 1.8.9's fallback adapters and rely on internals it does not promise to keep;
check each one when livekit-agents is upgraded:

- `stt.STT`: `_label` (the name the adapter logs and reports), and the session's hooks `_update_session_keyterms`
  and `_push_conversation_item`, forwarded to the wrapped engine.
- `stt.RecognizeStream`: `_input_ch` (the frames channel: `closed`, `empty`, `recv_nowait`, `send_nowait`),
  `_event_ch`, `_conn_options` and `_FlushSentinel`.
- `stt.fallback_adapter.FallbackRecognizeStream`: `_try_recovery(stt)`, called for each engine it leaves behind
  before the next one's stream opens, and `_metrics_monitor_task(event_aiter)`, which sees every event.
- `tts.fallback_adapter.FallbackChunkedStream`: `_try_synthesize(tts=, recovering=)`, one engine's attempt,
  `_fallback_adapter` with its `_tts_instances` (the chain, primary first) and `_conn_options`.
- Both modules' `DEFAULT_FALLBACK_API_CONNECT_OPTIONS`.
"""

from __future__ import annotations

import asyncio
import collections
import logging
from collections.abc import AsyncGenerator, AsyncIterable
from typing import Any

from livekit import rtc
from livekit.agents import APITimeoutError, stt, tts, utils, vad
from livekit.agents.stt.fallback_adapter import (
    DEFAULT_FALLBACK_API_CONNECT_OPTIONS as DEFAULT_FALLBACK_STT_CONNECT_OPTIONS,
)
from livekit.agents.stt.fallback_adapter import FallbackRecognizeStream
from livekit.agents.tts.fallback_adapter import DEFAULT_FALLBACK_API_CONNECT_OPTIONS, FallbackChunkedStream
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.utils import AudioBuffer

__all__ = ["fallback_stt", "fallback_tts"]

log = logging.getLogger(__name__)


def fallback_stt(primary: stt.STT[Any], local: stt.STT[Any], *, vad: vad.VAD, timeout_s: float) -> stt.STT[Any]:
    """A streaming `primary` that hands over to `local` when it fails or leaves speech unanswered for `timeout_s`."""
    # No retries on the primary: a second try costs the caller more than Whisper does. The adapter's
    # attempt_timeout bounds only the connect; _AnswerDeadline bounds the wait for an answer, and
    # _ReplayingFallback gives Whisper the speech Deepgram swallowed.
    return _ReplayingFallback(
        [_AnswerDeadline(primary, vad=vad, timeout_s=timeout_s), local],
        vad=vad,
        attempt_timeout=timeout_s,
        max_retry_per_stt=0,
    )


class _AnswerDeadline(stt.STT[Any]):
    """A streaming STT that is abandoned when it stops answering speech (APITimeoutError after `timeout_s`).

    livekit's `attempt_timeout` only reaches the plugin as its connect timeout, so a Deepgram that accepts
    the audio and never answers would keep the call deaf. Here the VAD says when the caller spoke; an
    utterance whose end (VAD end of speech, a flush, or the end of input) passes with no event at all from
    the wrapped STT for `timeout_s` raises, and `stt.FallbackAdapter` switches to the next engine.
    """

    def __init__(self, wrapped: stt.STT[Any], *, vad: vad.VAD, timeout_s: float) -> None:
        super().__init__(capabilities=wrapped.capabilities)
        self.wrapped = wrapped
        self.vad = vad
        self.timeout_s = timeout_s
        # The adapter logs and reports availability under this instance: keep the provider's names.
        self._label = wrapped.label
        wrapped.on("metrics_collected", self._forward_metrics)

    def _forward_metrics(self, *args: Any) -> None:
        self.emit("metrics_collected", *args)

    @property
    def capabilities(self) -> stt.STTCapabilities:
        return self.wrapped.capabilities

    @property
    def model(self) -> str:
        return self.wrapped.model

    @property
    def provider(self) -> str:
        return self.wrapped.provider

    def prewarm(self) -> None:
        self.wrapped.prewarm()

    # The session tells the STT about keyterms and the conversation; the wrapped one is who uses them.
    def _update_session_keyterms(self, keyterms: list[str]) -> None:
        self.wrapped._update_session_keyterms(keyterms)

    def _push_conversation_item(self, ev: Any) -> None:
        self.wrapped._push_conversation_item(ev)

    async def _recognize_impl(
        self, buffer: AudioBuffer, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        # A batch request has a response to wait for, so the plugin's own timeout covers it.
        return await self.wrapped.recognize(buffer, language=language, conn_options=conn_options)

    def stream(
        self, *, language: NotGivenOr[str] = NOT_GIVEN, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> stt.RecognizeStream:
        return _AnswerDeadlineStream(engine=self, language=language, conn_options=conn_options)

    async def aclose(self) -> None:
        self.wrapped.off("metrics_collected", self._forward_metrics)
        await self.wrapped.aclose()


class _AnswerDeadlineStream(stt.RecognizeStream):
    def __init__(self, *, engine: _AnswerDeadline, language: NotGivenOr[str], conn_options: APIConnectOptions) -> None:
        super().__init__(stt=engine, conn_options=conn_options)
        self._engine = engine
        self._language = language

    async def _run(self) -> None:
        engine = self._engine
        inner = engine.wrapped.stream(language=self._language, conn_options=self._conn_options)
        speech = engine.vad.stream()
        loop = asyncio.get_running_loop()
        expired = asyncio.Event()
        deadline: asyncio.TimerHandle | None = None
        # Any event counts as an answer, not only a final transcript: the plugin drops Deepgram's empty
        # results, so a cough would otherwise look like an outage. Tracked from the VAD's start of speech,
        # because Deepgram's endpointing (25 ms) usually answers before the VAD's end of speech (400 ms).
        unanswered = False

        def answered() -> None:
            nonlocal unanswered, deadline
            unanswered = False
            if deadline is not None:
                deadline.cancel()
                deadline = None

        def speech_ended() -> None:
            nonlocal deadline
            if unanswered and deadline is None:
                deadline = loop.call_later(engine.timeout_s, expired.set)

        @utils.log_exceptions(logger=log)
        async def forward_input() -> None:
            async for data in self._input_ch:
                if isinstance(data, rtc.AudioFrame):
                    inner.push_frame(data)
                    speech.push_frame(data)
                else:
                    inner.flush()
                    speech_ended()
            inner.end_input()
            speech.end_input()
            speech_ended()

        @utils.log_exceptions(logger=log)
        async def watch_speech() -> None:
            nonlocal unanswered
            async for ev in speech:
                if ev.type == vad.VADEventType.START_OF_SPEECH:
                    unanswered = True
                elif ev.type == vad.VADEventType.END_OF_SPEECH:
                    speech_ended()

        async def forward_events() -> None:  # its error is re-raised below, for the adapter to log
            async for ev in inner:
                # Usage events are counted locally from the audio sent, so they prove nothing.
                if ev.type != stt.SpeechEventType.RECOGNITION_USAGE:
                    answered()
                self._event_ch.send_nowait(ev)

        helpers = [asyncio.create_task(forward_input()), asyncio.create_task(watch_speech())]
        events = asyncio.create_task(forward_events())
        expiry = asyncio.create_task(expired.wait())
        try:
            async with inner:
                await asyncio.wait([events, expiry], return_when=asyncio.FIRST_COMPLETED)
                if not events.done():
                    raise APITimeoutError(f"{engine.label} did not answer speech within {engine.timeout_s} s")
                events.result()  # the wrapped stream's own error, if any, is the fallback's reason
        finally:
            if deadline is not None:
                deadline.cancel()
            await utils.aio.cancel_and_wait(events, expiry, *helpers)
            await speech.aclose()


class _ReplayingFallback(stt.FallbackAdapter):
    """`stt.FallbackAdapter` whose streams hand the next engine the audio the failed one left unanswered."""

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_FALLBACK_STT_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return _ReplayingStream(adapter=self, language=language, conn_options=conn_options)


class _ReplayingStream(FallbackRecognizeStream):
    """livekit forwards each frame once, to the engine serving at the time, so what a failed engine heard
    but never transcribed is lost: the caller's question when Deepgram goes silent. This stream keeps what
    was pushed since the last final transcript and puts it back in front of the input when an engine fails.
    """

    # Bounds the memory of a long silence; a longer unanswered stretch loses its start.
    REPLAY_LIMIT_S = 20.0

    def __init__(
        self, *, adapter: _ReplayingFallback, language: NotGivenOr[str], conn_options: APIConnectOptions
    ) -> None:
        super().__init__(stt=adapter, language=language, conn_options=conn_options)
        self._since_final: collections.deque[rtc.AudioFrame | stt.RecognizeStream._FlushSentinel] = collections.deque()
        self._since_final_s = 0.0

    def push_frame(self, frame: rtc.AudioFrame) -> None:
        super().push_frame(frame)
        self._since_final.append(frame)
        self._since_final_s += frame.duration
        while self._since_final_s > self.REPLAY_LIMIT_S:
            dropped = self._since_final.popleft()
            if isinstance(dropped, rtc.AudioFrame):
                self._since_final_s -= dropped.duration

    def flush(self) -> None:
        super().flush()
        self._since_final.append(self._FlushSentinel())

    async def _metrics_monitor_task(self, event_aiter: AsyncIterable[stt.SpeechEvent]) -> None:
        # Sees every event this stream emits: a final transcript means the audio so far was heard.
        async for ev in event_aiter:
            if ev.type == stt.SpeechEventType.FINAL_TRANSCRIPT:
                self._since_final.clear()
                self._since_final_s = 0.0

    def _try_recovery(self, stt: stt.STT[Any]) -> None:
        # livekit calls this for each engine it leaves behind, before it opens the next one's stream.
        super()._try_recovery(stt)
        if self._input_ch.closed or not self._since_final:
            return  # after end_input the channel cannot take the audio back; a live line stays open
        # Whatever is still queued is the newest part of the record: take it out, then queue the whole
        # record in order. (An engine skipped before it read anything just gets the same queue back.)
        while not self._input_ch.empty():
            self._input_ch.recv_nowait()
        for item in self._since_final:
            self._input_ch.send_nowait(item)


def fallback_tts(primary: tts.TTS[Any], local: tts.TTS[Any], *, identity: dict[str, Any]) -> tts.TTS[Any]:
    """`primary` with a fallback to `local` when it fails or sends no audio within the request's timeout.

    The chain caches under `identity` (the primary's voice), and only what the primary rendered whole.
    """
    return _IdentifiedFallback([primary, local], identity=identity)


class _IdentifiedFallback(tts.FallbackAdapter):
    """A TTS fallback chain that caches under its primary's identity (the voice the caller should hear).

    Its streams say per request whether the audio may be stored under that identity (`cache_safe`, read by
    `CachedTTS`), and bound each engine's wait for its first audio so a hung request hands over in time.
    """

    def __init__(self, chain: list[tts.TTS[Any]], *, identity: dict[str, Any]) -> None:
        super().__init__(chain, max_retry_per_tts=0)
        self._identity = identity

    def cache_identity(self) -> dict[str, Any]:
        return dict(self._identity)

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_FALLBACK_API_CONNECT_OPTIONS
    ) -> _IdentifiedChunkedStream:
        return _IdentifiedChunkedStream(adapter=self, input_text=text, conn_options=conn_options)


class _IdentifiedChunkedStream(FallbackChunkedStream):
    """One sentence through the chain, hooked into livekit's per-engine attempt (`_try_synthesize`)."""

    _fallback_adapter: _IdentifiedFallback

    def __init__(self, *, adapter: _IdentifiedFallback, input_text: str, conn_options: APIConnectOptions) -> None:
        super().__init__(tts=adapter, input_text=input_text, conn_options=conn_options)
        self._served_by: tts.TTS[Any] | None = None
        self._attempt_failed = False

    @property
    def cache_safe(self) -> bool:
        """True when the primary alone rendered the whole sentence, so the audio is the identity's voice.

        livekit hides both ways this goes wrong: a fallback engine's audio comes out of the same stream, and
        an engine that fails after its first audio ends the request normally with the partial sentence.
        """
        return self._served_by is self._fallback_adapter._tts_instances[0] and not self._attempt_failed

    async def _try_synthesize(
        self, *, tts: tts.TTS[Any], recovering: bool = False
    ) -> AsyncGenerator[tts.SynthesizedAudio, None]:
        attempt = super()._try_synthesize(tts=tts, recovering=recovering)
        # The plugins apply conn_options.timeout to the connect only (Cartesia's bytes request otherwise
        # waits its own 30 s), so the per-attempt deadline is enforced here, up to the first audio: after
        # that the caller is already hearing this engine and livekit will not switch voices anyway.
        # The last engine has nobody to hand over to, so it is never cut short.
        deadline = None if tts is self._fallback_adapter._tts_instances[-1] else self._conn_options.timeout
        try:
            try:
                async with asyncio.timeout(deadline):
                    first = await anext(attempt)
            except StopAsyncIteration:
                return
            except TimeoutError:
                log.warning("%s sent no audio within %.1f s, switching to the next TTS", tts.label, deadline)
                raise APITimeoutError(f"{tts.label}: no audio within {deadline} s") from None
            if not recovering:
                self._served_by = tts
            yield first
            async for audio in attempt:
                yield audio
        except BaseException:
            if not recovering:
                self._attempt_failed = True
            raise
        finally:
            await attempt.aclose()
