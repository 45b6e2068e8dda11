"""A strict checker for RFC 5424 messages and RFC 6587 framing, written from the ABNF.

RFC 5424 §6:
    SYSLOG-MSG      = HEADER SP STRUCTURED-DATA [SP MSG]
    HEADER          = PRI VERSION SP TIMESTAMP SP HOSTNAME SP APP-NAME SP PROCID SP MSGID
    PRI             = "<" PRIVAL ">"            PRIVAL = 1*3DIGIT ; 0..191
    VERSION         = NONZERO-DIGIT 0*2DIGIT
    HOSTNAME        = NILVALUE / 1*255PRINTUSASCII
    APP-NAME        = NILVALUE / 1*48PRINTUSASCII
    PROCID          = NILVALUE / 1*128PRINTUSASCII
    MSGID           = NILVALUE / 1*32PRINTUSASCII
    TIMESTAMP       = NILVALUE / FULL-DATE "T" FULL-TIME   (RFC 3339, TIME-SECFRAC 1*6DIGIT)
    STRUCTURED-DATA = NILVALUE / 1*SD-ELEMENT
    SD-ELEMENT      = "[" SD-ID *(SP SD-PARAM) "]"
    SD-PARAM        = PARAM-NAME "=" %d34 PARAM-VALUE %d34
    SD-NAME         = 1*32PRINTUSASCII ; except '=', SP, ']', %d34
    PARAM-VALUE     = UTF-8-STRING ; '"', '\\' and ']' MUST be escaped
    MSG             = MSG-ANY / MSG-UTF8     MSG-UTF8 = BOM UTF-8-STRING
RFC 5424 §7.2.2: an SD-ID without "@" must be IANA-registered (timeQuality, origin,
meta); others are ``name@<private enterprise number>``. §7.3.1: sequenceId 1..2147483647.
RFC 6587 §3.4.1: octet counting ``MSG-LEN SP SYSLOG-MSG``, MSG-LEN = NONZERO-DIGIT *DIGIT;
§3.4.2: non-transparent framing, each message ends with LF.

On top of the grammar, ``check`` holds our own contract (issue 9): no raw control
character anywhere, a backslash in PARAM-VALUE only as an escape, and MSG one JSON document
with no BOM.
"""

from __future__ import annotations

import calendar
import json
import re
from typing import Any

IANA_SD_IDS = {"timeQuality", "origin", "meta"}
_PRINTUSASCII = re.compile(rb"[\x21-\x7e]+")
_TIMESTAMP = re.compile(
    rb"(\d{4})-(\d{2})-(\d{2})T(\d{2}):(\d{2}):(\d{2})(\.\d{1,6})?(Z|[+-](\d{2}):(\d{2}))"
)


class Invalid(ValueError):
    """The bytes break RFC 5424/6587 (or our contract); the message says where."""


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def peek(self) -> int | None:
        return self.data[self.pos] if self.pos < len(self.data) else None

    def take(self, literal: bytes, what: str) -> None:
        if not self.data.startswith(literal, self.pos):
            got = self.data[self.pos : self.pos + 20]
            raise Invalid(f"expected {what} {literal!r} at byte {self.pos}, got {got!r}")
        self.pos += len(literal)

    def field(self, cap: int, what: str) -> bytes:
        """NILVALUE / 1*cap PRINTUSASCII, up to the next SP."""
        m = _PRINTUSASCII.match(self.data, self.pos)
        if m is None:
            raise Invalid(f"{what}: no PRINTUSASCII at byte {self.pos}")
        value = m.group()
        if len(value) > cap:
            raise Invalid(f"{what}: {len(value)} characters, more than {cap}")
        self.pos = m.end()
        return value


def _timestamp(value: bytes) -> None:
    if value == b"-":
        return
    m = _TIMESTAMP.fullmatch(value)
    if m is None:
        raise Invalid(f"TIMESTAMP {value!r} is not RFC 3339 as RFC 5424 restricts it")
    year, month, day, hour, minute, second = (int(m.group(i)) for i in range(1, 7))
    if not 1 <= month <= 12 or not 1 <= day <= calendar.monthrange(year, month)[1]:
        raise Invalid(f"TIMESTAMP {value!r}: no such date")
    if hour > 23 or minute > 59 or second > 59:
        raise Invalid(f"TIMESTAMP {value!r}: no such time (leap seconds are not allowed)")
    if m.group(9) is not None and (int(m.group(9)) > 23 or int(m.group(10)) > 59):
        raise Invalid(f"TIMESTAMP {value!r}: bad offset")


def _sd_name(r: _Reader, what: str) -> str:
    start = r.pos
    while (c := r.peek()) is not None and 33 <= c <= 126 and c not in b'= ]"':
        r.pos += 1
    name = r.data[start : r.pos]
    if not 1 <= len(name) <= 32:
        raise Invalid(f"{what} {name!r} must be 1..32 PRINTUSASCII characters")
    return name.decode("ascii")


