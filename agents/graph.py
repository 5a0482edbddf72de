"""The call graph: the one place where nodes and edges are wired. Read this file to see the whole flow.

One graph run is one caller turn (thread_id = call id; the checkpointer keeps the call's state):

    supervise ─┬─▶ route ─┬─▶ scheduling | billing | support ─┬─▶ review ─┬─▶ speak ─▶ END
               │          ├─▶ escalate ─▶ speak                │           └─▶ escalate ─▶ speak
               │          └─▶ respond ─▶ speak                 ├─▶ (another specialist: same-turn handoff)
               ├─▶ escalate (human asked, legal, emergency, fraud, ...)  └─▶ escalate
               ├─▶ respond (re-prompt, greeting, language, goodbye, hold)
               └─▶ the active specialist, straight, while the caller answers its question (a ZIP code,
                   "yes", "the second one"): `route` would keep it anyway (langgraph-swarm's active-agent
                   router does the same)

The supervisor is two nodes: `supervise` reads the caller's turn before anything else (a person asked
for, anger, abuse, emergencies, loops, console commands), and `review` checks every specialist reply
(policy, masking, loops) and can correct it or escalate instead. Only `speak` (and LLM specialists,
sentence by sentence) write speakable text to the stream, then an `EndOfReply`, so the voice pipeline
can start the last sentence before the turn's checkpoint is written.

Each routing decision is taken inside its node (the node returns a `Command`), not by a conditional
edge: an edge costs LangGraph a read of the whole state per step. Every node is async: LangGraph runs
sync ones in a thread pool, a hop per step.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, cast

from langchain_core.exceptions import ModelAPIError, ModelConnectionError
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agents import router, supervisor
from agents.context import AgentContext
from agents.llm_agent import run_llm_specialist
from agents.specialists import escalation as escalation_flow
from agents.specialists.base import run_specialist
from agents.specialists.registry import SPECIALISTS, Specialist
from agents.state import CallState, Intervention, awaits_confirmation, awaits_digits

SPECIALIST_NODES = tuple(s.name for s in SPECIALISTS)


@dataclass(frozen=True)
class EndOfReply:
    """Written to the custom stream once the turn's reply is complete (nothing speakable follows).

    ``expects_digits``: the caller's answer is a digit string (a phone or account number, a ZIP code), read from
    the state the turn leaves, not from the reply's wording, so a voice pipeline can listen for digits whatever
    words a tenant's prompts use. ``confirms_effect``: the caller's answer says yes or no to an effect (a payment,
    a booking), so a voice pipeline can give a "yes" more time to become "yes, but...".
    """

    expects_digits: bool = False
    confirms_effect: bool = False


async def supervise(state: CallState, runtime: Runtime[AgentContext]) -> Command[str]:
    ctx = runtime.context

    async def learned() -> str | None:
        # The trigger head reads the router's own embedding of the turn: asked only of a turn `route` will
        # classify anyway, so a caller's answer to a specialist's question ("10453") costs no model run.
        routed = cast(CallState, {**state, "active": state.get("active") or "router"})
        if not router.needs_classifier(ctx, routed):
            return None
        key = router.intent_key(state.get("call_id") or "", state.get("utterance", "") or "")
        return (await ctx.intents.shared(key)).trigger

    update = await supervisor.supervise(ctx, state, learned)
    opened = cast(CallState, {**state, **update})
    goto = after_supervise(opened)
    if goto == "route" and not router.needs_classifier(ctx, opened):
        # The caller answers the active specialist's question: `route` would only keep the call where
        # it is, so the turn goes straight to the specialist (one LangGraph step fewer).
        update = {**update, **router.staying(opened)}
        goto = opened.get("active", "router")
    elif goto == "route":
        router.prefetch(ctx, opened)  # the classifier runs while LangGraph moves on to `route`
    return Command(update=update, goto=goto)


async def route(state: CallState, runtime: Runtime[AgentContext]) -> Command[str]:
    update = await router.route(runtime.context, state)
    return Command(update=update, goto=after_route(cast(CallState, {**state, **update})))


def _specialist(spec: Specialist) -> Callable[..., Awaitable[Command[str]]]:
    """The node of one specialist: an LLM turn when models are configured, else its deterministic flow."""

    async def flow(state: CallState, ctx: AgentContext) -> dict[str, Any]:
        return await run_specialist(
            spec.name, ctx, state, spec.start, spec.flow, needs_verification=spec.needs_verification
        )

    async def node(state: CallState, runtime: Runtime[AgentContext]) -> Command[str]:
        ctx = runtime.context
        if ctx.models is None:
            update = await flow(state, ctx)
        else:
            try:
                update = await run_llm_specialist(spec.name, ctx, state, runtime.stream_writer)
            except (ModelAPIError, ModelConnectionError, TimeoutError) as exc:
                # The model is down or too slow: the deterministic flow answers this turn instead,
                # so the caller is never left in silence. (A partly streamed reply cannot be unsaid.)
                note = Intervention(
                    turn=state.get("turn", 0), kind="warn", reason="llm_unavailable", detail=type(exc).__name__
                )
                update = {**await flow(state, ctx), "interventions": [note]}
        # The decision reads only plain (last-value) fields, which the update replaces.
        return Command(update=update, goto=after_specialist(cast(CallState, {**state, **update})))

    node.__name__ = spec.name
    return node


async def escalate(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    reason = state.get("escalate_for") or "requested_human"
    return await escalation_flow.escalate(runtime.context, state, reason)


async def respond(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    if state.get("reply"):
        return {"directive": None}
    return supervisor.canned(runtime.context, state)


async def review(state: CallState, runtime: Runtime[AgentContext]) -> Command[str]:
    """The supervisor's review of the specialist's reply: policy, masking, loops; it may escalate instead."""
    update = supervisor.review(runtime.context, state)
    return Command(update=update, goto=after_review(cast(CallState, {**state, **update})))


async def speak(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Stream the turn's reply (unless a streaming specialist already did), then mark the reply complete."""
    update = supervisor.speak(runtime.context, state)
    if not state.get("spoken"):
        runtime.stream_writer(update.get("reply", ""))
    after = cast(CallState, {**state, **update})
    runtime.stream_writer(EndOfReply(expects_digits=awaits_digits(after), confirms_effect=awaits_confirmation(after)))
    return update


