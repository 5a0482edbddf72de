"""OpenTelemetry setup: tracer and meter providers, OTLP export on request, Prometheus exposition, livekit join."""

from __future__ import annotations

import logging
import os
import socket
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import metrics as metrics_api
from opentelemetry import trace as trace_api
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import MetricReader, PeriodicExportingMetricReader
from opentelemetry.sdk.metrics.view import ExplicitBucketHistogramAggregation, View
from opentelemetry.sdk.resources import SERVICE_INSTANCE_ID, SERVICE_NAME, Resource
from opentelemetry.sdk.trace import ReadableSpan, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor, SpanExporter, SpanExportResult
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from orchestrator.config import Settings
from orchestrator.redact import install_log_redaction, redact_text
from orchestrator.telemetry import names
from orchestrator.telemetry.multiproc import MultiprocessWriter
from orchestrator.telemetry.tracing import allow_pii

log = logging.getLogger(__name__)

# Bound on how long shutting telemetry down may hold a process that is exiting (unreachable collector).
SHUTDOWN_TIMEOUT_S = 5.0


class GuardedSpanExporter(SpanExporter):
    """Wraps an exporter so that nothing it raises ever reaches the code that ended the span.

    A collector that is down, a misconfigured endpoint or a bug in an exporter turns into a logged
    failure (once per kind of error), never into an exception inside a call.
    """

    def __init__(self, inner: SpanExporter) -> None:
        self.inner = inner
        self.failures = 0
        self._logged: set[str] = set()

    def export(self, spans: Sequence[ReadableSpan]) -> SpanExportResult:
        try:
            return self.inner.export(spans)
        except Exception as exc:
            self.failures += 1
            kind = type(exc).__name__
            if kind not in self._logged:
                self._logged.add(kind)
                log.warning("span exporter %s failed (%s); spans dropped", type(self.inner).__name__, kind)
            return SpanExportResult.FAILURE

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:
            log.warning("span exporter shutdown failed", exc_info=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception:
            return False


def _is_pii_attribute(key: str) -> bool:
    try:
        from livekit.agents.telemetry.pii import is_pii_attribute
    except ImportError:  # livekit-agents is a dependency; the `pii` segment is the convention either way
        return names.is_pii_key(key)
    return bool(is_pii_attribute(key))


# The exception attributes and status text quote whatever the exception said, caller text included.
_EXCEPTION_TEXT = frozenset({"exception.message", "exception.stacktrace"})


class PiiSpanProcessor(SpanProcessor):
    """What `telemetry_allow_pii` means, on every span (ours, livekit's, any library's): caller content under a
    PII attribute (a `pii` segment, livekit's `lk.pii.*` as well as our `cc.pii.*`, or a GenAI content
    attribute) reaches exporters redacted when PII is allowed, and not at all otherwise. Exception messages
    are redacted either way.

    Registered before the exporting processors: `on_end` runs in registration order on the one ended span, so
    what it rewrites is what they export (livekit's own filter works the same way).
    """

    def __init__(self, *, allow: bool) -> None:
        self.allow = allow

    def on_end(self, span: ReadableSpan) -> None:
        try:
            attributes = self._clean(span.attributes)
            events = [self._event(e) for e in span.events]
        except Exception:
            log.debug("PII span processor failed; the span's PII attributes are dropped", exc_info=True)
            attributes = {k: v for k, v in (span.attributes or {}).items() if not _is_pii_attribute(k)}
            events = []
        # The ended span's attributes are immutable: rebind them, as livekit's own filter does.
        span._attributes = attributes
        span._events = events
        status = span.status
        if status.description:
            span._status = type(status)(status.status_code, redact_text(status.description))

    def _clean(self, attributes: Any) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for key, value in (attributes or {}).items():
            if _is_pii_attribute(key):
                if self.allow:
                    out[key] = _redacted(value)
            elif key in _EXCEPTION_TEXT:
                out[key] = _redacted(value)
            else:
                out[key] = value
        return out

    def _event(self, event: Any) -> Any:
        from opentelemetry.sdk.trace import Event

        return Event(name=event.name, attributes=self._clean(event.attributes), timestamp=event.timestamp)

    def shutdown(self) -> None:
        pass

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        return True


def _redacted(value: Any) -> Any:
    # Spans have no dialogue context, so any five-digit number is masked as a possible ZIP code.
    if isinstance(value, str):
        return redact_text(value, zip_expected=True)
    if isinstance(value, (tuple, list)):
        return tuple(redact_text(v, zip_expected=True) if isinstance(v, str) else v for v in value)
    return value


class GuardedSpanProcessor(SpanProcessor):
    """Wraps a span processor so its hooks can never raise into the instrumented code."""

    def __init__(self, inner: SpanProcessor) -> None:
        self.inner = inner

    def on_start(self, span: Any, parent_context: Any = None) -> None:
        try:
            self.inner.on_start(span, parent_context=parent_context)
        except Exception:
            log.debug("span processor on_start failed", exc_info=True)

    def on_end(self, span: ReadableSpan) -> None:
        try:
            self.inner.on_end(span)
        except Exception:
            log.debug("span processor on_end failed", exc_info=True)

    def shutdown(self) -> None:
        try:
            self.inner.shutdown()
        except Exception:
            log.debug("span processor shutdown failed", exc_info=True)

    def force_flush(self, timeout_millis: int = 30000) -> bool:
        try:
            return self.inner.force_flush(timeout_millis)
        except Exception:
            return False


@dataclass
class TelemetryHandles:
    """The providers of one process. Create with `setup_telemetry`; close with `shutdown`."""

    tracer_provider: TracerProvider
    meter_provider: MeterProvider
    registry: CollectorRegistry
    # Set in livekit's job processes: copies `registry` into the files their parent's `/metrics` serves.
    shared: MultiprocessWriter | None = None
    _closers: list[Callable[[], Any]] = field(default_factory=list)

    @property
    def tracer(self) -> trace_api.Tracer:
        return self.tracer_provider.get_tracer(names.SCOPE)

    @property
    def meter(self) -> metrics_api.Meter:
        return self.meter_provider.get_meter(names.SCOPE)

    def prometheus_text(self) -> tuple[bytes, str]:
        """The `/metrics` body and its content type (Prometheus text exposition format)."""
        return generate_latest(self.registry), CONTENT_TYPE_LATEST

    def force_flush(self) -> None:
        self.tracer_provider.force_flush()

    def publish_metrics(self) -> None:
        """Make this process's figures visible to its parent's `/metrics` now (job processes; a no-op elsewhere)."""
        if self.shared is not None:
            self.shared.write()

    def shutdown(self, timeout_s: float = SHUTDOWN_TIMEOUT_S) -> None:
        """Flush and close the providers, waiting at most `timeout_s` (a dead collector cannot hold exit)."""
        targets: list[Callable[[], Any]] = [self.tracer_provider.shutdown, self.meter_provider.shutdown, *self._closers]
        if self.shared is not None:
            targets.append(self.shared.close)

        def run(fn: Callable[[], Any]) -> None:
            try:
                fn()
            except Exception:
                log.warning("telemetry shutdown step failed", exc_info=True)

        threads = [threading.Thread(target=run, args=(fn,), daemon=True) for fn in targets]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout_s)


