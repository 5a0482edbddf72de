"""Queue read endpoints: statistics, a call's position, outcomes, hold messages and dead letters."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path, Query
from redis.exceptions import ResponseError

from orchestrator.api.deps import QueueDep
from orchestrator.api.models import HoldMessages, Outcomes, Position
from orchestrator.contracts import DeadLetter, QueueStats
from orchestrator.queue.hold import read_hold_messages
from orchestrator.queue.outcomes import read_outcomes
from orchestrator.web.errors import UNAVAILABLE, ApiError, ErrorResponse

router = APIRouter(tags=["queue"], responses=UNAVAILABLE)

CallIdPath = Annotated[str, Path(min_length=1, max_length=200)]
# 19 digits always fit the 64-bit halves of a stream id, so a schema-valid cursor is never refused
_STREAM_ID = r"^\d{1,19}-\d{1,19}$"


@router.get("/v1/queue", response_model=QueueStats, summary="Queue statistics")
async def queue_stats(queue: QueueDep) -> QueueStats:
    """Depth per priority, oldest wait, in flight, retries, dead letters, worker slots and the wait histogram."""
    return await queue.stats()


@router.get(
    "/v1/calls/{call_id}/position",
    response_model=Position,
    responses={404: {"model": ErrorResponse, "description": "The call is not waiting"}},
    summary="A waiting call's position",
)
async def call_position(call_id: CallIdPath, queue: QueueDep) -> Position:
    """1-based position and expected wait of a waiting call; 404 when it is not waiting (running, done or unknown)."""
    found = [w for w in await queue.waiting() if w.call_id == call_id]
    if not found:
        raise ApiError(404, "not_waiting", f"call {call_id!r} is not waiting (unknown, running or finished)")
    return Position(call_id=call_id, position=found[0].position, expected_wait_s=found[0].expected_wait_s)


@router.get(
    "/v1/calls/{call_id}/hold-messages", response_model=HoldMessages, summary="Hold messages a waiting call was given"
)
async def hold_messages(call_id: CallIdPath, queue: QueueDep) -> HoldMessages:
    """The hold announcements (position and expected wait) published for a call while it waited."""
    return HoldMessages(call_id=call_id, messages=await read_hold_messages(queue.redis, queue.keys.prefix, call_id))


@router.get(
    "/v1/outcomes",
    response_model=Outcomes,
    responses={422: {"model": ErrorResponse, "description": "Bad cursor or parameters"}},
    summary="Finished-call outcomes",
)
async def outcomes(
    queue: QueueDep,
    after: Annotated[str, Query(pattern=_STREAM_ID, description="Exclusive cursor; 0-0 = from the start")] = "0-0",
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
    # under the client socket timeout (redis-py defaults to 5 s), so a blocking read never times out
    wait_ms: Annotated[int, Query(ge=0, le=2000, description="Wait this long for new outcomes")] = 0,
) -> Outcomes:
    """Outcome records written by workers after the cursor ``after`` (oldest first)."""
    try:
        found, last = await read_outcomes(
            queue.redis, queue.keys.prefix, after=after, count=limit, block_ms=wait_ms or None
        )
    except ResponseError as exc:
        if "stream ID" not in str(exc):
            raise
        raise ApiError(422, "bad_cursor", f"'after' is not a valid stream entry id: {exc}") from None
    return Outcomes(outcomes=[o.model_dump(mode="json") for o in found], last_id=last)


@router.get("/v1/dead-letters", response_model=list[DeadLetter], summary="Dead-lettered calls")
async def dead_letters(queue: QueueDep, limit: Annotated[int, Query(ge=1, le=1000)] = 100) -> list[Any]:
    """The newest dead letters first."""
    return await queue.dead_letters(limit)
