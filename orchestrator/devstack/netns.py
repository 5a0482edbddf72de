"""Two network namespaces joined by a veth pair on a private subnet: the test's own hosts for WebRTC media.

libwebrtc leaves loopback adapters out of ICE, so a real room needs an address on a real link. The server
side and the caller side each get a namespace of their own (no route anywhere else: nothing they send can
leave them), created here and always removed, also after a failure.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import secrets
import shutil
import subprocess
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import TypeVar

T = TypeVar("T")

_CLONE_NEWNET = 0x40000000
# What runs in the namespaces is real-time media: audio at its own pace through WebRTC and RTP, heard by a VAD and
# an STT. It runs at a raised scheduling priority, as a media host runs its media (Asterisk's -p, FreeSWITCH's
# -rp), so batch work on the same cores slows it down instead of starving it: a starved agent hears the caller's
# audio late and in pieces ("What's my balance?" as "Well..." and "That's my balance").
MEDIA_NICE = -10
_libc = ctypes.CDLL(None, use_errno=True)


class NamespacesUnavailable(RuntimeError):
    """This machine cannot make network namespaces (no iproute2, or not allowed to)."""


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, text=True)


@dataclass(frozen=True)
class NetnsPair:
    """The server's namespace and the caller's, and their addresses on the veth link between them."""

    server_ns: str
    caller_ns: str
    server_ip: str
    caller_ip: str
    subnet: str

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        """``argv`` run inside namespace ``ns``, at the media's priority (``MEDIA_NICE``)."""
        return ["ip", "netns", "exec", ns, "nice", "-n", str(MEDIA_NICE), *argv]

    def call_in(self, ns: str, fn: Callable[[], T]) -> T:
        """Run ``fn`` on a thread that joined namespace ``ns`` (sockets it opens live there)."""
        box: dict[str, T | BaseException] = {}

        def run() -> None:
            try:
                with open(f"/run/netns/{ns}", "rb") as handle:
                    if _libc.setns(handle.fileno(), _CLONE_NEWNET) != 0:
                        raise OSError(ctypes.get_errno(), f"setns into {ns} failed")
                box["value"] = fn()
            except BaseException as exc:  # handed back to the caller's thread below
                box["error"] = exc

        thread = threading.Thread(target=run, name=f"netns-{ns}", daemon=True)
        thread.start()
        thread.join()
        if "error" in box:
            raise box["error"]  # type: ignore[misc]  # the key says it holds the exception
        return box["value"]  # type: ignore[return-value]  # the key says it holds fn's result


@contextlib.contextmanager
def netns_pair() -> Iterator[NetnsPair]:
    """Create the two namespaces and their link (10.213.<n>.0/24, which exists nowhere else); remove them after.

    Raises:
        NamespacesUnavailable: ``ip`` is missing or namespaces cannot be made here.
    """
    if shutil.which("ip") is None:
        raise NamespacesUnavailable("iproute2 is not installed (deploy/dev/tools.sh installs it)")
    tag = secrets.token_hex(3)
    octet = int(tag[:2], 16)
    pair = NetnsPair(
        server_ns=f"sb-lk-{tag}",
        caller_ns=f"sb-caller-{tag}",
        server_ip=f"10.213.{octet}.1",
        caller_ip=f"10.213.{octet}.2",
        subnet=f"10.213.{octet}.0/24",
    )
    made: list[str] = []
    try:
        try:
            for ns in (pair.server_ns, pair.caller_ns):
                _ip("netns", "add", ns)
                made.append(ns)
        except subprocess.CalledProcessError as exc:
            raise NamespacesUnavailable(f"cannot create a network namespace: {exc.stderr.strip()}") from None
        # The veth ends are created inside the namespaces, so the host's own link table never holds them.
        _ip("-n", pair.server_ns, "link", "add", "veth-lk", "type", "veth", "peer", "name", "veth-caller",
            "netns", pair.caller_ns)  # fmt: skip
        for ns, dev, addr in (
            (pair.server_ns, "veth-lk", pair.server_ip),
            (pair.caller_ns, "veth-caller", pair.caller_ip),
        ):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "addr", "add", f"{addr}/24", "dev", dev)
            _ip("-n", ns, "link", "set", dev, "up")
        yield pair
    finally:
        for ns in made:
            # Processes still inside would keep it alive: the caller of this stops them first.
            with contextlib.suppress(subprocess.CalledProcessError):
                _ip("netns", "del", ns)


def netns_supported() -> str | None:
    """None when this machine can make the namespaces, else why not (for a skip reason)."""
    if shutil.which("ip") is None:
        return "iproute2 is not installed (run deploy/dev/tools.sh)"
    if os.geteuid() != 0:
        return "network namespaces need root (CAP_SYS_ADMIN and CAP_NET_ADMIN)"
    return None


@dataclass(frozen=True)
class HostNetwork(NetnsPair):
    """No namespaces: the machine's own network, with media on an address the operator gives (a real machine)."""

    def command(self, ns: str, argv: Sequence[str]) -> list[str]:
        return list(argv)

    def call_in(self, ns: str, fn: Callable[[], T]) -> T:
        return fn()


def host_network(node_ip: str) -> HostNetwork:
    """The stack on this machine's network, its media on ``node_ip`` (an address of one of its interfaces)."""
    return HostNetwork(server_ns="", caller_ns="", server_ip=node_ip, caller_ip=node_ip, subnet=f"{node_ip}/32")
