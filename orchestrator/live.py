"""Live calls on Redis: who is on the line, each call's transcript stream, pending console commands, control leases.

Workers publish to it and the console reads it, so it belongs to neither.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import AsyncIterator
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from agents.state import Turn
from orchestrator.redact import asks_zip, caller_names, redact_text
from orchestrator.redis_client import require_text_replies

if TYPE_CHECKING:
    from orchestrator.contracts import CallJob
    from orchestrator.results import TurnRecord

log = logging.getLogger(__name__)


class RunningCall(Protocol):
    """What the feed needs of a running call (a session's `TextCall` or `VoiceCall`)."""

    call_id: str

    async def state(self) -> dict[str, Any]:
        """The call's graph state."""
        ...

    async def update_state(self, values: dict[str, Any]) -> None:
        """Write ``values`` into the call's graph state before its next turn."""
        ...


# Ended calls stay visible (and their transcripts readable) this long; the records store keeps them for good.
KEEP_ENDED_S = 3600
MAX_LINES = 2000
# A live call nobody has published about for this long lost its worker without a goodbye (SIGKILL); the
# queue reclaims it, and the list stops showing it until the new worker publishes again.
STALE_S = 600.0

_ACQUIRE = """
local owner = redis.call('HGET', KEYS[1], 'username')
if owner and owner ~= ARGV[1] then return owner end
redis.call('HSET', KEYS[1], 'username', ARGV[1], 'mode', ARGV[2], 'ticket_id', ARGV[3], 'since', ARGV[4])
redis.call('ZADD', KEYS[2], ARGV[5], ARGV[6])
return ''
"""


def sentiment(frustration: int) -> str:
    """The caller's mood in one word, from the supervisor's frustration score."""
    return "calm" if frustration <= 0 else "irritated" if frustration == 1 else "upset"


def live_flags(state: dict[str, Any]) -> list[str]:
    """Anomaly flags visible while the call runs (the records store adds the full detector's after it ends)."""
    flags: list[str] = []
    interventions = state.get("interventions", [])
    if int(state.get("frustration") or 0) >= 2:
        flags.append("frustration")
    if any(i.get("reason") == "loop" for i in interventions):
        flags.append("loop")
    if any(i.get("kind") == "correct_reply" for i in interventions):
        flags.append("off_script")
    if sum(1 for e in state.get("tool_events", []) if not e.get("ok")) >= 2:
        flags.append("tool_failure")
    if int(state.get("turn") or 0) >= 14:
        flags.append("long_call")
    if state.get("outcome") == "escalated":
        flags.append("escalated")
    return flags


@dataclass
class LiveCall:
    """What the console shows of a running (or just ended) call.

    Attributes:
        call_id: The call.
        caller_id: The caller's number as the source gave it.
        room: The LiveKit room (or local transport name).
        worker: The worker running it.
        started_at: Epoch seconds.
        status: ``live`` or ``ended``.
        intent: The routed intent.
        agent: Who answers now (router, a specialist, or ``human``).
        frustration: The supervisor's frustration score.
        turns: Caller turns so far.
        flags: Live anomaly flags (see `live_flags`).
        ticket_id: The escalation ticket, once escalated.
        outcome: The outcome so far.
        controller: The supervisor holding the call (take-over or accepted escalation), if any.
        control_mode: ``take_over`` or ``escalation``.
        updated_at: Epoch seconds of the last event.
        ended_at: Epoch seconds, once ended.
        account_id: The account the caller was verified on ("" until then).
    """

    call_id: str
    caller_id: str = ""
    room: str = ""
    worker: str = ""
    started_at: float = 0.0
    status: str = "live"
    intent: str = ""
    agent: str = "router"
    frustration: int = 0
    turns: int = 0
    flags: list[str] = field(default_factory=list)
    ticket_id: str = ""
    outcome: str = ""
    controller: str = ""
    control_mode: str = ""
    updated_at: float = 0.0
    ended_at: float = 0.0
    account_id: str = ""

    @property
    def sentiment(self) -> str:
        return sentiment(self.frustration)

    def duration_s(self, now: float | None = None) -> float:
        end = self.ended_at or (now if now is not None else time.time())
        return max(0.0, end - self.started_at) if self.started_at else 0.0

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["sentiment"] = self.sentiment
        data["duration_s"] = round(self.duration_s(), 1)
        return data


@dataclass(frozen=True)
class Line:
    """One transcript line: ``caller``, ``agent``, ``human`` (a supervisor speaking), ``notice`` or ``event``."""

    id: str
    role: str
    agent: str
    text: str
    turn: int
    ts: float

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


class LiveFeed:
    """The live-call registry on Redis, shared by workers (publishers) and the console (readers, commands).

    Keys, all under ``<prefix>:console:``: ``live`` (zset of live call ids by last activity), ``call:<id>``
    (hash of `LiveCall` fields), ``tx:<id>`` (stream of transcript lines), ``cmd:<id>`` (list of pending
    console commands the worker applies before the caller's next turn), ``ctl:<id>`` (who holds the call),
    ``leases`` (zset of held calls by lease deadline), ``absent`` (zset of held calls whose holder is not
    in the call's room, by the time they must be there) and ``room:<id>`` (set of supervisors in the room).

    Console commands go through the worker rather than straight into the graph checkpoint because a
    checkpoint written while a turn runs is overwritten by that turn's own checkpoint; the worker applies
    them between turns, so none is lost.

    The worker-side methods (`call_started`, `before_turn`, `turn_done`, `call_ended`) never raise on Redis
    errors: a console outage must not drop a caller.
    """

    def __init__(self, redis: aioredis.Redis, *, prefix: str = "sb", keep_s: int = KEEP_ENDED_S) -> None:
        require_text_replies(redis, "LiveFeed")
        self.redis = redis
        self.prefix = prefix
        self.keep_s = keep_s
        self._acquire = redis.register_script(_ACQUIRE)

    @property
    def live_ttl_s(self) -> int:
        """How long a live call's keys outlast its latest news: a call whose worker died without `call_ended`
        (SIGKILL) has its transcript dropped like an ended call's, not kept for good."""
        return self.keep_s + int(STALE_S)

    # ------------------------------------------------------------------ keys
    def _k(self, *parts: str) -> str:
        return ":".join((self.prefix, "console", *parts))

    @property
    def live_key(self) -> str:
        return self._k("live")

    @property
    def leases_key(self) -> str:
        return self._k("leases")

    @property
    def absent_key(self) -> str:
        return self._k("absent")

    # ------------------------------------------------------------------ worker side
    async def call_started(self, job: CallJob, *, worker: str, resumed_at: int) -> None:
        """A worker (re)starts a call."""
        now = time.time()
        try:
            key = self._k("call", job.call_id)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hsetnx(key, "started_at", str(job.admitted_at.timestamp()))
                pipe.hset(
                    key,
                    mapping={
                        "call_id": job.call_id,
                        "caller_id": job.caller_id,
                        "room": job.room,
                        "worker": worker,
                        "status": "live",
                        "updated_at": str(now),
                    },
                )
                pipe.expire(key, self.live_ttl_s)
                pipe.zadd(self.live_key, {job.call_id: now})
                await pipe.execute()
            what = f"resumed by {worker} at turn {resumed_at + 1}" if resumed_at else f"answered by {worker}"
            await self.append(job.call_id, "event", "system", f"Call {what}.", turn=resumed_at)
            await self.redis.expire(self._k("tx", job.call_id), self.live_ttl_s)
        except RedisError as exc:
            log.warning("live feed: call_started %s: %s", job.call_id, exc)

    async def before_turn(self, call: RunningCall) -> None:
        """Apply the console's pending commands to the call's graph state before the caller's next turn.

        Every pending line a supervisor spoke goes into the transcript; at most one override (whisper,
        take-over, release, re-route) is applied per turn, because the graph consumes one per turn.
        """
        key = self._k("cmd", call.call_id)
        try:
            if not await self.redis.llen(key):
                return
            lines: list[Turn] = []
            override: dict[str, str] | None = None
            while override is None:
                raw: Any = await self.redis.lpop(key)
                if raw is None:
                    break
                command = json.loads(raw)
                if command.get("kind") == "say":
                    lines.append(
                        Turn(role="human", agent=str(command.get("by", "")), text=str(command.get("text", "")))
                    )
                elif await self._undone(key, command):
                    continue  # a hold the same person gave up before the caller spoke: neither reaches the graph
                else:
                    override = {str(k): str(v) for k, v in command.items()}
        except (RedisError, ValueError) as exc:
            log.warning("live feed: before_turn %s: %s", call.call_id, exc)
            return
        values: dict[str, Any] = {}
        if lines:
            values["transcript"] = lines
        if override is not None:
            values["override"] = override
        if values:
            await call.update_state(values)

    async def _undone(self, key: str, command: dict[str, Any]) -> bool:
        """Whether ``command`` (a take-over) is undone by the next pending one (its release or requeue), which is taken.

        One override reaches the graph per caller turn, so a take-over followed by its undoing would give the
        caller a turn of silence (a person is on the line) before the AI answered again.
        """
        if command.get("kind") != "take_over":
            return False
        following: Any = await self.redis.lindex(key, 0)
        if following is None:
            return False
        then = json.loads(following)
        if then.get("kind") not in ("release", "requeue") or then.get("by") != command.get("by"):
            return False
        # A release to a named specialist still re-routes: that override goes on to the graph.
        if then.get("kind") == "release" and then.get("agent"):
            return False
        await self.redis.lpop(key)
        return True

    async def turn_done(self, call: RunningCall, utterance: str, record: TurnRecord) -> None:
        """Publish one caller turn and the agent's reply, and the call's new intent, agent, mood and flags."""
        try:
            state = await call.state()
            turn = int(state.get("turn") or 0)
            # The feed is a copy outside the graph: redacted like the call record (`redact_turns`).
            names = _names(state) | caller_names(utterance)
            caller = redact_text(utterance, names=names, zip_expected=asks_zip(_reply_before_last_caller_line(state)))
            await self.append(call.call_id, "caller", "caller", caller, turn=turn)
            if record.agent:
                agent = redact_text(record.agent, names=names)
                await self.append(call.call_id, "agent", record.agent_name, agent, turn=turn)
            now = time.time()
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    self._k("call", call.call_id),
                    mapping={
                        "intent": str(state.get("intent") or ""),
                        "agent": str(state.get("active") or "router"),
                        "frustration": str(int(state.get("frustration") or 0)),
                        "turns": str(turn),
                        "flags": json.dumps(live_flags(state)),
                        "ticket_id": str(state.get("ticket_id") or ""),
                        "outcome": str(state.get("outcome") or ""),
                        "account_id": _verified_account(state),
                        "updated_at": str(now),
                    },
                )
                pipe.zadd(self.live_key, {call.call_id: now}, xx=True)
                pipe.expire(self._k("call", call.call_id), self.live_ttl_s)
                pipe.expire(self._k("tx", call.call_id), self.live_ttl_s)
                await pipe.execute()
        except RedisError as exc:
            log.warning("live feed: turn_done %s: %s", call.call_id, exc)

    async def call_ended(self, call_id: str, outcome: str) -> None:
        """The call is over: drop it from the live list; keep its transcript for a while."""
        now = time.time()
        try:
            key = self._k("call", call_id)
            async with self.redis.pipeline(transaction=True) as pipe:
                pipe.hset(
                    key, mapping={"status": "ended", "outcome": outcome, "ended_at": str(now), "updated_at": str(now)}
                )
                pipe.zrem(self.live_key, call_id)
                pipe.delete(self._k("cmd", call_id))
                await pipe.execute()
            await self.append(call_id, "event", "system", f"Call ended ({outcome}).")
            async with self.redis.pipeline(transaction=False) as pipe:
                pipe.expire(key, self.keep_s)
                pipe.expire(self._k("tx", call_id), self.keep_s)
                await pipe.execute()
        except RedisError as exc:
            log.warning("live feed: call_ended %s: %s", call_id, exc)

    # ------------------------------------------------------------------ console side
    async def append(self, call_id: str, role: str, agent: str, text: str, *, turn: int = 0) -> str:
        """Add a transcript line; returns its stream id."""
        payload = json.dumps({"role": role, "agent": agent, "text": text, "turn": turn, "ts": time.time()})
        entry = await self.redis.xadd(self._k("tx", call_id), {"j": payload}, maxlen=MAX_LINES, approximate=True)
        return str(entry)

    async def get(self, call_id: str) -> LiveCall | None:
        """A live or recently ended call, or None."""
        async with self.redis.pipeline(transaction=False) as pipe:
            pipe.hgetall(self._k("call", call_id))
            pipe.hgetall(self._k("ctl", call_id))
            raw, ctl = await pipe.execute()
        return _live_call(raw, ctl)

    async def live_calls(self, *, now: float | None = None) -> list[LiveCall]:
        """Calls being run now, oldest first."""
        now = time.time() if now is None else now
        ids: Any = await self.redis.zrangebyscore(self.live_key, now - STALE_S, "+inf")
        if not ids:
            return []
        async with self.redis.pipeline(transaction=False) as pipe:
            for raw_id in ids:
                pipe.hgetall(self._k("call", raw_id))
                pipe.hgetall(self._k("ctl", raw_id))
            results = await pipe.execute()
        calls = [_live_call(results[i], results[i + 1]) for i in range(0, len(results), 2)]
        live = [c for c in calls if c is not None and c.status == "live"]
        return sorted(live, key=lambda c: c.started_at)

    async def lines(self, call_id: str, *, after: str = "", count: int = MAX_LINES) -> list[Line]:
        """Transcript lines after the stream id ``after`` (all of them when empty)."""
        start = f"({after}" if after else "-"
        entries: Any = await self.redis.xrange(self._k("tx", call_id), start, "+", count=count)
        return [_line(entry_id, fields) for entry_id, fields in entries]

    async def wait_lines(self, call_id: str, *, after: str, block_ms: int) -> list[Line]:
        """Lines after ``after``, waiting up to ``block_ms`` for the first one."""
        resp: Any = await self.redis.xread({self._k("tx", call_id): after or "0-0"}, block=block_ms, count=200)
        if not resp:
            return []
        return [_line(entry_id, fields) for _stream, entries in resp for entry_id, fields in entries]

    async def human_lines(self, call_id: str, *, block_ms: int = 1000) -> AsyncIterator[str]:
        """What supervisors type into the call from now on (barge-in, take-over), as it arrives.

        A voice call speaks these to the caller at once; the same lines reach the graph's transcript through
        the command queue (`before_turn`). "Now" is when this returns: lines typed earlier are not repeated
        (a call resumed in another process must not say them twice).
        """
        newest: Any = await self.redis.xrevrange(self._k("tx", call_id), count=1)
        return self._human_lines_after(call_id, newest[0][0] if newest else "0-0", block_ms)

    async def _human_lines_after(self, call_id: str, after: str, block_ms: int) -> AsyncIterator[str]:
        while True:
            try:
                lines = await self.wait_lines(call_id, after=after, block_ms=block_ms)
            except RedisError as exc:
                log.warning("live feed: human lines of %s: %s", call_id, exc)
                await asyncio.sleep(block_ms / 1000)
                continue
            for line in lines:
                after = line.id
                # A notice is the AI's own word between turns (the person who took the call is gone).
                if line.role in ("human", "notice") and line.text.strip():
                    yield line.text

    async def push_command(self, call_id: str, command: dict[str, str]) -> None:
        """Queue a command for the worker running the call (applied before the caller's next turn)."""
        key = self._k("cmd", call_id)
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.rpush(key, json.dumps(command))
            pipe.expire(key, self.keep_s)
            await pipe.execute()

    async def pending_commands(self, call_id: str) -> list[dict[str, Any]]:
        raw: Any = await self.redis.lrange(self._k("cmd", call_id), 0, -1)
        return [json.loads(r) for r in raw]

    # ------------------------------------------------------------------ control leases
    async def acquire(self, call_id: str, username: str, *, mode: str, ticket_id: str, lease_s: float) -> str | None:
        """Give the call to ``username``; returns the current holder's name if someone else holds it."""
        now = time.time()
        owner: Any = await self._acquire(
            keys=[self._k("ctl", call_id), self.leases_key],
            args=[username, mode, ticket_id, str(now), str(now + lease_s), call_id],
        )
        return owner or None

    async def renew(self, call_id: str, username: str, *, lease_s: float) -> bool:
        """Extend the lease of the call ``username`` holds; False if they do not hold it."""
        holder: Any = await self.redis.hget(self._k("ctl", call_id), "username")
        if holder is None or holder != username:
            return False
        # XX: a lease dropped meanwhile (released, or expired and handled) is not brought back.
        await self.redis.zadd(self.leases_key, {call_id: time.time() + lease_s}, xx=True)
        return True

    async def holder(self, call_id: str) -> dict[str, str]:
        raw: Any = await self.redis.hgetall(self._k("ctl", call_id))
        return dict(raw)

    async def drop(self, call_id: str) -> dict[str, str]:
        """End whoever's hold on the call; returns what it was (empty if nobody held it, or someone else just
        dropped it: the transaction makes exactly one dropper see it)."""
        async with self.redis.pipeline(transaction=True) as pipe:
            pipe.hgetall(self._k("ctl", call_id))
            pipe.delete(self._k("ctl", call_id))
            pipe.zrem(self.leases_key, call_id)
            pipe.zrem(self.absent_key, call_id)
            raw, *_ = await pipe.execute()
        return dict(raw)

    # ------------------------------------------------------------------ the holder in the call's room
    async def expect_in_room(self, call_id: str, username: str, *, by: float) -> None:
        """``username``, who holds the call, must be in its room by ``by`` (epoch seconds), unless already there."""
        there: Any = await self.redis.sismember(self._k("room", call_id), username)
        if not there:
            await self.redis.zadd(self.absent_key, {call_id: by})

    async def supervisor_presence(self, call_id: str, username: str, present: bool, *, grace_s: float) -> bool:
        """A supervisor joined or left the call's room (the worker sees it); only the holder's moves count.

        Joined, nothing is due any more; left, they must be back within ``grace_s``. Returns whether ``username``
        holds the call (True too when Redis cannot say). Never raises: a console outage must not drop a caller.
        """
        try:
            room = self._k("room", call_id)
            async with self.redis.pipeline(transaction=True) as pipe:
                if present:
                    pipe.sadd(room, username)
                else:
                    pipe.srem(room, username)
                pipe.expire(room, self.live_ttl_s)
                await pipe.execute()
            holder: Any = await self.redis.hget(self._k("ctl", call_id), "username")
            if holder is None or holder != username:
                return False
            if present:
                await self.redis.zrem(self.absent_key, call_id)
            else:
                await self.redis.zadd(self.absent_key, {call_id: time.time() + grace_s})
        except RedisError as exc:
            log.warning("live feed: supervisor presence in %s: %s", call_id, exc)
        return True

    async def absent(self, *, now: float | None = None) -> list[str]:
        """Held calls whose holder should have been in the room by now."""
        now = time.time() if now is None else now
        ids: Any = await self.redis.zrangebyscore(self.absent_key, "-inf", now)
        return list(ids)

    async def claim_absent(self, call_id: str) -> bool:
        """Take a call off the absent set; True for exactly one claimer (not if the holder joined meanwhile)."""
        removed: Any = await self.redis.zrem(self.absent_key, call_id)
        return bool(removed)

    async def lapsed(self, *, now: float | None = None) -> list[str]:
        """Held calls whose lease ran out."""
        now = time.time() if now is None else now
        ids: Any = await self.redis.zrangebyscore(self.leases_key, "-inf", now)
        return list(ids)


