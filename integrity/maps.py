"""Map rebuilds are routine: read a map's content and say whether it is what its source says.

A Berkeley DB file differs byte-wise on every ``newaliases``, ``makemap``, ``postmap`` or
``postalias`` run (and RHEL rebuilds every map on each package upgrade), so its digest
means nothing. Its *content* does: the same keys and values as the text source means a
routine rebuild (info); anything else means the map was written from another input,
which is a known stealth technique ("map edited directly", high).

Readers: Berkeley DB through the host's own ``db_dump -p`` (Debian's db5.3-util; run on
the descriptor we opened with O_NOFOLLOW, never on a path in the monitored tree), and
CDB (RHEL 10, postfix cdb:) in pure Python. Values never leave this module: the facts
name differing keys only, so nothing of a map's values reaches logs or the database.
"""

from __future__ import annotations

import os
import posixpath
import stat
import struct
from collections.abc import Iterable, Mapping
from typing import Any

from integrity.model import Facts, FileRecord
from integrity.scanner import NotRegularError, host_path, read_regular

#: Berkeley DB hash/btree magics (native and byte-swapped) at offset 12
_BDB_MAGIC = {0x061561, 0x053162, 0x61150600, 0x62310500}
_DUMPERS = ("db5.3_dump", "db_dump", "db4.8_dump", "db6.0_dump", "db18_dump")
_MAX_MAP = 64 * 2**20
_MAX_KEYS_SHOWN = 8
_MAX_TABLES = 32
#: entries the alias tools add themselves: sendmail's and postalias' "@" end marker and
#: postalias' NIS stamps
_ALIAS_MARKERS = frozenset({"@", "yp_last_modified", "yp_master_name"})
_TIMEOUT = 20


class Unreadable(Exception):
    """A map whose content cannot be read here; the message is the reason."""


def map_source(path: str, source: str | None, root: str) -> str | None:
    """The map's text source: the profile's, else the map's name without its suffix."""
    if source:
        return source
    base, ext = posixpath.splitext(path)
    if ext in (".db", ".cdb", ".lmdb", ".dir", ".pag") and os.path.lexists(host_path(root, base)):
        return base
    return None


def map_facts(root: str, path: str, source: str) -> Facts:
    """{"map": consistent|differs|unreadable, "entries", "missing", "extra", "changed",
    "stale", "reason"}: how the map's content stands against its source."""
    try:
        content = read_map(host_path(root, path))
        text = _read_text(host_path(root, source))
    except Unreadable as exc:
        return {"map": "unreadable", "reason": str(exc)}
    alias = posixpath.basename(source).startswith("aliases")
    expected = parse_aliases(text) if alias else parse_plain(text)
    got = {k: v for k, v in content.items() if not (alias and k in _ALIAS_MARKERS)}
    missing = sorted(set(expected) - set(got))
    extra = sorted(set(got) - set(expected))
    changed = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
    facts: dict[str, Any] = {"map": "consistent", "entries": len(got)}
    if missing or extra or changed:
        facts.update(
            map="differs",
            missing=missing[:_MAX_KEYS_SHOWN],
            extra=extra[:_MAX_KEYS_SHOWN],
            changed=changed[:_MAX_KEYS_SHOWN],
            stale=_older(root, path, source),
        )
    return facts


def _older(root: str, path: str, source: str) -> bool:
    """The map was last written before its source: not rebuilt yet, not edited."""
    try:
        return (
            os.stat(host_path(root, path)).st_mtime_ns
            < os.stat(host_path(root, source)).st_mtime_ns
        )
    except OSError:
        return False


# --------------------------------------------------------------------------- sources


def _norm(value: str) -> str:
    return ",".join(" ".join(part.split()) for part in value.split(",")).strip(",")


def _logical(text: str) -> list[str]:
    """Continuation lines (leading whitespace) joined; comments and blanks dropped."""
    out: list[str] = []
    for line in text.splitlines():
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        if line[0] in " \t" and out:
            out[-1] += " " + line.strip()
        else:
            out.append(line.strip())
    return out


def parse_aliases(text: str) -> dict[str, str]:
    """aliases(5) as newaliases/postalias store it: lower-case name -> its targets."""
    out = {}
    for line in _logical(text):
        key, sep, value = line.partition(":")
        if sep and key.strip():
            out[key.strip().lower()] = _norm(value)
    return out


def parse_plain(text: str) -> dict[str, str]:
    """makemap/postmap input: ``key value``; keys folded to lower case as both tools do."""
    out = {}
    for line in _logical(text):
        parts = line.split(None, 1)
        out[parts[0].lower()] = _norm(parts[1] if len(parts) > 1 else "")
    return out


def read_texts(root: str, paths: list[str]) -> dict[str, str | None]:
    """The text of files a configuration names (tables, network lists), None if unreadable;
    a ``hash:``/``cdb:`` table is read from its text source, as postmap does."""
    out: dict[str, str | None] = {}
    for path in paths[:_MAX_TABLES]:
        try:
            out[path] = _read_text(host_path(root, path))
        except Unreadable:
            out[path] = None
    return out


