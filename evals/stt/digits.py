"""The local STT on real recorded speech and on spoken digit strings: WER and digit-string exact match per line.

    python -m evals.stt.digits [--json] [--prompts N] [--numbers N] [--seed S] [--lines 16k,8k,8k-ulaw]

Each digit string is read three ways, so the table shows what each change buys: `before` is Whisper's
general decoding read by the graph's own reader (`agents.parsing.digits`), `normalised` the same decoding
read by `spoken_numbers.digit_string`, `digit decoding` Whisper with numerals suppressed (what the STT does
when the agent has asked for digits) read by the same normaliser.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import jiwer

from agents import parsing
from evals.stt import corpus
from evals.stt.corpus import Line, Pcm
from orchestrator.providers.spoken_numbers import digit_string, normalise
from orchestrator.providers.stt import WhisperSTT

# The decoder and the normaliser were tuned on the numbers of seed 1; the default seed's are held out.
DEFAULT_SEED = 7
_SPELLED = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")


def wer_words(text: str) -> list[str]:
    """Words for WER: lower case, no punctuation, numbers as their digits spelled one by one ("500", "five hundred")."""
    # "A.M." and "AM" are one word; hyphens join words that are said apart ("Call-Forward").
    text = re.sub(r"(?<=\b[A-Za-z])\.", "", text).replace("-", " ")
    text = normalise(text, expect_digits=True).lower().replace("’", "'")
    out: list[str] = []
    for token in "".join(c if c.isalnum() or c == "'" else " " for c in text).split():
        token = token.strip("'")
        if token.isdigit():
            out.extend(_SPELLED[int(d)] for d in token)
        elif token:
            out.append(token)
    return out


def corpus_wer(pairs: Sequence[tuple[str, str]]) -> tuple[float, int]:
    """Word errors over reference words across all pairs, and the number of reference words."""
    errors = words = 0
    for reference, hypothesis in pairs:
        ref, hyp = wer_words(reference), wer_words(hypothesis)
        words += len(ref)
        if not ref or not hyp:
            errors += max(len(ref), len(hyp))
            continue
        out = jiwer.process_words(" ".join(ref), " ".join(hyp))
        errors += out.substitutions + out.deletions + out.insertions
    return (errors / words if words else 0.0), words


@dataclass
class _Tally:
    right: int = 0
    total: int = 0
    misses: list[dict[str, str]] = field(default_factory=list)

    def add(self, expected: str, got: str, heard: str) -> None:
        self.total += 1
        if got == expected:
            self.right += 1
        elif len(self.misses) < 5:
            self.misses.append({"expected": expected, "heard": heard, "read": got})

    def public(self) -> dict[str, Any]:
        return {
            "exact": round(self.right / self.total, 4) if self.total else None,
            "right": self.right,
            "total": self.total,
            "misses": self.misses,
        }


_READERS: dict[str, tuple[bool, Callable[[str], str]]] = {
    "before": (False, parsing.digits),
    "normalised": (False, digit_string),
    "digit decoding": (True, digit_string),
}


def run(
    *,
    prompts: int | None = None,
    numbers: int = 40,
    seed: int = DEFAULT_SEED,
    lines: Sequence[Line] = corpus.LINES,
    stt: WhisperSTT | None = None,
    progress: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Measure the local STT; `prompts=None` takes every recorded prompt, `numbers` strings per source and line."""
    corpus.check_installed()
    whisper = stt or WhisperSTT()
    whisper.warm()
    recorded = list(corpus.sample(corpus.prompts(), prompts))
    strings = corpus.numbers(numbers, seed)
    decode_s = {"general": 0.0, "digits": 0.0}
    audio_s = 0.0

    def hear(pcm: Pcm, *, digits: bool) -> str:
        nonlocal audio_s
        started = time.perf_counter()
        text = whisper.transcribe(corpus.float32(pcm), digits=digits)
        decode_s["digits" if digits else "general"] += time.perf_counter() - started
        if not digits:
            audio_s += pcm.size / 16000
        return text

    out: dict[str, Any] = {
        "model": whisper.model,
        "data": {
            "prompts": {"source": str(corpus.SOUNDS), "licence": corpus.LICENCE, "count": len(recorded)},
            "numbers": {"count": len(strings), "seed": seed, "kinds": "phone (10 digits), ZIP (5 digits)"},
        },
        "lines": {},
    }
    for line in lines:
        if progress is not None:
            progress(f"{line}: {len(recorded)} recorded prompts, {len(strings)} numbers twice (recorded, flite)")
        pairs = [(p.text, hear(corpus.prompt_audio(p, line), digits=False)) for p in recorded]
        wer, words = corpus_wer(pairs)
        row: dict[str, Any] = {"prompts_wer": round(wer, 4), "prompts_words": words, "numbers": {}}
        for source, render in (("recorded", corpus.recorded_number_audio), ("flite", corpus.flite_number_audio)):
            tallies = {name: _Tally() for name in _READERS}
            for number in strings:
                pcm = render(number, line)
                heard = {False: hear(pcm, digits=False), True: hear(pcm, digits=True)}
                for name, (digits, reader) in _READERS.items():
                    tallies[name].add(number.digits, reader(heard[digits]), heard[digits])
            row["numbers"][source] = {name: t.public() for name, t in tallies.items()}
        out["lines"][line] = row
    general_decodes = max(1, len(lines) * (len(recorded) + 2 * len(strings)))
    out["decode_ms"] = {
        "general_mean": round(decode_s["general"] / general_decodes * 1000, 1),
        "digits_mean": round(decode_s["digits"] / max(1, len(lines) * 2 * len(strings)) * 1000, 1),
        "rtf_general": round(decode_s["general"] / audio_s, 3) if audio_s else None,
    }
    return out


