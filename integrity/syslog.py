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
"""

from __future__ import annotations

import array
import contextlib
import errno
import fcntl
import json
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

log = structlog.get_logger(__name__)

#: The enterprise number in our SD-ID (``mi@<number>``, RFC 5424 §7.2.2). mail-integrity
#: has no IANA Private Enterprise Number of its own, and taking another organisation's
#: would collide with its SD-IDs; so the default is 32473, the number RFC 5612 reserves for
#: documentation, which no vendor's real SD-IDs use. Sites with their own PEN set
#: ``enterprise_number`` in ``[syslog]`` (docs/siem.md).
DEFAULT_ENTERPRISE = "32473"
SD_ID = f"mi@{DEFAULT_ENTERPRISE}"
APP_NAME = "mail-integrity"
ECS_VERSION = "8.11.0"  # the ECS release our JSON bodies are checked against (tests/data)
UDP_MAX = 2048  # RFC 5426: SHOULD fit 2048 bytes; configurable (udp_max_size)
UDP_MIN = 480  # RFC 5426: every IPv4 receiver MUST accept 480 bytes
UDP_LIMIT = 65507  # the largest UDP payload over IPv4
STREAM_MAX = 8192  # RFC 5425/6587: receivers SHOULD accept 8192
MiB = 1024 * 1024

#: Syslog level per product severity (PRODUCT.md table; critical uses crit, not alert).
LEVELS: dict[Severity, int] = {
    Severity.CRITICAL: 2,
    Severity.HIGH: 3,
    Severity.MEDIUM: 4,
    Severity.LOW: 5,
    Severity.INFO: 6,
}

#: Facility names accepted in config. Default authpriv: the facility of security
#: messages, kept private (0640 auth.log on Debian), and Samhain's default too.
FACILITIES: dict[str, int] = {
    "kern": 0,
    "user": 1,
    "mail": 2,
    "daemon": 3,
    "auth": 4,
    "syslog": 5,
    "lpr": 6,
    "news": 7,
    "uucp": 8,
    "cron": 9,
    "authpriv": 10,
    "ftp": 11,
    **{f"local{i}": 16 + i for i in range(8)},
}
DEFAULT_FACILITY = FACILITIES["authpriv"]
DEFAULT_PORTS = {"udp": 514, "tcp": 514, "tls": 6514}

Transport = Literal["udp", "tcp", "tls"]
#: RFC 6587 framings for TCP/TLS: octet counting (RFC 5425's only one, the default) or
#: "non-transparent" framing with a trailing LF, for Logstash's and Fluent Bit's inputs.
Framing = Literal["octet-counting", "newline"]
FRAMINGS: tuple[Framing, ...] = ("octet-counting", "newline")


# --- formatting (pure) ----------------------------------------------------------------


def pri(facility: int, severity: str) -> int:
    """PRI = facility * 8 + syslog level of our severity name (``critical`` -> 2...)."""
    if not 0 <= facility <= 23:
        raise ValueError(f"syslog facility must be 0..23, got {facility}")
    return facility * 8 + LEVELS[Severity.parse(severity)]


def facility_code(name: str) -> int:
    """Config value (``authpriv``, ``local4``, or a number) -> facility code."""
    key = name.strip().lower()
    if key.isdigit() and int(key) <= 23:
        return int(key)
    if key not in FACILITIES:
        raise ConfigError(f"unknown syslog facility {name!r}; use one of {', '.join(FACILITIES)}")
    return FACILITIES[key]


def enterprise_sd_id(number: str | int) -> str:
    """``mi@<number>``: a private enterprise number, digits with optional ``.sub`` parts."""
    text = str(number).strip()
    parts = text.split(".")
    if not all(p.isascii() and p.isdigit() for p in parts) or len(text) > 29:
        raise ConfigError(f"syslog enterprise_number must be digits (e.g. 32473), not {text!r}")
    return f"mi@{text}"


# --- the one text representation ------------------------------------------------------


def wire_text(text: str) -> str:
    """``text`` in the one form used in every SD value and JSON string we send.

    A path is a byte string; shown here as UTF-8 text where it is printable UTF-8, and
    otherwise byte by byte: ``\\xNN`` for a byte that is not valid UTF-8 (what
    ``os.fsdecode`` keeps as a surrogate escape) and for every byte of a character Python
    does not call printable (C0/C1 controls such as ESC, CR, LF, DEL; format characters
    such as bidi overrides; line/paragraph separators; private use), and ``\\\\`` for a
    backslash, so the form is unambiguous: ``wire_bytes`` gives back the exact bytes.
    """
    if text.isprintable() and "\\" not in text:
        return text
    return "".join(_wire_char(c) for c in text)


def _wire_char(c: str) -> str:
    if c == "\\":
        return "\\\\"
    if c.isprintable():
        return c
    code = ord(c)
    if 0xDC80 <= code <= 0xDCFF:  # a byte os.fsdecode could not decode
        return f"\\x{code - 0xDC00:02x}"
    raw = c.encode("utf-8", "surrogatepass")
    return "".join(f"\\x{b:02x}" for b in raw)


def wire_bytes(shown: str) -> bytes:
    """The inverse of ``wire_text``: the original bytes of a name (docs/siem.md)."""
    out = bytearray()
    i = 0
    while i < len(shown):
        if shown.startswith("\\\\", i):
            out += b"\\"
            i += 2
        elif shown.startswith("\\x", i) and len(shown) >= i + 4:
            out.append(int(shown[i + 2 : i + 4], 16))
            i += 4
        else:
            out += shown[i].encode("utf-8")
            i += 1
    return bytes(out)


def utf8_safe(text: str) -> str:
    """Kept for callers of 0.1: the same as ``wire_text``."""
    return wire_text(text)


def wire_value(value: Any) -> Any:
    """A JSON-able value with ``wire_text`` applied to every string, keys included."""
    if isinstance(value, str):
        return wire_text(value)
    if isinstance(value, Mapping):
        return {wire_text(str(k)): wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [wire_value(v) for v in value]
    if value is None or isinstance(value, bool | int | float):
        return value
    return wire_text(str(value))


def _header_field(value: str, cap: int) -> str:
    """PRINTUSASCII only (others become ``_``), capped, ``-`` when empty."""
    clean = "".join(c if 33 <= ord(c) <= 126 else "_" for c in value)[:cap]
    return clean or "-"


def _sd_name(name: str) -> str:
    """SD-ID / PARAM-NAME: 1-32 PRINTUSASCII except ``= ] "`` and space; ours are constants."""
    if not 1 <= len(name) <= 32 or any(not 33 <= ord(c) <= 126 or c in '=]"' for c in name):
        raise ValueError(f"invalid structured-data name {name!r}")
    return name


