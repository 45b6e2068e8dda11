"""Kernel audit over netlink: status, the enabled flag, and ``-w`` watch rules.

The request side of ``NETLINK_AUDIT`` (CAP_AUDIT_CONTROL), as ``auditctl`` speaks it:
``struct audit_status`` for AUDIT_GET/AUDIT_SET and ``struct audit_rule_data`` for
AUDIT_ADD_RULE/AUDIT_DEL_RULE/AUDIT_LIST_RULES. The read side (the multicast read-log
group) lives in ``whodata``.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterable
from dataclasses import dataclass

from integrity.auditrec import KEY

NETLINK_AUDIT = 9
NLGRP_READLOG = 1
AUDIT_GET, AUDIT_SET = 1000, 1001
AUDIT_ADD_RULE, AUDIT_DEL_RULE, AUDIT_LIST_RULES = 1011, 1012, 1013
NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_ACK = 1, 4
AUDIT_STATUS_ENABLED = 1
AUDIT_FILTER_EXIT, AUDIT_ALWAYS = 4, 2
AUDIT_WATCH, AUDIT_PERM, AUDIT_DIR, AUDIT_FILTERKEY = 105, 106, 107, 210
AUDIT_EQUAL = 0x40000000
PERM = {"x": 1, "w": 2, "r": 4, "a": 8}
_STRING_FIELDS = frozenset({13, 14, 15, 16, 17, 19, 20, 21, 22, 23, 105, 107, 112, 210})
_HDR = struct.Struct("=IHHII")
_RULE_HEAD = struct.Struct("=III")
_WORDS = 64  # AUDIT_BITMASK_SIZE and AUDIT_MAX_FIELDS


class AuditError(OSError):
    """A netlink request the kernel refused (errno set)."""


@dataclass(frozen=True, slots=True)
class WatchRule:
    """``auditctl -w PATH -p PERMS -k mail-integrity``: a file (WATCH) or a subtree (DIR)."""

    path: str
    perms: str = "wa"
    tree: bool = False

    def pack(self, key: str = KEY) -> bytes:
        """``struct audit_rule_data`` as libaudit builds it for ``-w``."""
        path, k = os.fsencode(self.path), key.encode()
        perm = sum(PERM[c] for c in self.perms)
        fields = [AUDIT_DIR if self.tree else AUDIT_WATCH, AUDIT_PERM, AUDIT_FILTERKEY]
        values = [len(path), perm, len(k)]
        pad = [0] * (_WORDS - 3)
        return b"".join((
            _RULE_HEAD.pack(AUDIT_FILTER_EXIT, AUDIT_ALWAYS, 3),
            struct.pack(f"={_WORDS}I", *([0xFFFFFFFF] * _WORDS)),  # every syscall
            struct.pack(f"={_WORDS}I", *fields, *pad),
            struct.pack(f"={_WORDS}I", *values, *pad),
            struct.pack(f"={_WORDS}I", *([AUDIT_EQUAL] * 3), *pad),
            struct.pack("=I", len(path) + len(k)), path, k,
        ))  # fmt: skip


def rule_strings(data: bytes) -> tuple[list[str], list[str]]:
    """A listed ``audit_rule_data`` -> (watched paths, keys)."""
    _, _, count = _RULE_HEAD.unpack_from(data)
    base = _RULE_HEAD.size + 4 * _WORDS
    fields = struct.unpack_from(f"={_WORDS}I", data, base)
    values = struct.unpack_from(f"={_WORDS}I", data, base + 4 * _WORDS)
    buf = data[base + 12 * _WORDS + 4 :]  # after fields, values, fieldflags, buflen
    off, paths, keys = 0, [], []
    for i in range(min(count, _WORDS)):
        if fields[i] in _STRING_FIELDS:
            text = os.fsdecode(buf[off : off + values[i]])
            off += values[i]
            if fields[i] in (AUDIT_WATCH, AUDIT_DIR):
                paths.append(text)
            elif fields[i] == AUDIT_FILTERKEY:
                keys.extend(text.split("\x01"))
    return paths, keys


def watch_rules(
    files: Iterable[str], trees: Iterable[str], dirs: Iterable[str], queues: Iterable[str]
) -> list[WatchRule]:
    """The minimal rule set (host paths): writes and attribute changes of monitored files,
    one subtree rule per recursive directory, and only the *own attributes* of plain and
    queue directories (a rule on a queue's entries would log every message: see
    docs/whodata.md for the measurement)."""
    tree_list = sorted(set(trees))

    def inside(p: str) -> bool:
        return any(p == t or p.startswith(t.rstrip("/") + "/") for t in tree_list)

    rules = [WatchRule(t, "wa", tree=True) for t in tree_list]
    rules += [WatchRule(p, "wa") for p in sorted(set(files)) if not inside(p)]
    rules += [WatchRule(p, "a") for p in sorted(set(dirs) | set(queues)) if not inside(p)]
    return rules


class Netlink:
    """One NETLINK_AUDIT socket for requests (status, rules): needs CAP_AUDIT_CONTROL."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_AUDIT)
        self.sock.bind((0, 0))
        self.sock.settimeout(2.0)
        self.seq = 0

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> Netlink:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def request(self, mtype: int, payload: bytes = b"") -> list[tuple[int, bytes]]:
        """Send one request with ACK; return the replies (a dump ends at NLMSG_DONE)."""
        self.seq += 1
        self.sock.send(_HDR.pack(_HDR.size + len(payload), mtype, NLM_F_REQUEST | NLM_F_ACK,
                                 self.seq, 0) + payload)  # fmt: skip
        replies: list[tuple[int, bytes]] = []
        while True:
            data = self.sock.recv(1 << 16)
            off = 0
            while off + _HDR.size <= len(data):
                length, rtype, _, seq, _ = _HDR.unpack_from(data, off)
                body = data[off + _HDR.size : off + length]
                off += (length + 3) & ~3
                if seq != self.seq:
                    continue
                if rtype == NLMSG_ERROR:
                    err = -struct.unpack_from("=i", body)[0]
                    if err:
                        raise AuditError(err, os.strerror(err))
                    if mtype != AUDIT_LIST_RULES and (mtype != AUDIT_GET or replies):
                        return replies
                elif rtype == NLMSG_DONE:
                    return replies
                else:
                    replies.append((rtype, body))
                    if mtype == AUDIT_GET:
                        return replies
                if length == 0:
                    break

    def status(self) -> dict[str, int]:
        names = ("mask", "enabled", "failure", "pid", "rate_limit", "backlog_limit", "lost",
                 "backlog")  # fmt: skip
        (_, body), *_ = self.request(AUDIT_GET)
        return dict(zip(names, struct.unpack_from("=8I", body), strict=True))

    def set_enabled(self, flag: int) -> None:
        self.request(AUDIT_SET, struct.pack("=8I", AUDIT_STATUS_ENABLED, flag, 0, 0, 0, 0, 0, 0)
                     + bytes(12))  # fmt: skip

    def rules(self) -> list[tuple[list[str], list[str], bytes]]:
        """Loaded rules: (paths, keys, raw ``audit_rule_data`` for deleting it)."""
        return [(*rule_strings(body), body) for _, body in self.request(AUDIT_LIST_RULES)]

    def add(self, rule: WatchRule) -> None:
        self.request(AUDIT_ADD_RULE, rule.pack())

    def delete(self, rule: WatchRule | bytes) -> None:
        """Remove a rule: ours, or one as listed (raw ``audit_rule_data``)."""
        self.request(AUDIT_DEL_RULE, rule if isinstance(rule, bytes) else rule.pack())
