"""Request and response bodies of the intake and queue endpoints (they shape the OpenAPI document)."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from orchestrator.contracts import Admission, CallJob


class CallRequest(BaseModel):
    """A call from a telephony source other than LiveKit (``POST /v1/calls``).

    Attributes:
        call_id: The source's unique id of the call; admission is idempotent on it.
        caller_id: The caller's number or identity.
        priority: 0 = VIP or callback, 1 = normal.
        room: The LiveKit room (or local transport name) the session should join.
        source: Name of the sending system, e.g. ``"sip"`` or ``"twilio"``.
        script: Scripted caller turns (simulated callers only).
        metadata: Free-form string attributes.
    """

    model_config = ConfigDict(extra="forbid")

    call_id: str = Field(min_length=1, max_length=190, pattern=r"^[A-Za-z0-9._:-]+$")
    caller_id: str = Field(default="", max_length=64)
    priority: int = Field(default=1, ge=0, le=1)
    room: str = Field(default="", max_length=200)
    source: str = Field(default="api", min_length=1, max_length=40)
    script: list[str] | None = Field(default=None, max_length=200)
    metadata: dict[str, str] = Field(default_factory=dict)

    def job(self, traceparent: str | None) -> CallJob:
        """The queue job of this request."""
        return CallJob(
            call_id=self.call_id,
            source=self.source,
            room=self.room or self.call_id,
            caller_id=self.caller_id,
            priority=self.priority,
            traceparent=traceparent,
            script=self.script,
            metadata=self.metadata,
        )


class Admitted(BaseModel):
    """A call was admitted (or had been: ``duplicate``); it waits at ``position``.

    Attributes:
        call_id: The call's id (derived from the room for LiveKit webhooks).
        position: 1-based place in the queue at admission.
        expected_wait_s: Estimated seconds until a worker takes it.
        duplicate: True when this call had been admitted before; nothing new was enqueued.
    """

    call_id: str
    position: int
    expected_wait_s: float
    duplicate: bool = False

    @classmethod
    def of(cls, admission: Admission) -> Admitted:
        """From the queue's answer."""
        return cls(
            call_id=admission.call_id,
            position=admission.position,
            expected_wait_s=admission.expected_wait_s,
            duplicate=admission.duplicate,
        )


class Ignored(BaseModel):
    """A webhook event that does not start a call (acknowledged so LiveKit does not retry it)."""

    ignored: str


class CallerLeft(BaseModel):
    """A webhook event saying a call's caller hung up, and where their call was.

    ``queue`` is ``waiting`` or ``delayed`` when the call still waited (it is taken out of the queue and
    counted as abandoned), ``in_flight`` when a worker holds it (its session ends with the caller) and
    ``gone`` when it is not queued (it ended, or was never admitted).
    """

    call_id: str
    queue: Literal["waiting", "delayed", "in_flight", "gone"]


class Position(BaseModel):
    """Where a waiting call stands."""

    call_id: str
    position: int
    expected_wait_s: float


class Health(BaseModel):
    """Liveness or readiness."""

    status: str
    detail: str | None = None


class Outcomes(BaseModel):
    """Finished-call outcomes after a cursor (the outcome stream, read through the API).

    Attributes:
        outcomes: Outcome records (see ``orchestrator.queue.outcomes.CallOutcome``).
        last_id: Pass it as ``after`` to read on.
    """

    outcomes: list[dict[str, Any]]
    last_id: str


class HoldMessages(BaseModel):
    """Hold announcements a waiting caller heard."""

    call_id: str
    messages: list[dict[str, Any]]
