"""The LLM-router baseline as a LiveKit agent: production's STT and TTS, a router LLM call, then the specialist's.

`switchboard bench calls` runs it beside the stack's agent worker (`python -m orchestrator.bench.baseline_agent`),
and its baseline rooms dispatch it by name from their callers' tokens. It prints a line once registered.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterable
from typing import Any

from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobProcess, ModelSettings, llm
from livekit.agents.types import NOT_GIVEN
from livekit.plugins import openai as openai_plugin

from orchestrator.config import get_settings
from orchestrator.providers.stt import TURN_SILENCE_S, load_vad
from orchestrator.providers.voice import build_stt, build_tts
from orchestrator.session.line import turn_handling

AGENT_NAME = "switchboard-baseline"
REGISTERED = "baseline agent registered"
ROUTER_PROMPT = "Which team should take this call: scheduling, billing, support or escalation? Answer with one word."


class RouterThenSpecialist(Agent):
    """Each turn asks the router LLM for the specialist (its whole, short answer), then streams the specialist LLM."""

    def __init__(self) -> None:
        super().__init__(instructions="You are a contact-centre specialist for Northwind Broadband. Be brief.")

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[Any], model_settings: ModelSettings
    ) -> AsyncIterable[Any]:
        router = self.session.llm
        assert isinstance(router, llm.LLM)
        routing = chat_ctx.copy()
        routing.add_message(role="system", content=ROUTER_PROMPT)
        async with router.chat(chat_ctx=routing) as answer:
            async for _ in answer:
                pass
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk


def _prewarm(proc: JobProcess) -> None:
    proc.userdata["vad"] = load_vad()
    proc.userdata["turn_vad"] = load_vad(min_silence_s=TURN_SILENCE_S)  # both designs take turns alike


async def _entrypoint(ctx: JobContext) -> None:
    settings = get_settings()
    vad = ctx.proc.userdata["vad"]
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else "bench"
    session: AgentSession[Any] = AgentSession(
        stt=build_stt(settings, vad=vad),
        tts=build_tts(settings),
        vad=ctx.proc.userdata["turn_vad"],
        llm=openai_plugin.LLM(model="gpt-4o-mini", base_url=settings.openai_base_url or NOT_GIVEN, api_key=key),
        turn_handling=turn_handling(resume_after_noise=True),  # type: ignore[arg-type]  # livekit types it as a TypedDict
    )
    # The caller's departure closes the session; the job ends with it, as the production agent's does.
    session.on("close", lambda _ev: ctx.shutdown(reason="call ended"))
    await ctx.connect()
    await session.start(RouterThenSpecialist(), room=ctx.room)


async def main() -> None:
    """Register with the server (LIVEKIT_URL and keys from the environment) and take baseline calls until killed."""
    server = AgentServer(
        setup_fnc=_prewarm,
        # Never full: the benchmark decides how many calls run at once, not the machine's CPU load.
        load_fnc=lambda _server: 0.0,
        num_idle_processes=2,
        initialize_process_timeout=60.0,
        port=0,
    )
    server.rtc_session(agent_name=AGENT_NAME)(_entrypoint)
    server.on("worker_registered", lambda *_: print(REGISTERED, flush=True))
    await server.run()


if __name__ == "__main__":
    asyncio.run(main())
