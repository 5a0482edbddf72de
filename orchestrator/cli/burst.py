"""`switchboard bench burst --livekit`: a burst of calls through the real stack, and whether any was dropped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.errors import fail, quiet_logs
from orchestrator.cli.stack import DEFAULT_SERVER, ServerOpt, check_machine, err, run_folder, sigterm_as_interrupt
from orchestrator.config import load_settings


def bench_burst(
    livekit: Annotated[bool, typer.Option("--livekit", help="Through the real stack (the only way, for now).")] = False,
    rooms: Annotated[int, typer.Option("--rooms", min=1, help="Rooms created at once, a caller in each.")] = 100,
    slots: Annotated[int, typer.Option("--slots", min=1, help="Agent slots (calls answered at once).")] = 2,
    hold_interval: Annotated[
        float, typer.Option("--hold-interval", min=1.0, help="Seconds between two hold messages to a waiting caller.")
    ] = 10.0,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
    livekit_server: ServerOpt = DEFAULT_SERVER,
    keep: Annotated[Path | None, typer.Option("--keep", file_okay=False, help="Keep the logs in this folder.")] = None,
) -> None:
    """R callers join R call rooms at once; the queue answers them as slots free. Exit 1 if any call is dropped.

    Reports rooms, admitted, answered, abandoned, dropped (never answered nor counted abandoned), whether calls
    were answered in admission order within each priority, the queue wait and how many waiting callers heard
    the hold message.
    """
    quiet_logs()
    load_settings()
    if not livekit:
        fail("bench burst needs --livekit (calls through livekit-server)")
    check_machine(livekit_server)
    from orchestrator.bench.burst import run_burst
    from orchestrator.devstack.netns import NamespacesUnavailable
    from orchestrator.devstack.stack import StackFailed

    def progress(line: str) -> None:
        if not as_json:
            err.print(f"[dim]{line}…[/dim]")

    with sigterm_as_interrupt(), run_folder(keep, "switchboard-bench-burst-") as run_dir:
        try:
            report = run_burst(
                rooms, slots=slots, server=livekit_server, run_dir=run_dir, hold_interval_s=hold_interval,
                on_progress=progress,
            )  # fmt: skip
        except NamespacesUnavailable as exc:
            fail(f"media needs two network namespaces (libwebrtc ignores loopback), which cannot be made here: {exc}")
        except StackFailed as exc:
            fail(f"the stack failed: {str(exc).splitlines()[0]} (logs: {run_dir / 'stack'})", 1)
    print(json.dumps(report, indent=None if as_json else 2))
    if report["dropped"]:
        fail(f"{report['dropped']} of {rooms} calls were dropped", 1)


def register(app: typer.Typer) -> None:
    """Add `bench burst` to the `switchboard` app."""
    from orchestrator.cli.voice import bench_app

    bench_app.command("burst")(bench_burst)
