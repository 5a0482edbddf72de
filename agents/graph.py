"""The call graph: the one place where nodes and edges are wired. Read this file to see the whole flow.

One graph run is one caller turn (thread_id = call id; the checkpointer keeps the call's state):

    supervise ─┬─▶ route ─┬─▶ scheduling | billing | support ─┬─▶ [supervisor's review] ─┬─▶ speaks ─▶ END
               │          ├─▶ escalate ─▶ speak ─▶ END          │                          └─▶ escalate
               │          └─▶ respond ─▶ speak ─▶ END           ├─▶ (another specialist: same-turn handoff)
               ├─▶ escalate (human asked, legal, emergency, ...) └─▶ escalate
               ├─▶ respond (re-prompt, greeting, language, goodbye, hold)
               └─▶ the active specialist, straight, while the caller answers its question (a ZIP code,
                   "yes", "the second one"): `route` would keep it anyway; any other turn goes through
                   `route`, which keeps the active specialist unless the topic changed

The supervisor works twice a turn: `supervise` before anything else, and its review of the specialist's
reply (policy, masking, loops; `supervisor.review`), which runs at the end of the specialist's own step
(`_with_review`) and speaks the reply if it passes. Only that review, `speak` (and LLM specialists, sentence
by sentence) write speakable text to the stream, and whichever speaks last writes `END_OF_REPLY` after it,
so the voice pipeline can start speaking the last sentence before the turn's checkpoint is written.

Each routing decision is taken inside its node (the node returns a `Command`), not by a conditional edge:
an edge costs LangGraph a read of the whole state per step, which was most of its per-turn cost. For
the same reason the review runs in the specialist's step and speaks there, instead of a step of its own
(`bench/turn_ab.py graph`: overhead P50 0.87×), and a turn that only answers the active specialist skips
`route`.
Every node is async: LangGraph runs sync ones in a thread pool, a hop per step.
"""

from __future__ import annotations

import operator
from collections.abc import Awaitable, Callable
from typing import Any, cast, get_type_hints

from langchain_core.exceptions import ModelAPIError, ModelConnectionError
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from agents import router, supervisor
from agents.context import AgentContext
from agents.llm_agent import run_llm_specialist
from agents.specialists import billing as billing_flow
from agents.specialists import escalation as escalation_flow
from agents.specialists import scheduling as scheduling_flow
from agents.specialists import support as support_flow
from agents.specialists.base import run_specialist
from agents.state import CallState, Intervention

SPECIALIST_NODES = ("scheduling", "billing", "support")


class EndOfReply:
    """Written to the custom stream once the turn's reply is complete (nothing speakable follows)."""

    def __repr__(self) -> str:
        return "END_OF_REPLY"


END_OF_REPLY = EndOfReply()


async def supervise(state: CallState, runtime: Runtime[AgentContext]) -> Command[str]:
    update = await supervisor.supervise(runtime.context, state)
    opened = cast(CallState, {**state, **update})
    goto = after_supervise(opened)
    if goto == "route" and not router.needs_classifier(runtime.context, opened):
        # The caller answers the active specialist's question: `route` would only keep the call where
        # it is, so the turn goes straight to the specialist (one LangGraph step fewer).
        update = {**update, **router.staying(opened)}
        goto = opened.get("active", "router")
    elif goto == "route":
        router.prefetch(runtime.context, opened)  # the classifier runs while LangGraph moves on to `route`
    return Command(update=update, goto=goto)


