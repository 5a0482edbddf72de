"""Headless Chromium in the caller's namespace, with a fake microphone that speaks flite-rendered words.

The browser reaches the API and the LiveKit server's signalling at the same 127.0.0.1 ports as the processes
in the server's namespace do, through `LoopbackBridge` (a page served from 127.0.0.1 is a secure context, so it
may ask for the microphone); media then flows over the namespaces' veth link. `PAGE_RECORDER` is a script a
test evaluates in the page to record a track it receives (or its own microphone) with an AudioWorklet.
"""

from __future__ import annotations

import contextlib
import os
import socket
import stat
import threading
import wave
from collections.abc import Iterator, Sequence
from pathlib import Path

import numpy as np

from orchestrator.devstack.netns import NetnsPair

CHROMIUM = Path(os.environ.get("SWITCHBOARD_CHROMIUM", "/usr/bin/chromium"))
# Chromium's fake capture device reads the file at the capture rate; 48 kHz needs no resampling in it.
MIC_RATE = 48000
_CHUNK = 65536


def fake_microphone(path: Path, turns: Sequence[str], *, lead_s: float, gap_s: float) -> list[tuple[float, float]]:
    """Write a 48 kHz WAV for ``--use-file-for-fake-audio-capture``: ``lead_s`` of silence, then each turn
    followed by ``gap_s`` of silence.

    Returns:
        Where each turn's speech starts and ends in the file, in seconds.
    """
    from orchestrator.providers.tts import FliteTTS

    tts = FliteTTS()
    pieces = [np.zeros(int(lead_s * MIC_RATE), dtype=np.int16)]
    spans: list[tuple[float, float]] = []
    at = lead_s
    for text in turns:
        pcm = np.frombuffer(tts.render(text), dtype=np.int16).astype(np.float64)
        # flite speaks at 16 kHz: three times the samples, interpolated.
        speech = np.interp(np.arange(len(pcm) * 3) / 3.0, np.arange(len(pcm)), pcm).astype(np.int16)
        pieces += [speech, np.zeros(int(gap_s * MIC_RATE), dtype=np.int16)]
        spans.append((at, at + len(speech) / MIC_RATE))
        at += len(speech) / MIC_RATE + gap_s
    with wave.open(str(path), "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(MIC_RATE)
        w.writeframes(np.concatenate(pieces).tobytes())
    return spans


def chromium_args(microphone: Path | None, *, loop: bool = True) -> list[str]:
    """Chromium's flags for a headless softphone: a fake microphone playing ``microphone`` (once, unless ``loop``),
    granted without a prompt; audio that plays without a click; host candidates by address, not mDNS names."""
    args = [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--autoplay-policy=no-user-gesture-required",
        "--disable-features=WebRtcHideLocalIpsWithMdns",
    ]
    if microphone is not None:
        capture = f"{microphone}{'' if loop else '%noloop'}"
        args += [
            "--use-fake-ui-for-media-stream",
            "--use-fake-device-for-media-stream",
            f"--use-file-for-fake-audio-capture={capture}",
        ]
    return args


def chromium_in(pair: NetnsPair, run_dir: Path) -> Path:
    """An executable that starts Chromium inside the caller's namespace (Playwright launches it by path; its
    pipes pass through ``ip netns exec``)."""
    launcher = run_dir / "chromium-in-caller-ns"
    argv = " ".join(pair.command(pair.caller_ns, [str(CHROMIUM)]))
    launcher.write_text(f'#!/bin/sh\nexec {argv} "$@"\n')
    launcher.chmod(launcher.stat().st_mode | stat.S_IXUSR)
    return launcher


class LoopbackBridge:
    """Forward TCP ports from the caller's namespace's loopback to the server's namespace's loopback.

    Each listening socket is made in the caller's namespace and each upstream one in the server's (a socket
    stays in the namespace it was made in), so nothing listens on, or connects to, any other address.
    """

    def __init__(self, pair: NetnsPair, ports: Sequence[int]) -> None:
        self.pair = pair
        self.ports = list(ports)
        self._listeners: list[socket.socket] = []
        self._open: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._threads: list[threading.Thread] = []
        self._closed = threading.Event()

    def __enter__(self) -> LoopbackBridge:
        for port in self.ports:
            listener = self.pair.call_in(
                self.pair.caller_ns,
                lambda p=port: socket.create_server(("127.0.0.1", p)),  # type: ignore[misc]
            )
            self._listeners.append(listener)
            self._spawn(self._accept, listener, port)
        return self

    def __exit__(self, *_exc: object) -> None:
        self._closed.set()
        with self._lock:
            sockets = [*self._listeners, *self._open]
        for sock in sockets:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        for thread in self._threads:
            thread.join(timeout=5)

    def _spawn(self, target: object, *args: object) -> None:
        thread = threading.Thread(target=target, args=args, daemon=True, name="loopback-bridge")  # type: ignore[arg-type]
        self._threads.append(thread)
        thread.start()

    def _accept(self, listener: socket.socket, port: int) -> None:
        while not self._closed.is_set():
            try:
                client, _addr = listener.accept()
            except OSError:
                return
            try:
                upstream = self.pair.call_in(
                    self.pair.server_ns, lambda: socket.create_connection(("127.0.0.1", port), timeout=10)
                )
            except OSError:
                client.close()
                continue
            upstream.settimeout(None)
            with self._lock:
                self._open.update((client, upstream))
            finished = [0]
            self._spawn(self._pump, client, upstream, finished)
            self._spawn(self._pump, upstream, client, finished)

    def _pump(self, source: socket.socket, sink: socket.socket, finished: list[int]) -> None:
        try:
            while data := source.recv(_CHUNK):
                sink.sendall(data)
        except OSError:
            pass
        finally:
            # Half-close: the other direction may still be sending its last bytes.
            with contextlib.suppress(OSError):
                sink.shutdown(socket.SHUT_WR)
            with self._lock:
                finished[0] += 1
                last = finished[0] == 2
                if last:
                    self._open.discard(source)
                    self._open.discard(sink)
            if last:
                source.close()
                sink.close()


@contextlib.contextmanager
def loopback_bridge(pair: NetnsPair, ports: Sequence[int]) -> Iterator[LoopbackBridge]:
    """`LoopbackBridge` for the block; every socket it made is closed after."""
    with LoopbackBridge(pair, ports) as bridge:
        yield bridge


# The recorder's worklet module, loaded from a blob: URL: the page's context must be made with bypass_csp (the
# console's own policy allows scripts from itself only, and a worklet fetch is not one Playwright can answer).
TAP_MODULE = """
class Tap extends AudioWorkletProcessor {
  constructor() { super(); this.buffer = new Float32Array(1600); this.used = 0; this.first = 0; }
  process(inputs) {
    const channel = inputs[0] && inputs[0][0];
    if (!channel) return true;
    if (this.used === 0) this.first = currentFrame;
    this.buffer.set(channel, this.used);
    this.used += channel.length;
    if (this.used + 128 > this.buffer.length) {
      this.port.postMessage({ frame: this.first, samples: this.buffer.slice(0, this.used) });
      this.used = 0;
    }
    return true;
  }
}
registerProcessor("switchboard-tap", Tap);
"""

# Evaluated in the page with `TAP_MODULE`: window.switchboardRecorder records tracks by name at 16 kHz. An
# AudioWorklet runs on the audio thread and stamps each block with the context's frame counter, so a busy page
# thread loses no audio and two taps share one clock (a ScriptProcessor, on the page's thread, dropped seconds of
# audio on a loaded machine).
PAGE_RECORDER = """
async (module) => {
  if (window.switchboardRecorder) return;
  const context = new AudioContext({ sampleRate: 16000 });
  await context.audioWorklet.addModule(URL.createObjectURL(new Blob([module], { type: "text/javascript" })));
  await context.resume();
  const silent = context.createGain();
  silent.gain.value = 0;
  silent.connect(context.destination);
  const taps = {};
  window.switchboardRecorder = {
    context,
    tap(name, mediaStreamTrack) {
      if (taps[name]) return;
      const source = context.createMediaStreamSource(new MediaStream([mediaStreamTrack]));
      const node = new AudioWorkletNode(context, "switchboard-tap");
      const tap = { chunks: [], frames: [], source, node };
      node.port.onmessage = (e) => { tap.chunks.push(e.data.samples); tap.frames.push(e.data.frame); };
      source.connect(node);
      node.connect(silent);
      taps[name] = tap;
    },
    seconds(name) {
      const t = taps[name];
      return t ? t.chunks.reduce((n, c) => n + c.length, 0) / context.sampleRate : 0;
    },
    take(name) {
      // Int16 PCM as base64, each block at its own frame (a gap, if any, stays silent), and the first frame.
      const t = taps[name];
      if (!t || !t.chunks.length) return null;
      const first = t.frames[0];
      const last = t.frames[t.frames.length - 1] + t.chunks[t.chunks.length - 1].length;
      const pcm = new Int16Array(last - first);
      t.chunks.forEach((c, k) => {
        const at = t.frames[k] - first;
        for (let i = 0; i < c.length; i++) pcm[at + i] = Math.max(-32768, Math.min(32767, Math.round(c[i] * 32767)));
      });
      let binary = "";
      const bytes = new Uint8Array(pcm.buffer);
      for (let i = 0; i < bytes.length; i += 32768) binary += String.fromCharCode(...bytes.subarray(i, i + 32768));
      return { start: first / context.sampleRate, rate: context.sampleRate, pcm: btoa(binary) };
    },
  };
}
"""
