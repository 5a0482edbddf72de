"""The HTTP API: signed call intake (LiveKit webhook, HMAC ``/v1/calls``), queue views and health probes."""

from orchestrator.api.app import create_app

__all__ = ["create_app"]
