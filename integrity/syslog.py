"""RFC 5424 sender to a central syslog/SIEM: UDP, TCP and TLS, with a durable outbox.

Why our own (stack-notes §5): every library blocks, drops or raises when the server is
down. Here ``send()`` writes the formatted message to an on-disk SQLite outbox (WAL) and
wakes one sender thread; the thread writes messages to the socket in sequence order and
removes a message from the outbox only once it is *confirmed*:

* UDP: as soon as the datagram is handed to the kernel (there is nothing better).
* TCP/TLS: plain syslog has no acknowledgements, and a write just after the server
  closed succeeds locally and is lost (stack-notes §5.6). A written message counts as
  confirmed when (1) the kernel's send queue for the socket is empty (``SIOCOUTQ``: the
  peer's TCP acknowledged every byte), (2) the peer has not closed its side, and (3) it
  was written at least ``confirm_hold`` seconds ago (covers a server that is shutting
  down with data still unread). After any connection error, replay starts again from
  the oldest unconfirmed message. So a message can arrive twice, never not at all: the
  SIEM deduplicates on ``[meta sequenceId]``, which increases across restarts.

The outbox is capped (``max_outbox_bytes``, ``queue_size``); when full, the lowest
severity goes first (oldest first within it), the drops are counted (persisted), and one
"dropped N messages" event is queued when the link comes back. ``synchronous=NORMAL``
in WAL mode survives a killed process; a power cut may lose the last transactions.

On the wire (docs/siem.md): MSG is the JSON document alone (no BOM); every SD value and
JSON string is in one printable form (``wire_text``: control characters and undecodable
bytes as ``\\xNN``); a message over the limit (``udp_max_size`` for UDP, 8 KiB otherwise)
is shrunk with its JSON whole (``fit_message``); TCP/TLS use octet counting, or newline
framing when configured. Failed connects, handshakes and dropped connections back off
exponentially with jitter, reset only once the link has proven itself, and are logged
once per change of the link's state.
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import os
import random
import select
import socket
import sqlite3
import ssl
import termios
import threading
import time
import urllib.parse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import structlog

from integrity.errors import ConfigError, IOFailure
from integrity.model import Severity
from integrity.wire import (
    APP_NAME,
    DEFAULT_ENTERPRISE,
    DEFAULT_FACILITY,
    ECS_VERSION,
    FRAMINGS,
    STREAM_MAX,
    UDP_LIMIT,
    UDP_MAX,
    UDP_MIN,
    Framing,
    Transport,
    enterprise_sd_id,
    fit_message,
    format_message,
    format_timestamp,
    frame,
    pri,
)

# the format moved to integrity.wire; these names stay importable from here (0.1 callers)
from integrity.wire import LEVELS as LEVELS
from integrity.wire import SD_ID as SD_ID
from integrity.wire import facility_code as facility_code  # the daemon's import
from integrity.wire import format_sd as format_sd
from integrity.wire import utf8_safe as utf8_safe
from integrity.wire import wire_bytes as wire_bytes
from integrity.wire import wire_text as wire_text

log = structlog.get_logger(__name__)

DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}
MiB = 1024 * 1024


def backoff_delay(attempt: int, low: float, high: float, rnd: random.Random) -> float:
    """Exponential backoff with equal jitter: in [d/2, d], d = min(high, low * 2**attempt)."""
    ceiling = min(high, low * 2 ** min(attempt, 32))
    return max(low, rnd.uniform(ceiling / 2, ceiling))


def attempts_within(window: float, low: float, high: float, *, after: float = 0.0) -> int:
    """The most connection attempts a refusing server can see in ``window`` seconds that
    start ``after`` seconds into an outage, with the sender's backoff (jitter at its
    shortest). A pure function of ``backoff_delay``'s schedule, for docs and tests."""
    t, attempt, count = 0.0, 0, 0
    while t < after + window:
        if t >= after:
            count += 1
        t += max(low, min(high, low * 2 ** min(attempt, 32)) / 2)
        attempt += 1
    return count