async def route(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    return await router.route(runtime.context, state)


def _specialist(module: Any) -> Any:
    async def node(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
        ctx = runtime.context
        if ctx.models is not None:
            try:
                return await run_llm_specialist(module.AGENT, ctx, state, runtime.stream_writer)
            except (ModelAPIError, ModelConnectionError, TimeoutError) as exc:
                # The model is down or too slow: the deterministic flow answers this turn instead,
                # so the caller is never left in silence. (A partly streamed reply cannot be unsaid.)
                fallback = await run_specialist(
                    module.AGENT, ctx, state, module.start, module.flow, needs_verification=module.needs_verification
                )
                note = Intervention(
                    turn=state.get("turn", 0), kind="warn", reason="llm_unavailable", detail=type(exc).__name__
                )
                return {**fallback, "interventions": [note]}
        return await run_specialist(
            module.AGENT, ctx, state, module.start, module.flow, needs_verification=module.needs_verification
        )

    node.__name__ = module.AGENT
    return node


async def escalate(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    reason = (state.get("directive") or "escalate:requested_human").split(":", 1)[1]
    return await escalation_flow.escalate(runtime.context, state, reason)


async def respond(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    if state.get("reply"):
        return {"directive": None}
    return supervisor.canned(runtime.context, state)


def _reviewed(after: CallState, update: dict[str, Any], runtime: Runtime[AgentContext]) -> Command[str]:
    """The supervisor's review of the reply in `after` (the state with the step's `update` applied), then
    the reply spoken (or an escalation); returns the step's whole update."""
    checked = supervisor.review(runtime.context, after)
    update = _merged(update, checked)
    reviewed = _applied(after, checked)
    if after_review(reviewed) == "escalate":
        return Command(update=update, goto="escalate")
    return Command(update=_merged(update, _say(reviewed, runtime)), goto=END)


# Channels whose updates add up (`Annotated[list, operator.add]` in CallState); every other one is replaced.
_ADDED = frozenset(
    name
    for name, hint in get_type_hints(CallState, include_extras=True).items()
    if operator.add in getattr(hint, "__metadata__", ())
)


def _merged(first: dict[str, Any], then: dict[str, Any]) -> dict[str, Any]:
    """Two updates of one step as one, the way LangGraph applies two steps: lists add up, values replace."""
    out = dict(first)
    for key, value in then.items():
        out[key] = [*out[key], *value] if key in _ADDED and key in out else value
    return out


def _applied(state: CallState, update: dict[str, Any]) -> CallState:
    """The state as the next step would see it once `update` is applied."""
    return cast(CallState, _merged(cast(dict[str, Any], state), update))


async def speak(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    return _say(state, runtime)


def _say(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    """Stream the turn's reply (unless a streaming specialist already did), then mark the reply complete."""
    if not state.get("spoken"):
        runtime.stream_writer(state.get("reply", ""))
    runtime.stream_writer(END_OF_REPLY)
    return supervisor.speak(state)


def after_supervise(state: CallState) -> str:
    directive = state.get("directive") or ""
    if directive.startswith("escalate:"):
        return "escalate"
    if directive:
        return "respond"
    return "route"


def after_route(state: CallState) -> str:
    directive = state.get("directive") or ""
    if directive.startswith("escalate:"):
        return "escalate"
    if directive == "respond":
        return "respond"
    active = state.get("active", "router")
    return active if active in SPECIALIST_NODES else "respond"


def after_specialist(state: CallState) -> str:
    directive = state.get("directive") or ""
    if directive.startswith("escalate:"):
        return "escalate"
    if directive.startswith("handoff:") and directive.split(":", 1)[1] in SPECIALIST_NODES:
        return directive.split(":", 1)[1]
    return "review"


def after_review(state: CallState) -> str:
    return "escalate" if (state.get("directive") or "").startswith("escalate:") else "speak"


Node = Callable[[CallState, Runtime[AgentContext]], Awaitable[dict[str, Any]]]


def _then(node: Node, decide: Callable[[CallState], str]) -> Callable[..., Awaitable[Command[str]]]:
    """The node, followed by its routing decision, as one step: it returns where the call goes next.

    Deciding inside the node (a `Command`) instead of with a conditional edge spares LangGraph a read
    of the whole state after every node, which is most of its per-turn cost. The decision reads only
    plain (last-value) fields, so the state plus the node's update is exactly what an edge would see.
    """

    async def step(state: CallState, runtime: Runtime[AgentContext]) -> Command[str]:
        update = await node(state, runtime)
        return Command(update=update, goto=decide(cast(CallState, {**state, **update})))

    step.__name__ = getattr(node, "__name__", "step")
    return step


def _with_review(node: Node) -> Callable[..., Awaitable[Command[str]]]:
    """A specialist, then (unless it hands off or escalates) the supervisor's review of its reply, as one step.

    The review is the supervisor's, not the specialist's; it runs in the specialist's step because a
    LangGraph step of its own cost the caller about a millisecond on every turn (`bench/turn_ab.py graph`).
    """

    async def step(state: CallState, runtime: Runtime[AgentContext]) -> Command[str]:
        update = await node(state, runtime)
        after = _applied(state, update)
        goto = after_specialist(after)
        if goto != "review":
            return Command(update=update, goto=goto)
        return _reviewed(after, update, runtime)

    step.__name__ = getattr(node, "__name__", "step")
    return step


def build_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the call graph; pass a durable checkpointer so another process can resume a call."""
    g: StateGraph[Any, Any, Any, Any] = StateGraph(CallState, context_schema=AgentContext)
    g.add_node("supervise", supervise, destinations=("route", *SPECIALIST_NODES, "escalate", "respond"))
    g.add_node("route", _then(route, after_route), destinations=(*SPECIALIST_NODES, "escalate", "respond"))
    for name, module in zip(SPECIALIST_NODES, (scheduling_flow, billing_flow, support_flow), strict=True):
        others = tuple(n for n in SPECIALIST_NODES if n != name)
        g.add_node(name, _with_review(_specialist(module)), destinations=(*others, "escalate", END))
    g.add_node("escalate", escalate)
    g.add_node("respond", respond)
    g.add_node("speak", speak)

    g.add_edge(START, "supervise")
    g.add_edge("escalate", "speak")
    g.add_edge("respond", "speak")
    g.add_edge("speak", END)
    return g.compile(checkpointer=checkpointer, name="switchboard")
