"""A real SIP phone (PJSIP's pjsua2): it INVITEs a LiveKit SIP trunk, speaks a WAV, keys digits, records replies.

Usage: sip_phone.py CONFIG_JSON  (prints one JSON line). CONFIG: ``bind`` (this phone's address), ``uri`` (the
trunk's number at livekit-sip), ``caller`` (the From number), ``codecs`` (offered, e.g. ["PCMU/8000"]),
``wav`` (8 kHz mono, said once the greeting is over), ``keys`` (keyed by RFC 4733 once the agent's answer to
the WAV is over; none: no keys), ``zip_wav`` (optional: instead of keys, said once that answer is over; its
reply is reported as the keys' is), ``port`` (optional: this phone's SIP port, 5060 by default), ``out`` (a
folder for heard.wav and each reply), ``transfer`` (optional: instead of keys, wait for the call to be
transferred (a REFER), call the target, and say ``transfer.wav`` to it once it answers; if it refuses, hear the
agent again and say ``transfer.again_wav``), ``log`` (optional: pjsua's log, with each SIP message, to this
file). Replies are found on what is heard: speech (level above a floor) that ends with QUIET_S of silence.
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

import numpy as np
import pjsua2 as pj

RATE = 8000
QUIET_S = 1.5
# An RMS level over 20 ms above this is speech; the line's silence is digital zero.
SPEECH_RMS = 300.0
ANSWER_CAP_S = 60.0
REPLY_CAP_S = 150.0
_LEFT_TO_EXIT: list[Any] = []


class Phone(pj.Call):  # type: ignore[misc]  # pj.Call is untyped
    """One outgoing call: its states and final SIP status, and its audio once media is up."""

    def __init__(self, account: Any, ep: Any, out: Path) -> None:
        super().__init__(account)
        self.account, self.ep, self.out = account, ep, out
        self.states: list[str] = []
        self.status: int | None = None
        self.recorder: Any = None
        self.media: Any = None
        self.player: Any = None
        self.last_state: int = pj.PJSIP_INV_STATE_NULL
        # A REFER's target, and the call to it (pjsua places it; its events come to this object).
        self.transfer_to: str | None = None
        self.child: Phone | None = None

    def onCallTransferRequest(self, prm: Any) -> None:  # noqa: N802  # pjsua2's callback name
        # Accepted (202, pjsua's default); pjsua calls the target and reports to the REFER's sender by NOTIFY.
        self.transfer_to = str(prm.dstUri)
        (self.out / "transferred").mkdir(exist_ok=True)
        self.child = Phone(self.account, self.ep, self.out / "transferred")
        prm.newCall = self.child

    def ended(self) -> bool:
        return bool(self.last_state == pj.PJSIP_INV_STATE_DISCONNECTED)

    def onCallState(self, prm: Any) -> None:  # noqa: N802  # pjsua2's callback name
        info = self.getInfo()
        self.states.append(info.stateText)
        self.last_state = info.state
        self.status = int(info.lastStatusCode)

    def onCallMediaState(self, prm: Any) -> None:  # noqa: N802  # pjsua2's callback name
        info = self.getInfo()
        for i, media in enumerate(info.media):
            if media.type == pj.PJMEDIA_TYPE_AUDIO and media.status == pj.PJSUA_CALL_MEDIA_ACTIVE:
                self.media = self.getAudioMedia(i)
                if self.recorder is None:
                    self.recorder = pj.AudioMediaRecorder()
                    self.recorder.createRecorder(str(self.out / "heard.wav"))
                    self.media.startTransmit(self.recorder)


class Heard:
    """The recorder's file as it grows: speech segments in seconds from the call's media start."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def levels(self) -> np.ndarray[Any, Any]:
        data = self.path.read_bytes()[44:] if self.path.exists() else b""
        pcm = np.frombuffer(data[: len(data) // 2 * 2], dtype=np.int16).astype(np.float32)
        frames = pcm[: len(pcm) // 160 * 160].reshape(-1, 160)
        return np.sqrt((frames**2).mean(axis=1)) if len(frames) else np.zeros(0)

    def segment_after(self, start_s: float, min_s: float = 0.0) -> tuple[float, float] | None:
        """The first speech after ``start_s`` that has ended (QUIET_S of silence after it), as (onset, end).

        Sound shorter than ``min_s`` (the tail of a ringing tone cut off) is passed over.
        """
        speech = self.levels() > SPEECH_RMS
        quiet = int(QUIET_S / 0.02)
        first = int(start_s / 0.02)
        while True:
            onset = next((i for i in range(first, len(speech)) if speech[i]), None)
            if onset is None:
                return None
            end = next((i for i in range(onset, len(speech) - quiet + 1) if not speech[i : i + quiet].any()), None)
            if end is None:
                return None
            if (end - onset) * 0.02 >= min_s:
                return onset * 0.02, end * 0.02
            first = end

    def heard_s(self) -> float:
        return len(self.levels()) * 0.02


def main(cfg: dict[str, Any]) -> dict[str, Any]:
    out = Path(cfg["out"])
    ep = pj.Endpoint()
    ep.libCreate()
    ep_cfg = pj.EpConfig()
    ep_cfg.uaConfig.threadCnt = 0
    ep_cfg.uaConfig.mainThreadOnly = True
    ep_cfg.logConfig.level = 1
    ep_cfg.logConfig.consoleLevel = 1
    if cfg.get("log"):
        # Every SIP message sent and received, for a reader of a failed test.
        ep_cfg.logConfig.filename = cfg["log"]
        ep_cfg.logConfig.level = 5
        ep_cfg.logConfig.msgLogging = True
    ep_cfg.medConfig.clockRate = RATE
    ep_cfg.medConfig.sndClockRate = RATE
    ep_cfg.medConfig.noVad = True
    ep_cfg.medConfig.ecTailLen = 0
    ep.libInit(ep_cfg)
    transport = pj.TransportConfig()
    transport.port = int(cfg.get("port", 5060))
    transport.boundAddress = cfg["bind"]
    transport.publicAddress = cfg["bind"]
    ep.transportCreate(pj.PJSIP_TRANSPORT_UDP, transport)
    ep.libStart()
    ep.audDevManager().setNullDev()
    for codec in ep.codecEnum2():
        wanted = any(codec.codecId.startswith(c) for c in cfg["codecs"])
        ep.codecSetPriority(codec.codecId, 255 if wanted else 0)
    acc_cfg = pj.AccountConfig()
    acc_cfg.idUri = f"sip:{cfg['caller']}@{cfg['bind']}"
    account = pj.Account()
    account.create(acc_cfg)
    call = Phone(account, ep, out)
    result: dict[str, Any] = {}
    try:
        return place(ep, call, cfg, out, result)
    finally:
        if not call.ended():
            # A call pjsua already ended (its session terminated) raises here.
            with contextlib.suppress(pj.Error):
                call.hangup(pj.CallOpParam(True))
            pump_until(ep, call, call.ended, 30)
        child = call.child
        if child is not None and not child.ended():
            with contextlib.suppress(pj.Error):
                child.hangup(pj.CallOpParam(True))
            pump_until(ep, child, child.ended, 30)
        result["final_status"] = call.status
        for leg in (call.child, call):
            if leg is not None:
                leg.recorder = leg.media = leg.player = None
        del leg, child  # no name but ``call`` may hold a Call when it is deleted
        if call.child is None:
            # pjsua asserts in libDestroy while a Call object is alive.
            del call
            ep.libDestroy()
        else:
            # A transferred call's objects are left to the process's exit (`os._exit` below): pjsua2 asserts on
            # deleting the call it placed for the REFER once that call is over (and the endpoint's own deletion
            # would destroy the library under them).
            _LEFT_TO_EXIT.extend((ep, account, call))


def pump_until(ep: Any, call: Phone, cond: Any, cap_s: float) -> bool:
    """Handle pjsua's events until ``cond()`` holds (True), the call ends or ``cap_s`` passes."""
    deadline = time.monotonic() + cap_s
    while time.monotonic() < deadline:
        ep.libHandleEvents(20)
        if cond():
            return True
        if call.ended():
            return bool(cond())
    return False


def place(ep: Any, call: Phone, cfg: dict[str, Any], out: Path, result: dict[str, Any]) -> dict[str, Any]:
    """The call's script: answered, the greeting, the WAV and its reply, the keys and theirs."""

    def until(cond: Any, cap_s: float) -> bool:
        return pump_until(ep, call, cond, cap_s)

    call.makeCall(cfg["uri"], pj.CallOpParam(True))
    answered = until(lambda: call.last_state == pj.PJSIP_INV_STATE_CONFIRMED and call.media is not None, ANSWER_CAP_S)
    result.update(answered=answered, states=list(call.states), status=call.status)
    if not answered:
        return result
    heard = Heard(out / "heard.wav")
    greeting = None
    if until(lambda: heard.segment_after(0.0) is not None, REPLY_CAP_S):
        greeting = heard.segment_after(0.0)
    result["greeting_s"] = greeting
    with wave.open(cfg["wav"]) as w:
        said_s = w.getnframes() / w.getframerate()
    call.player = pj.AudioMediaPlayer()
    call.player.createPlayer(cfg["wav"], pj.PJMEDIA_FILE_NO_LOOP)
    said_at = heard.heard_s()
    call.player.startTransmit(call.media)
    # The player is done when as much audio has been heard (the line's clock) as it lasts.
    until(lambda: heard.heard_s() >= said_at + said_s, said_s + 30)
    said_end = said_at + said_s
    if cfg.get("transfer"):
        return transferred(ep, call, cfg["transfer"], out, result, said_end)
    reply = None
    if until(lambda: heard.segment_after(said_end) is not None, REPLY_CAP_S):
        reply = heard.segment_after(said_end)
    result["reply_s"] = reply
    result["first_audio_ms"] = round((reply[0] - said_end) * 1000) if reply else None
    if reply is None:
        return result
    if cfg.get("zip_wav"):
        keyed_at = say(ep, call, cfg["zip_wav"], heard, REPLY_CAP_S)
    elif cfg.get("keys"):
        keyed_at = heard.heard_s()
        call.dialDtmf(cfg["keys"])
    else:
        result["reply_wav"] = cut(out / "heard.wav", reply, out / "reply.wav")
        return result
    keys_reply = None
    if until(lambda: heard.segment_after(keyed_at) is not None, REPLY_CAP_S):
        keys_reply = heard.segment_after(keyed_at)
    result["keys_reply_s"] = keys_reply
    result["keys_reply_ms"] = round((keys_reply[0] - keyed_at) * 1000) if keys_reply else None
    for name, seg in (("reply", reply), ("keys_reply", keys_reply)):
        if seg is not None:
            result[f"{name}_wav"] = cut(out / "heard.wav", seg, out / f"{name}.wav")
    return result


def say(ep: Any, leg: Phone, wav: str, heard: Heard, cap_s: float) -> float:
    """Play ``wav`` into ``leg`` and return once as much audio has been heard on it (the line's clock) as it lasts.

    Returns where in ``heard`` it ended, in seconds.
    """
    with wave.open(wav) as w:
        said_s = w.getnframes() / w.getframerate()
    leg.player = pj.AudioMediaPlayer()
    leg.player.createPlayer(wav, pj.PJMEDIA_FILE_NO_LOOP)
    said_at = heard.heard_s()
    leg.player.startTransmit(leg.media)
    pump_until(ep, leg, lambda: heard.heard_s() >= said_at + said_s, min(cap_s, said_s + 30))
    return float(said_at + said_s)


def transferred(
    ep: Any, call: Phone, cfg: dict[str, Any], out: Path, result: dict[str, Any], said_end: float
) -> dict[str, Any]:
    """After the WAV: a REFER, the call to its target, and either speech to the target or the agent again.

    What was heard between the WAV and the REFER (the agent saying it transfers the call) is ``reply_wav``.
    """
    heard = Heard(out / "heard.wav")
    pump_until(ep, call, lambda: call.child is not None, REPLY_CAP_S)
    referred_at = heard.heard_s()
    result["transfer_to"] = call.transfer_to
    result["reply_s"] = (said_end, referred_at)
    if referred_at > said_end:
        result["reply_wav"] = cut(out / "heard.wav", (said_end, referred_at), out / "reply.wav")
    child = call.child
    if child is None:
        return result
    # The target answers (media up) or refuses; the first call stays up until then (livekit-sip waits for the NOTIFY).
    pump_until(ep, child, lambda: child.media is not None, ANSWER_CAP_S)
    answered = child.media is not None and child.last_state == pj.PJSIP_INV_STATE_CONFIRMED
    result["transfer"] = {"answered": answered, "status": child.status, "states": list(child.states)}
    if answered:
        said_end = say(ep, child, cfg["wav"], Heard(child.out / "heard.wav"), REPLY_CAP_S)
        result["transfer"]["said_s"] = said_end
        # A moment of line after the words, so the far end records all of them before the hang-up.
        pump_until(ep, child, lambda: False, 1.0)
        with contextlib.suppress(pj.Error):  # the far end hung up first
            child.hangup(pj.CallOpParam(True))
        pump_until(ep, child, child.ended, 30)
        pump_until(ep, call, call.ended, 30)
        result["first_call_states"] = list(call.states)
        return result
    refused_at = heard.heard_s()
    # The first call is still ours: the agent says the desk did not answer (the ringing tone's cut tail passed over).
    back = None
    if pump_until(ep, call, lambda: heard.segment_after(refused_at, 1.0) is not None, REPLY_CAP_S):
        back = heard.segment_after(refused_at, 1.0)
    result["back_s"] = back
    if back is None:
        return result
    result["back_wav"] = cut(out / "heard.wav", back, out / "back.wav")
    said_end = say(ep, call, cfg["again_wav"], heard, REPLY_CAP_S)
    again = None
    if pump_until(ep, call, lambda: heard.segment_after(said_end) is not None, REPLY_CAP_S):
        again = heard.segment_after(said_end)
    result["again_s"] = again
    if again is not None:
        result["again_wav"] = cut(out / "heard.wav", again, out / "again.wav")
    return result


def cut(path: Path, segment: tuple[float, float], to: Path) -> str:
    """The part of the recording ``segment`` covers, as a WAV of its own."""
    data = path.read_bytes()[44:]
    start, end = (int(s * RATE) * 2 for s in segment)
    with wave.open(str(to), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(RATE)
        w.writeframes(data[start:end])
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
