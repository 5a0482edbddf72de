"""A/B of the embedded voice's first audio: Whisper decoding after the VAD's end of speech, or as the caller pauses.

Usage: .venv/bin/python bench/stt_speculation_ab.py [--turns 9]

One process, one voice stack (silero, Whisper tiny.en, the local TTS with the phrase cache); each round runs the
bench's caller turns once behind livekit's `stt.StreamAdapter` (before) and once behind this tree's
`SpeculativeStreamAdapter`, alternating, so both see the same load. Prints per turn and then P50 first audio
and P50 STT final (ms from the end of the caller's speech), the mean WER of what was heard and the load average.
On a shared machine only the pair means much: Whisper's decode grows with the load.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import tempfile
from pathlib import Path
from typing import Any

from livekit.agents import stt
from livekit.agents.utils import http_context

from orchestrator.bench.voice import UTTERANCES
from orchestrator.cli.errors import quiet_logs
from orchestrator.config import load_settings
from orchestrator.providers.voice import open_voice
from orchestrator.runtime import Services
from orchestrator.session.audio import AudioCall


def _load() -> str:
    return Path("/proc/loadavg").read_text().split()[0]


async def main(turns: int) -> None:
    with tempfile.TemporaryDirectory(prefix="switchboard-ab-") as tmp:
        settings = load_settings(data_dir=Path(tmp))
        async with await Services.open(settings) as services, http_context.open():
            voice = await open_voice(settings, phrases=services.prompts.phrases())
            if not isinstance(voice.stt, stt.StreamAdapter):
                raise SystemExit("this compares the local STT: unset SWITCHBOARD_STT_PROVIDER")
            engines: dict[str, stt.STT[Any]] = {
                "before": stt.StreamAdapter(stt=voice.stt.wrapped_stt, vad=voice.vad),
                "speculative": voice.stt,
            }
            rows: dict[str, list[tuple[float, float, float]]] = {name: [] for name in engines}
            try:
                for i in range(turns):
                    for name, engine in engines.items():
                        call = AudioCall(
                            services,
                            stt=engine,
                            tts=voice.tts,
                            vad=voice.turn_vad,
                            caller_id="+15550100001",
                            realtime_playout=False,
                        )
                        try:
                            turn = await call.say(UTTERANCES[i % len(UTTERANCES)])
                        finally:
                            await call.aclose()
                        lat = turn.breakdown
                        if lat["first_audio"] is None or lat["stt_final"] is None:
                            print(f"{name:>12} turn {i}: no answer ({turn.heard!r})")
                            continue
                        rows[name].append((lat["first_audio"], lat["stt_final"], turn.wer or 0.0))
                        print(
                            f"{name:>12} turn {i}: first audio {lat['first_audio']:.0f} ms, "
                            f"STT final {lat['stt_final']:.0f} ms, load {_load()}",
                            flush=True,
                        )
            finally:
                await voice.aclose()
            for name, got in rows.items():
                if not got:
                    continue
                print(
                    f"{name:>12}: P50 first audio {statistics.median(r[0] for r in got):.0f} ms, "
                    f"P50 STT final {statistics.median(r[1] for r in got):.0f} ms, "
                    f"mean WER {statistics.mean(r[2] for r in got):.3f} ({len(got)} turns)"
                )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--turns", type=int, default=9, help="rounds (each a turn before and a turn after)")
    args = parser.parse_args()
    if args.turns < 1:
        parser.error("--turns takes 1 or more")
    quiet_logs()
    asyncio.run(main(args.turns))
