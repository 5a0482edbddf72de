"""Telemetry: the one object a process holds to trace calls, record them, meter them, price them and alert."""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

from opentelemetry.sdk.metrics.export import MetricReader
from opentelemetry.sdk.trace.export import SpanExporter
from opentelemetry.trace import Span

from agents.prompts import Prompts
from orchestrator.config import Settings
from orchestrator.results import ESCALATED_OUTCOMES, AnomalyFlag, is_success
from orchestrator.telemetry import names as n
from orchestrator.telemetry.alerts import AlertEvaluator, AlertStream, Thresholds, WebhookNotifier
from orchestrator.telemetry.anomaly import AnomalyDetector
from orchestrator.telemetry.cost import CallCost, PriceError, PriceTable, ProviderProfile, call_usage, price_call
from orchestrator.telemetry.metrics import CallMetrics
from orchestrator.telemetry.setup import TelemetryHandles, setup_telemetry
from orchestrator.telemetry.tracing import GraphSpanHandler, annotate_call, call_span

if TYPE_CHECKING:
    from orchestrator.results import CallResult

log = logging.getLogger(__name__)

_EMPTY_PRICES = PriceTable("USD", {}, {}, {}, {}, {})


class Lockout(Protocol):
    """A caller ID or an account locked after failed verifications (the tenant's `Lockout`)."""

    @property
    def subject(self) -> str: ...

    @property
    def failures(self) -> int: ...

    @property
    def call_id(self) -> str: ...


class CallRecords(Protocol):
    """Where finished calls are written (`orchestrator.store.records.CallStore`), handed in by Telemetry's builder."""

    async def record_call(
        self,
        result: CallResult,
        *,
        started_at: datetime,
        duration_s: float,
        queue_wait_ms: float | None = None,
        worker: str = "",
        attempt: int = 1,
        cost: CallCost | None = None,
        anomalies: Sequence[AnomalyFlag] = (),
        trace_id: str | None = None,
        names: Iterable[str] = (),
    ) -> Any: ...

    async def get_call(self, call_id: str) -> Any: ...


