"""`switchboard capacity`: from monthly call minutes to concurrent calls (Erlang C), workers, nodes and cost."""

from __future__ import annotations

import json
import math
from dataclasses import asdict, dataclass
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.table import Table

MINUTES_PER_MONTH = 30 * 24 * 60  # a 30-day month: the planner's unit of traffic
HOURS_PER_MONTH = 730  # what cloud providers bill a month of an always-on instance as
MANAGED_PRICES = (0.23, 0.33)  # USD per minute of managed voice-agent platforms, low and high


def erlang_c(servers: int, load: float) -> float:
    """Probability that a call waits (Erlang C) with ``servers`` sessions offered ``load`` Erlangs.

    Computed through the Erlang B recurrence, which stays finite for thousands of servers where the
    textbook formula's factorials overflow. 1.0 when the load fills every server (the queue never empties).
    """
    if servers <= 0 or load >= servers:
        return 1.0
    if load <= 0:
        return 0.0
    blocking = 1.0
    for n in range(1, servers + 1):
        blocking = load * blocking / (n + load * blocking)
    return servers * blocking / (servers - load * (1 - blocking))


def service_level(servers: int, load: float, handle_s: float, answer_within_s: float) -> float:
    """Share of calls that wait at most ``answer_within_s`` for a session (M/M/c with mean handle time)."""
    if load >= servers:
        return 0.0
    return 1.0 - erlang_c(servers, load) * math.exp(-(servers - load) * answer_within_s / handle_s)


def average_wait_s(servers: int, load: float, handle_s: float) -> float:
    """Mean time a call waits for a session (average speed of answer); infinite past the servers."""
    if load >= servers:
        return math.inf
    return erlang_c(servers, load) * handle_s / (servers - load)


def servers_needed(load: float, handle_s: float, answer_within_s: float, target: float) -> int:
    """The fewest sessions that answer ``target`` of the calls within ``answer_within_s`` at ``load`` Erlangs."""
    servers = max(1, math.floor(load) + 1)
    while service_level(servers, load, handle_s, answer_within_s) < target:
        servers += 1
    return servers


@dataclass(frozen=True)
class Sizing:
    """Per-call and per-pod figures, measured on the local stack (deploy/README.md, "Sizing").

    An agent worker's figures come from its real process pool running simulated callers with the local
    voice (Whisper tiny.en, flite, silero VAD, the intent classifier): CPU cores while a call talks, and
    proportional memory (PSS, a shared page counted once, as the pod's cgroup is charged) of the idle
    pool and of each call on top. The pod requests in deploy/k8s/base are computed from them.
    """

    call_cpu: float = 0.16
    call_memory_mib: int = 256  # measured 220 MiB PSS a call
    agent_slots: int = 4
    agent_main_cpu: float = 0.1
    agent_pool_memory_mib: int = 1024  # measured 994 MiB PSS idle: main, forkserver, two prewarmed processes
    min_agent_workers: int = 2
    queue_slots: int = 8
    queue_worker_cpu: float = 0.25
    queue_worker_memory_mib: int = 768
    api_replicas: int = 2
    api_cpu: float = 0.25
    api_memory_mib: int = 256
    livekit_replicas: int = 2  # one per node (host network); livekit-sip beside each
    livekit_cpu: float = 1.5  # livekit-server 1 + livekit-sip 0.5
    livekit_memory_mib: int = 1280

    def agent_worker_cpu(self, slots: int | None = None) -> float:
        """Cores one agent worker pod requests: its calls plus its main process, rounded up to 50 millicores."""
        cores = (slots or self.agent_slots) * self.call_cpu + self.agent_main_cpu
        return math.ceil(round(cores * 1000, 6) / 50) * 50 / 1000

    def agent_worker_memory_mib(self, slots: int | None = None) -> int:
        """Memory one agent worker pod requests: its idle pool plus each call's own pages."""
        return self.agent_pool_memory_mib + (slots or self.agent_slots) * self.call_memory_mib


@dataclass(frozen=True)
class Instance:
    """The node type the cluster runs on, and what of it pods may request."""

    vcpu: float = 4.0
    memory_gib: float = 16.0
    hourly_usd: float = 0.192  # a general-purpose 4 vCPU / 16 GiB on-demand instance
    allocatable: float = 0.9  # the kubelet, the system daemons and eviction headroom keep the rest


