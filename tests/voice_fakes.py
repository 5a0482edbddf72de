"""In-process voice engines for timing tests: a loudness VAD, and STTs and a TTS that answer on a script, no model."""

from __future__ import annotations

import asyncio
from typing import Any

from livekit import rtc
from livekit.agents import stt, tts, utils, vad
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

__all__ = ["ListeningSTT", "LoudnessVAD", "ScriptedSTT", "ScriptedTTS", "is_loud"]


def is_loud(frame: rtc.AudioFrame) -> bool:
    return any(frame.data)


def _final(text: str) -> stt.SpeechEvent:
    alternative = stt.SpeechData(language=LanguageCode("en"), text=text, confidence=1.0)
    return stt.SpeechEvent(type=stt.SpeechEventType.FINAL_TRANSCRIPT, alternatives=[alternative])


class LoudnessVAD(vad.VAD):
    """Speech is any frame with a non-zero sample; it ends once `min_silence_s` of silent frames followed.

    Unlike silero it runs no model on a thread, so under a virtual clock its events come at exact times.
    `ended_at` has the loop time of each end of speech it reported.
    """

    def __init__(self, *, min_silence_s: float = 0.4) -> None:
        super().__init__(capabilities=vad.VADCapabilities(update_interval=0.02))
        self.min_silence_s = min_silence_s
        self.ended_at: list[float] = []

    def stream(self) -> vad.VADStream:
        return _LoudnessStream(self)


class _LoudnessStream(vad.VADStream):
    _vad: LoudnessVAD

    async def _main_task(self) -> None:
        engine, loop = self._vad, asyncio.get_running_loop()
        speaking, speech_s, silence_s, samples = False, 0.0, 0.0, 0
        held: list[rtc.AudioFrame] = []
        async for data in self._input_ch:
            if not isinstance(data, rtc.AudioFrame):
                speaking, held = False, []  # a flush is a hard segment boundary
                continue
            samples += data.samples_per_channel
            if is_loud(data):
                if not speaking:
                    speaking, speech_s, held = True, 0.0, []
                    self._event_ch.send_nowait(self._event(vad.VADEventType.START_OF_SPEECH, samples, data, 0.0, 0.0))
                speech_s, silence_s = speech_s + data.duration, 0.0
                held.append(data)
            elif speaking:
                silence_s += data.duration
                held.append(data)
                if silence_s >= engine.min_silence_s - 1e-9:
                    speaking = False
                    engine.ended_at.append(loop.time())
                    end = self._event(vad.VADEventType.END_OF_SPEECH, samples, data, speech_s, silence_s, held)
                    self._event_ch.send_nowait(end)

    @staticmethod
    def _event(
        kind: vad.VADEventType,
        samples: int,
        frame: rtc.AudioFrame,
        speech_s: float,
        silence_s: float,
        frames: list[rtc.AudioFrame] | None = None,
    ) -> vad.VADEvent:
        return vad.VADEvent(
            type=kind,
            samples_index=samples,
            timestamp=samples / frame.sample_rate,
            speech_duration=speech_s,
            silence_duration=silence_s,
            frames=frames or [frame],
            speaking=kind == vad.VADEventType.START_OF_SPEECH,
        )


class _StreamingFake(stt.STT[Any]):
    def __init__(self, name: str) -> None:
        super().__init__(capabilities=stt.STTCapabilities(streaming=True, interim_results=False))
        self._name = name

    @property
    def provider(self) -> str:
        return self._name

    async def _recognize_impl(
        self, buffer: utils.AudioBuffer, *, language: Any = None, conn_options: APIConnectOptions
    ) -> stt.SpeechEvent:
        raise NotImplementedError("the session only streams")


class ListeningSTT(_StreamingFake):
    """A local STT that answers at once: a final `text` as soon as the audio it was given holds `words`.

    It stands in for Whisper where a test measures the switch: a real recognition on a busy machine takes
    seconds of its own. It notes when its first audio and its answer came, so a test can check the order.
    """

    def __init__(self, *, words: bytes, text: str) -> None:
        super().__init__("listening")
        self.words = words
        self.text = text
        self.first_audio_at: float | None = None
        self.answered_at: float | None = None

    def stream(
        self, *, language: Any = None, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> stt.RecognizeStream:
        return _ListeningStream(stt=self, conn_options=conn_options)


class _ListeningStream(stt.RecognizeStream):
    _stt: ListeningSTT

    async def _run(self) -> None:
        engine, loop = self._stt, asyncio.get_running_loop()
        heard = bytearray()
        async for data in self._input_ch:
            if not isinstance(data, rtc.AudioFrame) or engine.answered_at is not None:
                continue
            if engine.first_audio_at is None:
                engine.first_audio_at = loop.time()
            heard += data.data.cast("B")
            if engine.words in heard:
                engine.answered_at = loop.time()
                self._event_ch.send_nowait(_final(engine.text))


class ScriptedSTT(_StreamingFake):
    """A streaming cloud STT on a script: a final `text` `answer_after_s` (loop time) after the first speech it
    gets, or no answer at all (None), though it takes every frame, as a Deepgram gone quiet does."""

    def __init__(self, *, text: str, answer_after_s: float | None) -> None:
        super().__init__("scripted")
        self.text = text
        self.answer_after_s = answer_after_s
        self.first_speech_at: float | None = None

    def stream(
        self, *, language: Any = None, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> stt.RecognizeStream:
        return _ScriptedStream(stt=self, conn_options=conn_options)


class _ScriptedStream(stt.RecognizeStream):
    _stt: ScriptedSTT

    async def _run(self) -> None:
        engine, loop = self._stt, asyncio.get_running_loop()
        answer: asyncio.Task[None] | None = None

        async def answer_later(delay: float) -> None:
            await asyncio.sleep(delay)
            self._event_ch.send_nowait(_final(engine.text))

        try:
            async for data in self._input_ch:
                if isinstance(data, rtc.AudioFrame) and is_loud(data) and engine.first_speech_at is None:
                    engine.first_speech_at = loop.time()
                    if engine.answer_after_s is not None:
                        answer = asyncio.create_task(answer_later(engine.answer_after_s))
            if answer is not None:
                await answer
        finally:
            if answer is not None:
                await utils.aio.cancel_and_wait(answer)


class ScriptedTTS(tts.TTS[Any]):
    """A TTS whose first audio comes `first_audio_after_s` (loop time) into each request, or never (None).

    Its audio is a constant `level`, so a test can tell which engine the caller heard.
    """

    def __init__(self, name: str, *, first_audio_after_s: float | None, level: int, sample_rate: int = 16000) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=sample_rate, num_channels=1)
        self._name = name
        self.first_audio_after_s = first_audio_after_s
        self.level = level
        self.requested_at: list[float] = []

    @property
    def provider(self) -> str:
        return self._name

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _ScriptedChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _ScriptedChunkedStream(tts.ChunkedStream):
    _tts: ScriptedTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        engine = self._tts
        engine.requested_at.append(asyncio.get_running_loop().time())
        output_emitter.initialize(
            request_id=utils.shortuuid(), sample_rate=engine.sample_rate, num_channels=1, mime_type="audio/pcm"
        )
        if engine.first_audio_after_s is None:
            await asyncio.Event().wait()  # a request that hangs until it is cancelled
        await asyncio.sleep(engine.first_audio_after_s or 0.0)
        output_emitter.push(engine.level.to_bytes(2, "little", signed=True) * (engine.sample_rate // 5))
        output_emitter.flush()
