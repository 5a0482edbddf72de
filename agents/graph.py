"""The call graph: the one place where nodes and edges are wired. Read this file to see the whole flow.

One graph run is one caller turn (thread_id = call id; the checkpointer keeps the call's state):

    supervise ─┬─▶ route ─┬─▶ scheduling | billing | support ─┬─▶ review ─┬─▶ speak ─▶ END
               │          ├─▶ escalate                          │          └─▶ escalate
               │          └─▶ respond (out of scope, clarify)    ├─▶ (another specialist: same-turn handoff)
               ├─▶ escalate (human asked, legal, emergency, ...) └─▶ escalate
               ├─▶ respond (re-prompt, greeting, language, goodbye, hold)
               └─▶ the active specialist is reached through route, which keeps it unless the topic changed

Only `speak` (and LLM specialists, sentence by sentence) write speakable text to the stream.
Every node and edge function is async: LangGraph runs sync ones in a thread pool, a hop per step.
"""

from __future__ import annotations

from typing import Any

from langchain_core.exceptions import ModelAPIError, ModelConnectionError
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime

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


async def supervise(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    return await supervisor.supervise(runtime.context, state)


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


async def review(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    return supervisor.review(runtime.context, state)


async def speak(state: CallState, runtime: Runtime[AgentContext]) -> dict[str, Any]:
    if not state.get("spoken"):
        runtime.stream_writer(state.get("reply", ""))
    return supervisor.speak(state)


async def after_supervise(state: CallState) -> str:
    directive = state.get("directive") or ""
    if directive.startswith("escalate:"):
        return "escalate"
    if directive:
        return "respond"
    return "route"


async def after_route(state: CallState) -> str:
    directive = state.get("directive") or ""
    if directive.startswith("escalate:"):
        return "escalate"
    if directive == "respond":
        return "respond"
    active = state.get("active", "router")
    return active if active in SPECIALIST_NODES else "respond"


async def after_specialist(state: CallState) -> str:
    directive = state.get("directive") or ""
    if directive.startswith("escalate:"):
        return "escalate"
    if directive.startswith("handoff:") and directive.split(":", 1)[1] in SPECIALIST_NODES:
        return directive.split(":", 1)[1]
    return "review"


async def after_review(state: CallState) -> str:
    return "escalate" if (state.get("directive") or "").startswith("escalate:") else "speak"


def build_graph(checkpointer: BaseCheckpointSaver[Any] | None = None) -> CompiledStateGraph[Any, Any, Any, Any]:
    """Compile the call graph; pass a durable checkpointer so another process can resume a call."""
    g: StateGraph[Any, Any, Any, Any] = StateGraph(CallState, context_schema=AgentContext)
    g.add_node("supervise", supervise)
    g.add_node("route", route)
    g.add_node("scheduling", _specialist(scheduling_flow))
    g.add_node("billing", _specialist(billing_flow))
    g.add_node("support", _specialist(support_flow))
    g.add_node("escalate", escalate)
    g.add_node("respond", respond)
    g.add_node("review", review)
    g.add_node("speak", speak)

    g.add_edge(START, "supervise")
    g.add_conditional_edges("supervise", after_supervise, ["route", "escalate", "respond"])
    g.add_conditional_edges("route", after_route, [*SPECIALIST_NODES, "escalate", "respond"])
    for name in SPECIALIST_NODES:
        others = [n for n in SPECIALIST_NODES if n != name]
        g.add_conditional_edges(name, after_specialist, [*others, "escalate", "review"])
    g.add_conditional_edges("review", after_review, ["speak", "escalate"])
    g.add_edge("escalate", "speak")
    g.add_edge("respond", "speak")
    g.add_edge("speak", END)
    return g.compile(checkpointer=checkpointer, name="switchboard")