def dropped_event(count: int, worst: int, hostname: str) -> tuple[str, dict[str, Any]]:
    """(severity, ECS body) of the "dropped N messages" event; ``worst`` is a rank."""
    severity = "high" if worst >= Severity.HIGH.rank else "medium"
    text = f"syslog outbox was full: dropped {count} messages (lowest severity first)"
    body = {
        "@timestamp": format_timestamp(datetime.now(UTC)),
        "ecs": {"version": ECS_VERSION},
        "event": {
            "kind": "event",
            "category": ["host"],
            "type": ["info"],
            "action": "dropped",
            "severity": Severity(severity).rank + 1,
            "module": "mail_integrity",
            "dataset": "mail_integrity.sender",
        },
        "message": text,
        "host": {"name": hostname},
        "labels": {"dropped": str(count), "worst_dropped": str(list(Severity)[worst])},
    }
    return severity, body


# --- targets --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Target:
    """Where to send: transport, host (IPv6 without brackets) and port."""

    transport: Transport
    host: str
    port: int

    def __str__(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.transport}://{host}:{self.port}"


def parse_url(url: str) -> Target:
    """``udp://H:P``, ``tcp://H:P``, ``tls://H:P`` (ports 514/514/6514 by default)."""
    try:
        parts = urllib.parse.urlsplit(url.strip())
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"bad syslog URL {_shown(url)}: {exc}") from None
    if parts.scheme not in DEFAULT_PORTS:
        raise ConfigError(f"bad syslog URL {_shown(url)}: scheme must be udp://, tcp:// or tls://")
    if not parts.hostname:
        raise ConfigError(f"bad syslog URL {_shown(url)}: no host")
    if parts.username is not None or parts.path not in ("", "/") or parts.query or parts.fragment:
        raise ConfigError(f"bad syslog URL {_shown(url)}: only scheme://host:port is allowed")
    if port == 0:
        raise ConfigError(f"bad syslog URL {_shown(url)}: port 0")
    transport: Transport = parts.scheme  # type: ignore[assignment]
    return Target(transport, parts.hostname, port or DEFAULT_PORTS[transport])


def _shown(url: str) -> str:
    """The URL for an error message, without any user:password part."""
    scheme, sep, rest = url.strip().partition("://")
    if "@" in rest.split("/")[0]:
        rest = "***@" + rest.split("@", 1)[1]
    return repr((scheme + sep + rest)[:200])


# --- outbox ---------------------------------------------------------------------------

