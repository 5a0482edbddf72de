"""Operations commands: `serve`, `worker`, `dlq`, `simulate`, `demo-queue` and `purge` (registered on the main app)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.table import Table

from orchestrator.cli.errors import fail, quiet_logs
from orchestrator.config import Settings, load_settings

console = Console()
err = Console(stderr=True)

PrefixOpt = Annotated[str, typer.Option("--prefix", help="Queue key prefix (isolates tenants and test runs).")]


def _settings() -> Settings:
    return load_settings()  # an invalid setting: one line and exit 2, at the CLI's boundary


# ---------------------------------------------------------------------------------------------- serve / worker


def serve(
    host: Annotated[str, typer.Option(help="Interface to bind.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 8000,
    prefix: PrefixOpt = "sb",
    room_prefix: Annotated[str, typer.Option(help="LiveKit rooms named like this are calls.")] = "call-",
) -> None:
    """Run the API (webhooks, /v1/calls, queue views, probes, console); embedded Redis when REDIS_URL is unset.

    With a weak secret (SWITCHBOARD_CONSOLE_SECRET, SWITCHBOARD_INTAKE_SECRET or LIVEKIT_API_SECRET left at
    the development default, or under 32 characters) it serves only on a loopback address, with a warning;
    on any other address it refuses to start.
    """
    import uvicorn

    from orchestrator.api import create_app
    from orchestrator.api.secret_policy import InsecureSecrets, check_served_secrets

    quiet_logs()
    settings = _settings()
    try:
        # The app's lifespan logs the warning itself, for every way of starting it; here only the refusal.
        check_served_secrets(settings, host=host)
    except InsecureSecrets as exc:
        err.print(f"error: {exc}", style="red", markup=False, highlight=False, soft_wrap=True)
        raise typer.Exit(2) from None
    app = create_app(settings, queue_prefix=prefix, room_prefix=room_prefix)

    class Server(uvicorn.Server):
        async def startup(self, sockets: Any = None) -> None:
            await super().startup(sockets)
            if self.started:  # one line once the socket is bound and the app's start-up has run
                base = f"http://{host}:{port}"
                print(
                    f"switchboard API listening on {base} (console {base}/console, queue prefix {prefix})", flush=True
                )

    Server(uvicorn.Config(app, host=host, port=port, log_level="warning")).run()


def worker(
    slots: Annotated[int, typer.Option(min=1, help="Calls this process runs at once.")] = 4,
    prefix: PrefixOpt = "sb",
    drain_timeout: Annotated[float, typer.Option(help="Seconds running calls may finish after SIGTERM.")] = 30.0,
    hold_interval: Annotated[float, typer.Option(help="Seconds between hold messages (0 = none).")] = 5.0,
    burst: Annotated[bool, typer.Option(help="Exit once the queue is empty.")] = False,
    metrics_port: Annotated[
        int | None, typer.Option(help="Serve Prometheus /metrics on this port (default: none).")
    ] = None,
    metrics_host: Annotated[str, typer.Option(help="Address the /metrics server binds.")] = "0.0.0.0",
    metrics_port_range: Annotated[
        int,
        typer.Option(
            min=1, help="Try this many ports from --metrics-port: replicas sharing a host network take the first free."
        ),
    ] = 1,
) -> None:
    """Run a worker: pull calls into free slots, run their sessions, drain on SIGTERM."""
    from orchestrator.worker.main import RedisNotConfigured, run_worker

    quiet_logs()
    try:
        asyncio.run(
            run_worker(
                _settings(),
                slots=slots,
                prefix=prefix,
                drain_timeout_s=drain_timeout,
                hold_interval_s=hold_interval or None,
                burst=burst,
                metrics_port=metrics_port,
                metrics_host=metrics_host,
                metrics_ports=metrics_port_range,
                on_ready=lambda name, n: print(
                    f"switchboard worker {name} ready: {n} slots, queue prefix {prefix}", flush=True
                ),
            )
        )
    except RedisNotConfigured as exc:
        fail(str(exc))


# ---------------------------------------------------------------------------------------------- dlq

dlq_app = typer.Typer(help="Inspect and replay dead-lettered calls.", no_args_is_help=True)


# A dead-letter id is a Redis stream entry id: milliseconds and a sequence number.
_DEAD_ID = re.compile(r"\d{1,20}-\d{1,20}")


async def _with_queue(prefix: str, action: str, dead_id: str | None) -> Any:
    from orchestrator.queue import CallQueue
    from orchestrator.redis_client import open_redis
    from orchestrator.worker.main import resolve_redis_url

    settings = _settings()
    if dead_id is not None and not _DEAD_ID.fullmatch(dead_id):
        fail(f"{dead_id!r} is not a dead-letter id (they look like 1764950400000-0; `switchboard dlq list` shows them)")
    # An operator's command: a Redis that does not answer is reported in seconds, not after the pool's retries.
    client = open_redis(resolve_redis_url(settings), socket_connect_timeout=2, socket_timeout=5)
    queue = CallQueue.from_settings(settings, client, prefix=prefix, owns_client=True)
    try:
        if action == "list":
            return [d.model_dump(mode="json") for d in await queue.dead_letters(1000)]
        assert dead_id is not None
        if action == "show":
            found = await queue.dead_letter(dead_id)
            return found.model_dump(mode="json") if found else None
        return (await queue.replay(dead_id)).model_dump(mode="json")
    finally:
        await queue.aclose()


def _dlq(prefix: str, action: str, dead_id: str | None = None) -> Any:
    from orchestrator.queue import DeadLetterNotFound
    from orchestrator.worker.main import RedisNotConfigured

    try:
        return asyncio.run(_with_queue(prefix, action, dead_id))
    except RedisNotConfigured as exc:
        fail(str(exc), 1)
    except DeadLetterNotFound:
        fail(f"no dead letter {dead_id} (it may have been replayed already)", 1)


@dlq_app.command("list")
def dlq_list(
    prefix: PrefixOpt = "sb", as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False
) -> None:
    """List dead letters, newest first."""
    items = _dlq(prefix, "list")
    if as_json:
        print(json.dumps(items, indent=2))
        return
    table = Table(title=f"{len(items)} dead letters")
    for col in ("id", "call", "attempts", "failed at", "error"):
        table.add_column(col)
    for d in items:
        table.add_row(d["id"], d["job"]["call_id"], str(d["attempts"]), d["failed_at"], d["error"][:60])
    console.print(table)


@dlq_app.command("show")
def dlq_show(dead_id: Annotated[str, typer.Argument(help="Dead-letter id.")], prefix: PrefixOpt = "sb") -> None:
    """Show one dead letter as JSON."""
    item = _dlq(prefix, "show", dead_id)
    if item is None:
        err.print(f"[red]no dead letter {dead_id}[/red]")
        raise typer.Exit(1)
    print(json.dumps(item, indent=2))


@dlq_app.command("replay")
def dlq_replay(dead_id: Annotated[str, typer.Argument(help="Dead-letter id.")], prefix: PrefixOpt = "sb") -> None:
    """Put a dead letter back into the queue (attempts reset)."""
    job = _dlq(prefix, "replay", dead_id)
    console.print(f"replayed call [bold]{job['call_id']}[/bold]")


# ---------------------------------------------------------------------------------------------- simulate


def _free_port() -> int:
    from orchestrator.queue.embedded import free_port

    return free_port()


async def _reset_demo_tenant(settings: Settings) -> None:
    from datetime import datetime
    from zoneinfo import ZoneInfo

    from orchestrator.domain import create_schema, open_engine
    from orchestrator.domain.seed import reset_demo

    engine = open_engine(settings.sqlalchemy_url)
    try:
        await create_schema(engine)
        today = datetime.now(ZoneInfo(settings.tenant_timezone)).date()
        await reset_demo(engine, today=today, timezone=settings.tenant_timezone)
    finally:
        await engine.dispose()


@contextlib.contextmanager
def local_system(
    settings: Settings, *, workers: int, slots: int, prefix: str, hold_interval_s: float
) -> Iterator[tuple[str, str]]:
    """Start Redis (embedded unless REDIS_URL), the API and worker processes; stop all of them on exit.

    Yields:
        The API's base URL and the Redis URL its queue is on.
    """
    from orchestrator.queue.embedded import EmbeddedRedis

    if not settings.database_url:
        # The embedded demo tenant starts as the domain README describes it, not as the last run left it.
        Path(settings.data_dir).mkdir(parents=True, exist_ok=True)
        asyncio.run(_reset_demo_tenant(settings))
    run_dir = Path(settings.data_dir) / "simulate"
    logs = run_dir / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    server: EmbeddedRedis | None = None
    procs: list[subprocess.Popen[bytes]] = []
    try:
        url = settings.redis_url
        if not url:
            # Its own folder: never the one a running `switchboard serve` uses (start() stops stale servers).
            server = EmbeddedRedis(run_dir / "redis")
            url = server.start()
        env = {**os.environ, "REDIS_URL": url, "SWITCHBOARD_DATA_DIR": str(Path(settings.data_dir).resolve())}
        port = _free_port()
        base = [sys.executable, "-m", "orchestrator.cli"]
        commands = [[*base, "serve", "--port", str(port), "--prefix", prefix]]
        commands += [
            [*base, "worker", "--slots", str(slots), "--prefix", prefix, "--hold-interval", str(hold_interval_s)]
            for _ in range(workers)
        ]
        for i, cmd in enumerate(commands):
            log = (logs / f"{'api' if i == 0 else f'worker-{i}'}.log").open("wb")
            # Own session: a Ctrl-C reaches only us, and we stop the children in order (drain first).
            procs.append(subprocess.Popen(cmd, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True))
            log.close()
        yield f"http://127.0.0.1:{port}", url
    finally:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + 15
        for p in procs:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        if server is not None:
            server.shutdown()


def simulate(
    calls: Annotated[int, typer.Option(min=1, help="Calls to place.")] = 50,
    rate: Annotated[float, typer.Option(help="New calls per second.")] = 10.0,
    concurrency: Annotated[int, typer.Option(min=1, help="Most calls in flight from the simulator.")] = 50,
    api: Annotated[str | None, typer.Option(help="Target a running API instead of starting the system.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print only the JSON summary.")] = False,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes to start (without --api).")] = 2,
    slots: Annotated[int, typer.Option(min=1, help="Slots per started worker.")] = 4,
    turn_gap_ms: Annotated[int, typer.Option(min=0, help="Caller pause before each turn.")] = 150,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for outcomes after the last call.")] = 120.0,
    prefix: Annotated[str | None, typer.Option(help="Queue prefix (default: a fresh one per run).")] = None,
    token: Annotated[
        str | None,
        typer.Option(help="With --api: an admin's API token (`switchboard users token NAME`) for its queue views."),
    ] = None,
) -> None:
    """Place simulated calls through the signed LiveKit webhook and report how they went.

    Callers speak scripted turns drawn round-robin from the demo scenarios. Success means the call
    completed with its scenario's expected outcome. Without --api it starts embedded Redis (unless
    REDIS_URL is set), the API and worker processes, reads the queue straight from that Redis, and
    stops them all at the end; with --api it reads the API's queue views with --token.
    """
    from orchestrator.bench.load import SimulatedRun, simulate_calls, summarize

    quiet_logs()
    if rate <= 0:
        fail(f"--rate: must be more than 0 calls per second, not {rate:g}")
    if timeout <= 0:
        fail(f"--timeout: must be more than 0 seconds, not {timeout:g}")
    settings = _settings()
    show = not as_json
    started = time.monotonic()

    def go(url: str, expect_slots: int, redis_url: str | None = None, run_prefix: str = "sb") -> SimulatedRun:
        return asyncio.run(
            simulate_calls(
                url, settings, calls=calls, rate=rate, concurrency=concurrency, turn_gap_ms=turn_gap_ms,
                timeout_s=timeout, expect_slots=expect_slots, show=show, console=err, token=token, redis_url=redis_url,
                prefix=run_prefix,
            )
        )  # fmt: skip

    def interrupted(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # SIGTERM (a CI timeout, `kill`) must stop the processes we started just like Ctrl-C does.
    previous = signal.signal(signal.SIGTERM, interrupted)
    try:
        if api:
            run = go(api.rstrip("/"), 0)
        else:
            run_prefix = prefix or f"sim-{uuid.uuid4().hex[:8]}"
            system = local_system(settings, workers=workers, slots=slots, prefix=run_prefix, hold_interval_s=1.0)
            with system as (url, redis_url):
                if show:
                    err.print(f"[dim]started API at {url} and {workers} workers x {slots} slots[/dim]")
                run = go(url, workers * slots, redis_url, run_prefix)
    except KeyboardInterrupt:
        err.print("[yellow]interrupted; every process started was stopped[/yellow]")
        raise typer.Exit(130) from None
    except RuntimeError as exc:
        err.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    finally:
        signal.signal(signal.SIGTERM, previous)
    summary = summarize(run)
    if as_json:
        print(json.dumps(summary))
        return
    table = Table(title=f"{calls} simulated calls in {time.monotonic() - started:.1f} s")
    table.add_column("metric")
    table.add_column("value")
    for k, v in summary.items():
        table.add_row(k, json.dumps(v))
    table.add_row("hold messages heard", str(run.hold_messages))
    console.print(table)


def purge(
    days: Annotated[
        int | None,
        typer.Option(min=0, help="Retention in days (default SWITCHBOARD_RECORD_RETENTION_DAYS; 0 keeps all)."),
    ] = None,
) -> None:
    """Delete calls older than the retention period from the call records and the graph checkpoints."""
    quiet_logs()
    settings = _settings()
    purged = asyncio.run(_purge(settings, settings.record_retention_days if days is None else days))
    print(json.dumps({"records": purged.records, "checkpoint_threads": purged.threads}))


async def _purge(settings: Settings, days: int) -> Any:
    from orchestrator.domain import open_engine
    from orchestrator.store.checkpoints import open_checkpointer
    from orchestrator.store.records import CallStore
    from orchestrator.store.retention import purge_expired

    async with contextlib.AsyncExitStack() as stack:
        engine = open_engine(settings.sqlalchemy_url)
        stack.push_async_callback(engine.dispose)
        store = CallStore(engine, timezone=settings.tenant_timezone, record_key=settings.record_key.get_secret_value())
        await store.create_schema()
        return await purge_expired(days, records=store, checkpointer=await open_checkpointer(settings, stack))


def demo_queue() -> None:
    """The queued demo: about 50 simulated calls through the webhook, queue and two workers, then a summary."""
    simulate(calls=50, rate=20.0, concurrency=50, api=None, as_json=False)


def register(app: typer.Typer) -> None:
    """Add the operations commands to the `switchboard` app."""
    app.command()(serve)
    app.command()(worker)
    app.command()(simulate)
    app.command("demo-queue")(demo_queue)
    app.command()(purge)
    app.add_typer(dlq_app, name="dlq")