class Telemetry:
    """Tracing, metrics, call records, cost, anomaly flags and alerts for one process.

    Build with `Telemetry.build(settings, store=await CallStore.open(engine, settings))`; close with `aclose()`.
    Nothing here raises into a call: every step of `finish_call` is guarded and logged.
    """

    def __init__(
        self,
        settings: Settings,
        handles: TelemetryHandles,
        *,
        store: CallRecords | None,
        prices: PriceTable,
        detector: AnomalyDetector,
        alerts: AlertEvaluator,
        cached_phrases: Sequence[str],
        profile: ProviderProfile,
    ) -> None:
        self.settings = settings
        self.handles = handles
        self.metrics = CallMetrics(handles.meter)
        self.store = store
        self.prices = prices
        self.detector = detector
        self.alerts = alerts
        self.alerts.metrics = self.metrics
        self.cached_phrases = list(cached_phrases)
        self.profile = profile

    @classmethod
    def build(
        cls,
        settings: Settings,
        *,
        store: CallRecords | None = None,
        span_exporters: Sequence[SpanExporter] = (),
        metric_readers: Sequence[MetricReader] = (),
        simple: bool = False,
        set_global: bool = False,
        join_livekit: bool = True,
        multiprocess_dir: str | None = None,
        profile: ProviderProfile | None = None,
        stream: AlertStream | None = None,
        notifier: WebhookNotifier | None = None,
    ) -> Telemetry:
        """Set up the providers, prices, anomaly detector and alerts; write records through ``store``.

        A job's prewarm builds it without a store (no event loop yet) and attaches one with `attach_store`.

        Args:
            settings: Telemetry settings (OTLP endpoint, price table, budget, webhook, prompts folder).
            store: Where finished calls are recorded (`CallStore.open(engine, settings)`); None keeps no records.
            span_exporters: Extra span exporters (tests).
            metric_readers: Extra metric readers (tests).
            simple: Export spans as they end (tests).
            set_global: Install the providers as OpenTelemetry's globals (process entry points).
            join_livekit: Route livekit-agents' spans through these providers.
            multiprocess_dir: Share the metrics with the parent process through this directory (job processes).
            profile: The priced providers calls go through; defaults to the local text transport.
            stream: The in-app alert stream (the API shares one with its console).
            notifier: Webhook notifier; built from `settings.alert_webhook_url` when omitted.
        """
        handles = setup_telemetry(
            settings,
            span_exporters=span_exporters,
            metric_readers=metric_readers,
            simple=simple,
            set_global=set_global,
            join_livekit=join_livekit,
            multiprocess_dir=multiprocess_dir,
        )
        try:
            prices = PriceTable.load(settings.price_table)
        except PriceError as exc:
            # Costs become "unknown" rather than wrong; the call path is unaffected.
            log.warning("price table unusable, every cost will be unknown: %s", exc)
            prices = _EMPTY_PRICES
        detector = AnomalyDetector.from_prompts(settings.prompts_dir)
        if notifier is None and settings.alert_webhook_url:
            notifier = WebhookNotifier(settings.alert_webhook_url)
        alerts = AlertEvaluator(
            Thresholds(cost_per_call_usd_max=settings.cost_budget_per_call_usd), stream=stream, notifier=notifier
        )
        try:
            phrases = Prompts.load(settings.prompts_dir).phrases()
        except Exception:
            phrases = []
        return cls(
            settings,
            handles,
            store=store,
            prices=prices,
            detector=detector,
            alerts=alerts,
            cached_phrases=phrases,
            profile=profile or ProviderProfile.text(),
        )

    def attach_store(self, store: CallRecords) -> None:
        """Record finished calls in ``store`` from now on (a job process opens it once its loop runs)."""
        self.store = store

    @property
    def tracer(self) -> Any:
        return self.handles.tracer

    def graph_handler(self, call_id: str) -> GraphSpanHandler:
        """A per-call LangGraph callback handler: node, tool and LLM spans, node timings, LLM usage."""
        return GraphSpanHandler(self.tracer, metrics=self.metrics, call_id=call_id)

    @contextmanager
    def call_span(
        self,
        *,
        call_id: str,
        traceparent: str | None,
        attempt: int = 1,
        worker: str = "",
        queue_wait_ms: float | None = None,
        source: str = "",
        caller_id: str | None = None,
    ) -> Iterator[Span]:
        """The call's span, continuing the job's trace, current for the block (see `tracing.call_span`)."""
        with (
            self.metrics.in_flight_call(worker or "local"),
            call_span(
                self.tracer,
                call_id=call_id,
                traceparent=traceparent,
                attempt=attempt,
                worker=worker,
                queue_wait_ms=queue_wait_ms,
                source=source,
                caller_id=caller_id,
            ) as span,
        ):
            yield span

    def price(self, result: CallResult, *, duration_s: float, handler: GraphSpanHandler | None = None) -> CallCost:
        """The call's priced usage under this process's provider profile."""
        usage = call_usage(
            [(t.caller, t.agent) for t in result.turns],
            profile=self.profile,
            duration_s=duration_s,
            cached_phrases=self.cached_phrases,
            llm=handler.usage if handler is not None else (),
        )
        return price_call(self.prices, usage)

    def detect(self, result: CallResult, *, duration_s: float) -> list[AnomalyFlag]:
        """Anomaly flags of a finished call."""
        return self.detector.detect(
            result.call_id,
            [(t.caller, t.agent) for t in result.turns],
            agents=[t.agent_name for t in result.turns],
            tool_events=result.tool_events,
            errors=result.errors,
            duration_s=duration_s,
        )

    async def finish_call(
        self,
        result: CallResult,
        *,
        started_at: datetime,
        duration_s: float,
        queue_wait_ms: float | None = None,
        worker: str = "",
        attempt: int = 1,
        handler: GraphSpanHandler | None = None,
        span: Span | None = None,
        names: Iterable[str] = (),
    ) -> Any:
        """Price, check, store, meter and alert on one finished call. Never raises.

        Args:
            result: The session's `CallResult`.
            started_at: When the session started (aware).
            duration_s: How long the session ran.
            queue_wait_ms: Enqueue-to-claim wait (the worker knows it).
            worker: Worker name.
            attempt: The attempt that finished the call.
            handler: The call's `GraphSpanHandler`, for LLM usage.
            span: The call span, to annotate with the outcome.
            names: The verified caller's names, masked in the record.

        Returns:
            The stored record (the store's `record_call` result), or None when there is no store or storing failed.
        """
        cost: CallCost | None = None
        flags: list[AnomalyFlag] = []
        view: Any = None
        try:
            cost = self.price(result, duration_s=duration_s, handler=handler)
        except Exception:
            log.exception("pricing call %s failed", result.call_id)
        try:
            flags = self.detect(result, duration_s=duration_s)
        except Exception:
            log.exception("anomaly detection for call %s failed", result.call_id)
        trace_id = None
        if span is not None:
            try:
                annotate_call(
                    span, outcome=result.outcome, turns=len(result.turns), escalation_reason=result.escalation_reason
                )
                if cost is not None:
                    span.set_attribute(n.ATTR_COST_USD, round(cost.known_usd, 6))
                    span.set_attribute(n.ATTR_COST_UNKNOWN, bool(cost.unknown))
                span.set_attribute(n.ATTR_ANOMALIES, len(flags))
                trace_id = f"{span.get_span_context().trace_id:032x}"
            except Exception:
                log.debug("annotating the call span failed", exc_info=True)
        if self.store is not None:
            try:
                view = await self.store.record_call(
                    result,
                    started_at=started_at,
                    duration_s=duration_s,
                    queue_wait_ms=queue_wait_ms,
                    worker=worker,
                    attempt=attempt,
                    cost=cost,
                    anomalies=flags,
                    trace_id=trace_id,
                    names=names,
                )
            except Exception:
                log.exception("storing call %s failed", result.call_id)
        try:
            per_turn = cost.by_turn(len(result.turns)) if cost is not None else []
            by_intent: dict[str, float] = defaultdict(float)
            for usd, turn in zip(per_turn, result.turns, strict=False):
                by_intent[turn.intent or "unknown"] += usd
            self.metrics.observe_call(
                outcome=result.outcome,
                errors=result.errors,
                resolutions=result.resolutions,
                escalation_reason=result.escalation_reason,
                turn_latencies_ms=[t.latency_ms for t in result.turns],
                graph_ms=[t.graph_ms for t in result.turns],
                handoffs=result.handoffs,
                tool_events=result.tool_events,
                interventions=result.interventions,
                duration_s=duration_s,
                queue_wait_ms=queue_wait_ms,
                turns=len(result.turns),
                cost=cost,
                cost_intent=by_intent,
                anomaly_kinds=[f.kind for f in flags],
                stage_ms=_voice_stages(result),
            )
        except Exception:
            log.exception("metering call %s failed", result.call_id)
        try:
            self.alerts.observe_call(
                call_id=result.call_id,
                success=is_success(result.outcome, result.errors),
                escalated=result.outcome in ESCALATED_OUTCOMES,
                turn_latencies_ms=[t.latency_ms for t in result.turns],
                cost_usd=cost.total_usd if cost is not None else None,
            )
        except Exception:
            log.exception("alerting on call %s failed", result.call_id)
        # A job process may exit with its call: its figures reach the parent's /metrics before it does.
        self.handles.publish_metrics()
        return view

    def dead_letter(self, *, call_id: str, error: str, attempts: int) -> None:
        """A call was dead-lettered: count it and alert. Never raises."""
        try:
            self.metrics.observe_dead_letter()
            self.alerts.observe_dead_letter(call_id=call_id, error=error, attempts=attempts)
            self.handles.publish_metrics()
        except Exception:
            log.exception("dead-letter telemetry for %s failed", call_id)

    def verification_lockout(self, lockout: Lockout) -> None:
        """A caller ID or an account was locked after failed verifications (the tenant's hook): alert. Never raises."""
        try:
            self.alerts.observe_verification_lockout(
                subject=lockout.subject, failures=lockout.failures, call_id=lockout.call_id
            )
        except Exception:
            log.exception("verification lock-out alert for call %s failed", lockout.call_id)

    async def aclose(self) -> None:
        if self.alerts.notifier is not None:
            await self.alerts.notifier.aclose()
        self.handles.shutdown()


def _voice_stages(result: CallResult) -> list[tuple[str, float]]:
    """The measured stages of a voice call's turns, besides end to end and graph (those have fields of their own).

    Voice turn records carry a `stages` mapping (`orchestrator.session.room.VoiceTurnRecord`); text turns
    have none.
    """
    out: list[tuple[str, float]] = []
    for turn in result.turns:
        stages = getattr(turn, "stages", None)
        if isinstance(stages, Mapping):
            out.extend(
                (str(stage), float(ms)) for stage, ms in stages.items() if stage not in (n.STAGE_E2E, n.STAGE_GRAPH)
            )
    return out
