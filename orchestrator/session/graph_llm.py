"""GraphLLM: the LangGraph call graph as a livekit-agents LLM, streaming only speakable text.

Unlike livekit-plugins-langchain's LLMAdapter, this adapter (a) uses LangGraph's `custom` stream mode so
router output and tool results are never spoken, (b) runs one graph thread per call (thread_id = call
id), and (c) feeds the graph only the newest caller utterance, once: the graph's checkpoint owns the call
history, so assistant turns are never duplicated by LiveKit's echo of them.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Overwrite
from livekit.agents import (
    Agent,
    AgentSession,
    ModelSettings,
    SpeechCreatedEvent,
    UserInputTranscribedEvent,
    llm,
)
from livekit.agents.types import DEFAULT_API_CONNECT_OPTIONS, NOT_GIVEN, APIConnectOptions, FlushSentinel, NotGivenOr
from livekit.agents.voice import SpeechHandle

from agents import router
from agents.context import AgentContext
from agents.graph import EndOfReply
from agents.state import ReplyCut
from agents.supervisor import cut_reply
from orchestrator.providers.stt import EXPECTS_DIGITS_KEY
from orchestrator.redact import describe_error, describe_traceback, redact_caller_input
from orchestrator.session.endpointing import CONFIRMS_EFFECT_KEY
from orchestrator.store.checkpoints import LatestCheckpointCache

log = logging.getLogger(__name__)

# A graph turn must never be retried by the session: it has side effects (bookings, payments).
_NO_RETRY = APIConnectOptions(max_retry=0, retry_interval=0.0, timeout=DEFAULT_API_CONNECT_OPTIONS.timeout)

# Marks the chunk that says the turn's reply is complete (`ChoiceDelta.extra`); see `GraphAgent`.
END_OF_REPLY_KEY = "switchboard.end_of_reply"


def is_end_of_reply(chunk: object) -> bool:
    """Whether a chunk from `GraphLLM` marks the end of the turn's speakable reply."""
    return (
        isinstance(chunk, llm.ChatChunk)
        and chunk.delta is not None
        and bool(chunk.delta.extra)
        and bool(chunk.delta.extra.get(END_OF_REPLY_KEY))  # type: ignore[union-attr]  # checked just above
    )


class GraphAgent(Agent):
    """The call's agent: speaks what the graph streams, and its last sentence as soon as the reply is complete.

    The TTS's sentence splitter holds a reply's last sentence until its text stream ends, and the graph's
    stream ends only after the turn's checkpoint is written. The graph marks the end of the reply
    first; this agent turns that mark into a flush, so the write is never on the way to the caller's ear.
    """

    def __init__(self) -> None:
        super().__init__(instructions="The call graph decides every reply; see agents/graph.py.")

    async def llm_node(
        self, chat_ctx: llm.ChatContext, tools: list[llm.Tool], model_settings: ModelSettings
    ) -> AsyncIterator[llm.ChatChunk | str | FlushSentinel]:
        async for chunk in Agent.default.llm_node(self, chat_ctx, tools, model_settings):
            yield chunk  # the end-of-reply mark's extra rides on to the assistant message (the STT reads it)
            if is_end_of_reply(chunk):
                yield FlushSentinel()


@dataclass
class TurnTiming:
    """Per-turn timings the session reads back (seconds, perf_counter based)."""

    started: float = 0.0
    first_token: float | None = None
    finished: float | None = None
    # Set when the turn's graph run has ended (its checkpoint written), whatever the outcome.
    done: asyncio.Event = field(default_factory=asyncio.Event)


@dataclass
class GraphTurns:
    """What the adapter saw, per turn; the session runner reads it for records and latency."""

    timings: list[TurnTiming] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


