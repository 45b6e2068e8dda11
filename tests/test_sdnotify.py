"""sd_notify against real AF_UNIX datagram sockets (path and abstract), and WatchdogSec."""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Iterator

import pytest

from integrity.sdnotify import notify, watchdog_period


@pytest.fixture
def path_socket(tmp_path) -> Iterator[socket.socket]:
    """A datagram socket bound to a file, like systemd's /run/systemd/notify."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(tmp_path / "notify"))
        sock.settimeout(2)
        yield sock


@pytest.fixture
def abstract_socket() -> Iterator[tuple[socket.socket, str]]:
    """A datagram socket in the abstract namespace; yields it and its ``@name``."""
    name = f"mi-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        yield sock, "@" + name


def test_notify_path_socket(path_socket, monkeypatch):
    """States reach a path socket as one datagram, newline-separated."""
    monkeypatch.setenv("NOTIFY_SOCKET", path_socket.getsockname())
    assert notify("READY=1", "STATUS=watching 42 paths") is True
    assert path_socket.recv(4096) == b"READY=1\nSTATUS=watching 42 paths"


def test_notify_abstract_socket(abstract_socket, monkeypatch):
    """A NOTIFY_SOCKET starting with @ names an abstract socket."""
    sock, name = abstract_socket
    monkeypatch.setenv("NOTIFY_SOCKET", name)
    assert notify("WATCHDOG=1") is True
    assert sock.recv(4096) == b"WATCHDOG=1"


@pytest.mark.parametrize("value", [None, "", "vsock:2:1234", "relative/path"])
def test_notify_outside_systemd_is_a_no_op(monkeypatch, value):
    """No socket, or one we do not support, means False and nothing sent."""
    if value is None:
        monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    else:
        monkeypatch.setenv("NOTIFY_SOCKET", value)
    assert notify("READY=1") is False


def test_notify_to_a_missing_socket_returns_false(tmp_path, monkeypatch):
    """A vanished socket is reported as False, never raised into the daemon."""
    monkeypatch.setenv("NOTIFY_SOCKET", str(tmp_path / "gone"))
    assert notify("READY=1") is False


@pytest.mark.parametrize(
    ("usec", "pid", "expected"),
    [
        ("30000000", None, 15.0),
        ("30000000", "self", 15.0),
        ("1000000", "other", None),
        ("", None, None),
        (None, None, None),
        ("0", None, None),
        ("-5", None, None),
        ("abc", None, None),
        ("1000000", "x", None),
    ],
)
def test_watchdog_period(monkeypatch, usec, pid, expected):
    """Half of WATCHDOG_USEC, only if WATCHDOG_PID is unset or ours; junk means None."""
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            mapping = {"self": str(os.getpid()), "other": str(os.getpid() + 1)}
            monkeypatch.setenv(name, mapping.get(value, value))
    assert watchdog_period() == expected
