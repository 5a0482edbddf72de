"""Cost per call: a YAML price table, usage lines priced per provider, and aggregation for the report."""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import yaml

Component = Literal["stt", "llm", "tts", "telephony", "livekit", "compute"]
COMPONENTS: tuple[Component, ...] = ("stt", "llm", "tts", "telephony", "livekit", "compute")
# The compute line's provider: our own workers, priced from `infrastructure` per minute of call.
COMPUTE_PROVIDER = "switchboard"

# Used only to estimate caller speech on transports without audio (text, simulations): ~150 words/min.
WORDS_PER_SECOND = 2.5


class PriceError(ValueError):
    """The price table is malformed (a missing entry is not an error: it prices as unknown)."""


@dataclass(frozen=True)
class Infrastructure:
    """What a minute of call costs on our own workers: an instance's price over the calls it carries at once.

    Attributes:
        instance_usd_per_hour: On-demand price of one node.
        instance_vcpu: Its vCPUs.
        call_cpu: Cores one call in progress takes, as measured (deploy/README.md, `capacity.Measured`).
    """

    instance_usd_per_hour: float
    instance_vcpu: float
    call_cpu: float

    @property
    def calls_per_instance(self) -> float:
        return self.instance_vcpu / self.call_cpu

    @property
    def per_minute(self) -> float:
        return self.instance_usd_per_hour / 60.0 / self.calls_per_instance


@dataclass(frozen=True)
class PriceTable:
    """Prices in one currency: `stt`/`telephony`/`livekit` per minute, `llm` per million tokens, `tts` per char.

    `infrastructure` prices the embedded (local) providers' compute per minute of call; `reference` names the
    cloud stack a call is also costed on (`reference_cost`); `managed_per_minute` is the low and high price of
    managed voice-agent platforms. `as_of` dates the list prices.
    """

    currency: str
    stt: Mapping[str, float]
    tts: Mapping[str, float]
    telephony: Mapping[str, float]
    livekit: Mapping[str, float]
    llm: Mapping[tuple[str, str], tuple[float, float]]
    infrastructure: Infrastructure | None = None
    reference: Mapping[str, str] = field(default_factory=dict)
    managed_per_minute: tuple[float, float] = (0.23, 0.33)
    as_of: str = ""

    @classmethod
    def load(cls, path: Path) -> PriceTable:
        """Read a price table file (see `orchestrator/telemetry/prices.yaml`)."""
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        except (OSError, yaml.YAMLError) as exc:
            raise PriceError(f"{path}: {exc}") from exc
        return cls.from_dict(raw, source=str(path))

    @classmethod
    def from_dict(cls, raw: Mapping[str, Any], *, source: str = "price table") -> PriceTable:
        """Build a table from its YAML shape; every price must be a finite number >= 0."""

        def number(value: Any, where: str) -> float:
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value) or value < 0:
                raise PriceError(f"{source}: {where} must be a number >= 0, not {value!r}")
            return float(value)

        def per(section: str, key: str) -> dict[str, float]:
            entries = raw.get(section) or {}
            if not isinstance(entries, Mapping):
                raise PriceError(f"{source}: {section} must be a mapping")
            return {str(p): number((v or {}).get(key), f"{section}.{p}.{key}") for p, v in entries.items()}

        llm: dict[tuple[str, str], tuple[float, float]] = {}
        for provider, models in (raw.get("llm") or {}).items():
            for model, price in (models or {}).items():
                where = f"llm.{provider}.{model}"
                llm[(str(provider), str(model))] = (
                    number((price or {}).get("input_per_mtok"), where + ".input_per_mtok"),
                    number((price or {}).get("output_per_mtok"), where + ".output_per_mtok"),
                )
        infra = raw.get("infrastructure")
        infrastructure = None
        if infra is not None:
            if not isinstance(infra, Mapping):
                raise PriceError(f"{source}: infrastructure must be a mapping")
            infrastructure = Infrastructure(
                **{k: number(infra.get(k), f"infrastructure.{k}") for k in ("instance_usd_per_hour", "instance_vcpu")},
                call_cpu=number(infra.get("call_cpu"), "infrastructure.call_cpu"),
            )
            if infrastructure.call_cpu <= 0 or infrastructure.instance_vcpu <= 0:
                raise PriceError(f"{source}: infrastructure.call_cpu and instance_vcpu must be more than 0")
        managed = raw.get("managed") or {}
        if not isinstance(managed, Mapping):
            raise PriceError(f"{source}: managed must be a mapping")
        reference = raw.get("reference") or {}
        if not isinstance(reference, Mapping):
            raise PriceError(f"{source}: reference must be a mapping")
        return cls(
            currency=str(raw.get("currency", "USD")),
            stt=per("stt", "per_minute"),
            tts=per("tts", "per_character"),
            telephony=per("telephony", "per_minute"),
            livekit=per("livekit", "per_minute"),
            llm=llm,
            infrastructure=infrastructure,
            reference={str(k): str(v) for k, v in reference.items()},
            managed_per_minute=(
                number(managed.get("low_per_minute", 0.23), "managed.low_per_minute"),
                number(managed.get("high_per_minute", 0.33), "managed.high_per_minute"),
            ),
            as_of=str(raw.get("as_of", "")),
        )


