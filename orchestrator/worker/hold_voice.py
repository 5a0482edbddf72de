"""The hold voice: speaks each waiting LiveKit call's hold messages into its room, without taking a worker slot.

Run beside the queue workers (`python -m orchestrator.worker.hold_voice`): it joins the room of every waiting call
as an agent-kind participant (so the server's webhooks never take its leaving for the caller's), plays each hold
message the announcer writes, and leaves the room as soon as the call is claimed, before its agent speaks.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import signal
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from livekit import api, rtc

from orchestrator.loops import rounds
from orchestrator.queue.call_queue import CallQueue
from orchestrator.queue.hold import hold_key
from orchestrator.session.participants import HOLD_VOICE_PREFIX

logger = logging.getLogger(__name__)

RATE = 16000
# Larger frames than the 10 ms of a live voice: one process plays into every waiting room at once.
FRAME_MS = 40
POLL_S = 0.5
JOIN_CAP_S = 30.0
# Joins in progress at once: a burst of rooms is joined a few at a time, so the voice's own joins do not starve the
# callers' (WebRTC set-ups that time out make the SDK join again, and a room that closed meanwhile is made afresh).
JOINS_AT_ONCE = 8
# A failed join (a busy server closing the signalling connection) is tried again after a pause that doubles up to
# the last: the caller waits in silence meanwhile, but a join that fails at once must not spin.
RETRY_FIRST_S = 1.0
RETRY_MAX_S = 8.0
READY_LINE = "hold voice ready"


@dataclass
class _Held:
    """One waiting call whose room the hold voice is in: the messages to play, and whether to leave."""

    call_id: str
    room: str
    last_id: str = "0-0"
    messages: asyncio.Queue[str] = field(default_factory=asyncio.Queue)
    leave: asyncio.Event = field(default_factory=asyncio.Event)
    task: asyncio.Task[None] | None = None


class HoldVoice:
    """Plays hold messages into the rooms of waiting LiveKit calls (one participant per room, one process for all)."""

    def __init__(
        self,
        queue: CallQueue,
        *,
        url: str,
        key: str,
        secret: str,
        render: Callable[[str], bytes],
        poll_s: float = POLL_S,
    ) -> None:
        """Build the voice; nothing runs until :meth:`run`.

        Args:
            queue: The call queue (its prefix names the hold streams).
            url: The LiveKit server's signalling URL.
            key: LiveKit API key (signs the voice's join tokens).
            secret: LiveKit API secret.
            render: Text to 16 kHz mono PCM16 (blocking; run off the event loop, once per distinct text).
            poll_s: How often the waiting calls and their hold streams are read.
        """
        self.queue = queue
        self.url, self.key, self.secret = url, key, secret
        self.render = render
        self.poll_s = poll_s
        self.held: dict[str, _Held] = {}
        self._audio: dict[str, bytes] = {}
        self._api: api.LiveKitAPI | None = None
        self._joins = asyncio.Semaphore(JOINS_AT_ONCE)
        self.played = 0
        self.skipped = 0
        self.join_failures = 0

    def token(self, room: str, call_id: str) -> str:
        return (
            api.AccessToken(self.key, self.secret)
            .with_identity(f"{HOLD_VOICE_PREFIX}{call_id}")
            .with_kind("agent")
            .with_grants(api.VideoGrants(room_join=True, room=room, agent=True, can_subscribe=False))
            .to_jwt()
        )

    async def _room_of(self, call_id: str) -> str | None:
        """The room of a waiting LiveKit call, from its queue entry (None for other calls)."""
        redis: Any = self.queue.redis
        where = await redis.hget(self.queue.keys.location, call_id)
        if where is None:
            return None
        idx, _, entry_id = where.partition(" ")
        if not entry_id:
            return None  # a delayed retry: not in a stream now
        stream = self.queue.keys.streams[int(idx) - 1]
        entries = await redis.xrange(stream, entry_id, entry_id)
        if not entries:
            return None
        job = json.loads(entries[0][1].get("j", "{}"))
        return str(job.get("room") or "") if job.get("source") == "livekit" and job.get("room") else None

    async def tick(self) -> None:
        """Join the rooms of newly waiting calls, leave those of claimed ones, hand on new hold messages."""
        waiting = {w.call_id for w in await self.queue.waiting()}
        for call_id, held in list(self.held.items()):
            if call_id not in waiting:
                held.leave.set()
                del self.held[call_id]
        for call_id in waiting - self.held.keys():
            if not call_id.startswith("lk-") or (room := await self._room_of(call_id)) is None:
                continue
            held = _Held(call_id, room)
            held.task = asyncio.create_task(self._hold(held), name=f"hold-voice-{call_id}")
            self.held[call_id] = held
        if not self.held:
            return
        redis: Any = self.queue.redis
        prefix = self.queue.keys.prefix
        calls = list(self.held.values())
        async with redis.pipeline(transaction=False) as pipe:
            for held in calls:
                pipe.xrange(hold_key(prefix, held.call_id), f"({held.last_id}")
            found = await pipe.execute()
        for held, entries in zip(calls, found, strict=True):
            if not entries:
                continue
            # Only the newest: a caller wants their place now, not every place they have had.
            entry_id, fields = entries[-1]
            held.last_id = entry_id
            held.messages.put_nowait(fields.get("text", ""))

    async def _speech(self, text: str) -> bytes:
        if text not in self._audio:
            self._audio[text] = await asyncio.to_thread(self.render, text)
        return self._audio[text]

    async def _still_open(self, held: _Held) -> bool:
        """The call's own room is still open: its name now has this sid.

        Joining a room creates it when it is gone (its caller answered and hung up while the join waited for this
        process), and the new room's room_started webhook would admit a call nobody made.
        """
        if self._api is None:
            self._api = api.LiveKitAPI(self.url.replace("ws", "http", 1), self.key, self.secret)
        rooms = await self._api.room.list_rooms(api.ListRoomsRequest(names=[held.room]))
        return any(f"lk-{r.sid}" == held.call_id for r in rooms.rooms)

    async def _join(self, held: _Held) -> rtc.Room | None:
        """The call's room, joined; None once the call no longer waits or its room has closed.

        A join that fails is tried again while the caller still waits, so one refused join under load does not
        leave them in silence for the rest of their wait.
        """
        pause = RETRY_FIRST_S
        while not held.leave.is_set():
            room = rtc.Room()
            try:
                async with self._joins:
                    if held.leave.is_set() or not await self._still_open(held):
                        self.skipped += 1
                        return None
                    # The SDK's own cap, not a cancellation: a join cancelled here may still complete in the SDK.
                    options = rtc.RoomOptions(auto_subscribe=False, connect_timeout=JOIN_CAP_S)
                    await room.connect(self.url, self.token(held.room, held.call_id), options)
                return room
            except (rtc.ConnectError, api.TwirpError) as exc:
                await room.disconnect()
                self.join_failures += 1
                logger.warning(
                    "hold voice: cannot join %s for %s: %s; trying again in %.0f s", held.room, held.call_id, exc, pause
                )
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(held.leave.wait(), pause)
            pause = min(pause * 2, RETRY_MAX_S)
        return None

    async def _hold(self, held: _Held) -> None:
        room = await self._join(held)
        if room is None:
            return
        try:
            if f"lk-{await room.sid}" != held.call_id and self._api is not None:
                # The room closed between the check and the join, which made it again: close the one we made.
                logger.warning("hold voice: %s closed before the join; closing the room the join made", held.room)
                await self._api.room.delete_room(api.DeleteRoomRequest(room=held.room))
                return
            # Messages that came while the join was being tried again: a caller wants their place now, not each one.
            newest = None
            while not held.messages.empty():
                newest = held.messages.get_nowait()
            if newest is not None:
                held.messages.put_nowait(newest)
            source = rtc.AudioSource(RATE, 1, queue_size_ms=1000)
            track = rtc.LocalAudioTrack.create_audio_track("hold", source)
            await room.local_participant.publish_track(
                track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            )
            frame = RATE * FRAME_MS // 1000
            while not held.leave.is_set():
                got = asyncio.ensure_future(held.messages.get())
                left = asyncio.ensure_future(held.leave.wait())
                await asyncio.wait({got, left}, return_when=asyncio.FIRST_COMPLETED)
                left.cancel()
                if not got.done():
                    got.cancel()
                    break
                pcm = await self._speech(got.result())
                for i in range(0, len(pcm), frame * 2):
                    if held.leave.is_set():
                        # Claimed mid-message: the agent is coming, the hold voice stops at once.
                        break
                    chunk = pcm[i : i + frame * 2].ljust(frame * 2, b"\0")
                    await source.capture_frame(rtc.AudioFrame(chunk, RATE, 1, frame))
                else:
                    self.played += 1
        finally:
            await room.disconnect()

    async def run(self, stop: asyncio.Event) -> None:
        """Tick every ``poll_s`` until ``stop`` is set; then leave every room."""
        try:
            async for _ in rounds(self.poll_s, stop):
                try:
                    await self.tick()
                except Exception:
                    logger.exception("hold voice: tick failed")
        finally:
            tasks = [h.task for h in self.held.values() if h.task is not None]
            for held in self.held.values():
                held.leave.set()
            await asyncio.gather(*tasks, return_exceptions=True)
            if self._api is not None:
                await self._api.aclose()


async def main(prefix: str) -> None:
    """Run the hold voice for the queue under ``prefix`` until SIGTERM or SIGINT (settings from the environment)."""
    from orchestrator.config import get_settings
    from orchestrator.providers.tts import FliteTTS
    from orchestrator.redis_client import open_redis
    from orchestrator.worker.main import resolve_redis_url

    settings = get_settings()
    if not settings.livekit_url:
        raise SystemExit("the hold voice needs LIVEKIT_URL (and LIVEKIT_API_KEY / LIVEKIT_API_SECRET)")
    queue = CallQueue.from_settings(settings, open_redis(resolve_redis_url(settings)), prefix=prefix, owns_client=True)
    voice = HoldVoice(
        queue,
        url=settings.livekit_url,
        key=settings.livekit_api_key,
        secret=settings.livekit_api_secret.get_secret_value(),
        render=FliteTTS().render,
    )
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    print(READY_LINE, flush=True)
    try:
        await voice.run(stop)
    finally:
        await queue.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--prefix", default="sb", help="The queue's key prefix.")
    logging.basicConfig(level=logging.INFO)
    asyncio.run(main(parser.parse_args().prefix))