def _views() -> list[View]:
    def buckets(metric: str, bounds: Sequence[float]) -> View:
        return View(instrument_name=metric, aggregation=ExplicitBucketHistogramAggregation(boundaries=tuple(bounds)))

    return [
        buckets(names.M_TURN_LATENCY, names.LATENCY_BUCKETS_MS),
        buckets(names.M_NODE_DURATION, names.LATENCY_BUCKETS_MS),
        buckets(names.M_QUEUE_WAIT, names.QUEUE_WAIT_BUCKETS_MS),
        buckets(names.M_CALL_COST, names.COST_BUCKETS_USD),
        buckets(names.M_CALL_DURATION, (5, 15, 30, 60, 120, 300, 600, 1200, 1800)),
        buckets(names.M_CALL_TURNS, (1, 2, 3, 5, 8, 13, 21, 34)),
    ]


def setup_telemetry(
    settings: Settings,
    *,
    span_exporters: Sequence[SpanExporter] = (),
    metric_readers: Sequence[MetricReader] = (),
    registry: CollectorRegistry | None = None,
    simple: bool = False,
    join_livekit: bool = True,
    set_global: bool = False,
    resource_attributes: dict[str, str] | None = None,
    multiprocess_dir: str | None = None,
) -> TelemetryHandles:
    """Build this process's tracer and meter providers.

    Args:
        settings: `otlp_endpoint` turns on OTLP/HTTP export of spans and metrics; `service_name`
            names the resource; `telemetry_allow_pii` decides whether `*.pii.*` attributes reach exporters.
        span_exporters: Extra exporters (tests pass an `InMemorySpanExporter`). Each is guarded, so a
            failing exporter never raises into a call.
        metric_readers: Extra metric readers (tests pass an `InMemoryMetricReader`).
        registry: The prometheus-client registry `/metrics` serves; a fresh one by default, so several
            setups in one process (tests) never collide in the global registry.
        simple: Export the given exporters' spans synchronously as they end (tests); batched in a background
            thread otherwise. OTLP export is always batched.
        join_livekit: Make livekit-agents' own spans (`agent_session`, `agent_turn`, `llm_node`…) use
            this provider, so they land in the call's trace.
        set_global: Also install the providers as OpenTelemetry's globals (once per process; the
            worker and API entry points pass True). livekit-agents' metric instruments use the global
            meter provider.
        resource_attributes: Extra resource attributes, e.g. `{"service.instance.id": worker_name}`.
        multiprocess_dir: prometheus_client's multiprocess directory (livekit's job processes): the
            metrics are also written there, for the parent process's `/metrics` (`multiproc.multiprocess_text`).

    Returns:
        The handles; call `shutdown()` when the process exits.
    """
    # Logs are telemetry too: every process that sets telemetry up logs no caller PII, whatever logs it.
    install_log_redaction()
    # Each process its own instance: an OTLP backend keeps every process's cumulative series apart (the agent
    # worker's job processes share everything else), instead of one process's points overwriting another's.
    instance = {SERVICE_INSTANCE_ID: f"{socket.gethostname()}-{os.getpid()}"}
    resource = Resource.create({SERVICE_NAME: settings.service_name, **instance, **(resource_attributes or {})})
    tracer_provider = TracerProvider(resource=resource)
    # First, so every exporter below gets the span as `telemetry_allow_pii` says it may leave the process.
    tracer_provider.add_span_processor(PiiSpanProcessor(allow=settings.telemetry_allow_pii))
    for exporter in span_exporters:
        guarded = GuardedSpanExporter(exporter)
        processor: SpanProcessor = SimpleSpanProcessor(guarded) if simple else BatchSpanProcessor(guarded)
        tracer_provider.add_span_processor(GuardedSpanProcessor(processor))
    if settings.otlp_endpoint:
        # Always batched, whatever `simple` says: the OTLP exporter retries with backoff for seconds when
        # the collector is down, which must happen on the export thread, never where a span ends.
        otlp = GuardedSpanExporter(_otlp_span_exporter(settings.otlp_endpoint))
        tracer_provider.add_span_processor(GuardedSpanProcessor(BatchSpanProcessor(otlp)))

    registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
    from opentelemetry.exporter.prometheus import PrometheusMetricReader

    readers: list[MetricReader] = [PrometheusMetricReader(registry=registry), *metric_readers]
    if settings.otlp_endpoint:
        readers.append(_otlp_metric_reader(settings.otlp_endpoint))
    meter_provider = MeterProvider(resource=resource, metric_readers=readers, views=_views())

    if join_livekit:
        try:
            from livekit.agents.telemetry import set_tracer_provider

            # livekit drops every attribute with a `pii` segment (ours included) unless PII is allowed; when it
            # is, `PiiSpanProcessor` redacts livekit's as it does ours.
            set_tracer_provider(tracer_provider, allow_pii=settings.telemetry_allow_pii)
        except Exception:
            log.warning("could not join livekit-agents' tracer", exc_info=True)
    # Our own `cc.pii.*` attributes are withheld at the source too, whichever provider the spans go to.
    allow_pii(settings.telemetry_allow_pii)
    if set_global:
        _set_globals(tracer_provider, meter_provider)
    shared = MultiprocessWriter(registry, multiprocess_dir) if multiprocess_dir else None
    return TelemetryHandles(
        tracer_provider=tracer_provider, meter_provider=meter_provider, registry=registry, shared=shared
    )


