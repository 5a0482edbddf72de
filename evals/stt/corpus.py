"""The speech-to-text eval's audio: Asterisk's recorded English prompts, their digits as callers say numbers, and flite.

The recordings are Debian's `asterisk-core-sounds-en-wav` (8 kHz) and `-g722` (16 kHz): one speaker (Allison
Smith), CC-BY-SA-3.0, with the transcripts in `asterisk-core-sounds-en`'s core-sounds-en.txt.gz. They are read
where Debian installs them (deploy/dev/system.sh) and never copied into the repository.
"""

from __future__ import annotations

import gzip
import random
import re
import shutil
import subprocess
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from livekit import rtc

from orchestrator.session.line import mulaw_decode, mulaw_encode

SOUNDS = Path("/usr/share/asterisk/sounds/en_US_f_Allison")
TRANSCRIPTS = Path("/usr/share/doc/asterisk-core-sounds-en/core-sounds-en.txt.gz")
LICENCE = "CC-BY-SA-3.0 (Asterisk core sounds, English, recorded by Allison Smith; Debian asterisk-core-sounds-en)"
APT_PACKAGES = ("asterisk-core-sounds-en", "asterisk-core-sounds-en-wav", "asterisk-core-sounds-en-g722")

Line = Literal["16k", "8k", "8k-ulaw"]
LINES: tuple[Line, ...] = ("16k", "8k", "8k-ulaw")
Pcm = np.ndarray[Any, np.dtype[np.int16]]
_DIGIT_NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


class CorpusMissing(RuntimeError):
    """The Debian packages with the recordings are not installed; the message says which."""


def check_installed() -> None:
    if not TRANSCRIPTS.is_file() or not (SOUNDS / "digits" / "5.wav").is_file():
        raise CorpusMissing(
            "the Asterisk English prompts are not installed: run `bash deploy/dev/system.sh` "
            f"(apt-get install {' '.join(APT_PACKAGES)})"
        )


@dataclass(frozen=True)
class Prompt:
    name: str
    text: str


def prompts() -> list[Prompt]:
    """The recorded prompts with a spoken transcript (tones, beeps, silences and bracketed notes left out)."""
    check_installed()
    out = []
    with gzip.open(TRANSCRIPTS, "rt", encoding="utf-8", errors="replace") as f:
        for raw in f:
            name, sep, text = raw.partition(":")
            name, text = name.strip(), text.strip()
            if not sep or name.startswith(";") or not text or re.search(r"[\[\(<]", text):
                continue
            if (SOUNDS / f"{name}.wav").is_file() and (SOUNDS / f"{name}.g722").is_file():
                out.append(Prompt(name, text))
    return out


def _wav8k(name: str) -> Pcm:
    with wave.open(str(SOUNDS / f"{name}.wav")) as w:
        if w.getframerate() != 8000 or w.getsampwidth() != 2:
            raise ValueError(f"{name}.wav is not 16-bit 8 kHz")
        return np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)


def _g722(name: str) -> Pcm:
    import av

    with av.open(str(SOUNDS / f"{name}.g722"), format="g722") as container:
        frames = [f.to_ndarray().reshape(-1) for f in container.decode(audio=0)]
    return np.concatenate(frames).astype(np.int16) if frames else np.zeros(0, dtype=np.int16)


def resample(pcm: Pcm, rate_in: int, rate_out: int) -> Pcm:
    if rate_in == rate_out or pcm.size == 0:
        return pcm
    resampler = rtc.AudioResampler(input_rate=rate_in, output_rate=rate_out, quality=rtc.AudioResamplerQuality.HIGH)
    frames = resampler.push(rtc.AudioFrame(pcm.tobytes(), rate_in, 1, len(pcm))) + resampler.flush()
    return np.frombuffer(rtc.combine_audio_frames(frames).data, dtype=np.int16).copy()