@dataclass(frozen=True)
class Usage:
    """One metered use of a provider during a call.

    Attributes:
        component: Which kind of provider.
        provider: Its name in the price table (`deepgram`, `openai`, `sip-trunk`…).
        model: LLM model name; empty for the other components.
        seconds: Audio or call seconds (stt, telephony, livekit).
        characters: Characters synthesised (tts).
        input_tokens: Prompt tokens (llm).
        output_tokens: Completion tokens (llm).
        turn: 1-based caller turn it belongs to; 0 for the whole call (telephony, livekit).
        cached: Served from the phrase cache, so no provider was paid.
        estimated: Quantity estimated (e.g. speech seconds from words on a text transport).
    """

    component: Component
    provider: str
    model: str = ""
    seconds: float = 0.0
    characters: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    turn: int = 0
    cached: bool = False
    estimated: bool = False


@dataclass(frozen=True)
class CostLine:
    """A usage line and its price; `usd` is None when the price table has no entry for it."""

    usage: Usage
    usd: float | None

    @property
    def known(self) -> bool:
        return self.usd is not None


def price(table: PriceTable, usage: Usage) -> CostLine:
    """Price one usage line. Cached phrases cost 0; a missing price gives `usd=None` (unknown), never 0."""
    if usage.cached:
        return CostLine(usage, 0.0)
    minutes = usage.seconds / 60.0
    usd: float | None = None
    if usage.component == "llm":
        rates = table.llm.get((usage.provider, usage.model))
        if rates is not None:
            usd = (usage.input_tokens * rates[0] + usage.output_tokens * rates[1]) / 1_000_000
    elif usage.component == "tts":
        rate = table.tts.get(usage.provider)
        usd = None if rate is None else usage.characters * rate
    elif usage.component == "compute":
        usd = None if table.infrastructure is None else minutes * table.infrastructure.per_minute
    else:
        section = {"stt": table.stt, "telephony": table.telephony, "livekit": table.livekit}[usage.component]
        rate = section.get(usage.provider)
        usd = None if rate is None else minutes * rate
    return CostLine(usage, usd)


@dataclass
class CallCost:
    """A call's priced usage: the known total, and what could not be priced."""

    lines: list[CostLine] = field(default_factory=list)

    @property
    def known_usd(self) -> float:
        """Sum of the lines that have a price (a lower bound when `unknown` is not empty)."""
        return sum(line.usd or 0.0 for line in self.lines)

    @property
    def unknown(self) -> list[str]:
        """`component:provider[/model]` of each unpriced line, without repeats."""
        out = []
        for line in self.lines:
            if not line.known:
                u = line.usage
                out.append(f"{u.component}:{u.provider}" + (f"/{u.model}" if u.model else ""))
        return list(dict.fromkeys(out))

    @property
    def total_usd(self) -> float | None:
        """The call's cost, or None when any part of it is unknown."""
        return None if self.unknown else self.known_usd

    def by_component(self) -> dict[str, float]:
        out: dict[str, float] = defaultdict(float)
        for line in self.lines:
            out[line.usage.component] += line.usd or 0.0
        return dict(out)

    def by_turn(self, turns: int) -> list[float]:
        """Known cost per caller turn; call-wide lines (turn 0) are spread evenly over the turns."""
        per = [0.0] * max(turns, 1)
        for line in self.lines:
            usd = line.usd or 0.0
            t = line.usage.turn
            if 1 <= t <= len(per):
                per[t - 1] += usd
            else:
                for i in range(len(per)):
                    per[i] += usd / len(per)
        return per

    def to_json(self) -> dict[str, Any]:
        return {
            "total_usd": None if self.total_usd is None else round(self.total_usd, 6),
            "known_usd": round(self.known_usd, 6),
            "unknown": self.unknown,
            "by_component": {k: round(v, 6) for k, v in self.by_component().items()},
        }


def price_call(table: PriceTable, usages: Iterable[Usage]) -> CallCost:
    """Price every usage line of a call."""
    return CallCost([price(table, u) for u in usages])


