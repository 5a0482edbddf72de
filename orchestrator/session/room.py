"""A voice call in a LiveKit room (or on a local line for simulated callers), its turns recorded as they happen."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.callbacks import BaseCallbackHandler
from livekit import rtc
from livekit.agents import AgentSession, llm, tts
from livekit.agents.voice.events import AgentStateChangedEvent, ConversationItemAddedEvent, UserStateChangedEvent

from agents.ports import NotFound, PolicyViolation
from agents.state import Turn
from agents.supervisor import speaker_of
from orchestrator.domain.desk import SqlHumanDesk
from orchestrator.providers.voice import VoiceStack
from orchestrator.results import TurnRecord
from orchestrator.runtime import Services
from orchestrator.session.graph_llm import GraphAgent
from orchestrator.session.line import CaptureAudioOutput, LineAudioInput, caller_speech, turn_handling
from orchestrator.session.participants import console_user, sip_caller
from orchestrator.session.telephony import CallerKeys, Keypad
from orchestrator.session.text import TextCall
from orchestrator.session.transfer import DeskTransfer, listener_only
from orchestrator.telemetry import names as n
from orchestrator.telemetry.voice import turn_stages

__all__ = ["LocalLine", "VoiceCall", "VoiceTurnRecord", "play_caller"]

log = logging.getLogger(__name__)

BeforeTurn = Callable[[TextCall], Awaitable[None]]
# Opens what supervisors type into a call from now on, as it arrives (the console's live feed).
HumanLines = Callable[[], Awaitable[AsyncIterator[str]]]
TurnDone = Callable[[TextCall, str, TurnRecord], Awaitable[None]]
# Told when a supervisor (by username) joins (True) or leaves (False) the call's room; says whether they hold it.
Presence = Callable[[str, bool], Coroutine[Any, Any, bool]]

# A caller in a room who says nothing for livekit's user-away timeout (`Settings.caller_away_s`, 15 s of silence on
# both sides) is asked once if they are still there; silent as long again, the call ends (a dead line, or gone).
STILL_THERE = "Are you still there?"

# How long a turn's record waits for the graph run behind it to finish (its checkpoint holds the turn's
# agent and intent); the reply is normally spoken only after that, so this is a bound, not a delay.
_GRAPH_SETTLE_S = 2.0


@dataclass
class VoiceTurnRecord(TurnRecord):
    """A voice call's caller turn, with its latency by stage as the session measured it.

    ``latency_ms`` is the first agent audio after the caller stopped speaking (0 when the reply never
    played); ``stages`` maps `names.STAGES` to milliseconds; ``interrupted`` says the caller cut the reply.
    """

    stages: dict[str, float] = field(default_factory=dict)
    interrupted: bool = False

    def public(self) -> dict[str, Any]:
        data = super().public()
        data["stages"] = dict(self.stages)
        data["interrupted"] = self.interrupted
        return data


@dataclass
class LocalLine:
    """A phone line into a session with no room: a simulated caller's speech in, the agent's audio out."""

    input: LineAudioInput
    output: CaptureAudioOutput

    @classmethod
    def open(cls, *, sample_rate: int = 16000) -> LocalLine:
        # No real-time playout: nobody listens, and the agent's reply is over once it is rendered.
        return cls(LineAudioInput(sample_rate=sample_rate), CaptureAudioOutput(realtime=False))


class _CallAgent(GraphAgent):
    """The graph's agent, applying the console's commands before the graph runs each caller turn."""

    def __init__(self, before_turn: Callable[[], Awaitable[None]]) -> None:
        super().__init__()
        self._before_turn = before_turn

    async def on_user_turn_completed(self, turn_ctx: llm.ChatContext, new_message: llm.ChatMessage) -> None:
        # Whispers, take-overs and a supervisor's lines reach the checkpoint before the turn reads it,
        # exactly as between two text turns.
        await self._before_turn()


class VoiceCall(TextCall):
    """A call heard and answered through the voice providers, in a LiveKit room or on a `LocalLine`.

    The caller drives the turns. Each caller message the session commits, with the reply spoken to it,
    becomes a `VoiceTurnRecord` (appended to ``result`` and given to ``on_turn``) once the reply is over;
    ``before_turn`` runs before the graph runs each caller turn. ``closed`` is set when the session closes
    (in a room: the caller hung up).

    Args:
        services: The process's graph and tenant.
        voice: VAD, STT and TTS (with the phrase cache) for this call.
        call_id: The call (the graph thread).
        caller_id: The caller's number, for verification.
        callbacks: The graph's LangChain callbacks (the telemetry's span handler).
        room: The call's LiveKit room; None with ``line``.
        line: A local line instead of a room (simulated callers).
        before_turn: Called with the call before the graph runs a caller turn.
        on_turn: Called with the call, the caller's words and the record after each answered turn.
        human_lines: Lines a supervisor types into the call (barge-in, take-over); each is spoken to the
            caller as it arrives, in the agent's voice. (They reach the graph's transcript by `before_turn`.)
        presence: Told of each supervisor who joins or leaves the room (the console checks that the one
            holding the call is there).
    """

    def __init__(
        self,
        services: Services,
        voice: VoiceStack,
        *,
        call_id: str,
        caller_id: str | None = None,
        callbacks: Sequence[BaseCallbackHandler] = (),
        room: rtc.Room | None = None,
        line: LocalLine | None = None,
        before_turn: BeforeTurn | None = None,
        on_turn: TurnDone | None = None,
        human_lines: HumanLines | None = None,
        presence: Presence | None = None,
    ) -> None:
        if (room is None) == (line is None):
            raise ValueError("a voice call runs in a room or on a local line, exactly one of them")
        super().__init__(services, call_id=call_id, caller_id=caller_id, callbacks=callbacks)
        self.room = room
        self.line = line
        self.before_turn = before_turn
        self.on_turn = on_turn
        self.human_lines = human_lines
        self._speaker: asyncio.Task[None] | None = None
        # A local line carries only the caller (no echo to cancel), and a script has pauses of its own.
        line_options: dict[str, Any] = (
            {"user_away_timeout": services.settings.caller_away_s}
            if line is None
            else {"user_away_timeout": None, "aec_warmup_duration": None}
        )
        self.session = AgentSession(
            llm=self.llm,
            stt=voice.stt,
            vad=voice.turn_vad,
            tts=voice.tts,
            turn_handling=turn_handling(resume_after_noise=line is None),  # type: ignore[arg-type]  # livekit types it as a TypedDict
            **line_options,
        )
        if line is not None:
            self.session.input.audio = line.input
            self.session.output.audio = line.output
        self.closed = asyncio.Event()
        self._asked = False
        self._asking: asyncio.Task[None] | None = None
        if room is not None:
            self.session.on("user_state_changed", self._on_user_state)
        self._items: asyncio.Queue[llm.ChatMessage | None] = asyncio.Queue()
        self._recorder: asyncio.Task[None] | None = None
        self._recorded = asyncio.Condition()
        self.session.on("conversation_item_added", self._on_item)
        self.llm.follow(self.session)  # the router starts at the STT final; cut-off replies are noted
        self.session.on("close", lambda _ev: self.closed.set())
        # A phone caller's keyed digits (a room's SIP DTMF) are a caller turn of their own.
        self.keypad: Keypad | None = None
        # Whose keys count: the call's SIP caller's only.
        self._caller_keys = CallerKeys(room) if room is not None else None
        # The escalated phone caller's transfer to the desk (`Settings.transfer_sip_uri`), once asked for.
        self._transfer: asyncio.Task[None] | None = None
        self.transferred: bool | None = None
        self.presence = presence
        self._moves: set[asyncio.Task[None]] = set()
        if room is not None:
            self.keypad = Keypad(self._keyed)
            room.on("participant_connected", self._on_joined)
            room.on("participant_disconnected", self._on_left)
            room.on("sip_dtmf_received", self._on_dtmf)
            self.session.on("agent_state_changed", self._on_agent_state)

    async def start(self) -> None:
        await self.llm.prepare()
        self._recorder = asyncio.create_task(self._record_turns(), name=f"voice-turns-{self.call_id}")
        agent = _CallAgent(self._apply_console)
        if self.room is not None:
            await self.session.start(agent, room=self.room)
        else:
            await self.session.start(agent)
        self._started = True
        if self.human_lines is not None:
            lines = await self.human_lines()
            self._speaker = asyncio.create_task(self._speak(lines), name=f"voice-human-{self.call_id}")

    def link_caller(self, caller: rtc.RemoteParticipant) -> None:
        """Hear ``caller`` (`participants.find_caller`) and no one else in the room.

        livekit's RoomIO takes the first standard or SIP participant it sees: a supervisor already listening in
        would be taken for the caller, and the caller's words never heard.
        """
        room_io = self.session.room_io
        linked = room_io.linked_participant
        if linked is None or linked.identity != caller.identity:
            kind = rtc.ParticipantKind.Name(caller.kind)
            log.info("call %s: the session hears the caller (%s), not whoever joined first", self.call_id, kind)
        room_io.set_participant(caller.identity)

    async def _speak(self, lines: AsyncIterator[str]) -> None:
        try:
            async for text in lines:
                # Not added to the session's chat context: the graph's checkpoint owns the transcript, and
                # the line must not be taken for the agent's answer to a caller turn.
                self.session.say(text, add_to_chat_ctx=False)
        except Exception:
            log.exception("call %s: speaking a supervisor's lines failed", self.call_id)

    def _on_joined(self, participant: rtc.RemoteParticipant) -> None:
        self._moved(participant, True)

    def _on_left(self, participant: rtc.RemoteParticipant) -> None:
        self._moved(participant, False)

    def _moved(self, participant: rtc.RemoteParticipant, present: bool) -> None:
        username = console_user(participant.identity)
        if self.presence is None or username is None:
            return
        if not present and self.room is not None and participant.identity in self.room.remote_participants:
            return  # the same console joined again before its old connection was dropped (a page reload)
        task = asyncio.create_task(
            self._report(participant.identity, username, present), name=f"voice-presence-{self.call_id}"
        )
        self._moves.add(task)
        task.add_done_callback(self._moves.discard)

    async def _report(self, identity: str, username: str, present: bool) -> None:
        assert self.presence is not None
        holds = await self.presence(username, present)
        if present and not holds and self.room is not None:
            # Never two voices: a console user who does not hold the call (an accepted escalation that went back
            # to the queue, a token kept from before) only listens until they accept or take it over again.
            log.warning("call %s: a console user who does not hold the call joined: they may only listen", self.call_id)
            await listener_only(self.services.settings, self.room.name, identity)

    def _on_dtmf(self, dtmf: rtc.SipDTMF) -> None:
        # Only the caller's keys answer the caller's questions (a supervisor's would verify the caller).
        if self.keypad is not None and self._caller_keys is not None and self._caller_keys.accepts(dtmf):
            self.keypad.key(dtmf.digit)

    def _on_agent_state(self, ev: AgentStateChangedEvent) -> None:
        if self.keypad is not None:
            self.keypad.set_busy(ev.new_state in ("speaking", "thinking"))

    async def _keyed(self, digits: str) -> None:
        # The entry ends the caller's turn as the end of speech does: the reply's first audio is timed from it
        # (livekit's e2e_latency, the turn's latency), where it would otherwise have none.
        entry = llm.ChatMessage(role="user", content=[digits], metrics={"stopped_speaking_at": time.time()})
        # The graph reads it as it reads a spoken turn (a phone number, a ZIP code), after the console's commands.
        await self._apply_console()
        self.session.generate_reply(user_input=entry)

    def _on_user_state(self, ev: UserStateChangedEvent) -> None:
        if ev.new_state == "speaking":
            self._asked = False  # they are there: a later silence is asked about again
        elif ev.new_state == "away" and not self._asked:
            log.warning(
                "call %s: the caller has said nothing for a while: asking if they are still there", self.call_id
            )
            self._asked = True
            if self._asking is None or self._asking.done():
                self._asking = asyncio.create_task(self._still_there(), name=f"voice-away-{self.call_id}")
        elif ev.new_state == "away":
            log.warning("call %s: no word from the caller after asking if they are still there: ending the call",
                     self.call_id)  # fmt: skip
            self.session.shutdown()

    async def _still_there(self) -> None:
        # Not a reply to any caller turn, so not in the chat context; once it is said, the silence is timed afresh.
        await self.session.say(STILL_THERE, add_to_chat_ctx=False).wait_for_playout()
        self.session.reset_away_timer()

    async def _apply_console(self) -> None:
        if self.before_turn is not None:
            await self.before_turn(self)

    def _on_item(self, ev: ConversationItemAddedEvent) -> None:
        item = ev.item
        if isinstance(item, llm.ChatMessage) and item.role in ("user", "assistant"):
            self._items.put_nowait(item)

    async def _record_turns(self) -> None:
        """Pair each reply with the caller messages it answers, in order, until `drain` ends the stream."""
        callers: list[llm.ChatMessage] = []
        while (item := await self._items.get()) is not None:
            if item.role == "user":
                callers.append(item)
            elif callers:
                await self._record(callers, item)
                callers = []
            # A reply with no caller message before it (a greeting) answers no turn.
        if callers:
            await self._record(callers, None)

    async def _record(self, callers: list[llm.ChatMessage], reply: llm.ChatMessage | None) -> None:
        try:
            await self._graph_settled()
            state = await self.state()
            utterance = " ".join((m.text_content or "").strip() for m in callers).strip()
            stages = turn_stages(callers[-1].metrics, reply.metrics if reply is not None else {})
            timing = self.llm.turns.timings[-1] if self.llm.turns.timings else None
            record = VoiceTurnRecord(
                caller=utterance,
                agent=(reply.text_content or "").strip() if reply is not None else "",
                agent_name=speaker_of(state),
                intent=state.get("intent"),
                confidence=state.get("confidence"),
                latency_ms=stages.get(n.STAGE_E2E, 0.0),
                graph_ms=round(((timing.finished or timing.started) - timing.started) * 1000, 2) if timing else 0.0,
                stages=stages,
                interrupted=bool(reply is not None and reply.interrupted),
            )
            self.result.turns.append(record)
            self._absorb(state)
            self._transfer_if_escalated(state)
            if self.on_turn is not None:
                await self.on_turn(self, utterance, record)
        except Exception:
            # A turn that cannot be published must not stop the recording of the next ones.
            log.exception("call %s: recording a voice turn failed", self.call_id)
        finally:
            async with self._recorded:
                self._recorded.notify_all()

    def _transfer_if_escalated(self, state: dict[str, Any]) -> None:
        """Once the graph has escalated a phone caller and told them so, hand them to the desk by SIP, if one is set.

        The ticket with its summary was written by the turn that escalated, and its reply is over (a turn is
        recorded after its playout), so the desk's agent reads the ticket before the caller reaches them.
        """
        if self._transfer is not None or self.room is None or not self.services.settings.transfer_sip_uri:
            return
        if state.get("outcome") != "escalated" or state.get("human_agent"):
            return
        caller = sip_caller(self.room)
        if caller is None:
            return  # a WebRTC caller has no phone leg to transfer: a person joins from the console
        self._transfer = asyncio.create_task(
            self._transfer_to_desk(self.room.name, caller.identity), name=f"voice-transfer-{self.call_id}"
        )

    async def _transfer_to_desk(self, room_name: str, identity: str) -> None:
        outcome = await DeskTransfer(self.services.settings).transfer(room_name, identity)
        self.transferred = outcome.ok
        try:
            if outcome.ok:
                log.info("call %s: the caller was transferred to the desk", self.call_id)
                await self.update_state({"outcome": "transferred", "ended": True})
                await self._desk_took(self.result.ticket_id)
            else:
                log.warning(
                    "call %s: transfer to the desk failed: %s; the caller stays with the AI",
                    self.call_id,
                    outcome.detail,
                )
                line = self.services.prompts.reply("escalation.transfer_failed")
                # The ticket stays waiting for the console; the caller hears why they are still with us.
                await self.update_state({"transcript": [Turn(role="agent", agent="escalation", text=line)]})
                if not self.closed.is_set():
                    self.session.say(line, add_to_chat_ctx=False)
            self._absorb(await self.state())
        except Exception:
            log.exception("call %s: recording the transfer's outcome failed", self.call_id)

    async def _desk_took(self, ticket_id: str | None) -> None:
        """The ticket is the desk's now (accepted by its URI), so the console never offers a caller gone to it."""
        desk = self.services.tenant.desk
        if ticket_id is None or not isinstance(desk, SqlHumanDesk):
            return
        with contextlib.suppress(PolicyViolation, NotFound):  # a supervisor took it from the console meanwhile
            await desk.accept(ticket_id, str(self.services.settings.transfer_sip_uri))

    async def _graph_settled(self) -> None:
        if self.llm.turns.timings:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.llm.turns.timings[-1].done.wait(), _GRAPH_SETTLE_S)

    async def wait_turns(self, count: int, *, timeout_s: float) -> bool:
        """Wait until ``count`` turns are recorded (or the session closed); False on timeout."""
        async with self._recorded:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(
                    self._recorded.wait_for(lambda: len(self.result.turns) >= count or self.closed.is_set()),
                    timeout_s,
                )
        return len(self.result.turns) >= count

    async def drain(self) -> None:
        """Close the session and record what it committed last (idempotent)."""
        if self._asking is not None and not self._asking.done():
            self._asking.cancel()
        if self._speaker is not None:
            self._speaker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._speaker
            self._speaker = None
        if self._transfer is not None:
            # Bounded by the transfer's own cap: its outcome belongs in the record written after this.
            await self._transfer
        if self.keypad is not None:
            if self.room is not None:
                self.room.off("sip_dtmf_received", self._on_dtmf)
                self.room.off("participant_connected", self._on_joined)
                self.room.off("participant_disconnected", self._on_left)
            await self.keypad.aclose()
        if self._moves:
            await asyncio.gather(*self._moves, return_exceptions=True)
        await self.close_session()
        if self._recorder is not None:
            self._items.put_nowait(None)
            await self._recorder
            self._recorder = None

    async def aclose(self) -> None:
        try:
            await self.drain()
        finally:
            await super().aclose()
            if self.line is not None:
                await self.line.output.aclose()


async def play_caller(
    call: VoiceCall, engine: tts.TTS[Any], script: Sequence[str], *, reply_timeout_s: float = 20.0
) -> None:
    """Speak a simulated caller's script down the call's line, each turn once the previous one was answered.

    Stops at the end of the script or of the call (the graph ended it, or the session closed).
    """
    if call.line is None:
        raise ValueError("play_caller needs a call on a local line")
    for utterance in script:
        answered = len(call.result.turns) + 1
        await call.line.input.play(await caller_speech(engine, utterance, sample_rate=call.line.input.sample_rate))
        if not await call.wait_turns(answered, timeout_s=reply_timeout_s):
            log.warning("call %s: no answer to a scripted turn within %.0f s", call.call_id, reply_timeout_s)
        if call.closed.is_set() or await call.ended():
            return
