"""The demo sandbox as the command-line tests use it: one builder, not one per file."""

from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from integrity.demo import build_sandbox


def cli_host(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """The demo sandbox, the common arguments that point at it, and their (empty) config
    file: (root, arguments, config)."""
    root, profiles = build_sandbox(tmp_path)
    config = tmp_path / "config.toml"
    config.write_text("")
    args = ["--root", str(root), "--db", str(tmp_path / "b.db"), "--profile", "demo",
            "--profile-dir", str(profiles), "--config", str(config)]  # fmt: skip
    return root, args, config


class NotReady(Exception):
    """The daemon exited or timed out before it sent READY=1 (it has been killed)."""


def start_notified(
    argv: list[str],
    log_path: Path,
    *,
    timeout: float,
    cwd: Path | None = None,
    env: dict[str, str] | None = None,
) -> subprocess.Popen[bytes]:
    """Start ``watch`` as systemd starts a Type=notify service and wait for its READY=1:
    the process, or NotReady (after killing it) when READY=1 never came."""
    sock_path = log_path.parent / f"notify-{time.monotonic_ns()}.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(sock_path))
    sock.settimeout(timeout)
    full_env = {**os.environ, **(env or {}), "NOTIFY_SOCKET": str(sock_path)}
    with log_path.open("ab") as log:
        proc = subprocess.Popen(
            argv, env=full_env, stdout=log, stderr=log, cwd=cwd, stdin=subprocess.DEVNULL
        )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if "READY=1" in sock.recv(4096).decode().split("\n"):
                return proc
    except TimeoutError:
        pass
    finally:
        sock.close()
    proc.kill()
    proc.wait()
    raise NotReady(f"no READY=1 within {timeout} s; see {log_path}")
