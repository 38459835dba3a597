"""Test-wide guards: no network beyond loopback, no stray real time, signals as they were."""

from __future__ import annotations

import ipaddress
import os
import signal
import socket
from collections.abc import Iterator
from typing import Any

import pytest

# The consoles (bot.cli_common) fix their width at import when COLUMNS is set then (a pytest-xdist
# worker has it): unset, they read it per call, so a test's own COLUMNS takes effect.
os.environ.pop("COLUMNS", None)
os.environ.pop("LINES", None)

_real_connect = socket.socket.connect


def _is_loopback(address: Any) -> bool:
    if isinstance(address, tuple) and address:
        host = address[0]
        if host == "localhost":
            return True
        try:
            return ipaddress.ip_address(host).is_loopback
        except ValueError:
            return False
    return isinstance(address, str | bytes)  # AF_UNIX paths are local


def _guarded_connect(self: socket.socket, address: Any) -> Any:
    if not _is_loopback(address):
        # An OSError, like a real offline machine, so code under test takes its offline path.
        raise ConnectionRefusedError(
            f"test tried to reach the network: {address!r} (only loopback allowed)"
        )
    return _real_connect(self, address)


@pytest.fixture(autouse=True)
def _no_network(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail any test that connects beyond 127.0.0.1 unless it is marked ``network``."""
    if request.node.get_closest_marker("network"):
        yield
        return
    socket.socket.connect = _guarded_connect  # type: ignore[method-assign]
    try:
        yield
    finally:
        socket.socket.connect = _real_connect  # type: ignore[method-assign]


@pytest.fixture(autouse=True)
def _signals_restored() -> Iterator[None]:
    """Give Ctrl-C back to pytest after a test ran a process (which ignores it once stopped)."""
    saved = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
