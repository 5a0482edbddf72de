"""Every span name, metric name and attribute key Switchboard emits, in one place."""

from __future__ import annotations

import re
from typing import Final

# Instrumentation scope of our tracer and meter.
SCOPE: Final = "switchboard"

# --- Spans ---------------------------------------------------------------------------------------
# Span names are constants or a constant prefix plus a graph/tool/provider identifier; never caller
# content (see `safe_suffix`).
SPAN_WEBHOOK: Final = "cc.webhook"
SPAN_ENQUEUE: Final = "cc.queue.enqueue"
SPAN_CALL: Final = "cc.call"
SPAN_TURN: Final = "cc.turn"
SPAN_GRAPH: Final = "cc.graph"
SPAN_NODE_PREFIX: Final = "cc.node."
SPAN_TOOL_PREFIX: Final = "cc.tool."
SPAN_PROVIDER_PREFIX: Final = "cc.provider."
SPAN_RECORD: Final = "cc.record"

# --- Attribute keys ------------------------------------------------------------------------------
ATTR_CALL_ID: Final = "cc.call.id"
ATTR_CALL_SOURCE: Final = "cc.call.source"
ATTR_ATTEMPT: Final = "cc.call.attempt"
ATTR_WORKER: Final = "cc.worker"
ATTR_QUEUE_WAIT_MS: Final = "cc.queue.wait_ms"
ATTR_PRIORITY: Final = "cc.queue.priority"
ATTR_TURN: Final = "cc.turn.index"
ATTR_AGENT: Final = "cc.agent"
ATTR_INTENT: Final = "cc.intent"
ATTR_CONFIDENCE: Final = "cc.intent.confidence"
ATTR_NODE: Final = "cc.node"
ATTR_TOOL: Final = "cc.tool.name"
ATTR_TOOL_OK: Final = "cc.tool.ok"
ATTR_TOOL_ERROR: Final = "cc.tool.error_code"
ATTR_PROVIDER: Final = "cc.provider.name"
ATTR_PROVIDER_KIND: Final = "cc.provider.kind"
ATTR_MODEL: Final = "cc.provider.model"
ATTR_TOKENS_IN: Final = "cc.usage.input_tokens"
ATTR_TOKENS_OUT: Final = "cc.usage.output_tokens"
ATTR_OUTCOME: Final = "cc.outcome"
ATTR_ESCALATION_REASON: Final = "cc.escalation.reason"
ATTR_HANDOFF_FROM: Final = "cc.handoff.from"
ATTR_HANDOFF_TO: Final = "cc.handoff.to"
ATTR_HANDOFF_REASON: Final = "cc.handoff.reason"
ATTR_TURNS: Final = "cc.call.turns"
ATTR_COST_USD: Final = "cc.cost.usd"
ATTR_COST_UNKNOWN: Final = "cc.cost.unknown"
ATTR_ANOMALIES: Final = "cc.anomalies"
# Time from the agent job's start to the session being ready to hear the caller (voice calls).
ATTR_CALL_START_MS: Final = "cc.call.start_ms"

# PII lives only under a `pii` segment, so livekit-agents' own filter (which drops any key with a `pii`
# segment when PII is not allowed) treats ours like its `lk.pii.*`; values are redacted before they are set.
PII_PREFIX: Final = "cc.pii."
ATTR_PII_CALLER_ID: Final = "cc.pii.caller_id"
ATTR_PII_UTTERANCE: Final = "cc.pii.utterance"
ATTR_PII_REPLY: Final = "cc.pii.reply"
ATTR_PII_TOOL_ARGS: Final = "cc.pii.tool_args"
ATTR_PII_TOOL_RESULT: Final = "cc.pii.tool_result"