def _sd_value(value: str) -> str:
    """RFC 5424 §6.3.3 escaping of the wire form (which has no control characters)."""
    return wire_text(value).replace("\\", "\\\\").replace('"', '\\"').replace("]", "\\]")


def format_sd(sd: list[tuple[str, dict[str, str]]]) -> str:
    """``[id k="v"...]...`` with RFC 5424 escaping, or ``-`` when there is none."""
    parts = []
    for sd_id, params in sd:
        fields = "".join(f' {_sd_name(k)}="{_sd_value(v)}"' for k, v in params.items())
        parts.append(f"[{_sd_name(sd_id)}{fields}]")
    return "".join(parts) or "-"


def format_timestamp(ts: datetime) -> str:
    """RFC 3339 in UTC with microseconds; a naive datetime is a bug, not local time."""
    if ts.tzinfo is None:
        raise ValueError("syslog timestamps must be timezone-aware")
    return ts.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def format_message(
    *,
    pri: int,
    timestamp: datetime,
    hostname: str,
    app_name: str,
    procid: str,
    msgid: str,
    sd: list[tuple[str, dict[str, str]]],
    msg: str,
) -> bytes:
    """One RFC 5424 message. MSG, when given, is sent as is (MSG-ANY, no BOM): receivers'
    JSON parsers (mmjsonparse, Graylog, Filebeat) reject a BOM before the document."""
    if not 0 <= pri <= 191:
        raise ValueError(f"PRI must be 0..191, got {pri}")
    header = " ".join(
        (
            f"<{pri}>1",
            format_timestamp(timestamp),
            _header_field(hostname, 255),
            _header_field(app_name, 48),
            _header_field(procid, 128),
            _header_field(msgid, 32),
            format_sd(sd),
        )
    )
    out = header.encode("utf-8")  # PRINTUSASCII, except SD values (UTF-8 by RFC 5424)
    if msg:
        out += b" " + wire_text_json(msg).encode("utf-8")
    return out


def wire_text_json(msg: str) -> str:
    """MSG text: already-rendered JSON has no raw control characters; other text gets
    the wire form so no raw control byte reaches a receiver either way."""
    return msg if msg.isprintable() else wire_text(msg)


