"""Request signatures: HMAC-SHA256 for /v1/calls, and LiveKit webhook tokens for simulators and tests."""

from __future__ import annotations

import base64
import hashlib
import hmac
import time
from datetime import timedelta

from livekit.api import AccessToken

TIMESTAMP_HEADER = "X-Switchboard-Timestamp"
SIGNATURE_HEADER = "X-Switchboard-Signature"
SIGNATURE_VERSION = "v1"


class SignatureError(ValueError):
    """A signature check failed; ``code`` names the exact reason (``missing_signature``, ``bad_signature``…)."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


def hmac_signature(secret: str, timestamp: str, body: bytes) -> str:
    """Hex HMAC-SHA256 of ``f"{timestamp}.{body}"`` with ``secret``."""
    return hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def sign_intake(secret: str, body: bytes, *, timestamp: int | None = None) -> dict[str, str]:
    """Headers that sign a ``POST /v1/calls`` body.

    Args:
        secret: The shared intake secret (``SWITCHBOARD_INTAKE_SECRET``).
        body: The exact bytes that will be sent.
        timestamp: Unix seconds; default now.

    Returns:
        ``X-Switchboard-Timestamp`` and ``X-Switchboard-Signature: v1=<hex>``.
    """
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {TIMESTAMP_HEADER: ts, SIGNATURE_HEADER: f"{SIGNATURE_VERSION}={hmac_signature(secret, ts, body)}"}


def verify_intake(
    secret: str,
    body: bytes,
    timestamp: str | None,
    signature: str | None,
    *,
    window_s: int,
    now: float | None = None,
) -> None:
    """Check a ``/v1/calls`` signature and its replay window.

    The signature header may carry several comma-separated ``v1=<hex>`` values (a sender rotating
    secrets); one match is enough. Comparison is constant time.

    Raises:
        SignatureError: With the exact reason.
    """
    if not timestamp:
        raise SignatureError("missing_timestamp", f"the {TIMESTAMP_HEADER} header (unix seconds) is required")
    if not signature:
        raise SignatureError("missing_signature", f"the {SIGNATURE_HEADER} header (v1=<hex hmac>) is required")
    try:
        ts = int(timestamp)
    except ValueError:
        raise SignatureError("bad_timestamp", f"{TIMESTAMP_HEADER} must be whole unix seconds") from None
    current = time.time() if now is None else now
    if abs(current - ts) > window_s:
        raise SignatureError(
            "timestamp_out_of_window",
            f"{TIMESTAMP_HEADER} is {int(current - ts)} s from the server clock; the window is ±{window_s} s",
        )
    candidates = []
    for part in signature.split(","):
        version, _, value = part.strip().partition("=")
        if version == SIGNATURE_VERSION and value:
            candidates.append(value)
    if not candidates:
        raise SignatureError("bad_signature_format", f"{SIGNATURE_HEADER} must look like v1=<hex hmac-sha256>")
    expected = hmac_signature(secret, timestamp, body)
    # compare_digest on every candidate: no early exit that would leak which one was close
    matched = False
    for value in candidates:
        matched |= hmac.compare_digest(value.encode(), expected.encode())
    if not matched:
        raise SignatureError(
            "bad_signature", 'the HMAC-SHA256 of "<timestamp>.<raw body>" does not match the signature'
        )


def livekit_webhook_token(api_key: str, api_secret: str, body: bytes, *, ttl: timedelta | None = None) -> str:
    """The ``Authorization`` JWT LiveKit sends with ``body``: HS256 with the secret, ``sha256`` = b64(sha256(body)).

    Args:
        api_key: LiveKit API key (the token's issuer).
        api_secret: LiveKit API secret.
        body: The exact bytes that will be sent.
        ttl: Token lifetime (default 5 minutes; negative values make expired tokens for tests).
    """
    digest = base64.b64encode(hashlib.sha256(body).digest()).decode()
    token = AccessToken(api_key, api_secret).with_sha256(digest).with_ttl(ttl or timedelta(minutes=5))
    return token.to_jwt()
