"""Trace helpers: W3C context in the call job, the call span, and spans per graph node, tool and provider call."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from langchain_core.callbacks import BaseCallbackHandler
from langgraph.types import Command
from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, Tracer
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from orchestrator.redact import caller_names, redact_text
from orchestrator.telemetry import names as n
from orchestrator.telemetry.cost import Usage

_PROPAGATOR = TraceContextTextMapPropagator()
# Process-wide, like logging configuration: PII attributes are a deployment decision, set once by setup.
_pii_allowed = False


def allow_pii(allowed: bool) -> None:
    """Let redacted `cc.pii.*` attributes onto spans (off by default; `setup_telemetry` sets it)."""
    global _pii_allowed
    _pii_allowed = allowed


def current_traceparent(ctx: Context | None = None) -> str | None:
    """The W3C `traceparent` of the current (or given) context, to put in `CallJob.traceparent`."""
    carrier: dict[str, str] = {}
    _PROPAGATOR.inject(carrier, context=ctx)
    return carrier.get("traceparent")


def context_from(traceparent: str | None, tracestate: str | None = None) -> Context:
    """The context a `traceparent` carries; an empty context (a new trace) when it is missing or invalid."""
    if not traceparent:
        return Context()
    carrier = {"traceparent": traceparent}
    if tracestate:
        carrier["tracestate"] = tracestate
    return _PROPAGATOR.extract(carrier, context=Context())


def trace_id_of(traceparent: str | None) -> str | None:
    """The 32-hex trace id inside a `traceparent`, or None."""
    if not traceparent:
        return None
    parts = traceparent.split("-")
    return parts[1] if len(parts) >= 4 and len(parts[1]) == 32 else None


def set_pii(span: Span, key: str, value: str | None, *, names: tuple[str, ...] = ()) -> None:
    """Set a `cc.pii.*` attribute, redacted. Any other key is refused: content belongs only there."""
    if not n.is_pii_key(key):
        raise ValueError(f"{key!r} is not a PII attribute key (use names.ATTR_PII_*)")
    if value and _pii_allowed:
        # Spans have no dialogue context, so any five-digit number is masked as a possible ZIP code.
        span.set_attribute(key, redact_text(value, names=names, zip_expected=True)[:1000])


@contextmanager
def webhook_span(tracer: Tracer, *, call_id: str, source: str) -> Iterator[Span]:
    """The API's span for admitting a call; put `current_traceparent()` in the job inside the block."""
    with tracer.start_as_current_span(
        n.SPAN_WEBHOOK,
        kind=SpanKind.SERVER,
        attributes={n.ATTR_CALL_ID: call_id, n.ATTR_CALL_SOURCE: source},
    ) as span:
        yield span


@contextmanager
def call_span(
    tracer: Tracer,
    *,
    call_id: str,
    traceparent: str | None,
    attempt: int = 1,
    worker: str = "",
    queue_wait_ms: float | None = None,
    source: str = "",
    caller_id: str | None = None,
) -> Iterator[Span]:
    """The worker's span for running one call, continuing the trace the job carries.

    The span is made current for the block, so everything started inside it (the livekit-agents
    `agent_session` and its turns, the graph's node spans) joins the call's trace. The span is
    ended when the block exits, even on error; an exception is recorded by type only.
    """
    attrs: dict[str, Any] = {n.ATTR_CALL_ID: call_id, n.ATTR_ATTEMPT: attempt}
    if worker:
        attrs[n.ATTR_WORKER] = worker
    if source:
        attrs[n.ATTR_CALL_SOURCE] = source
    if queue_wait_ms is not None:
        attrs[n.ATTR_QUEUE_WAIT_MS] = queue_wait_ms
    with tracer.start_as_current_span(
        n.SPAN_CALL,
        context=context_from(traceparent),
        kind=SpanKind.CONSUMER,
        attributes=attrs,
        record_exception=False,
    ) as span:
        set_pii(span, n.ATTR_PII_CALLER_ID, caller_id)
        try:
            yield span
        except BaseException as exc:
            span.set_status(Status(StatusCode.ERROR, type(exc).__name__))
            raise


