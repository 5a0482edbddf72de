"""The desk transfer's failures are outcomes with one line each, never exceptions; no desk set, no transfer."""

from __future__ import annotations

import asyncio
import socket

import pytest

from orchestrator.config import load_settings
from orchestrator.session.transfer import DeskTransfer

pytestmark = pytest.mark.unit


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_no_desk_uri_means_no_transfer() -> None:
    with pytest.raises(ValueError, match="SWITCHBOARD_TRANSFER_SIP_URI"):
        DeskTransfer(load_settings(transfer_sip_uri=None))


def test_a_server_that_cannot_be_reached_is_a_failed_transfer_in_one_line() -> None:
    settings = load_settings(
        transfer_sip_uri="sip:desk@127.0.0.1:5070", livekit_url=f"ws://127.0.0.1:{_closed_port()}", transfer_ring_s=2
    )
    outcome = asyncio.run(DeskTransfer(settings).transfer("call-x", "sip_caller"))
    assert not outcome.ok
    assert outcome.detail.startswith("the server did not answer the transfer"), outcome.detail
    assert "\n" not in outcome.detail