def render_json(body: Mapping[str, Any]) -> str:
    """The body as compact JSON in the wire form (strict parsers accept every byte)."""
    return json.dumps(wire_value(body), ensure_ascii=False, separators=(",", ":"))


# --- fitting a message into the size limit --------------------------------------------

#: Shrinking steps: every string longer than this many characters is cut in the middle.
_CUTS = (1024, 256, 96, 32, 12)
#: What is kept of the body when cutting values is not enough (top-level keys).
_ESSENTIAL = ("@timestamp", "event", "rule", "file", "host", "ecs")
#: SD params kept in that case.
_CORE_SD = ("path", "rule", "severity", "host")
TRUNCATED = {"mail_integrity": {"truncated": True}}


def shorten(value: Any, cut: int) -> Any:
    """Every string leaf whose wire form is longer than ``cut`` characters as its head,
    ``…``, and its tail, such that the wire form of the result has at most ``cut``."""
    if isinstance(value, str):
        units = [_wire_char(c) for c in value]
        if sum(map(len, units)) <= cut:
            return value
        room = cut - 1
        head = _fitting(units, (room + 1) // 2)
        tail = _fitting(units[head:][::-1], room - sum(map(len, units[:head])))
        return value[:head] + "…" + (value[len(value) - tail :] if tail else "")
    if isinstance(value, Mapping):
        return {k: shorten(v, cut) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [shorten(v, cut) for v in value]
    return value


def _fitting(units: list[str], room: int) -> int:
    """How many of ``units``, from the start, fit in ``room`` characters."""
    used = count = 0
    for unit in units:
        if used + len(unit) > room:
            break
        used, count = used + len(unit), count + 1
    return count


def _merge(base: Mapping[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    out = dict(base)
    for key, value in extra.items():
        old = out.get(key)
        if isinstance(old, Mapping) and isinstance(value, Mapping):
            out[key] = _merge(old, value)
        else:
            out[key] = value
    return out


def fit_message(
    build: Callable[[list[tuple[str, dict[str, str]]], str], bytes],
    sd: list[tuple[str, dict[str, str]]],
    body: Mapping[str, Any] | None,
    limit: int,
) -> bytes:
    """The message made by ``build(sd, msg)``, shrunk until it is at most ``limit`` bytes.

    The JSON is never cut: long strings are shortened (head…tail, both in SD and body),
    then only the essential body fields and SD params are kept, and a shrunk message
    says so (``mail_integrity.truncated: true``, SD param ``truncated="true"``).
    """
    msg = render_json(body) if body is not None else ""
    out = build(sd, msg)
    if len(out) <= limit:
        return out
    own = sd[0][0] if sd else ""
    for essential in (False, True):
        for cut in _CUTS:
            small_sd = [
                (
                    sd_id,
                    {
                        k: shorten(v, cut)
                        for k, v in params.items()
                        if not essential or sd_id != own or k in _CORE_SD
                    }
                    | ({"truncated": "true"} if sd_id == own else {}),
                )
                for sd_id, params in sd
            ]
            small: Mapping[str, Any] = body or {}
            if essential:
                small = {k: v for k, v in small.items() if k in _ESSENTIAL}
            small = _merge(shorten(small, cut), TRUNCATED)
            out = build(small_sd, render_json(small))
            if len(out) <= limit:
                return out
    # a pathological header (a huge hostname): the JSON still stays whole
    bare = [(sd_id, {"truncated": "true"} if sd_id == own else params) for sd_id, params in sd]
    return build(bare, render_json(TRUNCATED))


def truncate_utf8(data: bytes, limit: int) -> bytes:
    """At most ``limit`` bytes, never cutting a UTF-8 sequence in half."""
    if len(data) <= limit:
        return data
    cut = limit
    while cut > 0 and (data[cut] & 0xC0) == 0x80:  # data[cut] starts the dropped part
        cut -= 1
    return data[:cut]


def frame(transport: Transport, message: bytes, framing: Framing = "octet-counting") -> bytes:
    """UDP: the datagram itself. TCP/TLS: RFC 6587 ``LEN SP MSG`` (octet counting), or
    ``MSG LF`` with newline framing (safe: the wire form has no raw LF)."""
    if transport == "udp":
        return message
    if framing == "newline":
        if b"\n" in message:
            raise ValueError("a message with a raw LF cannot be newline-framed")
        return message + b"\n"
    return b"%d %s" % (len(message), message)


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