# --- Metrics (OpenTelemetry names; `prometheus_name` gives the exposed name) ---------------------
M_CALLS: Final = "cc.calls"  # counter {outcome}
M_SUCCESS_RATE: Final = "cc.calls.success_rate"  # gauge: this process's success rate since start
M_FIRST_CONTACT: Final = "cc.calls.first_contact_resolved"  # counter: resolved, never escalated
M_CALL_DURATION: Final = "cc.call.duration"  # histogram s
M_CALL_TURNS: Final = "cc.call.turns"  # histogram
M_TURN_LATENCY: Final = "cc.turn.latency"  # histogram ms {stage}
M_NODE_DURATION: Final = "cc.graph.node.duration"  # histogram ms {node}
M_TOOL_CALLS: Final = "cc.tool.calls"  # counter {tool, ok}
M_HANDOFFS: Final = "cc.handoffs"  # counter {from_agent, to_agent}
M_ESCALATIONS: Final = "cc.escalations"  # counter {reason}
M_QUEUE_DEPTH: Final = "cc.queue.depth"  # gauge {priority}
M_QUEUE_OLDEST_WAIT: Final = "cc.queue.oldest_wait"  # gauge s
M_QUEUE_WAIT: Final = "cc.queue.wait"  # histogram ms
M_DEAD_LETTERS: Final = "cc.queue.dead_letters"  # gauge (entries in the dead-letter stream)
M_DEAD_LETTERED: Final = "cc.calls.dead_lettered"  # counter (calls this process dead-lettered)
M_IN_FLIGHT: Final = "cc.worker.in_flight"  # up-down counter {worker}
M_WORKER_SLOTS: Final = "cc.worker.slots"  # up-down counter {worker}
M_PHRASE_CACHE: Final = "cc.phrase_cache.lookups"  # counter {result=hit|miss|bypass}, counted by the cache
M_PROVIDER_ERRORS: Final = "cc.provider.errors"  # counter {provider, kind, error}
M_PROVIDER_FALLBACKS: Final = "cc.provider.fallbacks"  # counter {kind, reason}
M_TOKENS: Final = "cc.usage.tokens"  # counter {provider, model, direction}
M_CHARACTERS: Final = "cc.usage.characters"  # counter {provider}
M_SECONDS: Final = "cc.usage.seconds"  # counter {provider, kind}
M_COST: Final = "cc.cost"  # counter USD {component}
M_COST_BY_INTENT: Final = "cc.cost.by_intent"  # counter USD {intent}
M_CALL_COST: Final = "cc.call.cost"  # histogram USD
M_COST_UNKNOWN: Final = "cc.cost.unknown"  # counter {component}: calls with a price missing
M_ANOMALIES: Final = "cc.anomalies"  # counter {kind}
M_ALERTS: Final = "cc.alerts"  # counter {rule}

# Metric attribute keys (Prometheus labels).
L_OUTCOME: Final = "outcome"
L_STAGE: Final = "stage"
L_NODE: Final = "node"
L_TOOL: Final = "tool"
L_OK: Final = "ok"
L_REASON: Final = "reason"
L_FROM: Final = "from_agent"
L_TO: Final = "to_agent"
L_PRIORITY: Final = "priority"
L_WORKER: Final = "worker"
L_RESULT: Final = "result"
L_PROVIDER: Final = "provider"
L_KIND: Final = "kind"
L_ERROR: Final = "error"
L_MODEL: Final = "model"
L_DIRECTION: Final = "direction"
L_COMPONENT: Final = "component"
L_INTENT: Final = "intent"
L_AGENT: Final = "agent"
L_RULE: Final = "rule"

# Latency stages (values of the `stage` label). A voice turn's first audio (e2e) splits into STT
# finalisation, endpointing, the graph's first speakable token, TTS first byte and our own overhead.
STAGE_E2E: Final = "e2e"  # end of caller speech (or text turn) to first agent audio/text
STAGE_GRAPH: Final = "graph"  # one graph run
STAGE_STT: Final = "stt"  # STT finalisation after end of speech
STAGE_ENDPOINTING: Final = "endpointing"  # the deliberate end-of-turn wait after the final transcript
STAGE_LLM_TTFT: Final = "llm_ttft"  # the session's LLM (the graph) first speakable token
STAGE_TTS_TTFB: Final = "tts_ttfb"  # TTS first byte
STAGE_OVERHEAD: Final = "overhead"  # e2e minus the stages above: our own cost
STAGES: Final = (
    STAGE_E2E,
    STAGE_GRAPH,
    STAGE_STT,
    STAGE_ENDPOINTING,
    STAGE_LLM_TTFT,
    STAGE_TTS_TTFB,
    STAGE_OVERHEAD,
)

