"""The metric instruments: calls and outcomes, latency by stage, escalations, queue, workers, cache, cost."""

from __future__ import annotations

import threading
from collections.abc import Iterable, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from orchestrator.results import ESCALATED_OUTCOMES, is_first_contact_resolution, is_success
from orchestrator.telemetry import names as n
from orchestrator.telemetry.anomaly import KINDS as ANOMALY_KINDS
from orchestrator.telemetry.cost import CallCost


class CallMetrics:
    """All of Switchboard's instruments on one meter. One instance per process (see `Telemetry`).

    Queue gauges are observed from the last snapshot given to `update_queue` (the API and workers poll
    `CallQueue.stats()` and hand it over), so a scrape never waits on Redis.
    """

    def __init__(self, meter: Meter) -> None:
        self._lock = threading.Lock()
        self._calls = 0
        self._successes = 0
        self._queue: Mapping[str, Any] | None = None
        self.calls = meter.create_counter(n.M_CALLS, description="Finished calls by outcome")
        self.first_contact = meter.create_counter(
            n.M_FIRST_CONTACT, description="Calls resolved on first contact, without a human"
        )
        self.call_duration = meter.create_histogram(
            n.M_CALL_DURATION, unit=n.unit_of(n.M_CALL_DURATION), description="Call length"
        )
        self.call_turns = meter.create_histogram(n.M_CALL_TURNS, description="Caller turns per call")
        self.turn_latency = meter.create_histogram(
            n.M_TURN_LATENCY, unit=n.unit_of(n.M_TURN_LATENCY), description="Turn latency by stage"
        )
        self.node_duration = meter.create_histogram(
            n.M_NODE_DURATION, unit=n.unit_of(n.M_NODE_DURATION), description="Graph node run time"
        )
        self.tool_calls = meter.create_counter(n.M_TOOL_CALLS, description="Tool calls by tool and result")
        self.handoffs = meter.create_counter(n.M_HANDOFFS, description="Handoffs between agents")
        self.escalations = meter.create_counter(n.M_ESCALATIONS, description="Escalations to a human by reason")
        self.queue_wait = meter.create_histogram(
            n.M_QUEUE_WAIT, unit=n.unit_of(n.M_QUEUE_WAIT), description="Enqueue-to-claim wait"
        )
        self.dead_lettered = meter.create_counter(n.M_DEAD_LETTERED, description="Calls sent to the dead-letter stream")
        self.in_flight = meter.create_up_down_counter(n.M_IN_FLIGHT, description="Calls running on a worker")
        self.worker_slots = meter.create_up_down_counter(n.M_WORKER_SLOTS, description="Call slots of a worker")
        self.phrase_cache = meter.create_counter(n.M_PHRASE_CACHE, description="Phrase-cache lookups by result")
        self.provider_errors = meter.create_counter(n.M_PROVIDER_ERRORS, description="Provider call failures")
        self.provider_fallbacks = meter.create_counter(n.M_PROVIDER_FALLBACKS, description="Fallbacks to another path")
        self.tokens = meter.create_counter(n.M_TOKENS, description="LLM tokens")
        self.characters = meter.create_counter(n.M_CHARACTERS, description="TTS characters synthesised")
        self.seconds = meter.create_counter(n.M_SECONDS, unit="s", description="Metered audio and call seconds")
        self.cost = meter.create_counter(n.M_COST, unit="USD", description="Known cost by component and use case")
        self.cost_by_intent = meter.create_counter(
            n.M_COST_BY_INTENT, unit="USD", description="Known cost by use case (intent)"
        )
        self.call_cost = meter.create_histogram(n.M_CALL_COST, unit="USD", description="Known cost per call")
        self.cost_unknown = meter.create_counter(n.M_COST_UNKNOWN, description="Calls with a part missing a price")
        self.anomalies = meter.create_counter(n.M_ANOMALIES, description="Anomaly flags by kind")
        self.alerts = meter.create_counter(n.M_ALERTS, description="Alerts raised by rule")
        meter.create_observable_gauge(n.M_SUCCESS_RATE, callbacks=[self._observe_success])
        meter.create_observable_gauge(n.M_QUEUE_DEPTH, callbacks=[self._observe_depth])
        meter.create_observable_gauge(
            n.M_QUEUE_OLDEST_WAIT, unit=n.unit_of(n.M_QUEUE_OLDEST_WAIT), callbacks=[self._observe_oldest]
        )
        meter.create_observable_gauge(n.M_DEAD_LETTERS, callbacks=[self._observe_dead_letters])
        self._zero_series()

    def _zero_series(self) -> None:
        # The series whose labels are known in advance start at 0, so an alert on their rate sees the
        # first event as an increase instead of a series appearing (which `rate` and `increase` miss).
        self.dead_lettered.add(0)
        for component in ("llm", "stt", "tts"):
            self.cost_unknown.add(0, {n.L_COMPONENT: component})
        for kind in ANOMALY_KINDS:
            self.anomalies.add(0, {n.L_KIND: kind})
        for result in (n.CACHE_HIT, n.CACHE_MISS, n.CACHE_BYPASS):
            self.phrase_cache.add(0, {n.L_RESULT: result})

    # Calls ---------------------------------------------------------------------------------------

    def observe_call(
        self,
        *,
        outcome: str,
        errors: Iterable[str],
        resolutions: Iterable[str],
        escalation_reason: str | None,
        turn_latencies_ms: Iterable[float],
        graph_ms: Iterable[float],
        handoffs: Iterable[Mapping[str, Any]],
        tool_events: Iterable[Mapping[str, Any]],
        interventions: Iterable[Mapping[str, Any]],
        duration_s: float,
        queue_wait_ms: float | None,
        turns: int,
        cost: CallCost | None,
        cost_intent: Mapping[str, float] | None = None,
        anomaly_kinds: Iterable[str] = (),
        stage_ms: Iterable[tuple[str, float]] = (),
    ) -> None:
        """Record one finished call. Called once per call by `Telemetry.finish_call`.

        `turn_latencies_ms` are the turns' end-to-end latencies (a voice turn whose first audio was never
        measured, e.g. cut off by the caller, carries 0 and is left out); `stage_ms` are the other stages
        a voice turn splits into, as `(stage, ms)` pairs (`names.STAGES`).
        """
        errors = list(errors)
        success = is_success(outcome, errors)
        with self._lock:
            self._calls += 1
            self._successes += int(success)
        self.calls.add(1, {n.L_OUTCOME: outcome if not errors else "error"})
        if is_first_contact_resolution(outcome, resolutions):
            self.first_contact.add(1)
        if outcome in ESCALATED_OUTCOMES:
            self.escalations.add(1, {n.L_REASON: escalation_reason or "unspecified"})
        for ms in turn_latencies_ms:
            if ms > 0:
                self.turn_latency.record(ms, {n.L_STAGE: n.STAGE_E2E})
        for ms in graph_ms:
            self.turn_latency.record(ms, {n.L_STAGE: n.STAGE_GRAPH})
        for stage, ms in stage_ms:
            self.observe_stage(stage, ms)
        for h in handoffs:
            self.handoffs.add(1, {n.L_FROM: str(h.get("from_agent")), n.L_TO: str(h.get("to_agent"))})
        for e in tool_events:
            self.tool_calls.add(1, {n.L_TOOL: str(e.get("name")), n.L_OK: str(bool(e.get("ok"))).lower()})
        for i in interventions:
            if i.get("reason") == "llm_unavailable":
                self.provider_fallbacks.add(1, {n.L_KIND: "llm", n.L_REASON: "llm_unavailable"})
        self.call_duration.record(duration_s)
        self.call_turns.record(turns)
        if queue_wait_ms is not None:
            self.queue_wait.record(queue_wait_ms)
        if cost is not None:
            self._observe_cost(cost, cost_intent or {})
        for kind in anomaly_kinds:
            self.anomalies.add(1, {n.L_KIND: kind})

    def _observe_cost(self, cost: CallCost, by_intent: Mapping[str, float]) -> None:
        self.call_cost.record(cost.known_usd)
        for unknown in cost.unknown:
            self.cost_unknown.add(1, {n.L_COMPONENT: unknown.split(":", 1)[0]})
        for line in cost.lines:
            u = line.usage
            attrs = {n.L_PROVIDER: u.provider, n.L_COMPONENT: u.component}
            if u.component == "llm":
                model = {**attrs, n.L_MODEL: u.model}
                self.tokens.add(u.input_tokens, {**model, n.L_DIRECTION: "input"})
                self.tokens.add(u.output_tokens, {**model, n.L_DIRECTION: "output"})
            elif u.component == "tts":
                # Lookups are counted by the phrase cache itself (`observe_phrase_cache`), not inferred here.
                if not u.cached:
                    self.characters.add(u.characters, {n.L_PROVIDER: u.provider})
            else:
                self.seconds.add(u.seconds, {n.L_PROVIDER: u.provider, n.L_KIND: u.component})
        for component, usd in cost.by_component().items():
            if usd:
                self.cost.add(usd, {n.L_COMPONENT: component})
        for intent, usd in by_intent.items():
            if usd:
                self.cost_by_intent.add(usd, {n.L_INTENT: intent})

    def observe_stage(self, stage: str, ms: float) -> None:
        """Record one turn-latency sample of a stage (`names.STAGES`), e.g. STT finalisation from voice."""
        self.turn_latency.record(ms, {n.L_STAGE: stage})

    def observe_dead_letter(self) -> None:
        """A call went to the dead-letter stream (the worker's failure path)."""
        self.dead_lettered.add(1)
        self.calls.add(1, {n.L_OUTCOME: "dead_lettered"})
        with self._lock:
            self._calls += 1

    def observe_provider_error(self, provider: str, kind: str, error: str) -> None:
        """A provider call failed (`kind` is llm, stt or tts; `error` the exception class name)."""
        self.provider_errors.add(1, {n.L_PROVIDER: provider, n.L_KIND: kind, n.L_ERROR: error})

    def observe_fallback(self, kind: str, reason: str) -> None:
        """A turn fell back to another path (LLM down: deterministic flow; TTS down: another voice)."""
        self.provider_fallbacks.add(1, {n.L_KIND: kind, n.L_REASON: reason})

    def observe_phrase_cache(self, result: str) -> None:
        """One sentence through the phrase cache, as the cache counted it (`names.CACHE_*`)."""
        self.phrase_cache.add(1, {n.L_RESULT: result})

    # Workers and queue ---------------------------------------------------------------------------

    @contextmanager
    def in_flight_call(self, worker: str) -> Iterator[None]:
        """Count a call as running on `worker` for the duration of the block."""
        self.in_flight.add(1, {n.L_WORKER: worker})
        try:
            yield
        finally:
            self.in_flight.add(-1, {n.L_WORKER: worker})

    def set_worker_slots(self, worker: str, delta: int) -> None:
        """A worker registered (`+slots`) or left (`-slots`)."""
        self.worker_slots.add(delta, {n.L_WORKER: worker})

    def update_queue(self, stats: Any) -> None:
        """Hand over a queue snapshot (`QueueStats` or its dict) for the queue gauges."""
        data = stats.model_dump() if hasattr(stats, "model_dump") else dict(stats)
        with self._lock:
            self._queue = data

    def _observe_success(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            if not self._calls:
                return []
            return [Observation(self._successes / self._calls)]

    def _observe_depth(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            q = self._queue
        if not q:
            return []
        return [Observation(int(v), {n.L_PRIORITY: str(p)}) for p, v in (q.get("waiting_by_priority") or {}).items()]

    def _observe_oldest(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            q = self._queue
        return [Observation(float(q.get("oldest_wait_s", 0.0)))] if q else []

    def _observe_dead_letters(self, _options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            q = self._queue
        return [Observation(int(q.get("dead_letters", 0)))] if q else []
