"""A human desk's SIP line for the real-stack tests (PJSIP's pjsua2): it answers one INVITE, or refuses it busy.

Usage: sip_desk.py CONFIG_JSON  (prints "ready" once listening, then one JSON line when done). CONFIG: ``bind``
and ``port`` (where it listens; registered nowhere), ``answer`` (true: 200 and record what it hears to
``out``/heard.wav until the caller hangs up; false: 486 Busy Here), ``cap_s`` (how long it waits for its call).
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
import wave
from pathlib import Path
from typing import Any

import pjsua2 as pj

RATE = 8000
RTP_PORT = 4100
_LEFT_TO_EXIT: list[Any] = []


class DeskCall(pj.Call):  # type: ignore[misc]  # pj.Call is untyped
    """The one incoming call: its states, and a recorder on its audio once media is up."""

    def __init__(self, account: Any, call_id: int, out: Path) -> None:
        super().__init__(account, call_id)
        self.out = out
        self.states: list[str] = []
        self.recorder: Any = None
        self.confirmed_at: float | None = None
        self.last_state: int = pj.PJSIP_INV_STATE_NULL

    def onCallState(self, prm: Any) -> None:  # noqa: N802  # pjsua2's callback name
        info = self.getInfo()
        self.states.append(info.stateText)
        self.last_state = info.state
        if info.state == pj.PJSIP_INV_STATE_CONFIRMED and self.confirmed_at is None:
            self.confirmed_at = time.time()

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802  # pjsua2's callback name
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE and not self.recorder:
                self.recorder = pj.AudioMediaRecorder()
                self.recorder.createRecorder(str(self.out / "heard.wav"))
                self.getAudioMedia(i).startTransmit(self.recorder)

    def ended(self) -> bool:
        return bool(self.last_state == pj.PJSIP_INV_STATE_DISCONNECTED)


class Desk(pj.Account):  # type: ignore[misc]  # pj.Account is untyped
    """Answers (or refuses) the first INVITE; a second one is refused busy, as a desk with one person would."""

    def __init__(self, out: Path, answer: bool) -> None:
        super().__init__()
        self.out, self.answer = out, answer
        self.call: DeskCall | None = None
        self.invite_at: float | None = None
        self.caller: str | None = None
        self.invites = 0

    def onIncomingCall(self, prm: Any) -> None:  # noqa: N802  # pjsua2's callback name
        self.invites += 1
        call = DeskCall(self, prm.callId, self.out)
        _LEFT_TO_EXIT.append(call)  # pjsua2 asserts on deleting a Call whose call is over
        op = pj.CallOpParam()
        if self.call is not None or not self.answer:
            op.statusCode = pj.PJSIP_SC_BUSY_HERE
            call.hangup(op)
            if self.call is None:
                self.invite_at, self.caller = time.time(), call.getInfo().remoteUri
                self.call = call
            return
        self.invite_at, self.caller = time.time(), call.getInfo().remoteUri
        self.call = call
        op.statusCode = pj.PJSIP_SC_OK
        call.answer(op)


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    out = Path(cfg["out"])
    out.mkdir(parents=True, exist_ok=True)
    ep = pj.Endpoint()
    ep.libCreate()
    ep_cfg = pj.EpConfig()
    ep_cfg.uaConfig.threadCnt = 0
    ep_cfg.uaConfig.mainThreadOnly = True
    ep_cfg.logConfig.level = 1
    ep_cfg.logConfig.consoleLevel = 1
    ep_cfg.medConfig.clockRate = RATE
    ep_cfg.medConfig.sndClockRate = RATE
    ep_cfg.medConfig.noVad = True
    ep_cfg.medConfig.ecTailLen = 0
    ep.libInit(ep_cfg)
    transport = pj.TransportConfig()
    transport.port = int(cfg["port"])
    transport.boundAddress = cfg["bind"]
    transport.publicAddress = cfg["bind"]
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        ep.codecSetPriority(codec.codecId, 255 if codec.codecId.startswith("PCMU/8000") else 0)
    acc_cfg = pj.AccountConfig()
    acc_cfg.idUri = f"sip:desk@{cfg['bind']}:{cfg['port']}"
    # Its RTP on its own address and ports, apart from a phone's beside it in the namespace.
    acc_cfg.mediaConfig.transportConfig.boundAddress = cfg["bind"]
    acc_cfg.mediaConfig.transportConfig.port = RTP_PORT
    desk = Desk(out, bool(cfg["answer"]))
    desk.create(acc_cfg)
    print("ready", flush=True)
    result: dict[str, Any] = {}
    try:
        deadline = time.monotonic() + float(cfg["cap_s"])
        while time.monotonic() < deadline:
            ep.libHandleEvents(20)
            if desk.call is not None and desk.call.ended():
                break
        call = desk.call
        result.update(invites=desk.invites, invite_at=desk.invite_at, caller=desk.caller)
        if call is not None:
            result.update(states=call.states, answered_at=call.confirmed_at, ended=call.ended())
            if not call.ended():
                with contextlib.suppress(pj.Error):  # already ending
                    call.hangup(pj.CallOpParam(True))
                for _ in range(250):
                    ep.libHandleEvents(20)
                    if call.ended():
                        break
        if call is not None and call.recorder is not None:
            call.recorder = None  # closes the file
            result["heard_wav"] = rewrite(out / "heard.wav", out / "desk.wav")
    finally:
        # pjsua2 asserts on deleting a Call whose call is over, and in libDestroy (the endpoint's deletion) while
        # one is alive: they are all left to the process's exit (`os._exit` below).
        _LEFT_TO_EXIT.extend((ep, desk))
    return result


def rewrite(path: Path, to: Path) -> str:
    """The recording as a WAV whose header says its length (pjmedia's may not, cut short)."""
    data = path.read_bytes()[44:]
    with wave.open(str(to), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data[: len(data) // 2 * 2])
    return str(to)


if __name__ == "__main__":
    try:
        report = main(json.loads(sys.argv[1]))
    except Exception as exc:  # one line for the test, whatever pjsua raised (its trace on stderr)
        import traceback

        traceback.print_exc()
        detail = getattr(exc, "info", lambda: "")() or str(exc)
        report = {"error": f"{type(exc).__name__}: {detail}"}
    print(json.dumps(report), flush=True)
    os._exit(0)