def _param_value(r: _Reader) -> str:
    r.take(b'"', "opening quote of PARAM-VALUE")
    out = bytearray()
    while True:
        c = r.peek()
        if c is None:
            raise Invalid("PARAM-VALUE not closed")
        if c == 0x22:  # "
            r.pos += 1
            break
        if c == 0x5C:  # backslash: only as the escape of " \ ]
            nxt = r.data[r.pos + 1 : r.pos + 2]
            if nxt not in (b'"', b"\\", b"]"):
                raise Invalid(f"lone backslash in PARAM-VALUE at byte {r.pos}")
            out += nxt
            r.pos += 2
            continue
        if c == 0x5D:  # ]
            raise Invalid(f"unescaped ] in PARAM-VALUE at byte {r.pos}")
        out.append(c)
        r.pos += 1
    try:
        return out.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise Invalid(f"PARAM-VALUE is not UTF-8: {exc}") from None


def _structured_data(r: _Reader) -> dict[str, dict[str, str]]:
    if r.peek() == ord("-"):
        r.pos += 1
        return {}
    elements: dict[str, dict[str, str]] = {}
    while r.peek() == ord("["):
        r.pos += 1
        sd_id = _sd_name(r, "SD-ID")
        if "@" in sd_id:
            name, _, pen = sd_id.partition("@")
            if not name or "@" in pen or not re.fullmatch(r"\d+(\.\d+)*", pen):
                raise Invalid(f"SD-ID {sd_id!r} is not name@<enterprise number>")
        elif sd_id not in IANA_SD_IDS:
            raise Invalid(f"SD-ID {sd_id!r} has no @ and is not registered with IANA")
        if sd_id in elements:
            raise Invalid(f"SD-ID {sd_id!r} appears twice (RFC 5424 §6.3.2)")
        params: dict[str, str] = {}
        while r.peek() == ord(" "):
            r.pos += 1
            name = _sd_name(r, "PARAM-NAME")
            r.take(b"=", "= after PARAM-NAME")
            params[name] = _param_value(r)
        r.take(b"]", "] closing SD-ELEMENT")
        elements[sd_id] = params
    if not elements:
        raise Invalid(f"STRUCTURED-DATA must be - or SD-ELEMENTs, at byte {r.pos}")
    meta = elements.get("meta", {})
    if "sequenceId" in meta and not (
        meta["sequenceId"].isdigit() and 1 <= int(meta["sequenceId"]) <= 2147483647
    ):
        raise Invalid(f"meta sequenceId {meta['sequenceId']!r} out of 1..2147483647")
    return elements


def parse(data: bytes) -> dict[str, Any]:
    """Parse one SYSLOG-MSG strictly by the ABNF; raise ``Invalid`` with the reason."""
    r = _Reader(data)
    r.take(b"<", "PRI")
    m = re.compile(rb"(\d{1,3})>([1-9]\d{0,2}) ").match(data, r.pos)
    if m is None:
        raise Invalid("PRI VERSION SP malformed")
    prival, version = int(m.group(1)), int(m.group(2))
    if prival > 191 or (len(m.group(1)) > 1 and m.group(1).startswith(b"0")):
        raise Invalid(f"PRIVAL {m.group(1)!r} out of 0..191 (or a leading zero)")
    r.pos = m.end()
    header: dict[str, Any] = {"pri": prival, "version": version}
    fields = (("timestamp", 255), ("hostname", 255), ("app_name", 48), ("procid", 128))
    for name, cap in (*fields, ("msgid", 32)):
        value = r.field(cap, name.upper())
        if name == "timestamp":
            _timestamp(value)
        header[name] = value.decode("ascii")
        r.take(b" ", f"SP after {name.upper()}")
    header["sd"] = _structured_data(r)
    msg = None
    if r.pos < len(data):
        r.take(b" ", "SP before MSG")
        msg = data[r.pos :]
    header["msg"] = msg
    return header


def check(data: bytes) -> dict[str, Any]:
    """``parse`` plus our contract: no raw control byte, MSG is one JSON object, no BOM."""
    bad = [i for i, b in enumerate(data) if b < 0x20 or b == 0x7F]
    if bad:
        raise Invalid(f"raw control byte {data[bad[0]]:#04x} at {bad[0]}")
    out = parse(data)
    msg = out["msg"]
    if msg is None:
        raise Invalid("no MSG")
    if msg.startswith(b"\xef\xbb\xbf"):
        raise Invalid("MSG starts with a BOM")
    try:
        out["json"] = json.loads(msg.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise Invalid(f"MSG is not one UTF-8 JSON document: {exc}") from None
    if not isinstance(out["json"], dict):
        raise Invalid("MSG is JSON but not an object")
    return out


def split_octet_counted(stream: bytes) -> list[bytes]:
    """RFC 6587 §3.4.1: ``MSG-LEN SP SYSLOG-MSG`` repeated, nothing left over."""
    out, pos = [], 0
    while pos < len(stream):
        m = re.compile(rb"([1-9]\d*) ").match(stream, pos)
        if m is None:
            raise Invalid(f"bad MSG-LEN at stream byte {pos}: {stream[pos : pos + 20]!r}")
        end = m.end() + int(m.group(1))
        if end > len(stream):
            raise Invalid(f"frame at {pos} runs past the end of the stream")
        out.append(stream[m.end() : end])
        pos = end
    return out


def split_newline(stream: bytes) -> list[bytes]:
    """RFC 6587 §3.4.2 with LF as the trailer: every message ends with LF."""
    if stream and not stream.endswith(b"\n"):
        raise Invalid("stream does not end with the LF trailer")
    return stream.split(b"\n")[:-1] if stream else []