_SCHEMA = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY, rank INTEGER NOT NULL, data BLOB NOT NULL, created REAL NOT NULL);
CREATE INDEX IF NOT EXISTS outbox_drop ON outbox (rank, seq);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
"""
SEQ_MAX = 2**31 - 1  # RFC 5424 §7.3.1: sequenceId is 1..2147483647, then wraps to 1


def sequence_id(seq: int) -> int:
    """The ``[meta sequenceId]`` of outbox key ``seq`` (1..2**31-1, wrapping)."""
    return (seq - 1) % SEQ_MAX + 1


def _create_private(path: str) -> None:
    """Create the outbox 0600 without following a symlink someone planted in its place."""
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    os.close(fd)


class Outbox:
    """The SQLite spool: messages by sequence number, plus counters that survive restarts.

    One connection shared by ``send()`` callers and the sender thread, behind a lock.
    """

    def __init__(self, path: str | None, max_bytes: int, max_rows: int) -> None:
        self.lock = threading.Lock()
        self.max_bytes, self.max_rows = max_bytes, max_rows
        try:
            if path:
                _create_private(path)
            self.db = sqlite3.connect(
                path or ":memory:", check_same_thread=False, isolation_level=None
            )
            self.db.execute("PRAGMA journal_mode=WAL")
            self.db.execute("PRAGMA synchronous=NORMAL")
            self.db.executescript(_SCHEMA)
            rows, size = self.db.execute(
                "SELECT count(*), total(length(data)) FROM outbox"
            ).fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise ConfigError(f"syslog outbox {path}: {exc}") from None
        self.rows, self.bytes = int(rows), int(size)

    def counter(self, key: str) -> int:
        row = self.db.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return int(row[0]) if row else 0

    def set_counter(self, key: str, value: int) -> None:
        self.db.execute("INSERT OR REPLACE INTO meta (key, value) VALUES (?, ?)", (key, value))

    def next_seq(self) -> int:
        """The next outbox key: never reused, even after a wrap of the sequenceId."""
        seq = self.counter("last_seq") + 1
        self.set_counter("last_seq", seq)
        return seq

    def add(
        self, seq: int, rank: int, data: bytes, *, capped: bool = True
    ) -> list[tuple[int, int]]:
        """Insert, then drop lowest-rank-oldest rows over the caps; return (seq, rank) dropped."""
        self.db.execute(
            "INSERT INTO outbox (seq, rank, data, created) VALUES (?, ?, ?, ?)",
            (seq, rank, data, time.time()),
        )
        self.rows, self.bytes = self.rows + 1, self.bytes + len(data)
        dropped: list[tuple[int, int]] = []
        while capped and (self.rows > self.max_rows or self.bytes > self.max_bytes):
            victim = self.db.execute(
                "SELECT seq, rank, length(data) FROM outbox ORDER BY rank, seq LIMIT 1"
            ).fetchone()
            self.db.execute("DELETE FROM outbox WHERE seq = ?", (victim[0],))
            self.rows, self.bytes = self.rows - 1, self.bytes - int(victim[2])
            dropped.append((int(victim[0]), int(victim[1])))
        return dropped

    def after(self, seq: int, limit: int) -> list[tuple[int, bytes]]:
        """Up to ``limit`` messages in order, strictly after ``seq`` (the last one written)."""
        rows = self.db.execute(
            "SELECT seq, data FROM outbox WHERE seq > ? ORDER BY seq LIMIT ?", (seq, limit)
        ).fetchall()
        return [(int(s), bytes(d)) for s, d in rows]

    def remove(self, seqs: list[int]) -> None:
        for seq in seqs:
            row = self.db.execute(
                "DELETE FROM outbox WHERE seq = ? RETURNING length(data)", (seq,)
            ).fetchone()
            if row is not None:
                self.rows, self.bytes = self.rows - 1, self.bytes - int(row[0])

    def close(self) -> None:
        self.db.close()


# --- the sender -----------------------------------------------------------------------

_IDLE_POLL = 0.5  # how often an idle connection is checked for a peer close
_CONFIRM_POLL = 0.02  # how often written-but-unconfirmed messages are re-checked
_BATCH = 64


class SyslogSender:
    """Non-blocking, durable RFC 5424 sender; see the module docstring for the guarantees."""

    def __init__(
        self,
        target: Target | str,
        *,
        outbox_path: str | None,
        hostname: str,
        app_name: str = APP_NAME,
        ca_file: str | None = None,
        cert_file: str | None = None,
        key_file: str | None = None,
        verify_hostname: bool = True,
        max_outbox_bytes: int = 64 * MiB,
        queue_size: int = 10000,
        facility: int = DEFAULT_FACILITY,
        backoff: tuple[float, float] = (1.0, 60.0),
        connect_timeout: float = 10.0,
        send_timeout: float = 10.0,
        confirm_hold: float = 1.0,
        framing: Framing = "octet-counting",
        udp_max_size: int = UDP_MAX,
        enterprise_number: str | int = DEFAULT_ENTERPRISE,
        stable_after: float = 10.0,
    ) -> None:
        self.target = parse_url(target) if isinstance(target, str) else target
        self.hostname, self.app_name, self.facility = hostname, app_name, facility
        if framing not in FRAMINGS:
            choices = ", ".join(FRAMINGS)
            raise ConfigError(f"syslog framing must be one of {choices}, not {framing!r}")
        if not UDP_MIN <= udp_max_size <= UDP_LIMIT:
            raise ConfigError(
                f"syslog udp_max_size must be {UDP_MIN}..{UDP_LIMIT} bytes, not {udp_max_size}"
            )
        self.framing, self.sd_id = framing, enterprise_sd_id(enterprise_number)
        self.limit = udp_max_size if self.target.transport == "udp" else STREAM_MAX
        self.stable_after = stable_after
        self.backoff, self.confirm_hold = backoff, confirm_hold
        self.connect_timeout, self.send_timeout = connect_timeout, send_timeout
        self._ssl = None
        if self.target.transport == "tls":
            self._ssl = tls_context(ca_file, cert_file, key_file, verify_hostname)
        self._outbox = Outbox(outbox_path, max_outbox_bytes, queue_size)
        self._procid = str(os.getpid())
        self._wake, self._stop = threading.Event(), threading.Event()
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._written: list[tuple[int, float]] = []  # (outbox seq, monotonic time) unconfirmed
        self._last_written = 0
        self._attempt = 0
        self._link: Literal["unknown", "up", "down"] = "unknown"
        self._connected_at = 0.0
        self._sent = self._dropped = 0
        self._rnd = random.Random()  # noqa: S311 (jitter, not crypto)

    # -- public API, any thread --

    def start(self) -> None:
        """Start the sender thread (idempotent). ``send()`` works before it, into the outbox."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="syslog-sender", daemon=True)
            self._thread.start()

    def send(
        self, severity: str, msgid: str, sd_params: Mapping[str, str], body: Mapping[str, Any]
    ) -> int:
        """Queue one message durably and wake the sender; return its sequenceId."""
        rank = Severity.parse(severity).rank
        try:
            with self._outbox.lock:
                work = lambda: self._enqueue(severity, rank, msgid, sd_params, body)  # noqa: E731
                seq = self._transaction(work)
        except sqlite3.Error as exc:  # disk full, outbox closed or tampered with
            raise IOFailure(f"syslog outbox: {exc}") from None
        self._wake.set()
        return sequence_id(seq)

    def flush(self, timeout: float) -> bool:
        """Wait until every queued message is confirmed sent; True if the outbox is empty."""
        deadline = time.monotonic() + timeout
        while self._outbox.rows and time.monotonic() < deadline and self.alive():
            self._wake.set()
            time.sleep(_CONFIRM_POLL)
        return self._outbox.rows == 0

    def close(self, timeout: float) -> None:
        """Flush within ``timeout``, then stop; anything unsent stays in the outbox."""
        deadline = time.monotonic() + timeout
        if self.alive():
            self.flush(timeout)
        self._stop.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(max(0.1, deadline - time.monotonic()))
            if self._thread.is_alive():
                log.warning("syslog sender did not stop in time")
                return
        self._disconnect(graceful=True)
        with self._outbox.lock:
            self._outbox.close()

    def stats(self) -> dict[str, int | bool]:
        """Counters for heartbeats: written to the socket, waiting, dropped, link state."""
        return {
            "sent": self._sent,
            "queued": self._outbox.rows,
            "dropped": self._dropped,
            "connected": self._sock is not None,
        }

    def alive(self) -> bool:
        """Whether the sender thread runs: the daemon gates its watchdog ping on this."""
        return self._thread is not None and self._thread.is_alive()

    # -- outbox side (caller holds the lock) --

    def _transaction(self, work: Callable[[], int]) -> int:
        db = self._outbox.db
        db.execute("BEGIN IMMEDIATE")
        try:
            result = int(work())
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")
        return result

    def _enqueue(
        self,
        severity: str,
        rank: int,
        msgid: str,
        sd_params: Mapping[str, str],
        body: Mapping[str, Any],
        *,
        capped: bool = True,
    ) -> int:
        seq = self._outbox.next_seq()
        sd = [(self.sd_id, dict(sd_params)), ("meta", {"sequenceId": str(sequence_id(seq))})]
        now = datetime.now(UTC)

        def build(sd: list[tuple[str, dict[str, str]]], msg: str) -> bytes:
            return format_message(
                pri=pri(self.facility, severity),
                timestamp=now,
                hostname=self.hostname,
                app_name=self.app_name,
                procid=self._procid,
                msgid=msgid,
                sd=sd,
                msg=msg,
            )

        data = fit_message(build, sd, body, self.limit)
        self._count_drops(self._outbox.add(seq, rank, data, capped=capped))
        return seq

    def _count_drops(self, dropped: list[tuple[int, int]]) -> None:
        if not dropped:
            return
        box = self._outbox
        box.set_counter("dropped_pending", box.counter("dropped_pending") + len(dropped))
        worst = max(rank for _, rank in dropped)
        box.set_counter("dropped_rank", max(worst, box.counter("dropped_rank")))
        self._dropped += len(dropped)
        log.warning("syslog outbox full, dropped lowest-severity messages", count=len(dropped))

    def _report_drops(self) -> None:
        """Queue one "dropped N messages" event for drops not yet reported."""
        with self._outbox.lock:
            if not self._outbox.counter("dropped_pending"):
                return
            self._transaction(self._enqueue_drop_event)
        self._wake.set()

    def _enqueue_drop_event(self) -> int:
        box = self._outbox
        count, worst = box.counter("dropped_pending"), box.counter("dropped_rank")
        box.set_counter("dropped_pending", 0)
        box.set_counter("dropped_rank", 0)
        severity, body = dropped_event(count, worst, self.hostname)
        params = {"dropped": str(count), "host": self.hostname, "severity": severity}
        # exempt from the cap: reporting a drop must not cause another (at most one extra row)
        rank = Severity(severity).rank
        return self._enqueue(severity, rank, "MI-SYSLOG-DROPPED", params, body, capped=False)

    # -- the sender thread --

    def _run(self) -> None:
        """Loop until close(); never lets an exception end the thread."""
        while not self._stop.is_set():
            try:
                self._step()
            except OSError as exc:
                self._link_down("syslog connection lost", exc)
                self._disconnect()
                self._sleep_backoff()
            except Exception:
                log.exception("syslog sender failed; retrying", target=str(self.target))
                self._disconnect()
                self._sleep_backoff()

    def _link_down(self, what: str, exc: OSError) -> None:
        """One warning when the link goes down; repeated failures only at debug level."""
        level = log.warning if self._link != "down" else log.debug
        level(what, target=str(self.target), error=str(exc), attempt=self._attempt + 1)
        self._link = "down"

    def _proven(self) -> None:
        """The link works (a message was confirmed, or it stayed up ``stable_after``):
        only now the backoff starts again from its shortest delay. A server that accepts
        and then drops us (TLS without a client certificate) never gets here."""
        if self._link != "up":
            log.info("syslog link up", target=str(self.target), attempts=self._attempt)
        self._link, self._attempt = "up", 0

    def _step(self) -> None:
        if self._sock is None and not self._connect():
            return
        sock = self._sock
        if sock is None:
            return
        self._wake.clear()
        self._check_peer()
        with self._outbox.lock:
            batch = self._outbox.after(self._last_written, _BATCH)
        for seq, data in batch:
            self._write(sock, seq, data)
        self._confirm()
        if not batch:
            if self._link != "up" and time.monotonic() - self._connected_at >= self.stable_after:
                self._proven()
            self._report_drops()
            self._wake.wait(_CONFIRM_POLL if self._written else _IDLE_POLL)

    def _write(self, sock: socket.socket, seq: int, data: bytes) -> None:
        sock.sendall(frame(self.target.transport, data, self.framing))
        self._sent += 1
        self._last_written = seq
        self._written.append((seq, time.monotonic()))

    def _confirm(self) -> None:
        """Remove written messages the peer has certainly received (see module docstring)."""
        if not self._written or self._sock is None:
            return
        now = time.monotonic()
        if self.target.transport == "udp":
            done = [seq for seq, _ in self._written]
        elif unacked_bytes(self._sock) == 0:
            self._check_peer()
            done = [seq for seq, t in self._written if now - t >= self.confirm_hold]
        else:
            return
        with self._outbox.lock:
            self._outbox.remove(done)
        self._written = self._written[len(done) :]
        if done:
            self._proven()

    def _check_peer(self) -> None:
        """Raise if the server closed the connection (so nothing more is written into it)."""
        sock = self._sock
        if sock is None or self.target.transport == "udp":
            return
        if not select.select([sock], [], [], 0)[0]:
            return
        sock.settimeout(0.0)
        try:
            data: bytes | None = sock.recv(4096)
        except (ssl.SSLWantReadError, BlockingIOError):
            data = None  # a TLS record that was not application data (e.g. a session ticket)
        finally:
            sock.settimeout(self.send_timeout)
        if data == b"":
            raise ConnectionResetError(errno.ECONNRESET, "server closed the connection")

    def _connect(self) -> bool:
        try:
            self._sock = open_socket(self.target, self._ssl, self.connect_timeout)
        except OSError as exc:
            self._link_down("syslog connect failed", exc)
            self._sleep_backoff()
            return False
        self._sock.settimeout(self.send_timeout)
        self._connected_at = time.monotonic()
        log.debug("syslog connected", target=str(self.target), attempt=self._attempt)
        self._report_drops()
        return True

    def _disconnect(self, *, graceful: bool = False) -> None:
        """Close the socket; replay restarts at the oldest unconfirmed message."""
        sock, self._sock = self._sock, None
        if graceful and isinstance(sock, ssl.SSLSocket):
            with contextlib.suppress(OSError, ValueError):
                sock.settimeout(1.0)
                sock.unwrap()  # close_notify, so the receiver sees a clean end
        if sock is not None:
            sock.close()
        self._written.clear()
        self._last_written = 0

    def _sleep_backoff(self) -> None:
        delay = backoff_delay(self._attempt, *self.backoff, self._rnd)
        self._attempt += 1
        self._stop.wait(delay)


