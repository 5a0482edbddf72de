"""`switchboard eval run` and `switchboard eval compare`: registered on the CLI's `eval` group by `register`."""

from __future__ import annotations

import asyncio
import json
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal, cast

import typer

if TYPE_CHECKING:
    from evals.grading import Gates, GradeTable
    from evals.replies import ReplyPolicy
from rich.console import Console

from orchestrator.cli.errors import fail, quiet_logs

SuitesArg = Annotated[list[Path], typer.Argument(help="Suite files, e.g. evals/suites/smoke.yaml.")]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the report as JSON on stdout.")]
HtmlOpt = Annotated[Path | None, typer.Option("--html", help="Write a self-contained HTML report here.")]
RepeatOpt = Annotated[int, typer.Option("--repeat", min=1, help="Trials per scenario (pass^k uses k = repeat).")]
ConcOpt = Annotated[int, typer.Option("--concurrency", min=1, help="Calls in flight at once.")]
TimeoutOpt = Annotated[float | None, typer.Option("--timeout", help="Seconds per scenario (overrides the suites).")]
SimOpt = Annotated[str, typer.Option("--simulator", help="auto (LLM-driven when a key is set), deterministic or llm.")]
GatesOpt = Annotated[Path | None, typer.Option("--gates", help="CI gates file (default evals/gates.yaml).")]
NoGatesOpt = Annotated[bool, typer.Option("--no-gates", help="Report only; do not fail on breached gates.")]
ShowOpt = Annotated[
    str,
    typer.Option("--show", help="Replies side by side in the terminal: regressions, changes, all or none."),
]
TranscriptsOpt = Annotated[str, typer.Option("--transcripts", help="Transcripts in the terminal: failed, all or none.")]
PolicyOpt = Annotated[
    Path | None, typer.Option("--reply-policy", help="Wording rules for every reply (default evals/reply_policy.yaml).")
]

out = Console()
err = Console(stderr=True)


Simulator = Literal["auto", "deterministic", "llm"]


def _simulator(value: str) -> Simulator:
    if value not in ("auto", "deterministic", "llm"):
        fail(f"--simulator must be auto, deterministic or llm, not {value!r}")
    return cast(Simulator, value)


def _load(suites: list[Path]) -> Any:
    # A missing file is answered before the loaders (and their imports) start.
    for path in suites:
        if not path.is_file():
            fail(f"{path}: no such file" if not path.exists() else f"{path}: not a file")
    from evals.loader import SuiteError, load_suites

    try:
        return load_suites(suites)
    except SuiteError as exc:
        fail(f"malformed suite: {exc}")


def _check_prompts(prompts_dir: Path) -> None:
    """Every reply of a prompts version renders with the values the agents pass, before any scenario runs."""
    from agents.prompts import PromptError, check_prompts
    from orchestrator.config import PROMPTS_DIR

    try:
        check_prompts(prompts_dir, PROMPTS_DIR)
    except PromptError as exc:
        fail(str(exc))


def _progress(as_json: bool) -> Any:
    def show(trial: Any) -> None:
        mark = {"passed": "[green]✓[/]", "failed": "[red]✗[/]", "xfail": "[yellow]x[/]", "xpass": "[red]![/]"}
        err.print(f"{mark[trial.status]} {trial.suite}/{trial.scenario}", highlight=False)

    return None if as_json else show


def _grades_and_gates(gates: Path | None) -> tuple[GradeTable, Gates]:
    """The benchmark table and the CI gates, or a clear exit naming the bad file."""
    from evals.grading import ConfigError, load_gates, load_grades

    try:
        return load_grades(), load_gates(gates)
    except ConfigError as exc:
        fail(str(exc))