def _verified_account(state: dict[str, Any]) -> str:
    """The account the caller was verified on ("" until they are)."""
    verification = state.get("verification") or {}
    return str(verification.get("account_id") or "") if verification.get("status") == "verified" else ""


def _names(state: dict[str, Any]) -> set[str]:
    """The verified caller's full and first name, as the call record masks them."""
    name = str((state.get("verification") or {}).get("name") or "").strip()
    return {name, name.split()[0]} if name else set()


def _reply_before_last_caller_line(state: dict[str, Any]) -> str:
    """The agent's line the caller's newest line answers ("" if none): a ZIP prompt makes that line a ZIP."""
    lines = list(state.get("transcript") or [])
    for at in range(len(lines) - 1, -1, -1):
        if lines[at].get("role") == "caller":
            return next((str(x.get("text", "")) for x in reversed(lines[:at]) if x.get("role") == "agent"), "")
    return ""


def _line(entry_id: Any, fields: Any) -> Line:
    data = json.loads(fields.get("j", "{}"))
    return Line(
        id=entry_id,
        role=str(data.get("role", "")),
        agent=str(data.get("agent", "")),
        text=str(data.get("text", "")),
        turn=int(data.get("turn", 0)),
        ts=float(data.get("ts", 0.0)),
    )


def _live_call(raw: Any, ctl: Any) -> LiveCall | None:
    data = dict(raw)
    if not data.get("call_id"):
        return None
    control = dict(ctl)

    def num(name: str) -> float:
        try:
            return float(data.get(name) or 0)
        except ValueError:
            return 0.0

    return LiveCall(
        call_id=data["call_id"],
        caller_id=data.get("caller_id", ""),
        room=data.get("room", ""),
        worker=data.get("worker", ""),
        started_at=num("started_at"),
        status=data.get("status", "live"),
        intent=data.get("intent", ""),
        agent=data.get("agent", "router"),
        frustration=int(num("frustration")),
        turns=int(num("turns")),
        flags=list(json.loads(data.get("flags") or "[]")),
        ticket_id=data.get("ticket_id", ""),
        outcome=data.get("outcome", ""),
        controller=control.get("username", ""),
        control_mode=control.get("mode", ""),
        updated_at=num("updated_at"),
        ended_at=num("ended_at"),
        account_id=data.get("account_id", ""),
    )