def after_supervise(state: CallState) -> str:
    if state.get("escalate_for"):
        return "escalate"
    if state.get("directive"):
        return "respond"
    return "route"


def after_route(state: CallState) -> str:
    if state.get("escalate_for"):
        return "escalate"
    if state.get("directive") == "respond":
        return "respond"
    active = state.get("active", "router")
    return active if active in SPECIALIST_NODES else "respond"


def after_specialist(state: CallState) -> str:
    if state.get("escalate_for"):
        return "escalate"
    target = state.get("handoff_to")
    return target if target in SPECIALIST_NODES else "review"


def after_review(state: CallState) -> str:
    return "escalate" if state.get("escalate_for") else "speak"


def build_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the call graph; pass a durable checkpointer so another process can resume a call."""
    g: StateGraph[Any, Any, Any, Any] = StateGraph(CallState, context_schema=AgentContext)
    g.add_node("supervise", supervise, destinations=("route", *SPECIALIST_NODES, "escalate", "respond"))
    g.add_node("route", route, destinations=(*SPECIALIST_NODES, "escalate", "respond"))
    for spec in SPECIALISTS:
        others = tuple(n for n in SPECIALIST_NODES if n != spec.name)
        g.add_node(spec.name, _specialist(spec), destinations=(*others, "review", "escalate"))
    g.add_node("review", review, destinations=("speak", "escalate"))
    g.add_node("escalate", escalate)
    g.add_node("respond", respond)
    g.add_node("speak", speak)

    g.add_edge(START, "supervise")
    g.add_edge("escalate", "speak")
    g.add_edge("respond", "speak")
    g.add_edge("speak", END)
    return g.compile(checkpointer=checkpointer, name="switchboard")
