"""The dynamic loader's configuration: what every mail daemon and set-id binary links.

``/etc/ld.so.preload`` loads its libraries into every dynamically linked process, the
set-gid sendmail, postdrop and the MTA daemons included (a classic rootkit hook): naming
any library there is critical. ``/etc/ld.so.conf`` and ``ld.so.conf.d/`` add library
directories searched before the system's: one that local users can write shadows libc.
"""

from __future__ import annotations

from typing import Any

from integrity.analyzers._shape import as_list
from integrity.analyzers.units import WRITABLE_PREFIXES
from integrity.model import Facts, Finding, Severity

#: where distributions keep libraries; a directory elsewhere was added by hand
SYSTEM_LIB_PREFIXES = ("/lib", "/usr/lib", "/lib64", "/usr/lib64", "/usr/local/lib")


def _words(text: str) -> list[list[Any]]:
    out: list[list[Any]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0]
        out.extend([number, w] for w in line.replace(":", " ").split())
    return out


def parse_preload(text: str) -> Facts:
    """Libraries, separated by white space or colons (ld.so(8))."""
    return {"libraries": _words(text), "warnings": []}


def _libs(facts: Facts, key: str) -> list[tuple[int, str]]:
    return [
        (int(e[0]), str(e[1]))
        for e in as_list(facts.get(key))
        if isinstance(e, list) and len(e) == 2
    ]


def _preload(path: str, line: int, lib: str) -> Finding:
    return Finding(
        path,
        "MI-LOADER-PRELOAD",
        Severity.CRITICAL,
        f"{lib} is preloaded into every process, the set-id mail binaries and daemons included",
        "loader:preload",
        None,
        f"line {line}: {lib}",
        fix=f"remove {lib} from {path} (and find out who put it there)",
    )


def diff_preload(path: str, before: Facts, after: Facts) -> list[Finding]:
    old = {lib for _, lib in _libs(before, "libraries")}
    return [_preload(path, n, lib) for n, lib in _libs(after, "libraries") if lib not in old]


def assess_preload(path: str, facts: Facts) -> list[Finding]:
    return [_preload(path, n, lib) for n, lib in _libs(facts, "libraries")]


def parse_conf(text: str) -> Facts:
    dirs: list[list[Any]] = []
    includes: list[list[Any]] = []
    for number, word in _words(text):
        if word == "include":
            continue
        (includes if "*" in word or word.endswith(".conf") else dirs).append([number, word])
    return {"dirs": dirs, "includes": includes, "warnings": []}


def _libdir(path: str, line: int, d: str) -> Finding | None:
    if d.startswith(WRITABLE_PREFIXES) or d in {"/tmp", "/var/tmp", "/dev/shm"}:
        return Finding(
            path,
            "MI-LOADER-PATH-WRITABLE",
            Severity.CRITICAL,
            f"library directory {d} is writable by local users: it shadows the system "
            "libraries of every mail daemon",
            "loader:dirs",
            None,
            f"line {line}: {d}",
        )
    if not d.startswith(SYSTEM_LIB_PREFIXES):
        return Finding(
            path,
            "MI-LOADER-PATH-ADDED",
            Severity.HIGH,
            f"library directory {d} outside the system library directories",
            "loader:dirs",
            None,
            f"line {line}: {d}",
        )
    return None


def diff_conf(path: str, before: Facts, after: Facts) -> list[Finding]:
    old = {d for _, d in _libs(before, "dirs")}
    out = []
    for n, d in _libs(after, "dirs"):
        if d not in old:
            f = _libdir(path, n, d)
            out.append(
                f
                or Finding(
                    path,
                    "MI-LOADER-PATH-ADDED",
                    Severity.MEDIUM,
                    f"library directory {d} added to the loader's search path",
                    "loader:dirs",
                    None,
                    f"line {n}: {d}",
                )
            )
    return out


def assess_conf(path: str, facts: Facts) -> list[Finding]:
    found = (_libdir(path, n, d) for n, d in _libs(facts, "dirs"))
    return [f for f in found if f is not None and f.severity == Severity.CRITICAL]
