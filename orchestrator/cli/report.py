"""`switchboard report`: the production report from the call records (terminal, HTML, JSON)."""

from __future__ import annotations

import asyncio
import json
import tempfile
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import Progress

from orchestrator.cli.errors import fail, quiet_logs
from orchestrator.config import Settings, load_settings


async def _report_from_store(settings: Settings, since: datetime | None) -> Any:
    from orchestrator.domain import open_engine
    from orchestrator.providers.llm import RoutingPolicy
    from orchestrator.report import build_report, pricing
    from orchestrator.store import CallStore
    from orchestrator.telemetry.cost import PriceError, PriceTable

    # The reference stack's LLM models come from the routing policy; the prices from the configured table.
    try:
        table = PriceTable.load(settings.price_table)
    except PriceError as exc:
        fail(f"SWITCHBOARD_PRICE_TABLE: {exc}")
    prices = pricing(table, RoutingPolicy.load(settings.routing_policy))

    settings.data_dir.mkdir(parents=True, exist_ok=True)
    engine = open_engine(settings.sqlalchemy_url)
    try:
        store = await CallStore.open(engine, settings)
        return build_report(await store.load_calls(since=since), since=since, prices=prices)
    finally:
        await engine.dispose()


async def _simulate(settings: Settings, repeat: int, on_call: Callable[[int, int], None] | None = None) -> None:
    """Run the demo scenarios through the traced, recorded path into the store, priced as the embedded voice
    default would run them spoken (local STT and TTS, our compute by the minute); `on_call(done, total)`."""
    from orchestrator.runtime import Services
    from orchestrator.scenarios import SCENARIOS
    from orchestrator.store import CallStore
    from orchestrator.telemetry.cost import ProviderProfile
    from orchestrator.telemetry.service import Telemetry
    from orchestrator.worker.runner import run_traced_text_call

    async with await Services.open(settings) as services:
        telemetry = Telemetry.build(
            settings,
            store=await CallStore.open(services.engine, settings),
            join_livekit=False,
            profile=ProviderProfile.embedded_voice(),
        )
        try:
            total, done = repeat * len(SCENARIOS), 0
            for _ in range(repeat):
                for scenario in SCENARIOS:
                    await run_traced_text_call(telemetry, services, scenario.turns, caller_id=scenario.caller_id)
                    done += 1
                    if on_call is not None:
                        on_call(done, total)
        finally:
            await telemetry.aclose()


def register(app: typer.Typer) -> None:
    """Add the `report` command to the `switchboard` app."""

    @app.command()
    def report(
        since: Annotated[
            str | None, typer.Option("--since", help="Only calls since: 30m, 24h, 7d, 2w or an ISO date/time.")
        ] = None,
        html_file: Annotated[
            Path | None, typer.Option("--html", help="Also write an HTML report with plots to FILE.", dir_okay=False)
        ] = None,
        as_json: Annotated[bool, typer.Option("--json", help="Print the summary as JSON.")] = False,
        simulate: Annotated[
            int,
            typer.Option(
                "--simulate",
                help="First run the demo scenarios N times on a fresh tenant (embedded stack) and report on them.",
            ),
        ] = 0,
    ) -> None:
        """Summarise the call records: success, latency, escalations, first-call resolution, cost, anomalies."""
        from orchestrator.report import parse_since, render_html, render_terminal

        quiet_logs()
        console = Console()
        try:
            cutoff = parse_since(since)
        except ValueError:
            Console(stderr=True).print(f"[red]--since: cannot read {since!r}[/red]")
            raise typer.Exit(2) from None

        async def main(progress: Progress) -> Any:
            if simulate > 0:
                task = progress.add_task("simulated calls", total=None)
                with tempfile.TemporaryDirectory(prefix="switchboard-report-") as data_dir:
                    settings = load_settings(data_dir=Path(data_dir), database_url=None)
                    await _simulate(
                        settings, simulate, lambda done, total: progress.update(task, completed=done, total=total)
                    )
                    return await _report_from_store(settings, cutoff)
            return await _report_from_store(load_settings(), cutoff)

        # Progress on stderr, gone once the report is printed; none with --json.
        with Progress(console=Console(stderr=True), transient=True, disable=as_json) as progress:
            built = asyncio.run(main(progress))
        if html_file is not None:
            html_file.write_text(render_html(built), encoding="utf-8")
        if as_json:
            print(json.dumps(built.summary(), indent=2))
        else:
            render_terminal(built, console)
            if html_file is not None:
                console.print(f"HTML report written to {html_file}")
