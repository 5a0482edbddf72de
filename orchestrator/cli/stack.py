"""The real stack as commands: `demo --livekit`, `bench calls --livekit` and `dev` (livekit-server, both workers)."""

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
    """``keep``, or a temporary folder: removed on success or Ctrl-C, kept (and named) on a failure."""
    if keep is not None:
        keep.mkdir(parents=True, exist_ok=True)
        yield keep
        return
    folder = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield folder
    except KeyboardInterrupt:
        # Ctrl-C is how `dev` ends, and an interrupted demo has nothing to look into.
        shutil.rmtree(folder, ignore_errors=True)
        raise
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


# ---------------------------------------------------------------------------------------------- dev

SIP_SERVER = LIVEKIT_SERVER.parent / "livekit-sip"


def _node_ip(value: str) -> str:
    """``--node-ip``: an IPv4 address of this machine other than loopback (libwebrtc leaves loopback out)."""
    import ipaddress
    import socket

    try:
        address = ipaddress.IPv4Address(value)
    except ValueError:
        fail(f"--node-ip: {value!r} is not an IPv4 address")
    if address.is_loopback or address.is_unspecified:
        fail(f"--node-ip: {value} cannot carry WebRTC media (libwebrtc ignores loopback); give an interface's address")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind((value, 0))
        except OSError:
            fail(f"--node-ip: {value} is not an address of this machine (`ip -4 addr` lists them)")
    return value


async def _forward(pair: Any, ns: str, port: int, listen_port: int) -> asyncio.Server:
    """Accept on 127.0.0.1:``listen_port`` here and carry each connection to 127.0.0.1:``port`` inside ``ns``.

    The stack's API and signalling listen in the server's namespace; this is how a browser on this machine
    reaches them (HTTP and websockets; WebRTC media stays on the namespace link).
    """
    import socket

    async def pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, OSError):
            pass
        finally:
            writer.close()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            # A socket made on a thread that joined the namespace belongs to it wherever it is used after.
            inner = await asyncio.to_thread(pair.call_in, ns, lambda: socket.create_connection(("127.0.0.1", port), 10))
        except OSError:
            writer.close()
            return
        inner_reader, inner_writer = await asyncio.open_connection(sock=inner)
        await asyncio.gather(pipe(reader, inner_writer), pipe(inner_reader, writer))

    return await asyncio.start_server(serve, "127.0.0.1", listen_port)


def _start_sip(stack: Any, show: bool) -> bool:
    """livekit-sip beside the stack when `.tools/bin/livekit-sip` is built (`orchestrator.devstack.sip`)."""
    if not SIP_SERVER.exists():
        if show:
            err.print("[dim]livekit-sip is not built (make tools): no SIP[/]")
        return False
    from orchestrator.devstack.sip import start_sip

    start_sip(stack)
    return True


def dev(
    node_ip: Annotated[
        str | None,
        typer.Option(
            "--node-ip",
            help="This machine's address for WebRTC media (browsers, phones); without it the stack runs in two "
            "private network namespaces, as `demo --livekit` does.",
        ),
    ] = None,
    port: Annotated[
        int, typer.Option("--port", min=1, max=65535, help="Without --node-ip: this machine's port for the API.")
    ] = 8000,
    livekit_port: Annotated[
        int,
        typer.Option("--livekit-port", min=1, max=65535, help="Without --node-ip: this machine's port for LiveKit."),
    ] = 7880,
    slots: Annotated[int, typer.Option("--slots", min=1, help="Calls each worker takes at once.")] = 2,
    livekit_server: ServerOpt = DEFAULT_SERVER,
    keep: Annotated[
        Path | None, typer.Option("--keep", file_okay=False, help="Keep the logs and data in this folder.")
    ] = None,
) -> None:
    """Run the whole stack on this machine (livekit-server, the API, both workers; livekit-sip when built) until Ctrl-C.

    The embedded providers (local STT and TTS, deterministic flows), a private Redis and a SQLite store.
    """
    quiet_logs()
    load_settings()
    check_machine(livekit_server, callers=False)
    if node_ip is not None:
        node_ip = _node_ip(node_ip)
    with (
        sigterm_as_interrupt(),
        run_folder(keep, "switchboard-dev-") as run_dir,
        started_stack(livekit_server, run_dir, slots=slots, show=True, node_ip=node_ip) as stack,
    ):
        sip = _start_sip(stack, show=True)
        asyncio.run(_serve(stack, run_dir, node_ip=node_ip, port=port, livekit_port=livekit_port, sip=sip))