@dataclass(frozen=True)
class ProviderProfile:
    """Which priced providers a call went through (names as in the price table; None = not used)."""

    stt: str | None = None
    tts: str | None = None
    telephony: str = "none"
    livekit: str = "none"

    @classmethod
    def text(cls) -> ProviderProfile:
        """The local text transport: no audio, no telephony."""
        return cls()

    @classmethod
    def embedded_voice(cls) -> ProviderProfile:
        """The embedded default with audio: local STT and TTS, no paid minutes."""
        return cls(stt="faster-whisper", tts="piper")

    @classmethod
    def production(cls, *, livekit: str = "livekit-cloud") -> ProviderProfile:
        """The production stack of the design: Deepgram, Cartesia, a SIP trunk and LiveKit."""
        return cls(stt="deepgram", tts="cartesia", telephony="sip-trunk", livekit=livekit)


def call_usage(
    turns: Sequence[tuple[str, str]],
    *,
    profile: ProviderProfile,
    duration_s: float,
    cached_phrases: Iterable[str] = (),
    llm: Iterable[Usage] = (),
    stt_seconds: Sequence[float] | None = None,
) -> list[Usage]:
    """The usage lines of one call.

    Args:
        turns: `(caller, agent)` text per turn.
        profile: The providers the call used.
        duration_s: Wall-clock length of the call (telephony and LiveKit minutes).
        cached_phrases: Replies pre-rendered in the phrase cache; such a reply costs no TTS.
        llm: LLM usage lines collected during the call (see `tracing.GraphSpanHandler.usage`).
        stt_seconds: Measured caller audio seconds per turn; estimated from words when absent.
    """
    cached = {p.strip() for p in cached_phrases}
    out: list[Usage] = []
    for i, (caller, agent) in enumerate(turns, start=1):
        if profile.stt:
            measured = stt_seconds is not None and i - 1 < len(stt_seconds)
            seconds = (
                stt_seconds[i - 1] if stt_seconds is not None and measured else len(caller.split()) / WORDS_PER_SECOND
            )
            out.append(Usage("stt", profile.stt, seconds=seconds, turn=i, estimated=not measured))
        if profile.tts and agent:
            out.append(Usage("tts", profile.tts, characters=len(agent), turn=i, cached=agent.strip() in cached))
    out.extend(llm)
    if duration_s > 0:
        out.append(Usage("telephony", profile.telephony, seconds=duration_s))
        out.append(Usage("livekit", profile.livekit, seconds=duration_s))
        # Our workers (the graph, the classifier, local STT and TTS) are paid by the minute of call.
        out.append(Usage("compute", COMPUTE_PROVIDER, seconds=duration_s))
    return out


@dataclass
class CostRollup:
    """Cost aggregated over calls: per intent/specialist, hour of day and handoff segment."""

    calls: int = 0
    known_usd: float = 0.0
    unknown_calls: int = 0
    by_intent: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_agent: dict[str, float] = field(default_factory=lambda: defaultdict(float))
    by_hour: dict[int, float] = field(default_factory=lambda: defaultdict(float))
    calls_by_hour: dict[int, int] = field(default_factory=lambda: defaultdict(int))
    calls_by_intent: dict[str, int] = field(default_factory=lambda: defaultdict(int))
    by_segment: dict[str, float] = field(default_factory=lambda: defaultdict(float))

    def add(
        self,
        *,
        hour: int,
        turn_costs: Sequence[float],
        turn_intents: Sequence[str | None],
        turn_agents: Sequence[str],
        turn_segments: Sequence[str],
        unknown: bool,
    ) -> None:
        """Add one call, with its known cost per turn and who handled each turn."""
        self.calls += 1
        total = sum(turn_costs)
        self.known_usd += total
        self.unknown_calls += int(unknown)
        self.by_hour[hour] += total
        self.calls_by_hour[hour] += 1
        call_intents = set()
        for usd, intent, agent, segment in zip(turn_costs, turn_intents, turn_agents, turn_segments, strict=False):
            key = intent or "unknown"
            call_intents.add(key)
            self.by_intent[key] += usd
            self.by_agent[agent] += usd
            self.by_segment[segment] += usd
        for key in call_intents:
            self.calls_by_intent[key] += 1

    @property
    def mean_per_call(self) -> float:
        return self.known_usd / self.calls if self.calls else 0.0

    def per_call_by_intent(self) -> dict[str, float]:
        """Mean cost of the calls that touched each intent (the intent's share of their cost)."""
        return {k: v / max(self.calls_by_intent[k], 1) for k, v in sorted(self.by_intent.items())}

    def per_call_by_hour(self) -> dict[str, float]:
        """Mean cost per call by hour of day (`"09"` … `"17"`, tenant time)."""
        return {f"{h:02d}": v / max(self.calls_by_hour[h], 1) for h, v in sorted(self.by_hour.items())}


