"""The real `watch` into real receivers (issue 9): rsyslog (mmpstrucdata + mmjsonparse with
an empty cookie) and syslog-ng (syslog() source + json-parser) parse every message, even
about hostile file names and 600-character paths over UDP; the bytes on the wire pass a
strict RFC 5424/6587 check and a third-party parser; every body is valid ECS."""

from __future__ import annotations

import json
import os
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # lark-parser 0.6, its dependency, imports sre_parse
    warnings.simplefilter("ignore", DeprecationWarning)
    from syslog_rfc5424_parser import SyslogMessage  # type: ignore[import-untyped]

from integrity.wire import wire_bytes
from tests import ecs_check, rfc5424, rsyslog_harness
from tests.rsyslog_harness import Rsyslog, parse_5424
from tests.siem_harness import SyslogNg, Tap, Watch, sandbox_host, syslog_ng_available, wait_until

pytestmark = pytest.mark.slow

needs_rsyslog = pytest.mark.skipif(
    not rsyslog_harness.available(), reason="rsyslog + rsyslog-gnutls missing"
)
needs_syslog_ng = pytest.mark.skipif(
    not syslog_ng_available(), reason="syslog-ng not unpacked: run .ci/fetch-syslog-ng"
)

#: new files with hostile names in the monitored /etc/mail: ESC sequences, CR, LF, TAB, DEL,
#: bytes that are not UTF-8, SD/JSON metacharacters, a right-to-left override
HOSTILE = [
    b"esc\x1b[31mred\x1b[0m", b"cr\rname", b"lf\nname", b"tab\tname", b"del\x7fname",
    b"bad\xff\xfeutf8", b'q"uo]te\\back[x=y]', "rtl\u202etxt.exe".encode(), b"nul-free-\xc3",
]  # fmt: skip
DEEP = ["d" * 200, "e" * 200, "f" * 180]  # directories made before the baseline
DEEP_FILE = "/etc/mail/" + "/".join(DEEP) + "/deep-config.cf"
assert len(DEEP_FILE) >= 600


def _deep_dirs(root: Path) -> None:
    (root / "etc/mail" / "/".join(DEEP)).mkdir(parents=True)


def _expected() -> set[bytes]:
    return {b"/etc/mail/" + name for name in HOSTILE} | {DEEP_FILE.encode()}


def _tamper(root: Path) -> None:
    """What an intruder does while we watch: hostile new files, a deep one, a set-gid bit."""
    mail = os.fsencode(root / "etc/mail")
    for name in HOSTILE:
        with open(os.path.join(mail, name), "wb") as fh:
            fh.write(b"x\n")
    (root / DEEP_FILE.lstrip("/")).write_text("deep\n")
    os.chmod(root / "usr/sbin/sendmail", 0o2755)


def _added_paths(bodies: list[dict[str, Any]]) -> dict[bytes, dict[str, Any]]:
    """File path (original bytes) -> body, for the MI-FILE-ADDED findings received."""
    out = {}
    for body in bodies:
        if body.get("rule", {}).get("id") == "MI-FILE-ADDED":
            out[wire_bytes(body["file"]["path"])] = body
    return out


def _seen_all(paths: set[bytes]) -> bool:
    """Every expected path arrived: exactly, or (a shrunk UDP message) by head and tail."""
    want = _expected()
    exact = want & paths
    shrunk = [p for p in paths if "…".encode() in p]
    return len(exact) + len(shrunk) >= len(want)


@pytest.fixture
def host(tmp_path: Path) -> Path:
    base = tmp_path / "host"
    sandbox_host(base, _deep_dirs)
    return base


# --- rsyslog ------------------------------------------------------------------------------


@needs_rsyslog
@pytest.mark.parametrize("transport", ["tcp", "udp", "tls"])
def test_watch_into_rsyslog_every_message_parses(host, tmp_path, transport):
    """rsyslog's mmjsonparse (empty cookie) and mmpstrucdata parse 100% of what `watch`
    sends, hostile names included; each body is valid ECS and names the original bytes."""
    with Rsyslog(tmp_path / "rsyslog") as server:
        tls = f'ca_file = "{server.pki.ca}"\n' if transport == "tls" else ""
        with Watch(host, server.url(transport), tls):
            _tamper(host / "root")

            def arrived() -> bool:
                return _seen_all(set(_added_paths(server.parsed()))) and any(
                    b.get("rule", {}).get("id") == "MI-SETID-ADDED" for b in server.parsed()
                )

            wait_until(arrived, 20, f"findings did not arrive: {server.rejected()[:3]}")
        wait_until(
            lambda: any("MI-LIFECYCLE-STOP" in m for m in server.messages()), 10, "no stop event"
        )
        raw, parsed = server.messages(), server.parsed()
    assert server.rejected() == []
    assert len(parsed) == len(raw) > len(HOSTILE)
    seqs = sorted(int(p["rfc5424-sd"]["meta"]["sequenceid"]) for p in parsed)
    assert seqs == list(range(1, len(seqs) + 1))  # nothing lost, nothing doubled
    for line in raw:
        msg = parse_5424(line)
        assert not msg["bom"]
        body = json.loads(msg["msg"])
        assert ecs_check.problems(body) == [], body
        assert all(ord(c) >= 0x20 and c != "\x7f" for c in line)
    added = _added_paths(parsed)
    for path in _expected() - {DEEP_FILE.encode()}:
        assert path in added, path
        assert added[path]["rfc5424-sd"]["mi@32473"]["path"] == added[path]["file"]["path"]
    deep = [p for p in added if p.startswith(b"/etc/mail/ddd")]
    assert len(deep) == 1
    if transport == "udp":  # 600+ characters, four times over: shrunk, JSON still whole
        assert added[deep[0]]["mail_integrity"]["truncated"] is True
        assert deep[0].endswith(b"deep-config.cf") and b"\xe2\x80\xa6" in deep[0]
        assert all(len(line.encode()) <= 2048 for line in raw)
    else:
        assert deep == [DEEP_FILE.encode()]


