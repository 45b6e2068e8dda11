"""Real receivers and the real `watch` for the SIEM interop tests (issue 9).

* ``Watch``: `python3 -m integrity watch` as a child process over a demo sandbox tree,
  with its own config file, waiting for READY=1 on a real NOTIFY_SOCKET.
* ``Tap``: a loopback TCP/UDP listener that keeps the exact bytes it receives, so the
  framing and the RFC 5424 grammar are checked on what really went over the wire.
* ``SyslogNg``: syslog-ng 3.38 unpacked by ``.ci/fetch-syslog-ng`` (the package conflicts
  with rsyslog), run in the foreground with its own config, persist, pid and control
  files: a ``syslog()`` source on TCP and UDP, ``json-parser`` on MSG, one JSON line per
  message that parsed and the raw text of any that did not.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from types import TracebackType
from typing import Any

from integrity import api
from integrity.demo import build_sandbox
from tests.rsyslog_harness import free_port, listening
from tests.sandbox import NotReady, start_notified

REPO = Path(__file__).resolve().parent.parent
SYSLOG_NG_ROOT = (
    Path(os.environ.get("MAIL_INTEGRITY_SYSLOGNG", "/var/cache/mail-integrity-tests/syslog-ng"))
    / "root"
)
SYSLOG_NG = SYSLOG_NG_ROOT / "usr/sbin/syslog-ng"


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(what)
        time.sleep(0.05)


# --- the monitored host and the daemon --------------------------------------------------


def sandbox_host(base: Path, before_init: Callable[[Path], None] | None = None) -> Path:
    """The demo sandbox under ``base`` with a baseline (``before_init`` may add to the tree
    first); returns the tree's root."""
    base.mkdir(parents=True, exist_ok=True)
    root, profiles = build_sandbox(base)
    if before_init is not None:
        before_init(root)
    opts = api.Options(root=str(root), db=str(base / "baseline.db"), profiles=("demo",),
                       profile_dirs=(str(profiles),))  # fmt: skip
    api.init(opts)
    return root


class Watch:
    """One `mail-integrity watch` child; ``syslog`` holds extra ``[syslog]`` TOML lines."""

    def __init__(self, base: Path, url: str, syslog: str = "") -> None:
        self.base = base
        self.root = base / "root"
        self.config = base / "config.toml"
        self.config.write_text(
            "[watch]\ndebounce = 0.02\nfull_verify_interval = 3600.0\n"
            "realert_interval = 3600.0\n"
            f'[syslog]\noutbox = "{base}/outbox.db"\nheartbeat = 3600.0\nreconnect_max = 0.5\n'
            + syslog
        )
        self.argv = [
            sys.executable, "-m", "integrity", "watch", "--root", str(self.root),
            "--db", str(base / "baseline.db"), "--profile", "demo",
            "--profile-dir", str(base / "profiles"), "--config", str(self.config),
            "--syslog", url, "-v",
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 30.0) -> None:
        try:
            self.proc = start_notified(
                self.argv, self.base / "watch.log", timeout=timeout, cwd=REPO
            )
        except NotReady as exc:
            raise AssertionError(f"no READY=1: {self.log()[-2000:]}") from exc

    def log(self) -> str:
        path = self.base / "watch.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> int | None:
        proc, self.proc = self.proc, None
        if proc is None:
            return None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(20)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()

    def __enter__(self) -> Watch:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


# --- a byte-exact listener ------------------------------------------------------------------