@dataclass(frozen=True)
class Plan:
    """What a monthly traffic needs at its busy hour, and what it costs."""

    minutes_per_month: float
    average_call_minutes: float
    peak_factor: float
    answer_within_s: float
    target_service_level: float
    offered_erlangs: float
    peak_concurrent_calls: int
    service_level: float
    probability_wait: float
    average_wait_s: float
    agent_workers: int
    queue_workers: int
    nodes: int
    node_cpu_requested: float
    node_memory_requested_gib: float
    self_hosted: float
    managed_low: float
    managed_high: float

    def summary(self) -> dict[str, Any]:
        """The `--json` answer: the figures an operator acts on, then the ones they came from."""
        return {
            "peak_concurrent_calls": self.peak_concurrent_calls,
            "agent_workers": self.agent_workers,
            "queue_workers": self.queue_workers,
            "nodes": self.nodes,
            "service_level": round(self.service_level, 4),
            "monthly_cost": {
                "self_hosted": round(self.self_hosted, 2),
                "managed_low": round(self.managed_low, 2),
                "managed_high": round(self.managed_high, 2),
            },
            "detail": {k: _rounded(v) for k, v in asdict(self).items()},
        }


def _rounded(value: Any) -> Any:
    return round(value, 4) if isinstance(value, float) and math.isfinite(value) else value


def plan(
    minutes_per_month: float,
    *,
    average_call_minutes: float = 3.0,
    peak_factor: float = 3.0,
    answer_within_s: float = 20.0,
    target_service_level: float = 0.8,
    sizing: Sizing | None = None,
    instance: Instance | None = None,
) -> Plan:
    """Size a deployment for ``minutes_per_month`` of calls.

    The busy hour carries ``peak_factor`` times the month's average load (a contact centre open about
    ten hours on weekdays concentrates its month into about a third of the hours). Erlang C gives the
    sessions that answer ``target_service_level`` of the calls within ``answer_within_s``; the pods that
    hold those sessions are packed onto nodes by their requests, and the nodes are costed always on
    (an upper bound: KEDA scales the workers down outside the busy hours).
    """
    sizing = sizing or Sizing()
    instance = instance or Instance()
    handle_s = average_call_minutes * 60
    load = minutes_per_month / MINUTES_PER_MONTH * peak_factor
    sessions = servers_needed(load, handle_s, answer_within_s, target_service_level)
    agent_workers = max(sizing.min_agent_workers, math.ceil(sessions / sizing.agent_slots))
    queue_workers = max(1, math.ceil(sessions / sizing.queue_slots))
    cpu = (
        agent_workers * sizing.agent_worker_cpu()
        + queue_workers * sizing.queue_worker_cpu
        + sizing.api_replicas * sizing.api_cpu
        + sizing.livekit_replicas * sizing.livekit_cpu
    )
    memory_gib = (
        agent_workers * sizing.agent_worker_memory_mib()
        + queue_workers * sizing.queue_worker_memory_mib
        + sizing.api_replicas * sizing.api_memory_mib
        + sizing.livekit_replicas * sizing.livekit_memory_mib
    ) / 1024
    # Packing by totals is optimistic for big pods on small nodes, so no node is planned past 90 % of
    # its allocatable share either way; livekit's one-per-node rule sets the floor.
    usable = instance.allocatable * 0.9
    nodes = max(
        sizing.livekit_replicas,
        math.ceil(cpu / (instance.vcpu * usable)),
        math.ceil(memory_gib / (instance.memory_gib * usable)),
    )
    return Plan(
        minutes_per_month=minutes_per_month,
        average_call_minutes=average_call_minutes,
        peak_factor=peak_factor,
        answer_within_s=answer_within_s,
        target_service_level=target_service_level,
        offered_erlangs=load,
        peak_concurrent_calls=sessions,
        service_level=service_level(sessions, load, handle_s, answer_within_s),
        probability_wait=erlang_c(sessions, load),
        average_wait_s=average_wait_s(sessions, load, handle_s),
        agent_workers=agent_workers,
        queue_workers=queue_workers,
        nodes=nodes,
        node_cpu_requested=cpu,
        node_memory_requested_gib=memory_gib,
        self_hosted=nodes * instance.hourly_usd * HOURS_PER_MONTH,
        managed_low=minutes_per_month * MANAGED_PRICES[0],
        managed_high=minutes_per_month * MANAGED_PRICES[1],
    )


