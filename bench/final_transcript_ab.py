"""A/B of where a voice turn's intent classification starts, with a live session's endpointing wait modelled.

Usage: .venv/bin/python bench/final_transcript_ab.py [--pairs 3] [--level 100] [--endpointing-ms 250]

Alternates whole `switchboard bench voice` runs (one level, traced as the CLI traces) in one process:
    at final        this tree: `GraphLLM.on_transcribed` starts the classifier at the STT's final transcript,
                    and the session commits the turn `--endpointing-ms` later
    at graph start  the same wait, but the classifier starts only when the graph turn does (the tree before
                    `on_transcribed`)
Prints each run's paced overhead P50/P99, router wait P99 and the routed/unrouted split, then the burst
overhead. Runs differ a lot on a shared machine: read the pairs, not one run.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from orchestrator.bench.voice import Profile, run_voice_bench  # noqa: E402
from orchestrator.config import load_settings  # noqa: E402
from orchestrator.session.graph_llm import GraphLLM  # noqa: E402
from orchestrator.telemetry.setup import setup_telemetry  # noqa: E402

PACED = ("overhead_p50", "overhead_p99", "router_wait_p99", "overhead_routed_p99", "overhead_unrouted_p99")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--level", type=int, default=100)
    parser.add_argument("--endpointing-ms", type=float, default=250.0)
    args = parser.parse_args()
    at_final = GraphLLM.on_transcribed

    def at_graph_start(_self: GraphLLM, _ev: Any) -> None:
        return None

    settings = load_settings()
    telemetry = setup_telemetry(settings)
    profile = Profile(endpointing_s=args.endpointing_ms / 1000)
    try:
        for pair in range(args.pairs):
            for name, hook in (("at final", at_final), ("at graph start", at_graph_start)):
                GraphLLM.on_transcribed = hook  # type: ignore[method-assign,assignment]
                out = asyncio.run(
                    run_voice_bench(
                        settings, levels=[args.level], embedded=False, profile=profile, tracer=telemetry.tracer
                    )
                )
                run = out["runs"][0]
                paced = {k: run["ours"][k] for k in PACED}
                burst = run["burst"]["ours"]
                burst_overhead = f"{burst['overhead_p50']}/{burst['overhead_p99']}"
                print(f"{pair} {name}: paced {paced}; burst overhead P50/P99 {burst_overhead}", flush=True)
    finally:
        GraphLLM.on_transcribed = at_final  # type: ignore[method-assign]
        telemetry.shutdown()


if __name__ == "__main__":
    main()
