"""The RFC 5424 wire format, pure: header, structured data, the one text form, framing,
and shrinking a message to fit (docs/siem.md). ``integrity.syslog`` sends what this makes.

MSG is the JSON document alone (RFC 5424 MSG-ANY, no BOM): receivers' JSON parsers
(rsyslog's mmjsonparse, Graylog, Filebeat) reject a BOM before the document.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, Literal

from integrity.errors import ConfigError
from integrity.model import Severity

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