def on_line(pcm16k: Pcm | None, pcm8k: Pcm, line: Line) -> Pcm:
    """The caller's audio as it reaches the STT at 16 kHz: wideband, narrowband upsampled, or through G.711 μ-law."""
    if line == "16k":
        return pcm16k if pcm16k is not None else resample(pcm8k, 8000, 16000)
    if line == "8k-ulaw":
        pcm8k = mulaw_decode(mulaw_encode(pcm8k))
    return resample(pcm8k, 8000, 16000)


def prompt_audio(prompt: Prompt, line: Line) -> Pcm:
    return on_line(_g722(prompt.name) if line == "16k" else None, _wav8k(prompt.name), line)


@dataclass(frozen=True)
class Number:
    kind: Literal["phone", "zip"]
    digits: str
    # Seconds of silence after each digit, as a caller who pauses between digits and groups says it.
    gaps: tuple[float, ...]


def numbers(count: int, seed: int) -> list[Number]:
    """`count` phone numbers and ZIP codes, alternating; 0.08-0.3 s between digits, 0.25-0.35 s between groups."""
    rng = random.Random(seed)
    out = []
    for i in range(count):
        kind: Literal["phone", "zip"] = "phone" if i % 2 == 0 else "zip"
        size = 10 if kind == "phone" else 5
        digits = "".join(rng.choice("0123456789") for _ in range(size))
        groups = {2, 5} if kind == "phone" else set()
        gaps = tuple(rng.uniform(0.25, 0.35) if j in groups else rng.uniform(0.08, 0.3) for j in range(size))
        out.append(Number(kind, digits, gaps))
    return out


def _spoken(number: Number, pieces: dict[str, Pcm], rate: int) -> Pcm:
    parts = [np.zeros(rate // 10, dtype=np.int16)]
    for digit, gap in zip(number.digits, number.gaps, strict=True):
        parts += [pieces[digit], np.zeros(int(rate * gap), dtype=np.int16)]
    return np.concatenate(parts)


def recorded_number_audio(number: Number, line: Line) -> Pcm:
    """The number said by the recorded speaker, digit by digit (her digits/N recordings, joined with pauses)."""
    if line == "16k":
        return _spoken(number, {d: _g722(f"digits/{d}") for d in set(number.digits)}, 16000)
    return on_line(None, _spoken(number, {d: _wav8k(f"digits/{d}") for d in set(number.digits)}, 8000), line)


def flite_text(number: Number) -> str:
    """How our simulated callers say a number to flite: digit names, groups of a phone number apart."""
    words = [_DIGIT_NAMES[int(d)] for d in number.digits]
    if number.kind == "phone":
        return f"{' '.join(words[:3])}, {' '.join(words[3:6])}, {' '.join(words[6:])}"
    return " ".join(words)


def flite_number_audio(number: Number, line: Line, *, voice: str = "slt") -> Pcm:
    """The number rendered by Debian's flite at 16 kHz (narrowband lines downsample it first)."""
    binary = shutil.which("flite")
    if binary is None:
        raise CorpusMissing("flite is not installed: run `bash deploy/dev/system.sh` (apt-get install flite)")
    proc = subprocess.run(
        [binary, "-voice", voice, "-t", flite_text(number), "-o", "/dev/stdout"], capture_output=True, check=True
    )
    import io

    with wave.open(io.BytesIO(proc.stdout)) as w:
        rate = w.getframerate()
        pcm = np.frombuffer(w.readframes(w.getnframes()), dtype=np.int16)
    pcm16 = resample(pcm, rate, 16000)
    pcm16 = np.concatenate([np.zeros(1600, dtype=np.int16), pcm16])
    return pcm16 if line == "16k" else on_line(None, resample(pcm16, 16000, 8000), line)


def float32(pcm: Pcm) -> np.ndarray[Any, np.dtype[np.float32]]:
    return (pcm.astype(np.float32) / 32768.0).astype(np.float32)


def sample(items: list[Any], limit: int | None) -> Iterator[Any]:
    """An even spread of `limit` items (all of them when None), so a small run still covers the corpus."""
    if limit is None or limit >= len(items):
        yield from items
        return
    step = len(items) / limit
    for i in range(limit):
        yield items[int(i * step)]
