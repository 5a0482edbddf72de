"""A/B of the voice turn path in one process: this tree's graph against another revision's, and the
classifier started at GraphLLM (speculated) against started by `supervise` only.

Usage: .venv/bin/python bench/turn_ab.py [--base a2be9aa] [--blocks 6] [--turns 60] [--concurrency 1]

Each variant runs `switchboard bench voice`'s turn (GraphLLM, first sentence, phrase cache) with the
providers' delays set to zero, so what is left is our own overhead. Variants alternate in blocks on one
event loop, on the same store and classifier; the first block of each is a warm-up. Reported per variant:
main-thread CPU per turn (`time.thread_time`), the process's CPU per turn (classifier threads included)
and overhead percentiles; then the ratios against the first variant. Only ratios mean much on a shared
machine: the same code has measured 4.8 and 10.8 ms of main-thread CPU per turn half an hour apart.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.util
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agents.router  # noqa: E402
from orchestrator.config import load_settings  # noqa: E402
from orchestrator.heap import settle_heap  # noqa: E402
from orchestrator.providers.phrase_cache import CachedTTS, PhraseCache, split_sentences  # noqa: E402
from orchestrator.runtime import Services  # noqa: E402
from orchestrator.session import bench  # noqa: E402


def graph_at(revision: str, scratch: Path) -> Callable[..., Any]:
    """`build_graph` of agents/graph.py as it was at `revision` (the rest of the tree stays this one's)."""
    source = subprocess.run(
        ["git", "show", f"{revision}:agents/graph.py"], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout
    path = scratch / f"graph_{revision}.py"
    path.write_text(source)
    spec = importlib.util.spec_from_file_location(f"graph_{revision}", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.build_graph  # type: ignore[no-any-return]


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, int(len(ordered) * q / 100))], 2)


async def run(args: argparse.Namespace) -> None:
    real_speculate = agents.router.speculate
    with tempfile.TemporaryDirectory(prefix="switchboard-turn-ab-") as tmp:
        async with await Services.open(load_settings(data_dir=Path(tmp))) as services:
            sentences: list[str] = []
            for phrase in services.prompts.phrases():
                sentences.extend(await split_sentences(phrase))
            profile = bench.Profile(stt_final_s=0.0, tts_first_byte_s=0.0)
            speaker = CachedTTS(bench.SimulatedTTS(0.0), PhraseCache(local_entries=1024), phrases=sentences)
            for sentence in sentences:
                await speaker.render(sentence)
            this = services.graph
            variants: dict[str, tuple[Any, Callable[..., None]]] = {
                "this tree": (this, real_speculate),
                "this tree, classifier started by supervise only": (this, lambda *_a: None),
                f"graph of {args.base}": (graph_at(args.base, Path(tmp))(services.checkpointer), real_speculate),
            }
            overhead: dict[str, list[float]] = {k: [] for k in variants}
            main_cpu: dict[str, list[float]] = {k: [] for k in variants}
            all_cpu: dict[str, list[float]] = {k: [] for k in variants}
            for block in range(args.blocks):
                for name, (graph, speculate) in variants.items():
                    services.graph = graph
                    agents.router.speculate = speculate
                    thread0, process0 = time.thread_time(), time.process_time()
                    samples = await bench._level(
                        args.concurrency,
                        args.turns,
                        functools.partial(
                            bench._OurCall, services, bench._timed_context(services.context), speaker, profile
                        ),
                    )
                    if block == 0:
                        settle_heap()
                        continue
                    main_cpu[name].append((time.thread_time() - thread0) / args.turns * 1000)
                    all_cpu[name].append((time.process_time() - process0) / args.turns * 1000)
                    overhead[name] += [s.overhead * 1000 for s in samples]
            services.graph, agents.router.speculate = this, real_speculate
    first = next(iter(variants))
    for name in variants:
        cpu, proc, ov = statistics.median(main_cpu[name]), statistics.median(all_cpu[name]), overhead[name]
        print(
            f"{name}: main-thread CPU/turn {cpu:.2f} ms, process CPU/turn {proc:.2f} ms, "
            f"overhead P50/P90/P99 {pct(ov, 50)}/{pct(ov, 90)}/{pct(ov, 99)} ms"
        )
    for name in list(variants)[1:]:
        cpu_ratio = statistics.median(main_cpu[first]) / statistics.median(main_cpu[name])
        p50_ratio = pct(overhead[first], 50) / pct(overhead[name], 50)
        print(f"{first} / {name}: main-thread CPU {cpu_ratio:.2f}x, overhead P50 {p50_ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", default="a2be9aa", help="git revision whose agents/graph.py is the baseline")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--turns", type=int, default=60, help="turns per variant per block")
    parser.add_argument("--concurrency", type=int, default=1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
