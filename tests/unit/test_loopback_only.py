"""The test run reaches loopback only: pytest-socket refuses a connection to any other address before it is made."""

from __future__ import annotations

import socket

import pytest
import pytest_socket

pytestmark = pytest.mark.unit


def test_the_run_allows_loopback_hosts_only(pytestconfig: pytest.Config) -> None:
    assert pytestconfig.getoption("--allow-hosts") == "127.0.0.1,localhost,::1"


def test_a_connection_off_the_machine_is_refused_before_it_is_made() -> None:
    # Checked first, so a run without the guard fails here instead of sending anything anywhere.
    assert socket.socket.connect is not pytest_socket._true_connect, "pytest-socket guards no connection"
    with (
        socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock,
        pytest.raises(pytest_socket.SocketConnectBlockedError),
        pytest.warns(UserWarning, match=r'host "192\.0\.2\.1"'),  # pytest-socket warns as it refuses
    ):
        sock.connect(("192.0.2.1", 9))  # TEST-NET-1: reserved for documentation, never routed


def test_a_connection_to_loopback_goes_through() -> None:
    with socket.create_server(("127.0.0.1", 0)) as server, socket.create_connection(server.getsockname()) as client:
        peer, _ = server.accept()
        with peer:
            client.sendall(b"ping")
            assert peer.recv(4) == b"ping"