def table(result: dict[str, Any]) -> str:
    """The result as a plain-text table: one row per line, WER and each reading's exact match per source."""
    readers = list(_READERS)
    head = f"{'line':<8} {'WER prompts':>11}"
    for source in ("recorded", "flite"):
        head += "".join(f" {source[:4] + ' ' + name:>21}" for name in readers)
    rows = [head]
    for line, row in result["lines"].items():
        text = f"{line:<8} {row['prompts_wer'] * 100:>10.1f}%"
        for source in ("recorded", "flite"):
            for name in readers:
                cell = row["numbers"][source][name]
                value = (
                    "-" if cell["exact"] is None else f"{cell['exact'] * 100:.1f}% ({cell['right']}/{cell['total']})"
                )
                text += f" {value:>21}"
        rows.append(text)
    data = result["data"]
    rows.append(
        f"{data['prompts']['count']} recorded prompts ({data['prompts']['licence']}); "
        f"{data['numbers']['count']} numbers (seed {data['numbers']['seed']}); model {result['model']}; "
        f"decode mean {result['decode_ms']['general_mean']} ms general, {result['decode_ms']['digits_mean']} ms digits"
    )
    return "\n".join(rows)


def main(argv: Sequence[str] | None = None) -> int:
    from orchestrator.cli.errors import quiet_logs

    parser = argparse.ArgumentParser(prog="python -m evals.stt.digits", description=__doc__.splitlines()[0])
    parser.add_argument("--json", action="store_true", help="print JSON")
    parser.add_argument("--prompts", type=int, default=None, help="recorded prompts to use (default: all)")
    parser.add_argument("--numbers", type=int, default=40, help="phone numbers and ZIP codes per source (default 40)")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help=f"seed of the numbers (default {DEFAULT_SEED})")
    parser.add_argument("--lines", default=",".join(corpus.LINES), help="lines: 16k, 8k, 8k-ulaw (comma-separated)")
    args = parser.parse_args(argv)
    lines = [x.strip() for x in args.lines.split(",") if x.strip()]
    bad = [x for x in lines if x not in corpus.LINES]
    if bad or not lines:
        print(f"error: --lines takes {', '.join(corpus.LINES)}; got {args.lines!r}", file=sys.stderr)
        return 2
    if (args.prompts is not None and args.prompts < 0) or args.numbers < 0:
        print("error: --prompts and --numbers take a count of 0 or more", file=sys.stderr)
        return 2
    quiet_logs()
    try:
        result = run(
            prompts=args.prompts,
            numbers=args.numbers,
            seed=args.seed,
            lines=[line for line in corpus.LINES if line in lines],
            progress=None if args.json else lambda what: print(f"measuring {what}…", file=sys.stderr),
        )
    except corpus.CorpusMissing as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(json.dumps(result, indent=2) if args.json else table(result))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