# --- syslog-ng ----------------------------------------------------------------------------


@needs_syslog_ng
@pytest.mark.parametrize("transport", ["tcp", "udp"])
def test_watch_into_syslog_ng_every_message_parses(host, tmp_path, transport):
    """syslog-ng's syslog() source and json-parser take 100% of what `watch` sends."""
    with SyslogNg(tmp_path / "syslog-ng") as server:
        with Watch(host, server.url(transport)):
            _tamper(host / "root")

            def bodies() -> list[dict[str, Any]]:
                return [p["mi"] for p in server.parsed() if "mi" in p]

            wait_until(
                lambda: _seen_all(set(_added_paths(bodies()))), 20,
                f"findings did not arrive: {server.rejected()[:3]} {server.stderr()[-500:]}",
            )  # fmt: skip
        wait_until(
            lambda: any(p.get("MSGID") == "MI-LIFECYCLE-STOP" for p in server.parsed()), 10,
            "no stop event",
        )  # fmt: skip
        parsed = server.parsed()
    assert server.rejected() == []
    seqs = sorted(int(p["_SDATA"]["meta"]["sequenceId"]) for p in parsed)
    assert seqs == list(range(1, len(seqs) + 1))
    added = _added_paths([p["mi"] for p in parsed])
    for path in _expected() - {DEEP_FILE.encode()}:
        assert path in added, path
    for p in parsed:
        assert p["HOST"] and p["mi"]["host"]["name"] == p["HOST"]
        if "rule" in p["mi"]:  # a finding: SD, header and body agree on the rule
            assert p["_SDATA"]["mi@32473"]["rule"] == p["MSGID"] == p["mi"]["rule"]["id"]


# --- the bytes on the wire ------------------------------------------------------------------


@pytest.fixture
def tap() -> Iterator[Tap]:
    server = Tap()
    yield server
    server.close()


@pytest.mark.parametrize(
    ("transport", "config"),
    [
        ("tcp", ""),
        ("tcp", 'framing = "newline"\n'),
        ("udp", "udp_max_size = 1024\n"),
    ],
)
def test_captured_bytes_pass_strict_rfc5424_and_6587(host, tap, transport, config):
    """Every message `watch` sent, as captured, is a strict RFC 5424 message in RFC 6587
    framing (octet counting, or LF with newline framing), parses with the third-party
    ``syslog-rfc5424-parser``, fits the UDP size, and carries a valid ECS body."""
    with Watch(host, tap.url(transport), config + 'enterprise_number = "99999.1"\n'):
        _tamper(host / "root")

        def added() -> int:  # MSGID then SD: once per message, whatever the framing
            return sum(s.count(b" MI-FILE-ADDED [") for s in [*tap.streams, *tap.datagrams])

        wait_until(lambda: added() >= len(_expected()), 20, f"too few messages: {added()}")
    wait_until(lambda: b"MI-LIFECYCLE-STOP" in b"".join([*tap.streams, *tap.datagrams]), 10,
               "no stop event")  # fmt: skip
    if transport == "udp":
        messages = list(tap.datagrams)
        assert all(len(m) <= 1024 for m in messages)
    else:
        split = rfc5424.split_newline if "newline" in config else rfc5424.split_octet_counted
        messages = [m for stream in tap.streams for m in split(bytes(stream))]
    assert len(messages) > len(HOSTILE)
    paths = set()
    for data in messages:
        msg = rfc5424.check(data)
        assert msg["app_name"] == "mail-integrity"
        assert set(msg["sd"]) == {"mi@99999.1", "meta"}
        assert ecs_check.problems(msg["json"]) == [], msg["json"]
        third = SyslogMessage.parse(data.decode("utf-8")).as_dict()
        assert third["msgid"] == msg["msgid"] and json.loads(third["msg"]) == msg["json"]
        if msg["msgid"] == "MI-FILE-ADDED":
            paths.add(wire_bytes(msg["json"]["file"]["path"]))
    assert _seen_all(paths)


# --- the strict checker can fail -------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<192>1 - - - - - - {}", "PRIVAL"),
        (b"<13>0 - - - - - - {}", "VERSION"),
        (b"<13>1 2024-02-30T00:00:00Z - - - - - {}", "no such date"),
        (b'<13>1 - - - - - [x k="v"] {}', "registered"),
        (b'<13>1 - - - - - [x@1 k="a\\b"] {}', "lone backslash"),
        (b'<13>1 - - - - - [x@1 k="a]"] {}', "unescaped"),
        (b"<13>1 - - - - - - \xef\xbb\xbf{}", "BOM"),
        (b'<13>1 - - - - - - {"a":', "JSON"),
        (b"<13>1 - h\x1bx - - - - {}", "control"),
        (b"<13>1 - - - - " + b"m" * 33 + b" - {}", "MSGID"),
    ],
)
def test_strict_checker_rejects_what_rfc5424_forbids(data, reason):
    """The checker is not a rubber stamp: each of these breaks the ABNF or our contract."""
    with pytest.raises(rfc5424.Invalid, match=reason):
        rfc5424.check(data)


def test_octet_counting_split_rejects_a_short_frame():
    """A frame that claims more bytes than the stream has is malformed."""
    assert rfc5424.split_octet_counted(b"3 abc2 de") == [b"abc", b"de"]
    with pytest.raises(rfc5424.Invalid):
        rfc5424.split_octet_counted(b"10 abc")
    with pytest.raises(rfc5424.Invalid):
        rfc5424.split_newline(b"abc")
