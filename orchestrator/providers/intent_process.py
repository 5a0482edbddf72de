"""The intent classifier in a child process, answered through a pipe that the event loop itself reads.

Why a process and not a thread: a classifier thread shares the GIL with the event loop. MiniLM takes
about 6 ms of onnxruntime per utterance with the GIL released, but the thread needs the GIL back
several times per utterance (tokenizer, onnxruntime, numpy), and a thread that wants the GIL from a busy
event loop waits up to the interpreter's switch interval (5 ms) each time. At 100 calls in one process
a 6 ms classification took 20 to 35 ms, and `route` waits for it. In a child process the model needs no
GIL of ours; the loop reads the answer from the pipe like any socket, with no thread hand-off.
`bench/turn_ab.py classifier` measures the two side by side.

The child does not always get a core of its own, though. A pipe write wakes the reader as a "sync"
wake-up (the kernel assumes the writer is about to wait), and on the project's 2-core VM the child ran on
the parent's core about 70 % of the time, starting once the event loop waited rather than at once.
Pinning the child and the loop to different cores cut the classifier's P99 at 100 calls from 12–15 ms to
about 9 ms, but the turn's overhead P99 did not clearly improve (the loop and its SQLite threads then
share one core), and pinning cannot be right for every host (several workers per box): nothing is pinned.

Protocol: one JSON object per line. The parent writes `{"id": n, "text": "..."}` on the child's stdin;
the child answers `{"id": n, "intent": ..., "confidence": ..., "scores": {...}, "trigger": ...}` (or `{"id": n, "error":
"..."}`) on its stdout, and `{"ready": true}` once its model is loaded. The child exits when its stdin
closes, so it never outlives its parent.

If the child is not ready yet, has died, or answers with an error, the classification runs on a thread
in this process instead (as it did before): a turn never waits on a broken child.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from agents.ports import IntentPrediction
from orchestrator.providers.intent import MODEL_DIR, OnnxIntentClassifier, load_classifier

__all__ = ["ProcessIntentClassifier"]

log = logging.getLogger(__name__)

_ROOT = Path(__file__).resolve().parents[2]  # where `orchestrator` is importable from, for the child

# A child that died is started again at most this often.
RESTART_AFTER_S = 30.0
# An answer slower than this (about 6 ms is usual) is given up on: the utterance is classified here.
ANSWER_WITHIN_S = 0.5
# More requests than this in flight, and new ones run on threads here (the child is behind).
MAX_IN_FLIGHT = 256


class ProcessIntentClassifier:
    """The `IntentClassifier` port, plus `aclassify`, which runs the model in a child process.

    `classify` (synchronous: evals, tests) runs in this process, as `OnnxIntentClassifier` does.
    `aclassify` (what a live turn uses, through `AgentContext.intents`) asks the child.

    Args:
        local: the classifier loaded in this process: the fallback, and the model folder the child loads.
        python: the interpreter that runs the child; defaults to this one.
    """

    def __init__(self, local: OnnxIntentClassifier, *, python: str = sys.executable) -> None:
        self.local = local
        self.python = python
        self.served = 0  # classifications the child answered
        self.fell_back = 0  # classifications that ran on a thread here instead
        self._proc: asyncio.subprocess.Process | None = None
        self._reader: asyncio.Task[None] | None = None
        self._ready = False
        self._started_at = -RESTART_AFTER_S
        self._next_id = 0
        self._pending: dict[int, tuple[str, asyncio.Future[IntentPrediction]]] = {}
        self._closed = False
        self._settled = asyncio.Event()  # set once the child is ready, or gone
        self._restarting: asyncio.Task[None] | None = None

    def classify(self, text: str) -> IntentPrediction:
        return self.local.classify(text)

    @property
    def ready(self) -> bool:
        """Whether the child is up and answering."""
        return self._ready

    async def start(self) -> None:
        """Start the child; classifications run here until it has loaded its model (about a second)."""
        if self._closed or self._proc is not None:
            return
        self._started_at = time.monotonic()
        self._settled.clear()
        self._proc = await asyncio.create_subprocess_exec(
            self.python,
            "-m",
            __name__,
            str(self.local.model_dir),
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            limit=1 << 20,
            env={**os.environ, "PYTHONPATH": os.pathsep.join([str(_ROOT), os.environ.get("PYTHONPATH", "")])},
        )
        self._reader = asyncio.create_task(self._read(self._proc), name="intent-classifier-reader")

    async def wait_ready(self) -> bool:
        """Wait until the child has loaded its model (tests, benchmarks); False if it exited instead."""
        if self._restarting is not None:
            await self._restarting
        if self._proc is not None:
            await self._settled.wait()
        return self._ready

    async def aclassify(self, text: str) -> IntentPrediction:
        """Classify one utterance in the child (or on a thread here, if the child cannot take it)."""
        proc = self._proc
        if not self._ready or proc is None or proc.stdin is None or len(self._pending) >= MAX_IN_FLIGHT:
            self._maybe_restart()
            return await self._here(text)
        self._next_id += 1
        request_id = self._next_id
        loop = asyncio.get_running_loop()
        future: asyncio.Future[IntentPrediction] = loop.create_future()
        self._pending[request_id] = (text, future)
        proc.stdin.write(json.dumps({"id": request_id, "text": text}).encode() + b"\n")
        late = loop.call_later(ANSWER_WITHIN_S, self._late, request_id)
        try:
            return await future
        finally:
            late.cancel()

    def _late(self, request_id: int) -> None:
        """The child has not answered in time (hung, or far behind): this utterance is classified here."""
        text_future = self._pending.pop(request_id, None)
        if text_future is not None and not text_future[1].done():
            log.warning("intent classifier process: no answer in %.1f s; classifying here", ANSWER_WITHIN_S)
            self._redo(*text_future)

    async def _here(self, text: str) -> IntentPrediction:
        self.fell_back += 1
        return await asyncio.to_thread(self.local.classify, text)

    def _maybe_restart(self) -> None:
        """Start a dead child again, in the background (a turn never waits on a fork), at most every 30 s."""
        if self._proc is None and not self._closed and time.monotonic() - self._started_at >= RESTART_AFTER_S:
            self._started_at = time.monotonic()
            self._restarting = asyncio.create_task(self.start(), name="intent-classifier-restart")

    async def _read(self, proc: asyncio.subprocess.Process) -> None:
        assert proc.stdout is not None
        try:
            while line := await proc.stdout.readline():
                self._answer(line)
        finally:
            await self._lost(proc)

    def _answer(self, line: bytes) -> None:
        try:
            msg: dict[str, Any] = json.loads(line)
        except ValueError:
            log.warning("intent classifier process: unreadable line %r", line[:200])
            return
        if msg.get("ready"):
            self._ready = True
            self._settled.set()
            return
        text_future = self._pending.pop(int(msg.get("id", -1)), None)
        if text_future is None:
            return
        text, future = text_future
        if future.done():
            return
        if "error" in msg:
            log.warning("intent classifier process failed on one utterance: %s", msg["error"])
            self._redo(text, future)
            return
        self.served += 1
        future.set_result(
            IntentPrediction(
                intent=msg["intent"],
                confidence=float(msg["confidence"]),
                scores=msg["scores"],
                trigger=msg.get("trigger"),
            )
        )

    async def _lost(self, proc: asyncio.subprocess.Process) -> None:
        """The child's output ended: it exited or was closed. What it had not answered runs here."""
        self._ready = False
        self._settled.set()
        if self._proc is proc:
            self._proc = None
        code = await proc.wait()
        if not self._closed:
            log.error("intent classifier process exited (code %s); classifying in this process meanwhile", code)
        pending, self._pending = self._pending, {}
        for text, future in pending.values():
            if not future.done():
                self._redo(text, future)

    def _redo(self, text: str, future: asyncio.Future[IntentPrediction]) -> None:
        def settle(done: asyncio.Future[IntentPrediction]) -> None:
            if future.done():
                return
            if (error := done.exception()) is not None:
                future.set_exception(error)
            else:
                future.set_result(done.result())

        asyncio.ensure_future(self._here(text)).add_done_callback(settle)

    async def aclose(self) -> None:
        """Stop the child (closing its stdin ends it, or a kill while it is still loading) and wait for it."""
        self._closed = True
        if self._restarting is not None:
            await self._restarting  # a child being started must be stopped too
        proc, self._proc = self._proc, None
        if proc is not None:
            if not self._ready and proc.returncode is None:
                proc.kill()  # still loading its model: it has nothing to finish
            elif proc.stdin is not None:
                proc.stdin.close()
            try:
                await asyncio.wait_for(proc.wait(), timeout=5)
            except TimeoutError:
                proc.kill()
                await proc.wait()
        if self._reader is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await self._reader


def serve(model_dir: Path, stdin: Any = None, stdout: Any = None) -> None:
    """The child: load the model, say ready, answer one line per request until stdin closes."""
    stdin = stdin or sys.stdin.buffer
    stdout = stdout or sys.stdout.buffer
    classifier = load_classifier(model_dir)
    classifier.classify("warm up")  # the first run allocates onnxruntime's buffers
    stdout.write(b'{"ready": true}\n')
    stdout.flush()
    for line in stdin:
        request_id: Any = -1  # until this line's own id is read: never an earlier line's
        try:
            request = json.loads(line)
            request_id = request["id"]
            prediction = classifier.classify(str(request["text"]))
            answer = {
                "id": request_id,
                "intent": prediction.intent,
                "confidence": prediction.confidence,
                "scores": prediction.scores,
                "trigger": prediction.trigger,
            }
        except Exception as exc:  # noqa: BLE001 - the parent redoes it in its own process
            answer = {"id": request_id, "error": repr(exc)[:300]}
        stdout.write(json.dumps(answer).encode() + b"\n")
        stdout.flush()


if __name__ == "__main__":
    serve(Path(sys.argv[1]) if len(sys.argv) > 1 else MODEL_DIR)