def _choice(option: str, value: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        fail(f"{option} must be {', '.join(allowed[:-1])} or {allowed[-1]}, not {value!r}")
    return value


def _reply_policy(path: Path | None) -> ReplyPolicy:
    """The reply policy, or a clear exit naming the bad file."""
    from evals.grading import ConfigError
    from evals.replies import load_reply_policy

    try:
        return load_reply_policy(path)
    except ConfigError as exc:
        fail(str(exc))


def register(eval_app: typer.Typer) -> None:
    """Add `run` and `compare` to the `switchboard eval` command group."""

    @eval_app.command("run")
    def run(
        suites: SuitesArg,
        prompts: Annotated[
            str | None, typer.Option("--prompts", help="A prompts folder or a git ref (default: prompts/).")
        ] = None,
        repeat: RepeatOpt = 1,
        audio: Annotated[bool, typer.Option("--audio", help="Run calls as audio (needs the voice issue).")] = False,
        as_json: JsonOpt = False,
        html_path: HtmlOpt = None,
        junit: Annotated[Path | None, typer.Option("--junit", help="Write JUnit XML here.")] = None,
        concurrency: ConcOpt = 4,
        timeout: TimeoutOpt = None,
        simulator: SimOpt = "auto",
        gates: GatesOpt = None,
        no_gates: NoGatesOpt = False,
        reply_policy: PolicyOpt = None,
        transcripts: TranscriptsOpt = "failed",
    ) -> None:
        """Run eval suites as simulated calls, score them, grade the metrics and check the CI gates.

        Exit code: 0 when every scenario passed (known bugs excepted) and no gate is breached, 1 otherwise,
        2 on bad input (a malformed suite, an unknown prompts ref).
        """
        quiet_logs()
        _choice("--transcripts", transcripts, ("failed", "all", "none"))
        if audio:
            fail(
                "--audio is not available yet: audio calls need the local audio transport from the voice issue "
                "(STT/TTS on the embedded default). Run without --audio for text calls.",
            )
        loaded = _load(suites)
        from evals.grading import check_gates
        from evals.metrics import flatten
        from evals.prompts_ref import PromptsRefError, resolve_prompts
        from evals.report import build_report, print_report, write_html, write_junit
        from evals.runner import RunConfig, run_suites

        table, gate_cfg = _grades_and_gates(gates)
        policy = _reply_policy(reply_policy)
        with ExitStack() as stack:
            try:
                prompts_dir = resolve_prompts(prompts, stack)
            except PromptsRefError as exc:
                fail(str(exc))
            _check_prompts(prompts_dir)
            config = RunConfig(
                prompts_dir=prompts_dir,
                repeat=repeat,
                concurrency=concurrency,
                timeout_s=timeout,
                simulator=_simulator(simulator),
                reply_policy=policy,
            )
            result = asyncio.run(run_suites(loaded, config, on_trial=_progress(as_json)))
        report = build_report(result, table)
        section = gate_cfg.for_suites([s.suite for s in loaded])
        breaches = [] if no_gates else check_gates(section, flatten(report["metrics"]), report["failed"])
        report["gates"] = {"passed": not breaches, "breaches": breaches}
        if as_json:
            print(json.dumps(report, indent=2))
        else:
            print_report(report, result, out, transcripts)
        if html_path is not None:
            write_html(report, result, table, html_path)
        if junit is not None:
            write_junit(result, junit)
        if report["failed"] or breaches:
            raise typer.Exit(1)

    @eval_app.command("compare")
    def compare_cmd(
        suites: SuitesArg,
        base: Annotated[str, typer.Option("--base", help="Base prompts: a folder or a git ref.")],
        candidate: Annotated[str, typer.Option("--candidate", help="Candidate prompts: a folder or a git ref.")],
        repeat: RepeatOpt = 1,
        as_json: JsonOpt = False,
        html_path: HtmlOpt = None,
        concurrency: ConcOpt = 4,
        timeout: TimeoutOpt = None,
        simulator: SimOpt = "deterministic",
        gates: GatesOpt = None,
        no_gates: NoGatesOpt = False,
        reply_policy: PolicyOpt = None,
        show: ShowOpt = "changes",
        confidence: Annotated[
            float | None,
            typer.Option(
                "--confidence",
                help="Intervals' level; better or worse only when it excludes zero (default 1 − the gates' alpha).",
            ),
        ] = None,
    ) -> None:
        """A/B two prompt versions on the same scenarios: deltas with CIs, paired tests, regressions.

        Exit code 1 when the candidate regresses (a scenario that passed now fails, a significant or
        over-the-limit metric drop, or a breached gate on the candidate), 2 on bad input.
        """
        quiet_logs()
        _choice("--show", show, ("regressions", "changes", "all", "none"))
        if confidence is not None and not 0.5 <= confidence < 1:
            fail(f"--confidence must be at least 0.5 and below 1 (e.g. 0.95), not {confidence:g}")
        loaded = _load(suites)
        from evals.compare import compare, print_compare, run_pair, write_compare_html
        from evals.grading import check_gates
        from evals.metrics import compute_metrics, flatten
        from evals.prompts_ref import PromptsRefError, resolve_prompts, with_current_replies
        from evals.runner import RunConfig

        table, gate_cfg = _grades_and_gates(gates)
        policy = _reply_policy(reply_policy)
        with ExitStack() as stack:
            try:
                base_dir = resolve_prompts(base, stack)
                cand_dir = resolve_prompts(candidate, stack)
            except PromptsRefError as exc:
                fail(str(exc))
            # The candidate must run on this code; the base may be an older version with other replies.
            _check_prompts(cand_dir)
            base_dir, taken = with_current_replies(base_dir, stack)
            if taken:
                shown = ", ".join(taken[:6]) + (f" and {len(taken) - 6} more" if len(taken) > 6 else "")
                err.print(
                    f"[dim]the base lacks {len(taken)} replies this code uses; the current text stands in: "
                    f"{shown}[/dim]"
                )
            common: dict[str, Any] = {
                "repeat": repeat,
                "concurrency": concurrency,
                "timeout_s": timeout,
                "simulator": _simulator(simulator),
                "reply_policy": policy,
            }
            pair = asyncio.run(
                run_pair(loaded, RunConfig(prompts_dir=base_dir, **common), RunConfig(prompts_dir=cand_dir, **common))
            )
            pair.base.prompts_dir, pair.candidate.prompts_dir = base, candidate
        result = compare(pair, table, gate_cfg.compare, confidence=confidence)
        if not no_gates:
            cand_metrics = flatten(compute_metrics(pair.candidate.trials, repeat))
            failed = sum(t.counts_as_failure for t in pair.candidate.trials)
            section = gate_cfg.for_suites([s.suite for s in loaded])
            for breach in check_gates(section, cand_metrics, failed):
                result["regressions"].append(f"candidate gate breached: {breach}")
            result["ok"] = not result["regressions"]
        if as_json:
            print(json.dumps(result, indent=2))
        else:
            print_compare(result, out, show)
        if html_path is not None:
            write_compare_html(result, pair, html_path)
        if not result["ok"]:
            raise typer.Exit(1)