# Phrase-cache lookup results (values of the `result` label): a hit plays with no TTS call, a miss is a
# phrase synthesised (and stored), a bypass a sentence outside the phrase set.
CACHE_HIT: Final = "hit"
CACHE_MISS: Final = "miss"
CACHE_BYPASS: Final = "bypass"

# Histogram bucket bounds: the 300 ms and 500 ms bars of the seed's table fall on bucket edges.
LATENCY_BUCKETS_MS: Final = (5, 10, 25, 50, 100, 200, 300, 400, 500, 750, 1000, 1500, 2500, 5000, 10000)
COST_BUCKETS_USD: Final = (0.001, 0.005, 0.01, 0.02, 0.05, 0.1, 0.15, 0.25, 0.5, 1.0, 2.0)
QUEUE_WAIT_BUCKETS_MS: Final = (1, 5, 10, 50, 100, 500, 1000, 5000, 15000, 30000, 60000, 300000)

_UNITS: Final = {
    M_CALL_DURATION: "s",
    M_TURN_LATENCY: "ms",
    M_NODE_DURATION: "ms",
    M_QUEUE_OLDEST_WAIT: "s",
    M_QUEUE_WAIT: "ms",
    M_SECONDS: "s",
    M_COST: "USD",
    M_COST_BY_INTENT: "USD",
    M_CALL_COST: "USD",
}
_COUNTERS: Final = {
    M_CALLS,
    M_FIRST_CONTACT,
    M_TOOL_CALLS,
    M_HANDOFFS,
    M_ESCALATIONS,
    M_DEAD_LETTERED,
    M_PHRASE_CACHE,
    M_PROVIDER_ERRORS,
    M_PROVIDER_FALLBACKS,
    M_TOKENS,
    M_CHARACTERS,
    M_SECONDS,
    M_COST,
    M_COST_BY_INTENT,
    M_COST_UNKNOWN,
    M_ANOMALIES,
    M_ALERTS,
}
_PROM_UNITS: Final = {"s": "seconds", "ms": "milliseconds", "USD": "USD"}

_SAFE = re.compile(r"[^a-z0-9_]+")


def unit_of(metric: str) -> str:
    """The OpenTelemetry unit of one of our metrics ("" for dimensionless)."""
    return _UNITS.get(metric, "")


def prometheus_name(metric: str, *, series: str = "") -> str:
    """The name Prometheus sees for one of our metrics (dots to underscores, unit suffix, `_total`).

    Args:
        metric: One of the `M_*` names.
        series: For histograms, `"bucket"`, `"sum"` or `"count"`; empty otherwise.
    """
    name = metric.replace(".", "_")
    unit = _PROM_UNITS.get(unit_of(metric), "")
    if unit and not name.endswith(f"_{unit}"):
        name = f"{name}_{unit}"
    if metric in _COUNTERS:
        name += "_total"
    if series:
        name += f"_{series}"
    return name


def safe_suffix(identifier: str) -> str:
    """A span-name suffix from a code identifier (node, tool, provider), never free text.

    Anything outside `[a-z0-9_]` is folded to `_` and the result is cut at 40 characters, so even a
    caller-controlled string could not smuggle content into a span name.
    """
    folded = _SAFE.sub("_", identifier.lower()).strip("_")[:40]
    return folded or "unknown"


def node_span(node: str) -> str:
    """The span name of a graph node."""
    return SPAN_NODE_PREFIX + safe_suffix(node)


def tool_span(tool: str) -> str:
    """The span name of a tool call."""
    return SPAN_TOOL_PREFIX + safe_suffix(tool)


def provider_span(kind: str) -> str:
    """The span name of a provider call (`llm`, `stt`, `tts`)."""
    return SPAN_PROVIDER_PREFIX + safe_suffix(kind)


def is_pii_key(key: str) -> bool:
    """True for attribute keys that may carry caller content (a `pii` segment anywhere)."""
    return "pii" in key.split(".")
