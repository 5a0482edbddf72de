"""The `switchboard` command: talk to the agent, run scripted calls, route text, evaluate, run the demo."""

from __future__ import annotations

import asyncio
import json
import tempfile
import time
from collections.abc import Coroutine
from pathlib import Path
from typing import Annotated, Any, TypeVar

import typer
from rich.console import Console
from rich.panel import Panel
from rich.table import Table

from orchestrator.cli.errors import fail, quiet_logs, run_cli
from orchestrator.cli.stack import DEFAULT_SERVER, ServerOpt, demo_livekit
from orchestrator.config import load_settings

T = TypeVar("T")

app = typer.Typer(help="Switchboard: a self-hostable multi-agent voice contact centre.", no_args_is_help=True)
eval_app = typer.Typer(help="Evaluate the router and the agents.", no_args_is_help=True)
app.add_typer(eval_app, name="eval")

console = Console()
err = Console(stderr=True)


def _run(coro: Coroutine[Any, Any, T]) -> T:
    quiet_logs()
    return asyncio.run(coro)


async def _services() -> Any:
    from orchestrator.runtime import Services

    return await Services.open(load_settings())


@app.command()
def route(
    text: Annotated[str, typer.Argument(help="What the caller said.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Classify one utterance with the local router."""
    quiet_logs()
    if not text.strip():
        fail("route: the text to classify is empty")
    load_settings()  # an invalid setting (e.g. SWITCHBOARD_ROUTER_THRESHOLD) stops here, as in every command
    from orchestrator.providers.intent import load_classifier

    classifier = load_classifier()
    classifier.classify("warm up")
    t0 = time.perf_counter()
    prediction = classifier.classify(text)
    latency_ms = (time.perf_counter() - t0) * 1000
    out = {
        "intent": prediction.intent,
        "confidence": round(prediction.confidence, 4),
        "latency_ms": round(latency_ms, 3),
    }
    if as_json:
        print(json.dumps(out))
    else:
        console.print(f"[bold]{out['intent']}[/bold] (confidence {out['confidence']:.2f}, {out['latency_ms']:.2f} ms)")


@app.command()
def call(
    say: Annotated[list[str], typer.Option("--say", help="A caller turn; repeat for each turn.")],
    caller_id: Annotated[str | None, typer.Option("--caller-id", help="Caller ID, e.g. +15550100001.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the call as JSON.")] = False,
    audio: Annotated[
        bool, typer.Option("--audio", help="Speak the turns: local TTS ▸ VAD ▸ STT ▸ graph ▸ TTS.")
    ] = False,
    telephony: Annotated[bool, typer.Option("--telephony", help="With --audio: an 8 kHz mu-law line.")] = False,
) -> None:
    """Run one scripted call through the session (text, or audio with --audio) and print its transcript."""
    if any(not turn.strip() for turn in say):
        fail("--say: a caller turn cannot be empty")
    load_settings()
    if audio:
        from orchestrator.cli.voice import call_audio

        call_audio(say, caller_id=caller_id, telephony=telephony, as_json=as_json)
        return
    if telephony:
        err.print("[red]--telephony needs --audio[/red]")
        raise typer.Exit(2)

    async def main() -> dict[str, Any]:
        from orchestrator.session.text import run_text_call

        async with await _services() as services:
            result = await run_text_call(services, say, caller_id=caller_id)
            return result.to_json()

    out = _run(main())
    if as_json:
        print(json.dumps(out, indent=2))
    else:
        _print_call(out)


@app.command()
def chat(
    caller_id: Annotated[str | None, typer.Option("--caller-id", help="Caller ID, e.g. +15550100001.")] = None,
) -> None:
    """Talk to the agent in the terminal; route and handoff events are shown as they happen."""

    async def main() -> None:
        from orchestrator.session.text import TextCall

        async with await _services() as services:
            call = TextCall(services, caller_id=caller_id)
            await call.start()
            console.print(f"[green]agent[/green]: {services.prompts.reply('greeting')}  [dim](Ctrl-D to hang up)[/dim]")
            seen = 0
            try:
                while True:
                    try:
                        text = await asyncio.to_thread(console.input, "[cyan]you[/cyan]: ")
                    except EOFError:
                        break
                    record = await call.say(text)
                    for h in call.result.handoffs[seen:]:
                        console.print(
                            f"  [magenta]↪ handoff {h['from_agent']} → {h['to_agent']} ({h['reason']})[/magenta]"
                        )
                    seen = len(call.result.handoffs)
                    console.print(
                        f"  [dim]route: {record.intent} ({(record.confidence or 0):.2f}) · agent: {record.agent_name}"
                        f" · {record.latency_ms:.0f} ms[/dim]"
                    )
                    console.print(f"[green]{record.agent_name}[/green]: {record.agent}")
                    if await call.ended():
                        break
            finally:
                await call.aclose()
            console.print(f"[bold]outcome:[/bold] {call.result.outcome}")

    _run(main())


@app.command()
def demo(
    as_json: Annotated[bool, typer.Option("--json", help="Print the calls as JSON.")] = False,
    livekit: Annotated[
        bool, typer.Option("--livekit", help="WebRTC callers through the real stack (livekit-server; needs root).")
    ] = False,
    sip: Annotated[
        bool, typer.Option("--sip", help="SIP phones through livekit-sip (`sip demo`; needs root).")
    ] = False,
    callers: Annotated[
        int | None, typer.Option("--calls", min=1, help="With --livekit or --sip: callers (default 4).")
    ] = None,
    concurrency: Annotated[int, typer.Option("--concurrency", min=1, help="With --livekit or --sip: at once.")] = 2,
    livekit_server: ServerOpt = DEFAULT_SERVER,
) -> None:
    """Run scripted calls that cover all four specialists and escalations, and print their transcripts.

    With --livekit the demo's callers speak through livekit-server, the API and both workers instead, and
    the demo prints what became of the calls.
    """
    if sip:
        from orchestrator.cli.sip import demo_sip

        demo_sip(calls=callers or 4, concurrency=concurrency, as_json=as_json, server=livekit_server)
        return
    if livekit:
        demo_livekit(calls=callers or 4, concurrency=concurrency, as_json=as_json, server=livekit_server)
        return
    if callers is not None:
        fail("--calls needs --livekit or --sip (the room-less demo runs each scenario once)")
    from orchestrator.scenarios import SCENARIOS

    async def main() -> list[dict[str, Any]]:
        from orchestrator.runtime import Services
        from orchestrator.session.text import run_text_call

        calls = []
        # A fresh tenant every run, so the demo tells the same story each time.
        with tempfile.TemporaryDirectory(prefix="switchboard-demo-") as data_dir:
            async with await Services.open(load_settings(data_dir=Path(data_dir))) as services:
                for scenario in SCENARIOS:
                    result = await run_text_call(services, scenario.turns, caller_id=scenario.caller_id)
                    data = {"scenario": scenario.name, **result.to_json()}
                    calls.append(data)
                    if not as_json:
                        _print_call(data)
        return calls

    calls = _run(main())
    if as_json:
        print(json.dumps(calls, indent=2))
        return
    table = Table(title="Demo calls")
    for col in ("scenario", "outcome", "route", "turns", "p50 turn ms"):
        table.add_column(col)
    for c in calls:
        lat = sorted(t["latency_ms"] for t in c["turns"])
        route_to = c["handoffs"][0]["to_agent"] if c["handoffs"] else "router"
        table.add_row(c["scenario"], c["outcome"], route_to, str(len(c["turns"])), f"{lat[len(lat) // 2]:.0f}")
    console.print(table)


@eval_app.command("router")
def eval_router(
    data: Annotated[Path, typer.Option("--data", exists=True, dir_okay=False, help="JSONL lines of {text, label}.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
) -> None:
    """Score the local router on a labelled file (the format of router-dev.jsonl)."""
    quiet_logs()
    from rich.progress import Progress

    from evals.router.metrics import evaluate_file
    from orchestrator.providers.intent import load_classifier

    with Progress(console=err, transient=True, disable=as_json) as progress:
        task = progress.add_task(f"classifying {data.name}", total=None)
        try:
            report = evaluate_file(
                data,
                load_classifier(),
                on_progress=lambda done, total: progress.update(task, completed=done, total=total),
            )
        except ValueError as exc:  # a bad line, an unknown label or no examples: bad input
            fail(str(exc))
    # Graded against the same benchmark table as the agent evals (evals/grades.yaml).
    from evals.grading import load_grades

    report["grades"] = load_grades().grade_all({"routing_accuracy": report["accuracy"]})
    if as_json:
        print(json.dumps(report, indent=2))
        return
    table = Table(title=f"Router on {data.name}: accuracy {report['accuracy']:.3f}, macro-F1 {report['macro_f1']:.3f}")
    for col in ("label", "precision", "recall", "f1", "support"):
        table.add_column(col)
    for label, row in report["per_label"].items():
        table.add_row(label, f"{row['precision']:.3f}", f"{row['recall']:.3f}", f"{row['f1']:.3f}", str(row["support"]))
    console.print(table)
    console.print(f"latency p50 {report['latency_ms']['p50']:.2f} ms, p99 {report['latency_ms']['p99']:.2f} ms")
    console.print(f"grades: {report['grades']}")


def _print_call(data: dict[str, Any]) -> None:
    lines = []
    for turn in data["turns"]:
        lines.append(f"[cyan]caller[/cyan]: {turn['caller']}")
        lines.append(f"[green]{turn['agent_name']}[/green]: {turn['agent']}")
        lines.append(
            f"[dim]  intent {turn['intent']} ({(turn['confidence'] or 0):.2f}) · {turn['latency_ms']:.0f} ms[/dim]"
        )
    for h in data["handoffs"]:
        lines.append(
            f"[magenta]handoff turn {h['turn']}: {h['from_agent']} → {h['to_agent']} ({h['reason']})[/magenta]"
        )
    reason = f" ({data['escalation_reason']})" if data.get("escalation_reason") else ""
    title = f"{data.get('scenario', data['call_id'])}: {data['outcome']}{reason}"
    console.print(Panel("\n".join(lines), title=title, expand=False))


prompts_app = typer.Typer(help="Prompt versions: make a candidate to edit and compare.", no_args_is_help=True)
app.add_typer(prompts_app, name="prompts")


@prompts_app.command("new")
def prompts_new(
    folder: Annotated[Path, typer.Argument(help="Where to put the copy, e.g. ./my-prompts (must not exist).")],
) -> None:
    """Copy the current prompts (system prompts, replies, phrases) into FOLDER as a candidate to edit.

    Then: `switchboard eval compare --base HEAD --candidate FOLDER evals/suites/smoke.yaml`.
    """
    import shutil

    source = load_settings().prompts_dir
    if folder.exists():
        fail(f"{folder}: already exists; give a new folder")
    try:
        shutil.copytree(source, folder)
    except OSError as exc:
        fail(f"{folder}: {exc.strerror or exc}")
    console.print(f"copied {source} to {folder}; edit it, then compare it with")
    console.print(f"  switchboard eval compare --base HEAD --candidate {folder} evals/suites/smoke.yaml")


def _register_commands() -> None:
    """Commands that live beside their subsystem, each module exposing `register`."""
    from evals.cli import register as register_evals
    from orchestrator.capacity import register as register_capacity
    from orchestrator.cli.bench_sip import register as register_bench_sip
    from orchestrator.cli.burst import register as register_burst
    from orchestrator.cli.console import register as register_console
    from orchestrator.cli.ops import register as register_ops
    from orchestrator.cli.report import register as register_report
    from orchestrator.cli.sip import register as register_sip
    from orchestrator.cli.stack import register as register_stack
    from orchestrator.cli.voice import register as register_voice

    register_evals(eval_app)  # eval run, eval compare
    register_report(app)  # report
    register_ops(app)  # serve, worker, simulate, dlq, demo-queue
    register_voice(app)  # call-audio, agent-worker, tts warm, bench voice
    register_console(app)  # users add/list/remove/disable/token
    register_capacity(app)  # capacity
    register_stack(app)  # dev
    register_sip(app)  # sip setup
    register_burst(app)  # bench burst
    register_bench_sip(app)  # bench sip


_register_commands()


def main() -> None:
    """The `switchboard` entry point: the app, with every failure answered in one line."""
    run_cli(app)
