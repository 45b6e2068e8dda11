"""systemd ``Type=notify`` support without libsystemd (stack-notes §6).

The daemon sends ``READY=1`` once the baseline signature is verified and the watches are
in place, ``WATCHDOG=1`` only after its health checks pass, ``EXTEND_TIMEOUT_USEC=`` during
long scans and ``STOPPING=1`` on the way out. Outside systemd every call is a no-op.
"""

from __future__ import annotations

import os
import socket

import structlog

log = structlog.get_logger(__name__)


def _address(value: str) -> str | None:
    """``/run/...`` path, or ``@name`` for the abstract namespace; vsock is unsupported."""
    if value.startswith("@"):
        return "\0" + value[1:]
    return value if value.startswith("/") else None


def notify(*states: str) -> bool:
    """Send ``states`` (e.g. ``"READY=1"``, ``"STATUS=scanning"``) to systemd.

    False when not under systemd or when the send failed: a lost notification must not
    take the monitor down (systemd's own timeout then restarts us if it mattered).
    """
    value = os.environ.get("NOTIFY_SOCKET", "")
    addr = _address(value) if value else None
    if addr is None:
        return False
    flags = socket.SOCK_DGRAM | socket.SOCK_CLOEXEC
    try:
        with socket.socket(socket.AF_UNIX, flags) as sock:
            sock.connect(addr)
            sock.sendall("\n".join(states).encode())
    except OSError as exc:
        log.warning("sd_notify failed", socket=value, error=str(exc))
        return False
    return True


def watchdog_period() -> float | None:
    """Seconds between ``WATCHDOG=1`` pings (half of ``WatchdogSec=``), or None if unset.

    None as well when ``WATCHDOG_PID`` names another process: the variables were inherited.
    """
    usec, pid = os.environ.get("WATCHDOG_USEC", ""), os.environ.get("WATCHDOG_PID", "")
    try:
        if not usec or int(usec) <= 0 or (pid and int(pid) != os.getpid()):
            return None
        return int(usec) / 2e6
    except ValueError:
        return None
