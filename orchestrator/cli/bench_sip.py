"""`switchboard bench sip`: SIPp places phone calls at once through the real livekit-sip into the real stack."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from orchestrator.cli.errors import fail, quiet_logs
from orchestrator.cli.stack import DEFAULT_SERVER, ServerOpt, err, run_folder, sigterm_as_interrupt
from orchestrator.config import load_settings


def bench_sip(
    calls: Annotated[int, typer.Option("--calls", min=1, help="Calls SIPp places (all may be on the line at once).")],
    rate: Annotated[float, typer.Option("--rate", min=0.1, help="New calls a second.")] = 5.0,
    hold: Annotated[float, typer.Option("--hold", min=1.0, help="Seconds each caller stays on the line.")] = 20.0,
    slots: Annotated[
        int | None, typer.Option("--slots", min=1, help="Agent slots (calls answered at once); one per call if unset.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
    livekit_server: ServerOpt = DEFAULT_SERVER,
    keep: Annotated[
        Path | None, typer.Option("--keep", file_okay=False, help="Keep the logs and SIPp's traces in this folder.")
    ] = None,
) -> None:
    """SIPp calls the trunk `sip setup` makes, through livekit-sip, each caller speaking over G.711 μ-law.

    Reports calls, answered (a 200 OK), failed, admitted and completed (our queue), lost (answered but never
    completed nor abandoned), SIPp's successful, failed and retransmissions, and the answer time (INVITE to
    200 OK, P50/P95/P99). Exit 1 if any call is lost or failed. Needs root (network namespaces), sipp
    (sip-tester) and the built livekit-server and livekit-sip.
    """
    from orchestrator.bench.sipp import preflight, run_sip_bench
    from orchestrator.devstack.netns import NamespacesUnavailable
    from orchestrator.devstack.stack import StackFailed

    quiet_logs()
    load_settings()
    if (reason := preflight(livekit_server)) is not None:
        fail(reason)

    def progress(line: str) -> None:
        if not as_json:
            err.print(f"[dim]{line}…[/dim]")

    with sigterm_as_interrupt(), run_folder(keep, "switchboard-bench-sip-") as run_dir:
        try:
            report = run_sip_bench(
                calls, rate=rate, hold_s=hold, run_dir=run_dir, server=livekit_server, slots=slots,
                on_progress=progress,
            )  # fmt: skip
        except NamespacesUnavailable as exc:
            fail(f"media needs two network namespaces (libwebrtc ignores loopback), which cannot be made here: {exc}")
        except StackFailed as exc:
            fail(f"the stack failed: {str(exc).splitlines()[0]} (logs: {run_dir / 'stack'})", 1)
    print(json.dumps(report, indent=None if as_json else 2))
    if report["lost"] or report["failed"]:
        fail(f"{report['failed']} of {calls} calls failed and {report['lost']} were lost", 1)


def register(app: typer.Typer) -> None:
    """Add `bench sip` to the `switchboard` app."""
    from orchestrator.cli.voice import bench_app

    bench_app.command("sip")(bench_sip)