def tls_context(
    ca_file: str | None, cert_file: str | None, key_file: str | None, verify_hostname: bool
) -> ssl.SSLContext:
    """Client context: TLS 1.2+, CA-verified server, hostname check, optional client cert."""
    try:
        ctx = ssl.create_default_context(cafile=ca_file)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        ctx.check_hostname = verify_hostname
        if cert_file:
            # an empty password makes an encrypted key fail here instead of prompting
            ctx.load_cert_chain(cert_file, key_file, password=b"")
    except (OSError, ssl.SSLError) as exc:
        reason = (
            getattr(exc, "strerror", None) or getattr(exc, "reason", None) or type(exc).__name__
        )
        raise ConfigError(
            f"syslog TLS: cannot load CA {ca_file!r} / certificate {cert_file!r} / "
            f"key {key_file!r}: {reason}"
        ) from None
    return ctx


def open_socket(target: Target, ctx: ssl.SSLContext | None, timeout: float) -> socket.socket:
    """Connect (UDP: a connected datagram socket, so ICMP refusals surface as errors)."""
    if target.transport == "udp":
        family, kind, proto, _, addr = socket.getaddrinfo(
            target.host, target.port, type=socket.SOCK_DGRAM
        )[0]
        sock = socket.socket(family, kind, proto)
        try:
            sock.connect(addr)
        except OSError:
            sock.close()
            raise
        return sock
    sock = socket.create_connection((target.host, target.port), timeout=timeout)
    try:
        _keepalive(sock)
        if ctx is not None:
            return ctx.wrap_socket(sock, server_hostname=target.host)
    except BaseException:
        sock.close()
        raise
    return sock


def _keepalive(sock: socket.socket) -> None:
    """Detect a dead peer within about 90 s even when we have nothing to send."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, 60)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, 10)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, 3)


def unacked_bytes(sock: socket.socket) -> int:
    """Bytes written but not yet acknowledged by the peer's TCP (Linux ``SIOCOUTQ``)."""
    buf = array.array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.TIOCOUTQ, buf, True)
    return int(buf[0])