class Tap:
    """Loopback TCP and UDP listeners keeping every byte: ``streams`` (one bytes per TCP
    connection, in order) and ``datagrams``. ``refuse``: accept, then close at once (a
    server that drops us), counting the connection attempts with their times."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.refuse = refuse
        self.tcp = socket.create_server(("127.0.0.1", 0))
        self.udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.udp.bind(("127.0.0.1", 0))
        self.tcp_port = self.tcp.getsockname()[1]
        self.udp_port = self.udp.getsockname()[1]
        self.streams: list[bytearray] = []
        self.datagrams: list[bytes] = []
        self.accepts: list[float] = []
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._accept, daemon=True),
            threading.Thread(target=self._recv_udp, daemon=True),
        ]
        for t in self._threads:
            t.start()

    def url(self, transport: str) -> str:
        port = self.udp_port if transport == "udp" else self.tcp_port
        return f"{transport}://127.0.0.1:{port}"

    def _accept(self) -> None:
        self.tcp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.tcp.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepts.append(time.monotonic())
            if self.refuse:
                conn.close()
                continue
            buf = bytearray()
            self.streams.append(buf)
            threading.Thread(target=self._read, args=(conn, buf), daemon=True).start()

    def _read(self, conn: socket.socket, buf: bytearray) -> None:
        conn.settimeout(0.1)
        with conn:
            while not self._stop.is_set():
                try:
                    data = conn.recv(65536)
                except TimeoutError:
                    continue
                except OSError:
                    return
                if not data:
                    return
                buf += data

    def _recv_udp(self) -> None:
        self.udp.settimeout(0.1)
        while not self._stop.is_set():
            try:
                self.datagrams.append(self.udp.recv(65536))
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(2)
        self.tcp.close()
        self.udp.close()


# --- syslog-ng ------------------------------------------------------------------------------


def syslog_ng_available() -> bool:
    return os.access(SYSLOG_NG, os.X_OK)


_SYSLOG_NG_CONF = """\
@version: 3.38
options {{ keep-hostname(yes); chain-hostnames(no); stats-freq(0); }};
source s_mi {{
    syslog(ip("127.0.0.1") port({tcp}) transport("tcp"));
    syslog(ip("127.0.0.1") port({udp}) transport("udp"));
}};
parser p_json {{ json-parser(prefix("mi.")); }};
destination d_parsed {{
    file("{parsed}" template("$(format-json --key mi.* --key .SDATA.* --key MSGID --key HOST)\\n"));
}};
destination d_rejected {{ file("{rejected}" template("$RAWMSG\\n")); }};
log {{ source(s_mi); parser(p_json); destination(d_parsed); flags(final); }};
log {{ source(s_mi); destination(d_rejected); }};
"""


class SyslogNg:
    """One private syslog-ng in the foreground on loopback (see the module docstring).

    ``config``: another configuration to run instead (a shipped recipe), listening on
    ``tcp_ports``; ``udp`` is then not used."""

    def __init__(
        self, directory: Path, config: str | None = None, tcp_ports: list[int] | None = None
    ) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.tcp_port = free_port()
        self.udp_port = free_port(socket.SOCK_DGRAM)
        self.parsed_out = directory / "parsed.json"
        self.rejected_out = directory / "rejected.log"
        self.conf = directory / "syslog-ng.conf"
        self.tcp_ports, self.udp_ports = [self.tcp_port], [self.udp_port]
        if config is None:
            config = _SYSLOG_NG_CONF.format(
                tcp=self.tcp_port, udp=self.udp_port,
                parsed=self.parsed_out, rejected=self.rejected_out,
            )  # fmt: skip
        else:
            self.tcp_ports, self.udp_ports = tcp_ports or [], []
        self.conf.write_text(config)
        self.proc: subprocess.Popen[bytes] | None = None

    def url(self, transport: str) -> str:
        port = self.udp_port if transport == "udp" else self.tcp_port
        return f"{transport}://127.0.0.1:{port}"

    def start(self, timeout: float = 30.0) -> None:
        r = SYSLOG_NG_ROOT
        libs = [r / "usr/lib/syslog-ng", r / "usr/lib/x86_64-linux-gnu", r / "lib/x86_64-linux-gnu"]
        env = {**os.environ, "LD_LIBRARY_PATH": ":".join(map(str, libs))}
        d = self.dir
        argv = [
            str(SYSLOG_NG), "-F", "-e", "--no-caps", "-f", str(self.conf),
            f"--module-path={r / 'usr/lib/syslog-ng/3.38'}", "-R", str(d / "persist"),
            "-p", str(d / "syslog-ng.pid"), "-c", str(d / "syslog-ng.ctl"),
        ]  # fmt: skip
        log = (d / "syslog-ng.stderr").open("ab")
        self.proc = subprocess.Popen(argv, env=env, stdout=log, stderr=log, cwd=d)
        log.close()
        deadline = time.monotonic() + timeout
        while not listening(self.tcp_ports, self.udp_ports):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"syslog-ng did not start: {self.stderr()[-2000:]}")
            time.sleep(0.02)

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def stderr(self) -> str:
        path = self.dir / "syslog-ng.stderr"
        return path.read_text(errors="replace") if path.exists() else ""

    def parsed(self) -> list[dict[str, Any]]:
        """One object per message json-parser accepted: ``mi`` (the body, values as
        syslog-ng keeps them), ``_SDATA`` (syslog-ng writes .SDATA so), ``MSGID``, ``HOST``."""
        if not self.parsed_out.exists():
            return []
        text = self.parsed_out.read_bytes().decode("utf-8", errors="strict")
        return [json.loads(line) for line in text.splitlines()]

    def rejected(self) -> list[str]:
        if not self.rejected_out.exists():
            return []
        return self.rejected_out.read_bytes().decode("utf-8", errors="replace").splitlines()

    def __enter__(self) -> SyslogNg:
        self.start()
        return self

    def __exit__(
        self, t: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
