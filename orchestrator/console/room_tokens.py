"""LiveKit access tokens for console users in a call's room: one place for their identity, grants and lifetime."""

from __future__ import annotations

from datetime import timedelta
from typing import Literal

from livekit.api import AccessToken, VideoGrants

from orchestrator.config import Settings
from orchestrator.console.auth import Principal

JoinMode = Literal["listen", "barge", "escalation"]
# A token only has to outlive the join: a connected participant keeps its grants, and the server refreshes them.
TOKEN_TTL = timedelta(minutes=10)


def console_identity(who: Principal) -> str:
    """A console user's identity in a room, `<role>-<username>` (what `session.participants.console_user` reads)."""
    return f"{who.role}-{who.username}"


def speaker_grants(room: str) -> VideoGrants:
    """Hear the room and speak into it with a microphone: no camera, screen or data (so no keyed digits)."""
    return VideoGrants(
        room_join=True,
        room=room,
        can_subscribe=True,
        can_publish=True,
        can_publish_sources=["microphone"],
        can_publish_data=False,
    )


def grants_for(room: str, mode: JoinMode) -> VideoGrants:
    """Listening subscribes only and is hidden from everyone in the room; barging and an escalation speak."""
    if mode == "listen":
        return VideoGrants(
            room_join=True, room=room, can_subscribe=True, can_publish=False, can_publish_data=False, hidden=True
        )
    return speaker_grants(room)


def room_token(settings: Settings, who: Principal, room: str, mode: JoinMode) -> str:
    """A short-lived token for ``who`` to join ``room`` as ``mode`` allows."""
    return (
        AccessToken(settings.livekit_api_key, settings.livekit_api_secret.get_secret_value())
        .with_identity(console_identity(who))
        .with_name(who.username)
        .with_ttl(TOKEN_TTL)
        .with_attributes({"switchboard.role": who.role, "switchboard.mode": mode})
        .with_grants(grants_for(room, mode))
        .to_jwt()
    )
