"""A/B of the voice turn path in one process: this tree against a variant, as ratios.

Usage: .venv/bin/python bench/turn_ab.py COMPARISON [--base a2be9aa] [--blocks 6] [--turns 60] [--concurrency 1]

Comparisons (the first variant of each is this tree as it runs in production):
    graph        this tree's graph against `agents/graph.py` at another revision (--base)
    speculation  the classifier started at GraphLLM for utterances of more than 4 words (this tree),
                 for every utterance, or only by `supervise`
    checkpoints  a turn's checkpoint read answered from memory (this tree) or from SQLite every time
    tracing      no spans, or a `GraphSpanHandler` per call (what a worker adds)
    classifier   the intent classifier in a child process (this tree, in a process that runs many calls)
                 or on a thread of this process
    first-turn   a call's checkpoint read as the call starts (this tree) or on its first turn

Each variant runs `switchboard bench voice`'s turn (`GraphLLM`, first sentence, phrase cache, whole scripted
calls) with the providers' delays set to zero, so what is left is our own overhead and the tenant's time.
Variants alternate in blocks on one event loop, on the same store and classifier; the first block of each
is a warm-up. Reported per variant: main-thread CPU per turn (`time.thread_time`), the process's CPU per
turn (classifier and SQLite threads included), overhead and tenant percentiles; then the ratios against the
first variant. Only ratios mean much on a shared machine: the same code has measured 4.8 and 10.8 ms of
main-thread CPU per turn half an hour apart.
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
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import agents.router  # noqa: E402
from agents.graph import build_graph  # noqa: E402
from orchestrator.bench import voice as bench  # noqa: E402
from orchestrator.config import load_settings  # noqa: E402
from orchestrator.heap import settle_heap  # noqa: E402
from orchestrator.providers.intent_process import ProcessIntentClassifier  # noqa: E402
from orchestrator.providers.phrase_cache import CachedTTS, PhraseCache, phrase_sentences  # noqa: E402
from orchestrator.runtime import Services  # noqa: E402
from orchestrator.stats import percentile  # noqa: E402
from orchestrator.store.checkpoints import LatestCheckpointCache  # noqa: E402


@dataclass
class Variant:
    """How to run one side: `enter` changes the process (given the services), `leave` undoes it."""

    enter: Callable[[Services], None] = lambda _services: None
    leave: Callable[[Services], None] = lambda _services: None
    tracer: Any = None
    classifier: str = "as opened"  # or "thread": the in-process classifier on a thread
    overhead: list[float] = field(default_factory=list)
    tenant: list[float] = field(default_factory=list)
    main_cpu: list[float] = field(default_factory=list)
    all_cpu: list[float] = field(default_factory=list)


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


def _swap_graph(make: Callable[[Services], Any]) -> Variant:
    saved: dict[str, Any] = {}

    def enter(services: Services) -> None:
        saved["graph"] = services.graph
        services.graph = make(services)

    def leave(services: Services) -> None:
        services.graph = saved["graph"]

    return Variant(enter, leave)


def _speculating(rule: Callable[..., None]) -> Variant:
    real = agents.router.speculate

    def enter(_services: Services) -> None:
        agents.router.speculate = rule

    def leave(_services: Services) -> None:
        agents.router.speculate = real

    return Variant(enter, leave)


def variants_for(comparison: str, base: str, scratch: Path) -> dict[str, Variant]:
    if comparison == "graph":
        return {
            "this tree": Variant(),
            f"graph of {base}": _swap_graph(lambda s: graph_at(base, scratch)(s.checkpointer)),
        }
    if comparison == "speculation":

        def every(ctx: Any, call_id: str, utterance: str) -> None:
            ctx.intents.start(agents.router.intent_key(call_id, utterance))

        return {
            "this tree (more than 4 words)": Variant(),
            "every utterance": _speculating(every),
            "only by supervise": _speculating(lambda *_a: None),
        }
    if comparison == "checkpoints":

        def from_store(services: Services) -> Any:
            assert isinstance(services.checkpointer, LatestCheckpointCache)
            return build_graph(services.checkpointer.store)

        return {"this tree (latest from memory)": Variant(), "every read from SQLite": _swap_graph(from_store)}
    if comparison == "tracing":
        from opentelemetry.sdk.trace import TracerProvider

        return {"no spans": Variant(), "GraphSpanHandler": Variant(tracer=TracerProvider().get_tracer("turn-ab"))}
    if comparison == "classifier":
        return {"this tree (child process)": Variant(), "thread": Variant(classifier="thread")}
    if comparison == "first-turn":
        started = bench._OurCall.start

        async def not_loaded(_call: Any) -> None:
            return None

        def enter(_services: Services) -> None:
            bench._OurCall.start = not_loaded  # type: ignore[method-assign]

        def leave(_services: Services) -> None:
            bench._OurCall.start = started  # type: ignore[method-assign]

        return {"this tree (loaded as the call starts)": Variant(), "read on the first turn": Variant(enter, leave)}
    raise SystemExit(f"unknown comparison {comparison!r}: one of {', '.join(COMPARISONS)}")


COMPARISONS = ("graph", "speculation", "checkpoints", "tracing", "classifier", "first-turn")


def pct(values: list[float], q: float) -> float:
    return round(percentile(values, q), 2)


async def run(args: argparse.Namespace) -> None:
    with tempfile.TemporaryDirectory(prefix="switchboard-turn-ab-") as tmp:
        variants = variants_for(args.comparison, args.base, Path(tmp))
        async with await Services.open(load_settings(data_dir=Path(tmp)), many_calls=True) as services:
            classifier = services.classifier
            assert isinstance(classifier, ProcessIntentClassifier)
            assert await classifier.wait_ready()
            sentences = await phrase_sentences(services.prompts.phrases())
            profile = bench.Profile(stt_final_s=0.0, tts_first_byte_s=0.0)
            speaker = CachedTTS(bench.SimulatedTTS(0.0), PhraseCache(local_entries=1024), phrases=sentences)
            await asyncio.gather(*(speaker.render(sentence) for sentence in sentences))
            contexts = {
                "as opened": bench._timed_context(services.context),
                "thread": bench._timed_context(replace(services.context, classifier=classifier.local)),
            }
            for block in range(args.blocks):
                for variant in variants.values():
                    variant.enter(services)
                    new_call = functools.partial(
                        bench._OurCall, services, contexts[variant.classifier], speaker, profile, tracer=variant.tracer
                    )
                    thread0, process0 = time.thread_time(), time.process_time()
                    try:
                        samples = await bench._level(args.concurrency, args.turns, new_call)
                    finally:
                        variant.leave(services)
                    if block == 0:
                        settle_heap()
                        continue
                    variant.main_cpu.append((time.thread_time() - thread0) / args.turns * 1000)
                    variant.all_cpu.append((time.process_time() - process0) / args.turns * 1000)
                    variant.overhead += [s.overhead * 1000 for s in samples]
                    variant.tenant += [s.tenant * 1000 for s in samples]
    first_name, first = next(iter(variants.items()))
    for name, v in variants.items():
        print(
            f"{name}: main-thread CPU/turn {statistics.median(v.main_cpu):.2f} ms, "
            f"process CPU/turn {statistics.median(v.all_cpu):.2f} ms, "
            f"overhead P50/P90/P99 {pct(v.overhead, 50)}/{pct(v.overhead, 90)}/{pct(v.overhead, 99)} ms, "
            f"tenant P50/P99 {pct(v.tenant, 50)}/{pct(v.tenant, 99)} ms"
        )
    for name, v in list(variants.items())[1:]:
        cpu_ratio = statistics.median(first.main_cpu) / statistics.median(v.main_cpu)
        p50_ratio = pct(first.overhead, 50) / pct(v.overhead, 50)
        print(f"{first_name} / {name}: main-thread CPU {cpu_ratio:.2f}x, overhead P50 {p50_ratio:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("comparison", choices=COMPARISONS)
    parser.add_argument("--base", default="a2be9aa", help="graph: the git revision whose agents/graph.py to run")
    parser.add_argument("--blocks", type=int, default=6)
    parser.add_argument("--turns", type=int, default=60, help="turns per variant per block")
    parser.add_argument("--concurrency", type=int, default=1)
    asyncio.run(run(parser.parse_args()))


if __name__ == "__main__":
    main()
