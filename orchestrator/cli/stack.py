"""The real stack as commands: `demo --livekit` (WebRTC callers through livekit-server and both workers)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import shutil
import signal
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.cli.errors import fail, quiet_logs
from orchestrator.config import load_settings
from orchestrator.devstack.stack import LIVEKIT_SERVER

console = Console()
err = Console(stderr=True)

ServerOpt = Annotated[
    Path,
    typer.Option(
        "--livekit-server",
        envvar="SWITCHBOARD_LIVEKIT_SERVER",
        help="The livekit-server binary (`make tools` builds it into .tools/bin).",
    ),
]
DEFAULT_SERVER = LIVEKIT_SERVER


def check_machine(server: Path, *, callers: bool = True) -> None:
    """One line and exit 2 when this machine cannot run the real stack: the server not built, no namespaces…"""
    from orchestrator.devstack.stack import preflight

    if (reason := preflight(server, callers=callers)) is not None:
        fail(reason)


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """SIGTERM (a CI timeout, `kill`) stops what the command started just as Ctrl-C does."""

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def run_folder(keep: Path | None, prefix: str) -> Iterator[Path]:
    """``keep``, or a temporary folder that is removed when the command succeeds and kept (and named) when it fails."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    except BaseException:
        if any(folder.iterdir()):
            err.print(f"[dim]the processes' logs are kept in {folder}[/dim]")
        else:
            folder.rmdir()
        raise
    shutil.rmtree(folder, ignore_errors=True)


@contextlib.contextmanager
def started_stack(server: Path, run_dir: Path, *, slots: int, show: bool, node_ip: str | None = None) -> Iterator[Any]:
    """Namespaces and the real stack (livekit-server, API, agent worker, queue worker), or one line and exit 2 or 1.

    With ``node_ip`` there are no namespaces: the stack runs on this machine's network, media on that address.
    Everything started is stopped when the block ends, also on Ctrl-C and on failure.
    """
    from orchestrator.devstack.netns import NamespacesUnavailable, host_network, netns_pair
    from orchestrator.devstack.stack import StackFailed, real_stack

    started = time.monotonic()

    def progress(line: str) -> None:
        if show:
            err.print(f"[dim]{line}…[/dim]")

    with contextlib.ExitStack() as cleanup:
        try:
            pair = host_network(node_ip) if node_ip else cleanup.enter_context(netns_pair())
        except NamespacesUnavailable as exc:
            fail(f"media needs two network namespaces (libwebrtc ignores loopback), which cannot be made here: {exc}")
        try:
            stack = cleanup.enter_context(
                real_stack(pair, run_dir / "stack", server=server, slots=slots, on_progress=progress)
            )
            progress("starting the queue worker")
            stack.start_queue_worker()
        except StackFailed as exc:
            fail(f"the stack did not start: {str(exc).splitlines()[0]} (logs: {run_dir / 'stack'})", 1)
        if show:
            err.print(f"[dim]the stack is up in {time.monotonic() - started:.0f} s[/dim]")
        yield stack


def demo_livekit(*, calls: int, concurrency: int, as_json: bool, server: Path, keep: Path | None = None) -> None:
    """`switchboard demo --livekit`: the demo's scripted callers through the real stack, then a summary."""
    from orchestrator.devstack.calls import demo_callers, outcomes, summarize

    quiet_logs()
    load_settings()
    check_machine(server)
    show = not as_json
    plans = demo_callers(calls)
    with sigterm_as_interrupt(), run_folder(keep, "switchboard-livekit-demo-") as run_dir:
        with started_stack(server, run_dir, slots=concurrency, show=show) as stack:
            callers = asyncio.run(_placed_with_progress(stack, plans, concurrency, run_dir / "heard", show=show))
            if show:
                err.print("[dim]reading the calls' records and transcribing what the callers heard…[/dim]")
            got = asyncio.run(outcomes(stack, callers))
        summary = summarize(calls, callers, got)
    if as_json:
        print(json.dumps(summary))
    else:
        table = Table(title=f"{calls} WebRTC calls through livekit-server")
        table.add_column("metric")
        table.add_column("value")
        for key, value in summary.items():
            table.add_row(key, json.dumps(value))
        console.print(table)
    if summary["lost"]:
        fail(f"{summary['lost']} of {calls} calls were lost", 1)


async def _placed_with_progress(
    stack: Any, plans: list[Any], concurrency: int, heard_dir: Path, *, show: bool
) -> list[dict[str, Any]]:
    """Place the calls under the same live view as `make demo`: calls placed, calls finished, in flight."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from orchestrator.devstack.calls import place_all

    progress = Progress(
        TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
        TextColumn("{task.fields[info]}"), console=err, disable=not show, transient=False,
    )  # fmt: skip
    in_flight: set[int] = set()
    with progress:
        placed_bar = progress.add_task("placed", total=len(plans), info="")
        done_bar = progress.add_task("finished", total=len(plans), info="")

        def placed(n: int) -> None:
            in_flight.add(n)
            progress.update(placed_bar, advance=1)
            progress.update(done_bar, info=f"in flight {len(in_flight)}")

        def finished(n: int, found: dict[str, Any]) -> None:
            in_flight.discard(n)
            unanswered = "" if not found.get("error") else " (the last was not answered)"
            progress.update(done_bar, advance=1, info=f"in flight {len(in_flight)}{unanswered}")

        return await place_all(
            stack, plans, concurrency=concurrency, heard_dir=heard_dir, on_placed=placed, on_finished=finished
        )