_globals_lock = threading.Lock()
_globals_set = False


def _set_globals(tracer_provider: TracerProvider, meter_provider: MeterProvider) -> None:
    global _globals_set
    with _globals_lock:
        if _globals_set:
            # OpenTelemetry allows one global provider per process; a second setup keeps the first.
            log.debug("OpenTelemetry globals already set; keeping the first providers")
            return
        trace_api.set_tracer_provider(tracer_provider)
        metrics_api.set_meter_provider(meter_provider)
        _globals_set = True


def _otlp_span_exporter(endpoint: str) -> SpanExporter:
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

    return OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces", timeout=5)


def _otlp_metric_reader(endpoint: str) -> MetricReader:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter

    exporter = OTLPMetricExporter(endpoint=endpoint.rstrip("/") + "/v1/metrics", timeout=5)
    return PeriodicExportingMetricReader(exporter, export_interval_millis=15000, export_timeout_millis=5000)


def metrics_router(handles: TelemetryHandles) -> Any:
    """A FastAPI router serving `GET /metrics` from `handles` (for the API app and the worker's health server)."""
    from fastapi import APIRouter, Response

    router = APIRouter()

    @router.get("/metrics", include_in_schema=False)
    def metrics() -> Response:
        body, content_type = handles.prometheus_text()
        return Response(content=body, media_type=content_type)

    return router


def start_metrics_server(
    handles: TelemetryHandles, port: int, addr: str = "0.0.0.0", *, tries: int = 1
) -> Callable[[], None]:
    """Serve `/metrics` on a port of its own (workers without an HTTP app); returns a function that stops it.

    With `tries` > 1 the first free port of `port`..`port + tries - 1` is taken, so replicas sharing a host's
    network (compose's host networking) each get one; the port is logged.
    """
    from prometheus_client import start_http_server

    for candidate in range(port, port + max(tries, 1)):
        try:
            server, thread = start_http_server(candidate, addr=addr, registry=handles.registry)
        except OSError:
            if candidate == port + max(tries, 1) - 1:
                raise
            continue
        log.info("metrics on %s:%d/metrics", addr, candidate)
        break

    def stop() -> None:
        server.shutdown()
        thread.join(timeout=2)

    handles._closers.append(stop)
    return stop