def annotate_call(span: Span, *, outcome: str, turns: int, escalation_reason: str | None = None) -> None:
    """Put the call's result on its span before it ends."""
    span.set_attribute(n.ATTR_OUTCOME, outcome)
    span.set_attribute(n.ATTR_TURNS, turns)
    if escalation_reason:
        span.set_attribute(n.ATTR_ESCALATION_REASON, escalation_reason)


@dataclass
class _Run:
    span: Span | None
    started: float
    node: str = ""
    tools_seen: bool = False


@dataclass
class NodeTiming:
    """How long one graph node took, in the order the nodes ran."""

    turn: int
    node: str
    ms: float


@dataclass
class _Provider:
    provider: str
    model: str
    turn: int


class GraphSpanHandler(BaseCallbackHandler):
    """LangChain/LangGraph callbacks that turn one call's graph runs into spans, timings and LLM usage.

    Pass it in the graph's run config (`config["callbacks"] = [handler]`), one handler per call. Each
    graph run (one caller turn) becomes a `cc.graph` span under whatever span is current where the graph
    is streamed (livekit's `llm_node`/`llm_request` inside a session), each node a `cc.node.<name>`
    span, each LLM request a `cc.provider.llm` span with token counts, each tool a `cc.tool.<name>` span.
    Deterministic flows call tools without LangChain, so their tools become spans from the node's
    `tool_events` update (marked `cc.tool.timed=false`: no timing of their own).

    Callback failures are swallowed: tracing never breaks a turn.
    """

    run_inline = True  # no thread hop per callback: the hooks are cheap and must see the caller's context
    raise_error = False

    def __init__(self, tracer: Tracer, *, metrics: Any = None, call_id: str = "") -> None:
        super().__init__()
        self.tracer = tracer
        self.metrics = metrics
        self.call_id = call_id
        self.turn = 0
        self.usage: list[Usage] = []
        self.nodes: list[NodeTiming] = []
        self.errors: list[str] = []
        self._runs: dict[UUID, _Run] = {}
        self._providers: dict[UUID, _Provider] = {}

    # Helpers -------------------------------------------------------------------------------------

    def _parent_span(self, parent_run_id: UUID | None) -> Span | None:
        run = self._runs.get(parent_run_id) if parent_run_id else None
        return run.span if run else None

    def _start(self, name: str, parent_run_id: UUID | None, attributes: dict[str, Any], kind: SpanKind) -> Span:
        parent = self._parent_span(parent_run_id)
        ctx = trace.set_span_in_context(parent) if parent is not None else otel_context.get_current()
        return self.tracer.start_span(name, context=ctx, kind=kind, attributes=attributes)

    def _node_of(self, parent_run_id: UUID | None) -> _Run | None:
        run = self._runs.get(parent_run_id) if parent_run_id else None
        return run if run and run.node else None

    # Chains: the graph and its nodes -------------------------------------------------------------

    def on_chain_start(
        self,
        serialized: dict[str, Any] | None,
        inputs: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = kwargs.get("name") or (serialized or {}).get("name") or ""
            node = (metadata or {}).get("langgraph_node")
            if parent_run_id is None:
                self.turn += 1
                attrs: dict[str, Any] = {n.ATTR_TURN: self.turn}
                if self.call_id:
                    attrs[n.ATTR_CALL_ID] = self.call_id
                span = self._start(n.SPAN_GRAPH, None, attrs, SpanKind.INTERNAL)
                if isinstance(inputs, Mapping):
                    utterance = str(inputs.get("utterance") or "")
                    set_pii(span, n.ATTR_PII_UTTERANCE, utterance, names=tuple(caller_names(utterance)))
                self._runs[run_id] = _Run(span, time.perf_counter())
            elif node and name == node:
                span = self._start(n.node_span(node), parent_run_id, {n.ATTR_NODE: node}, SpanKind.INTERNAL)
                self._runs[run_id] = _Run(span, time.perf_counter(), node=node)
            else:
                # Inner runnables get no span of their own; their children attach to the nearest span.
                parent = self._runs.get(parent_run_id) if parent_run_id else None
                if parent is not None:
                    self._runs[run_id] = _Run(parent.span, parent.started, node=parent.node)
        except Exception:
            pass

    def on_chain_end(self, outputs: Any, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, None)
            if run is None or run.span is None:
                return
            if parent_run_id is None:
                self._finish_graph(run.span, outputs)
                run.span.end()
                return
            if run.node and self._is_node_span(run, parent_run_id):
                ms = (time.perf_counter() - run.started) * 1000
                self.nodes.append(NodeTiming(self.turn, run.node, ms))
                if self.metrics is not None:
                    self.metrics.node_duration.record(ms, {n.L_NODE: run.node})
                update = _node_update(outputs)
                if update is not None:
                    self._annotate_node(run, update)
                run.span.end()
        except Exception:
            pass

    def _is_node_span(self, run: _Run, parent_run_id: UUID) -> bool:
        parent = self._runs.get(parent_run_id)
        # Inner runs share their node's span object; only the node's own run ends it.
        return parent is None or parent.span is not run.span

    def on_chain_error(
        self, error: BaseException, *, run_id: UUID, parent_run_id: UUID | None = None, **kwargs: Any
    ) -> None:
        try:
            run = self._runs.pop(run_id, None)
            if run is None or run.span is None:
                return
            if parent_run_id is None or self._is_node_span(run, parent_run_id):
                run.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                run.span.set_attribute("error.type", type(error).__name__)
                self.errors.append(type(error).__name__)
                run.span.end()
        except Exception:
            pass

    def _finish_graph(self, span: Span, outputs: Any) -> None:
        if not isinstance(outputs, Mapping):
            return
        if outputs.get("intent"):
            span.set_attribute(n.ATTR_INTENT, str(outputs["intent"]))
        if outputs.get("active"):
            span.set_attribute(n.ATTR_AGENT, str(outputs["active"]))
        if isinstance(outputs.get("turn"), int):
            self.turn = outputs["turn"]
            span.set_attribute(n.ATTR_TURN, self.turn)

    def _annotate_node(self, run: _Run, update: Mapping[str, Any]) -> None:
        span = run.span
        assert span is not None
        if isinstance(update.get("turn"), int):
            self.turn = update["turn"]
            span.set_attribute(n.ATTR_TURN, self.turn)
        if update.get("intent"):
            span.set_attribute(n.ATTR_INTENT, str(update["intent"]))
        if isinstance(update.get("confidence"), int | float):
            span.set_attribute(n.ATTR_CONFIDENCE, float(update["confidence"]))
        for h in update.get("handoffs") or []:
            span.add_event(
                "handoff",
                {
                    n.ATTR_HANDOFF_FROM: str(h.get("from_agent")),
                    n.ATTR_HANDOFF_TO: str(h.get("to_agent")),
                    n.ATTR_HANDOFF_REASON: str(h.get("reason")),
                },
            )
        for i in update.get("interventions") or []:
            span.add_event(
                "intervention",
                {"cc.intervention.kind": str(i.get("kind")), n.ATTR_HANDOFF_REASON: str(i.get("reason"))},
            )
        if not run.tools_seen:
            parent_ctx = trace.set_span_in_context(span)
            now = time.time_ns()
            for event in update.get("tool_events") or []:
                ok = bool(event.get("ok"))
                tool = self.tracer.start_span(
                    n.tool_span(str(event.get("name"))),
                    context=parent_ctx,
                    start_time=now,
                    attributes={n.ATTR_TOOL: str(event.get("name")), n.ATTR_TOOL_OK: ok, "cc.tool.timed": False},
                )
                set_pii(tool, n.ATTR_PII_TOOL_ARGS, json.dumps(event.get("args") or {}, default=str))
                set_pii(tool, n.ATTR_PII_TOOL_RESULT, str(event.get("result") or ""))
                if not ok:
                    code = str(event.get("result") or "").split(":", 1)[0]
                    tool.set_attribute(n.ATTR_TOOL_ERROR, code[:40])
                    tool.set_status(Status(StatusCode.ERROR, code[:40]))
                tool.end(end_time=now)

    # Tools called through LangChain (LLM specialists) ---------------------------------------------

    def on_tool_start(
        self,
        serialized: dict[str, Any] | None,
        input_str: str,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        **kwargs: Any,
    ) -> None:
        try:
            name = kwargs.get("name") or (serialized or {}).get("name") or "tool"
            node = self._node_of(parent_run_id)
            if node is not None:
                node.tools_seen = True
            span = self._start(n.tool_span(name), parent_run_id, {n.ATTR_TOOL: name}, SpanKind.INTERNAL)
            set_pii(span, n.ATTR_PII_TOOL_ARGS, input_str)
            self._runs[run_id] = _Run(span, time.perf_counter())
        except Exception:
            pass

    def on_tool_end(self, output: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, None)
            if run and run.span:
                run.span.set_attribute(n.ATTR_TOOL_OK, True)
                run.span.end()
        except Exception:
            pass

    def on_tool_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, None)
            if run and run.span:
                run.span.set_attribute(n.ATTR_TOOL_OK, False)
                run.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                run.span.end()
        except Exception:
            pass

    # Provider calls: chat models -------------------------------------------------------------------

    def on_chat_model_start(
        self,
        serialized: dict[str, Any] | None,
        messages: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._llm_start(serialized, run_id, parent_run_id, metadata, kwargs)

    def on_llm_start(
        self,
        serialized: dict[str, Any] | None,
        prompts: Any,
        *,
        run_id: UUID,
        parent_run_id: UUID | None = None,
        metadata: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._llm_start(serialized, run_id, parent_run_id, metadata, kwargs)

    def _llm_start(
        self,
        serialized: dict[str, Any] | None,
        run_id: UUID,
        parent_run_id: UUID | None,
        metadata: dict[str, Any] | None,
        kwargs: dict[str, Any],
    ) -> None:
        try:
            meta = metadata or {}
            params = kwargs.get("invocation_params") or {}
            provider = str(meta.get("ls_provider") or params.get("_type") or "unknown")
            model = str(meta.get("ls_model_name") or params.get("model") or params.get("model_name") or "unknown")
            span = self._start(
                n.provider_span("llm"),
                parent_run_id,
                {n.ATTR_PROVIDER_KIND: "llm", n.ATTR_PROVIDER: provider, n.ATTR_MODEL: model},
                SpanKind.CLIENT,
            )
            self._runs[run_id] = _Run(span, time.perf_counter())
            self._providers[run_id] = _Provider(provider, model, self.turn)
        except Exception:
            pass

    def on_llm_end(self, response: Any, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, None)
            provider = self._providers.pop(run_id, None)
            tokens_in, tokens_out = _token_usage(response)
            if run and run.span:
                run.span.set_attribute(n.ATTR_TOKENS_IN, tokens_in)
                run.span.set_attribute(n.ATTR_TOKENS_OUT, tokens_out)
                run.span.end()
            if provider is not None:
                self.usage.append(
                    Usage(
                        "llm",
                        provider.provider,
                        model=provider.model,
                        input_tokens=tokens_in,
                        output_tokens=tokens_out,
                        turn=provider.turn,
                    )
                )
        except Exception:
            pass

    def on_llm_error(self, error: BaseException, *, run_id: UUID, **kwargs: Any) -> None:
        try:
            run = self._runs.pop(run_id, None)
            provider = self._providers.pop(run_id, None)
            if run and run.span:
                run.span.set_status(Status(StatusCode.ERROR, type(error).__name__))
                run.span.end()
            if provider is not None and self.metrics is not None:
                self.metrics.observe_provider_error(provider.provider, "llm", type(error).__name__)
        except Exception:
            pass


def _node_update(outputs: Any) -> Mapping[str, Any] | None:
    """A node's state update, whether it returned the update or a `Command` carrying it (and where to go)."""
    if isinstance(outputs, Command):
        outputs = outputs.update
    return outputs if isinstance(outputs, Mapping) else None


def _token_usage(response: Any) -> tuple[int, int]:
    """Input and output tokens of an `LLMResult` (message usage metadata, or the provider's llm_output)."""
    tokens_in = tokens_out = 0
    for generations in getattr(response, "generations", None) or []:
        for generation in generations:
            usage = getattr(getattr(generation, "message", None), "usage_metadata", None) or {}
            tokens_in += int(usage.get("input_tokens", 0) or 0)
            tokens_out += int(usage.get("output_tokens", 0) or 0)
    if not (tokens_in or tokens_out):
        raw = (getattr(response, "llm_output", None) or {}).get("token_usage") or {}
        tokens_in = int(raw.get("prompt_tokens", 0) or 0)
        tokens_out = int(raw.get("completion_tokens", 0) or 0)
    return tokens_in, tokens_out
