"""Phone callers in a room: their number, and their keypad digits (RFC 4733 events LiveKit SIP hands on as DTMF)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable

from livekit import rtc

from orchestrator.session.participants import sip_caller

__all__ = ["END_KEY", "PAUSE_S", "CallerKeys", "Keypad", "sip_caller_number"]

log = logging.getLogger(__name__)

END_KEY = "#"
CLEAR_KEY = "*"
# A caller who stops keying this long has finished the entry, as an IVR takes it without a '#'.
PAUSE_S = 3.0
# Longer than any number or code we ask for; keys past it are dropped rather than grow a turn without bound.
MAX_DIGITS = 20
SIP_NUMBER_ATTRIBUTE = "sip.phoneNumber"
# What a number looks like; a withheld one arrives as the From header's user ("anonymous", "restricted").
_PHONE_NUMBER = re.compile(r"^\+?[0-9]{3,15}$")
_SIP_KIND = rtc.ParticipantKind.PARTICIPANT_KIND_SIP


class Keypad:
    """Gathers keyed digits into one caller turn, ended by ``#`` or by a pause; ``*`` starts the entry again.

    An entry the caller finishes while the agent speaks or thinks is held, not lost, and handed to ``submit``
    once the agent listens again (`set_busy`). Entries are submitted one at a time, in the order keyed.
    """

    def __init__(self, submit: Callable[[str], Awaitable[None]], *, pause_s: float = PAUSE_S) -> None:
        self._submit = submit
        self._pause_s = pause_s
        self._digits: list[str] = []
        self._ready: list[str] = []
        self._busy = False
        self._timer: asyncio.TimerHandle | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def pending(self) -> list[str]:
        """Finished entries not yet submitted (the agent was busy), oldest first."""
        return list(self._ready)

    def key(self, key: str) -> None:
        """One key the caller pressed."""
        if key == END_KEY:
            self._end_entry()
        elif key == CLEAR_KEY:
            self._digits.clear()
            self._cancel_timer()
        elif len(key) == 1 and key.isdigit():
            if len(self._digits) < MAX_DIGITS:
                self._digits.append(key)
            self._cancel_timer()
            self._timer = asyncio.get_running_loop().call_later(self._pause_s, self._end_entry)
        # A-D (and anything else) mean nothing to us.

    def set_busy(self, busy: bool) -> None:
        """The agent is speaking or thinking (True), or listening again (False)."""
        self._busy = busy
        self._flush()

    def _cancel_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _end_entry(self) -> None:
        self._cancel_timer()
        if self._digits:
            self._ready.append("".join(self._digits))
            self._digits.clear()
        self._flush()

    def _flush(self) -> None:
        if self._busy or not self._ready or (self._task is not None and not self._task.done()):
            return
        entry = self._ready.pop(0)
        # The reply to it makes the agent busy; until its state says so, hold any next entry back.
        self._busy = True
        self._task = asyncio.get_running_loop().create_task(self._run(entry), name="keypad-entry")

    async def _run(self, entry: str) -> None:
        log.info("a keyed entry of %d digits goes to the call", len(entry))
        try:
            await self._submit(entry)
        except Exception:
            log.exception("a keyed entry could not be handed to the call")

    async def aclose(self) -> None:
        """Stop: a pending pause ends nothing more, and a submission in progress is awaited."""
        self._cancel_timer()
        if self._task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._task


class CallerKeys:
    """Which keyed digits in a room are the caller's: those of the call's SIP caller, and no one else's.

    A supervisor who joined from the console, the hold voice, an agent or a SIP leg added later can publish
    DTMF into the room too; taken as the caller's, their digits would answer the caller's verification.
    The caller is the first SIP participant the room knows, pinned once found (a later SIP leg never takes over).
    """

    def __init__(self, room: rtc.Room) -> None:
        self._room = room
        self._caller: str | None = None
        self._ignored: set[str] = set()

    def caller_identity(self) -> str | None:
        """The caller's participant identity, once a SIP participant is in the room."""
        if self._caller is None and (phone := sip_caller(self._room)) is not None:
            self._caller = phone.identity
        return self._caller

    def accepts(self, dtmf: rtc.SipDTMF) -> bool:
        """True when the caller keyed ``dtmf``; anyone else's keys are dropped, said once per sender in the log."""
        sender = dtmf.participant
        if sender is not None and sender.kind == _SIP_KIND and sender.identity == self.caller_identity():
            return True
        who = sender.identity if sender is not None else ""
        if who not in self._ignored:
            self._ignored.add(who)
            # Neither the digits nor the identity (a SIP identity holds a phone number) go to the log.
            kind = rtc.ParticipantKind.Name(sender.kind) if sender is not None else "the server"
            log.info("keys from a participant who is not the caller (%s) are ignored", kind)
        return False


def sip_caller_number(room: rtc.Room) -> str | None:
    """The phone number of the SIP caller in ``room`` (LiveKit SIP's ``sip.phoneNumber`` attribute), if any.

    A withheld number is no number: taken as one, every anonymous caller would share a caller id (and its
    verification lock-out), and a customer would be asked for the ZIP of "anonymous".
    """
    for participant in room.remote_participants.values():
        if participant.kind == rtc.ParticipantKind.PARTICIPANT_KIND_SIP:
            number = participant.attributes.get(SIP_NUMBER_ATTRIBUTE, "").strip()
            if _PHONE_NUMBER.match(number):
                return number
    return None