def fail(message: str) -> NoReturn:
    """Bad input: one line on stderr, exit 2."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(2)


def _number(option: str, text: str, *, low: float = 0.0, high: float = math.inf, closed_low: bool = False) -> float:
    """A number from an option's text, or one line and exit 2 (typer's own errors take a panel of lines)."""
    try:
        value = float(text)
    except ValueError:
        fail(f"{option} must be a number, not {text!r}")
    if not math.isfinite(value) or value < low or (value == low and not closed_low) or value > high:
        bound = f"at least {low:g}" if closed_low else f"more than {low:g}"
        upper = f" and at most {high:,.10g}" if math.isfinite(high) else ""
        fail(f"{option} must be {bound}{upper}, not {text}")
    return value


def _print_plan(p: Plan, instance: Instance) -> None:
    console = Console()
    table = Table(title=f"{p.minutes_per_month:,.0f} call minutes a month", show_header=False)
    table.add_column("", style="bold")
    table.add_column("")
    rows = [
        ("busy-hour load", f"{p.offered_erlangs:.2f} Erlangs ({p.peak_factor:g}x the month's average)"),
        ("concurrent calls planned", str(p.peak_concurrent_calls)),
        (
            "answered in time",
            f"{p.service_level:.1%} within {p.answer_within_s:g} s (target {p.target_service_level:.0%}); "
            f"{p.probability_wait:.1%} wait, {p.average_wait_s:.1f} s on average",
        ),
        ("agent workers", str(p.agent_workers)),
        ("queue workers", str(p.queue_workers)),
        (
            "nodes",
            f"{p.nodes} x {instance.vcpu:g} vCPU / {instance.memory_gib:g} GiB "
            f"(pods request {p.node_cpu_requested:.1f} cores, {p.node_memory_requested_gib:.1f} GiB)",
        ),
        ("self-hosted a month", f"${p.self_hosted:,.0f} (nodes always on at ${instance.hourly_usd:g}/h)"),
        ("managed at $0.23/min", f"${p.managed_low:,.0f}"),
        ("managed at $0.33/min", f"${p.managed_high:,.0f}"),
    ]
    for row in rows:
        table.add_row(*row)
    console.print(table)


def register(app: typer.Typer) -> None:
    """Add the `capacity` command to the `switchboard` app."""

    @app.command()
    def capacity(
        minutes_per_month: Annotated[str, typer.Option("--minutes-per-month", help="Call minutes a month.")],
        average_call_minutes: Annotated[
            str, typer.Option("--average-call-minutes", help="Mean call length in minutes.")
        ] = "3",
        peak_factor: Annotated[
            str, typer.Option("--peak-factor", help="Busy-hour load over the month's average load.")
        ] = "3",
        answer_within: Annotated[
            str, typer.Option("--answer-within", help="Seconds within which calls must get a session.")
        ] = "20",
        service_level_target: Annotated[
            str, typer.Option("--service-level", help="Share of calls answered within --answer-within.")
        ] = "0.8",
        instance_vcpu: Annotated[str, typer.Option("--instance-vcpu", help="vCPUs of a node.")] = "4",
        instance_memory: Annotated[str, typer.Option("--instance-memory-gib", help="Memory of a node, GiB.")] = "16",
        instance_price: Annotated[
            str, typer.Option("--instance-hourly-usd", help="Price of a node an hour, USD.")
        ] = "0.192",
        as_json: Annotated[bool, typer.Option("--json", help="Print JSON.")] = False,
    ) -> None:
        """Plan the workers, nodes and monthly cost of a call volume (Erlang C at the busy hour).

        Self-hosted cost is the nodes only (Redis, PostgreSQL, telephony and model providers are not in it);
        managed cost is the same minutes at $0.23 and $0.33 a minute.
        """
        instance = Instance(
            vcpu=_number("--instance-vcpu", instance_vcpu),
            memory_gib=_number("--instance-memory-gib", instance_memory),
            hourly_usd=_number("--instance-hourly-usd", instance_price, closed_low=True),
        )
        sizing = Sizing()
        if instance.vcpu * instance.allocatable * 0.9 < sizing.agent_worker_cpu() or (
            instance.memory_gib * 1024 * instance.allocatable * 0.9 < sizing.agent_worker_memory_mib()
        ):
            fail(
                f"a node of {instance.vcpu:g} vCPU / {instance.memory_gib:g} GiB cannot hold one agent worker "
                f"({sizing.agent_worker_cpu():g} cores, {sizing.agent_worker_memory_mib()} MiB)"
            )
        p = plan(
            _number("--minutes-per-month", minutes_per_month, high=1e9),
            average_call_minutes=_number("--average-call-minutes", average_call_minutes),
            peak_factor=_number("--peak-factor", peak_factor, low=1.0, closed_low=True),
            answer_within_s=_number("--answer-within", answer_within),
            target_service_level=_number("--service-level", service_level_target, high=0.9999),
            sizing=sizing,
            instance=instance,
        )
        if as_json:
            print(json.dumps(p.summary(), indent=2))
            return
        _print_plan(p, instance)