# --- The same call on other stacks ------------------------------------------------------------------

# How a call is costed besides as it ran (`scenario_costs`).
AS_RUN = "as_run"
REFERENCE = "reference_cloud"
MANAGED_LOW = "managed_low"
MANAGED_HIGH = "managed_high"
SCENARIOS: tuple[str, ...] = (AS_RUN, REFERENCE, MANAGED_LOW, MANAGED_HIGH)

# Token estimates for a turn whose LLM ran nowhere (the embedded deterministic flows): a specialist's system
# prompt and tool definitions, the conversation so far, and about four characters a token.
PROMPT_TOKENS = 900
CHARS_PER_TOKEN = 4.0


@dataclass(frozen=True)
class CallTurn:
    """What the other stacks are costed from: one turn's words and how it was routed."""

    caller: str
    agent: str
    intent: str | None = None
    confidence: float | None = None


def reference_cost(
    table: PriceTable,
    turns: Sequence[CallTurn],
    *,
    model_for: Callable[[str, float], str | None],
    call_wide_usd: float,
) -> float | None:
    """The call on the reference cloud stack (`table.reference`), or None when a price is missing.

    Caller speech is priced by its words (2.5 a second), every reply's characters by the TTS (no phrase
    cache), and each turn's LLM by the model `model_for(intent, confidence)` picks (the routing policy) with
    estimated tokens; `call_wide_usd` (telephony, LiveKit, our compute as the call ran) is added as is.
    """
    ref = table.reference
    stt_rate = table.stt.get(ref.get("stt", ""))
    tts_rate = table.tts.get(ref.get("tts", ""))
    if stt_rate is None or tts_rate is None:
        return None
    usd = call_wide_usd
    history = 0
    for turn in turns:
        usd += len(turn.caller.split()) / WORDS_PER_SECOND / 60.0 * stt_rate
        usd += len(turn.agent) * tts_rate
        history += len(turn.caller) + len(turn.agent)
        model = model_for(turn.intent or "out_of_scope", 1.0 if turn.confidence is None else turn.confidence)
        rates = table.llm.get((ref.get("llm", ""), model or ""))
        if rates is None:
            return None
        tokens_in = PROMPT_TOKENS + history / CHARS_PER_TOKEN
        usd += (tokens_in * rates[0] + len(turn.agent) / CHARS_PER_TOKEN * rates[1]) / 1_000_000
    return usd


def scenario_costs(
    table: PriceTable,
    *,
    as_run_usd: float | None,
    by_component: Mapping[str, float],
    minutes: float,
    turns: Sequence[CallTurn],
    model_for: Callable[[str, float], str | None],
) -> dict[str, float | None]:
    """One call's cost as it ran, on the reference cloud stack, and on a managed platform (low and high).

    Args:
        table: The prices.
        as_run_usd: The call's recorded cost (None: a part had no price).
        by_component: The recorded cost by component.
        minutes: The call's billable minutes (`call_minutes`).
        turns: Its turns, for the reference stack.
        model_for: The routing policy's model for an intent and a confidence.

    Our compute is priced on `minutes` in every scenario that runs on our workers (as run and the reference
    stack), replacing what was recorded: a text or simulated call's wall-clock time is not its length, and a
    record from before the compute line has none.
    """
    if table.infrastructure is None:
        compute = by_component.get("compute", 0.0)
    else:
        compute = minutes * table.infrastructure.per_minute
    if as_run_usd is not None:
        as_run_usd = as_run_usd - by_component.get("compute", 0.0) + compute
    call_wide = sum(by_component.get(c, 0.0) for c in ("telephony", "livekit")) + compute
    low, high = table.managed_per_minute
    return {
        AS_RUN: as_run_usd,
        REFERENCE: reference_cost(table, turns, model_for=model_for, call_wide_usd=call_wide),
        MANAGED_LOW: minutes * low,
        MANAGED_HIGH: minutes * high,
    }


def call_minutes(duration_s: float, turns: Sequence[CallTurn], latencies_ms: Sequence[float] = ()) -> float:
    """A call's billable minutes: its length, and never less than the time its words take to say.

    A text or simulated call runs in a fraction of a second; spoken, both sides' words (2.5 a second) and the
    agent's answer times are its length.
    """
    words = sum(len(t.caller.split()) + len(t.agent.split()) for t in turns)
    spoken_s = words / WORDS_PER_SECOND + sum(latencies_ms) / 1000.0
    return max(duration_s, spoken_s) / 60.0