def table_dependents(records: Mapping[str, FileRecord]) -> dict[str, set[str]]:
    """Table or list file -> the configuration files whose facts fold it in (a postfix
    main.cf whose mynetworks names /etc/postfix/network_table)."""
    out: dict[str, set[str]] = {}
    for path, rec in records.items():
        tables = rec.facts.get("tables") if isinstance(rec.facts, dict) else None
        if isinstance(tables, dict):
            for table in tables:
                out.setdefault(str(table), set()).add(path)
    return out


def with_dependents(paths: Iterable[str], dependents: Mapping[str, set[str]]) -> list[str]:
    """``paths`` plus the files that fold any of them in: a table change is re-judged
    where it takes effect (a path-scoped check, as the daemon runs)."""
    out = list(paths)
    for path in list(out):
        out.extend(dependents.get(path, ()))
    return sorted(set(out))


def _read_text(host: str) -> str:
    """A map's source text (a symlinked source is followed, as makemap follows it)."""
    try:
        data = read_regular(host, _MAX_MAP, follow=True)
    except OSError as exc:
        raise Unreadable(f"source unreadable: {exc.strerror}") from None
    except NotRegularError:
        raise Unreadable("source is not a regular file") from None
    return data.decode("utf-8", errors="replace")


# --------------------------------------------------------------------------- maps


def read_map(host: str) -> dict[str, str]:
    """Key -> normalised value of a BDB or CDB map (trailing NULs of -N maps dropped)."""
    try:
        fd = os.open(host, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise Unreadable(f"cannot open the map: {exc.strerror}") from None
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise Unreadable("the map is not a regular file")
        if st.st_size > _MAX_MAP:
            raise Unreadable(f"the map is larger than {_MAX_MAP} bytes")
        head = os.pread(fd, 16, 0)
        if len(head) == 16 and struct.unpack("<I", head[12:16])[0] in _BDB_MAGIC:
            pairs = _bdb_pairs(fd)
        elif host.endswith(".cdb"):
            pairs = _cdb_pairs(os.pread(fd, st.st_size, 0))
        else:
            raise Unreadable("unknown map format (not Berkeley DB or CDB)")
    finally:
        os.close(fd)
    return {_text(k).lower(): _norm(_text(v)) for k, v in pairs}


def _text(raw: bytes) -> str:
    return raw.rstrip(b"\0").decode("utf-8", errors="replace")


def _bdb_pairs(fd: int) -> list[tuple[bytes, bytes]]:
    import shutil
    import subprocess  # a Berkeley DB map only: not loaded by every verify

    dumper = next((d for d in _DUMPERS if shutil.which(d)), None)
    if dumper is None:
        raise Unreadable("no db_dump on this host (install db5.3-util) to read Berkeley DB")
    try:
        done = subprocess.run(
            [dumper, "-p", f"/dev/fd/{fd}"],
            pass_fds=(fd,),
            capture_output=True,
            timeout=_TIMEOUT,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise Unreadable(f"{dumper} failed: {exc}") from None
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()
        raise Unreadable(f"{dumper}: {reason[-1] if reason else 'failed'}")
    return _dump_pairs(done.stdout)


def _dump_pairs(out: bytes) -> list[tuple[bytes, bytes]]:
    """``db_dump -p`` body: one line per key and value, each led by a space."""
    lines = out.split(b"\n")
    try:
        start = lines.index(b"HEADER=END") + 1
    except ValueError:
        raise Unreadable("db_dump printed no data") from None
    items = []
    for line in lines[start:]:
        if line == b"DATA=END":
            break
        if line.startswith(b" "):
            items.append(_unescape(line[1:]))
    return list(zip(items[0::2], items[1::2], strict=False))


def _unescape(data: bytes) -> bytes:
    out = bytearray()
    i = 0
    while i < len(data):
        if data[i : i + 1] == b"\\" and data[i + 1 : i + 2] == b"\\":
            out += b"\\"
            i += 2
        elif data[i : i + 1] == b"\\" and len(data) >= i + 3:
            out.append(int(data[i + 1 : i + 3], 16))
            i += 3
        else:
            out.append(data[i])
            i += 1
    return bytes(out)


def _cdb_pairs(data: bytes) -> list[tuple[bytes, bytes]]:
    """A CDB file (D. J. Bernstein's format, as tinycdb writes it): records start after
    the 2048-byte table of 256 (position, length) pairs and end where the first hash
    table begins."""
    if len(data) < 2048:
        raise Unreadable("truncated CDB file")
    end = min(struct.unpack_from("<I", data, 8 * i)[0] for i in range(256))
    pos, pairs = 2048, []
    while pos + 8 <= end:
        klen, vlen = struct.unpack_from("<II", data, pos)
        if pos + 8 + klen + vlen > end:
            raise Unreadable("corrupt CDB record")
        key = data[pos + 8 : pos + 8 + klen]
        pairs.append((key, data[pos + 8 + klen : pos + 8 + klen + vlen]))
        pos += 8 + klen + vlen
    return pairs