class GraphLLM(llm.LLM[Any]):
    """One call's graph, presented to AgentSession as its LLM."""

    def __init__(
        self,
        graph: CompiledStateGraph[Any, Any, Any, Any],
        context: AgentContext,
        *,
        call_id: str,
        caller_id: str | None = None,
        callbacks: Sequence[BaseCallbackHandler] = (),
    ) -> None:
        super().__init__()
        self.callbacks = list(callbacks)
        self.graph = graph
        self.context = context
        self.call_id = call_id
        self.caller_id = caller_id
        self.turns = GraphTurns()
        self._seen_items: set[str] = set()
        self._first_turn = True
        # The caller's words of the turn in progress, as the STT finalised them (see `on_transcribed`).
        self._heard = ""
        self._speculated: tuple[str, str] | None = None
        # The newest turn's reply as streamed, and what the caller heard of it if they cut it off (`on_speech`).
        self.reply = ""
        self._cut: ReplyCut | None = None
        if isinstance(graph.checkpointer, LatestCheckpointCache):
            # The call starts (or resumes) here: its state comes from the store, whatever this process
            # remembers of it from an earlier stint (the call may have run on another worker since).
            graph.checkpointer.forget(call_id)

    async def prepare(self) -> None:
        """Read the call's checkpoint into memory before its first turn (the session calls this as the
        call starts, while the caller hears the greeting), so the first turn starts without a store read.

        A turn cut off by a crash, a drain deadline or a hang-up leaves a checkpoint of its own (LangGraph
        writes one as a cancelled run exits, even with ``durability="exit"``) with nodes still to run. A
        turn is the unit of resumption, so the call resumes from the end of its last whole turn and the cut
        one is taken again in full (its effects are idempotent per call and turn: nothing happens twice).
        """
        await self.discard_interrupted_turn()
        if isinstance(self.graph.checkpointer, LatestCheckpointCache):
            await self.graph.checkpointer.load(self.call_id)

    async def discard_interrupted_turn(self) -> bool:
        """Make the end of the call's last whole turn its latest checkpoint again; True when a turn was cut."""
        config: RunnableConfig = {"configurable": {"thread_id": self.call_id}}
        # The history is read from the store, newest first (a cached latest state may not show the nodes a
        # cut run left pending).
        cut = False
        async for snapshot in self.graph.aget_state_history(config):
            if not cut:
                if not snapshot.next:
                    return False  # the latest checkpoint ends a whole turn
                cut = True
            elif not snapshot.next and snapshot.values:
                await self.graph.aupdate_state(snapshot.config, None, as_node="__copy__")
                break
        else:
            if not cut:
                return False  # a new call
            # The call's first turn was cut: nothing of it is kept.
            if isinstance(self.graph.checkpointer, BaseCheckpointSaver):
                await self.graph.checkpointer.adelete_thread(self.call_id)
        log.warning("resuming after an interrupted turn", extra={"call_id": self.call_id})
        return True

    @property
    def model(self) -> str:
        return "switchboard-graph"

    @property
    def provider(self) -> str:
        return "switchboard"

    @property
    def config(self) -> RunnableConfig:
        # Callbacks (the telemetry's span handler) see every node, tool and model call of the turn.
        return {"configurable": {"thread_id": self.call_id}, "callbacks": self.callbacks}

    def chat(
        self,
        *,
        chat_ctx: llm.ChatContext,
        tools: list[llm.Tool] | None = None,
        conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS,
        parallel_tool_calls: NotGivenOr[bool] = NOT_GIVEN,
        tool_choice: NotGivenOr[llm.ToolChoice] = NOT_GIVEN,
        extra_kwargs: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> GraphStream:
        return GraphStream(self, chat_ctx=chat_ctx, tools=tools or [], conn_options=_NO_RETRY)

    def follow(self, session: AgentSession[Any]) -> None:
        """Follow a voice session's events: the STT's finals (`on_transcribed`), the replies' cut-offs (`on_speech`)."""
        session.on("user_input_transcribed", self.on_transcribed)
        session.on("speech_created", self.on_speech)

    def on_speech(self, ev: SpeechCreatedEvent) -> None:
        """Watch a reply the graph wrote: if the caller cuts it off, the next turn's input says what they heard
        (or `apply_cut` writes it, if the call ends first).

        The session keeps what was heard in the reply's chat message (in a room, the transcript synchronised
        with playout; no message if nothing was heard). `supervise` puts it in the graph's transcript in
        place of the whole reply, so the models, the supervisor's checks and the call record see what was
        said to the caller, not what was meant to be.
        """
        if ev.source == "generate_reply":  # not `say`: the greeting and a supervisor's typed lines
            ev.speech_handle.add_done_callback(self._speech_done)

    def _speech_done(self, handle: SpeechHandle) -> None:
        if not handle.interrupted or not self.reply:
            return
        heard = " ".join(
            (item.text_content or "").strip()
            for item in handle.chat_items
            if isinstance(item, llm.ChatMessage) and item.role == "assistant"
        )
        self._cut = ReplyCut(said=self.reply, heard=heard.strip())

    async def apply_cut(self) -> None:
        """Write a cut-off reply that no later turn will carry into the checkpoint: the call is ending.

        The session calls this once it has closed (a caller who hangs up mid-reply cuts it off too).
        """
        cut, self._cut = self._cut, None
        if cut is None:
            return
        try:
            state = await self.graph.aget_state(self.config)
            corrected = cut_reply(state.values.get("transcript", []), cut)
            if corrected is not None:
                await self.graph.aupdate_state(self.config, {"transcript": Overwrite(corrected)})
        except Exception:  # noqa: BLE001 - the call is closing: the reply stays whole, nothing else is lost
            log.warning("call %s: could not write the cut-off reply", self.call_id, exc_info=True)

    def on_transcribed(self, ev: UserInputTranscribedEvent) -> None:
        """Start classifying the caller's words at the STT's final transcript, before the turn is committed.

        A voice session subscribes this to `user_input_transcribed`. The session commits the turn only
        once the caller has been silent for the VAD's window (0.4 s), and a streaming STT's final usually
        comes well before that (Deepgram finalises after 25 ms of silence); the model runs in that wait,
        so `route` finds its answer ready. The words are joined as the session joins a turn's finals (one
        space, in order), so the key is the one the committed turn will have; a turn that ends with other
        words (a final after the commit, a false start) just misses, and `route` classifies it then. Only
        the newest joined text of a turn stays speculated.
        """
        if not ev.is_final or not ev.transcript:
            return
        self._heard = f"{self._heard} {ev.transcript}".lstrip()
        # Redacted as the committed turn will be (`take_newest_utterance`), so the keys match.
        words = redact_caller_input(self._heard)
        key = router.intent_key(self.call_id, words)
        if self._speculated is not None and self._speculated != key:
            self.context.intents.discard(self._speculated)
        started = router.speculate(self.context, self.call_id, words, first_turn=self._first_turn)
        self._speculated = key if started else None

    def take_newest_utterance(self, chat_ctx: llm.ChatContext) -> str | None:
        """The newest caller message not yet given to the graph, or None (nothing new: no turn).

        This is where a caller's words enter the graph, and so its checkpoints and every record built from
        them: they come out sanitised, with cards, SSNs and e-mail addresses masked (`redact_caller_input`).
        """
        for item in reversed(chat_ctx.items):
            if item.type == "message" and item.role == "user":
                if item.id in self._seen_items:
                    return None
                self._seen_items.add(item.id)
                # The turn is committed: finals from now on belong to the next one.
                self._heard, self._speculated = "", None
                return redact_caller_input(item.text_content or "")
        return None

    def turn_input(self, utterance: str) -> dict[str, Any]:
        data: dict[str, Any] = {"utterance": utterance}
        if self._first_turn:
            data.update(call_id=self.call_id, caller_id=self.caller_id)
            self._first_turn = False
        if self._cut is not None:
            data["reply_cut"], self._cut = self._cut, None
        self.reply = ""
        return data


class GraphStream(llm.LLMStream):
    """Runs one graph turn and forwards the `custom` stream as assistant text deltas."""

    _llm: GraphLLM

    async def _run(self) -> None:
        graph_llm = self._llm
        utterance = graph_llm.take_newest_utterance(self._chat_ctx)
        if utterance is None:
            return
        timing = TurnTiming(started=time.perf_counter())
        graph_llm.turns.timings.append(timing)
        # The classifier starts now, on another core, while the graph starts and supervises (unless the words
        # are a short answer, or a voice session started it at the STT's final: `on_transcribed`).
        router.speculate(graph_llm.context, graph_llm.call_id, utterance, first_turn=graph_llm._first_turn)
        request_id = uuid.uuid4().hex
        try:
            async for chunk in graph_llm.graph.astream(
                graph_llm.turn_input(utterance),
                config=graph_llm.config,
                context=graph_llm.context,
                stream_mode="custom",
                # One checkpoint per turn, written when the turn ends: a turn is the unit of resumption,
                # and per-node writes cost a commit each on the critical path.
                durability="exit",
            ):
                if isinstance(chunk, EndOfReply):
                    extra = {
                        END_OF_REPLY_KEY: True,
                        EXPECTS_DIGITS_KEY: chunk.expects_digits,
                        CONFIRMS_EFFECT_KEY: chunk.confirms_effect,
                    }
                    self._event_ch.send_nowait(llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(extra=extra)))
                    continue
                text = chunk if isinstance(chunk, str) else str(chunk)
                if not text:
                    continue
                if timing.first_token is None:
                    timing.first_token = time.perf_counter()
                graph_llm.reply += text
                self._event_ch.send_nowait(
                    llm.ChatChunk(id=request_id, delta=llm.ChoiceDelta(role="assistant", content=text))
                )
        except Exception as exc:
            # The caller must never be left in silence: apologise, keep the error for the call record. Neither
            # the log nor the record takes the exception's text: a store's error quotes the data it refused.
            log.error("graph turn failed: %s", describe_traceback(exc), extra={"call_id": graph_llm.call_id})
            graph_llm.turns.errors.append(describe_error(exc)[:300])
            self._event_ch.send_nowait(
                llm.ChatChunk(
                    id=request_id,
                    delta=llm.ChoiceDelta(
                        role="assistant",
                        content="I'm sorry, something went wrong on our side. Please bear with me.",
                    ),
                )
            )
        finally:
            timing.finished = time.perf_counter()
            timing.done.set()