async def _serve(
    stack: Any, run_dir: Path, *, node_ip: str | None, port: int, livekit_port: int, sip: bool = False
) -> None:
    """Forward the API and signalling to loopback here (in the namespaces), print the URLs, run until Ctrl-C."""
    from orchestrator.devstack.stack import API_PORT, SIGNAL_PORT, StackFailed

    pair = stack.pair
    async with contextlib.AsyncExitStack() as cleanup:
        if node_ip is None:
            try:
                for inner, outer in ((API_PORT, port), (SIGNAL_PORT, livekit_port)):
                    forwarder = await _forward(pair, pair.server_ns, inner, outer)
                    cleanup.push_async_callback(forwarder.wait_closed)
                    cleanup.callback(forwarder.close)
            except OSError as exc:
                fail(f"cannot listen on 127.0.0.1 ({exc.strerror or exc}): give another --port or --livekit-port")
            media = f"media on {pair.server_ip}, inside the namespaces: --node-ip ADDR for browsers and phones"
        else:
            port, livekit_port = API_PORT, SIGNAL_PORT
            media = f"media on {node_ip}"
        base = f"http://127.0.0.1:{port}"
        from orchestrator.devstack.sip import SIP_PORT

        phone = f"  SIP        sip:<number>@{node_ip or pair.server_ip}:{SIP_PORT} (switchboard sip setup first)\n"
        print(
            f"ready\n  console    {base}/console\n  talk page  {base}/console/talk\n"
            f"  LiveKit    ws://127.0.0.1:{livekit_port} ({media})\n{phone if sip else ''}"
            f"  logs       {run_dir / 'stack'}\nCtrl-C stops everything.",
            flush=True,
        )
        while True:
            await asyncio.sleep(1)
            try:
                stack.check_alive()
            except StackFailed as exc:
                fail(f"{str(exc).splitlines()[0]}; the rest is stopped (logs: {run_dir / 'stack'})", 1)


# ---------------------------------------------------------------------------------------------- bench calls


def bench_calls(
    livekit: Annotated[bool, typer.Option("--livekit", help="Through the real stack (the only way, for now).")] = False,
    levels: Annotated[str, typer.Option("--levels", help="Calls at once, comma-separated.")] = "1,5,10,25",
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON report.")] = False,
    livekit_server: ServerOpt = DEFAULT_SERVER,
    keep: Annotated[
        Path | None, typer.Option("--keep", file_okay=False, help="Keep the logs and the heard audio in this folder.")
    ] = None,
) -> None:
    """First audio at WebRTC callers through the real stack, ours against an LLM-router baseline, per concurrency.

    The vendor plugins as production configures them (Deepgram, OpenAI, Cartesia), pointed at stand-ins that
    answer at the standard profile (STT final 150 ms, LLM first token 300 ms, TTS first byte 80 ms).
    Capacity is the largest level whose P95 (ours) is at most 500 ms.
    """
    quiet_logs()
    load_settings()
    if not livekit:
        fail("bench calls needs --livekit (the room-less benchmark is `switchboard bench voice`)")
    try:
        counts = [int(x) for x in levels.split(",") if x.strip()]
    except ValueError:
        fail(f"--levels: {levels!r} is not a comma-separated list of whole numbers")
    if not counts or min(counts) < 1:
        fail(f"--levels: {levels!r} needs at least one level, each 1 or more")
    check_machine(livekit_server)
    from orchestrator.bench.calls import run_call_bench
    from orchestrator.devstack.netns import NamespacesUnavailable
    from orchestrator.devstack.stack import StackFailed

    def progress(line: str) -> None:
        if not as_json:
            err.print(f"[dim]{line}…[/dim]")

    with sigterm_as_interrupt(), run_folder(keep, "switchboard-bench-calls-") as run_dir:
        try:
            report = run_call_bench(counts, server=livekit_server, run_dir=run_dir, on_progress=progress)
        except NamespacesUnavailable as exc:
            fail(f"media needs two network namespaces (libwebrtc ignores loopback), which cannot be made here: {exc}")
        except StackFailed as exc:
            fail(f"the stack failed: {str(exc).splitlines()[0]} (logs: {run_dir / 'stack'})", 1)
    print(json.dumps(report, indent=None if as_json else 2))


def register(app: typer.Typer) -> None:
    """Add `dev` and `bench calls` to the `switchboard` app (`demo --livekit` is an option of `demo`)."""
    from orchestrator.cli.voice import bench_app

    app.command("dev")(dev)
    bench_app.command("calls")(bench_calls)
