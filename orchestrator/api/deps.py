"""Request dependencies: the queue and settings the app factory put on ``app.state``."""

from __future__ import annotations

from typing import Annotated

from fastapi import Depends, Request

from orchestrator.config import Settings
from orchestrator.queue import CallQueue


def get_queue(request: Request) -> CallQueue:
    """The process's call queue (opened by the lifespan, or injected by tests)."""
    queue: CallQueue = request.app.state.queue
    return queue


def get_settings(request: Request) -> Settings:
    """The settings the app was built with."""
    settings: Settings = request.app.state.settings
    return settings


QueueDep = Annotated[CallQueue, Depends(get_queue)]
SettingsDep = Annotated[Settings, Depends(get_settings)]
