"""LiveKit API actions on a call's room: warm transfer to the desk by SIP (a REFER), a console user made a listener."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import aiohttp
from google.protobuf.duration_pb2 import Duration
from livekit import api

from orchestrator.config import Settings

__all__ = ["DeskTransfer", "TransferOutcome"]

log = logging.getLogger(__name__)

# Beyond the ring time, what the server and livekit-sip take to send the REFER and read its NOTIFYs.
_API_MARGIN_S = 15.0


@dataclass(frozen=True)
class TransferOutcome:
    """Whether the desk took the caller; ``detail`` is one line saying why not (the SIP status when there is one)."""

    ok: bool
    detail: str = ""


class DeskTransfer:
    """Asks the LiveKit server to transfer a SIP participant to the desk's URI (`Settings.transfer_sip_uri`).

    The caller's phone gets a REFER and calls the desk itself; livekit-sip reports the desk's answer (its
    NOTIFY) and, on success, hangs the caller's leg up. Every failure (a refusal, no answer within the ring
    time, a server that cannot be reached) is an outcome, never an exception.
    """

    def __init__(self, settings: Settings) -> None:
        if not settings.transfer_sip_uri:
            raise ValueError("no desk URI: set SWITCHBOARD_TRANSFER_SIP_URI")
        self.uri = settings.transfer_sip_uri
        self.ring_s = settings.transfer_ring_s
        self._url = _http_url(settings.livekit_url or "")
        self._key = settings.livekit_api_key
        self._secret = settings.livekit_api_secret.get_secret_value()

    async def transfer(self, room_name: str, identity: str) -> TransferOutcome:
        request = api.TransferSIPParticipantRequest(
            room_name=room_name,
            participant_identity=identity,
            transfer_to=self.uri,
            # The caller hears ringing, not silence, while the desk is called.
            play_dialtone=True,
            ringing_timeout=Duration(seconds=int(self.ring_s), nanos=int(self.ring_s % 1 * 1e9)),
        )
        cap_s = self.ring_s + _API_MARGIN_S
        lk = api.LiveKitAPI(
            self._url, self._key, self._secret, timeout=aiohttp.ClientTimeout(total=cap_s), failover=False
        )
        try:
            response = await lk.sip.transfer_sip_participant(request, timeout=cap_s)
        except api.SipCallError as exc:
            return TransferOutcome(False, _sip_detail(exc))
        except api.TwirpError as exc:
            return TransferOutcome(False, f"the server refused the transfer: {exc.code}: {exc.message}")
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            return TransferOutcome(False, f"the server did not answer the transfer: {type(exc).__name__}: {exc}")
        finally:
            await lk.aclose()
        # livekit-server v1.13 answers an empty body once the desk answered; newer servers say the status.
        if response.status == api.SIPTransferStatus.STS_TRANSFER_FAILED:
            return TransferOutcome(False, f"the desk did not take the call (SIP {response.sip_status.code or '?'})")
        return TransferOutcome(True)


async def listener_only(settings: Settings, room_name: str, identity: str) -> bool:
    """Take a participant's right to publish (they still hear the call); False when the server refused or failed."""
    lk = api.LiveKitAPI(
        _http_url(settings.livekit_url or ""),
        settings.livekit_api_key,
        settings.livekit_api_secret.get_secret_value(),
        timeout=aiohttp.ClientTimeout(total=_API_MARGIN_S),
        failover=False,
    )
    request = api.UpdateParticipantRequest(
        room=room_name,
        identity=identity,
        permission=api.ParticipantPermission(can_subscribe=True, can_publish=False, can_publish_data=False),
    )
    try:
        await lk.room.update_participant(request)
    except (api.TwirpError, aiohttp.ClientError, TimeoutError, OSError) as exc:
        log.warning("could not make a console user in %s a listener: %s", room_name, exc)
        return False
    finally:
        await lk.aclose()
    return True


def _sip_detail(exc: api.SipCallError) -> str:
    reason = exc.sip_status or exc.sip_transfer_reason or exc.message
    return f"the desk did not take the call: SIP {exc.sip_status_code or '?'} {reason}".strip()


def _http_url(url: str) -> str:
    """The server API's URL from the signalling one (ws:// serves both; the API client wants http://)."""
    for ws, http in (("ws://", "http://"), ("wss://", "https://")):
        if url.startswith(ws):
            return http + url[len(ws) :]
    return url
