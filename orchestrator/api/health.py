"""Liveness and readiness probes."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from orchestrator.api.deps import QueueDep
from orchestrator.api.models import Health

router = APIRouter(tags=["health"])

READY_TIMEOUT_S = 1.0


@router.get("/healthz", response_model=Health, summary="The process is up")
async def healthz() -> Health:
    """Always 200 while the process serves requests."""
    return Health(status="ok")


@router.get(
    "/readyz",
    response_model=Health,
    responses={503: {"model": Health, "description": "Redis is unreachable"}},
    summary="Ready to admit calls",
)
async def readyz(queue: QueueDep) -> JSONResponse:
    """200 when Redis answers PING within a second, else 503 (load balancers stop sending calls)."""
    try:
        await asyncio.wait_for(queue.redis.ping(), READY_TIMEOUT_S)
    except Exception as exc:
        # Any failure (timeout, refused, auth) means admits would fail: not ready.
        return JSONResponse(Health(status="unavailable", detail=f"redis: {type(exc).__name__}").model_dump(), 503)
    return JSONResponse(Health(status="ready").model_dump(), 200)
