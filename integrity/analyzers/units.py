"""systemd units and drop-ins of the mail services: what runs as root when the MTA starts.

A drop-in in ``/etc/systemd/system/postfix@.service.d/`` that adds ``ExecStartPre=`` runs
its command as root at every start; ``Environment=LD_PRELOAD=`` injects a library into the
daemon; dropping ``ProtectSystem=`` or ``NoNewPrivileges=`` widens what a compromised
daemon can reach. The facts keep the keys that decide this, with line numbers.
"""

from __future__ import annotations

import shlex
from typing import Any

from integrity.analyzers._shape import as_dict, as_list
from integrity.model import Facts, Finding, Severity

#: keys whose value is a command line run by systemd (as root unless User= says otherwise)
EXEC_KEYS = frozenset(
    {
        "ExecStart",
        "ExecStartPre",
        "ExecStartPost",
        "ExecReload",
        "ExecStop",
        "ExecStopPost",
        "ExecCondition",
    }
)
IDENTITY_KEYS = frozenset({"User", "Group", "SupplementaryGroups", "DynamicUser"})
ENV_KEYS = frozenset({"Environment", "EnvironmentFile", "PassEnvironment"})
#: sandboxing a unit may have: losing one (or setting it to no) widens what the daemon reaches
SANDBOX_KEYS = frozenset(
    {
        "ProtectSystem",
        "ProtectHome",
        "PrivateTmp",
        "PrivateDevices",
        "NoNewPrivileges",
        "CapabilityBoundingSet",
        "AmbientCapabilities",
        "ReadOnlyPaths",
        "InaccessiblePaths",
        "ProtectKernelTunables",
        "ProtectKernelModules",
        "ProtectControlGroups",
        "RestrictSUIDSGID",
        "SystemCallFilter",
        "RestrictAddressFamilies",
        "PrivateNetwork",
        "MemoryDenyWriteExecute",
        "LockPersonality",
        "RestrictNamespaces",
        "ProtectClock",
    }
)
#: directories anyone (or any local user) can write: a command from there is anyone's code
WRITABLE_PREFIXES = (
    "/tmp/",
    "/var/tmp/",
    "/dev/shm/",
    "/run/user/",
    "/home/",
    "/var/mail/",
    "/var/spool/",
    "/run/shm/",
    "/var/lock/",
    "/run/lock/",
    "/var/crash/",
    "/var/www/",
    "/srv/",
)
#: where packages install what units run; anything else was put there by hand
SYSTEM_PREFIXES = ("/usr/", "/bin/", "/sbin/", "/lib/", "/lib64/", "/etc/")
#: a unit or drop-in written by the admin (or an intruder), not shipped by a package
OVERRIDE_PREFIXES = ("/etc/systemd/", "/run/systemd/")
#: a command line that runs its argument as code: the script is what runs
SHELLS = frozenset({"sh", "bash", "dash", "zsh", "ksh", "busybox", "env", "perl", "python3"})


def parse(text: str) -> Facts:
    """Keys of interest per section, in order; ``Key=`` (empty) resets a list, as in systemd."""
    keys: dict[str, list[list[Any]]] = {}
    warnings: list[list[Any]] = []
    section = ""
    lines = text.splitlines()
    number = 0
    while number < len(lines):
        line = lines[number].strip()
        number += 1
        start = number
        while line.endswith("\\") and number < len(lines):  # continuation lines
            line = line[:-1].rstrip() + " " + lines[number].strip()
            number += 1
        if not line or line[0] in "#;":
            continue
        if line.startswith("[") and line.endswith("]"):
            section = line[1:-1]
            continue
        key, sep, value = line.partition("=")
        if not sep:
            warnings.append([start, "not a Key=value line"])
            continue
        key, value = key.strip(), value.strip()
        if key in EXEC_KEYS | IDENTITY_KEYS | ENV_KEYS | SANDBOX_KEYS:
            entries = keys.setdefault(f"{section}.{key}", [])
            if value == "" and (key in EXEC_KEYS or key in ENV_KEYS):
                entries.clear()  # an empty assignment resets the list (drop-in override)
                entries.append([start, ""])
            else:
                entries.append([start, value])
    return {"keys": keys, "warnings": warnings}


def _keys(facts: Facts) -> dict[str, list[tuple[int, str]]]:
    out: dict[str, list[tuple[int, str]]] = {}
    for name, entries in as_dict(facts.get("keys")).items():
        out[str(name)] = [
            (int(e[0]), str(e[1])) for e in as_list(entries) if isinstance(e, list) and len(e) == 2
        ]
    return out


def command_paths(value: str) -> list[str]:
    """The programs a command line runs: the executable and, behind a shell or interpreter,
    every absolute path in its arguments (``/bin/sh -c '/tmp/x'`` runs /tmp/x)."""
    stripped = value.lstrip("@-:+!")
    try:
        argv = shlex.split(stripped)
    except ValueError:
        argv = stripped.split()
    if not argv:
        return []
    paths = [argv[0]]
    if argv[0].rsplit("/", 1)[-1] in SHELLS:
        for arg in argv[1:]:
            paths.extend(t for t in arg.replace(";", " ").split() if t.startswith("/"))
    return paths


def place_of(path: str) -> str | None:
    """Why a program's location is dangerous, or None for a package-owned place."""
    if path.startswith(WRITABLE_PREFIXES):
        return "a place local users can write"
    if not path.startswith("/"):
        return None  # a bare name: systemd looks it up in its fixed search path
    if not path.startswith(SYSTEM_PREFIXES) or path.startswith("/usr/local/"):
        return "outside the package-owned directories"
    return None


def _exec_finding(path: str, key: str, line: int, value: str, *, new: bool) -> Finding | None:
    for program in command_paths(value):
        why = place_of(program)
        if why is None:
            continue
        return Finding(
            path,
            "MI-UNIT-EXEC-UNSAFE",
            Severity.CRITICAL,
            f"{key.split('.')[-1]} runs {program}, {why}: root code at every start of the "
            "mail service",
            f"unit:{key}",
            None,
            f"line {line}: {value}",
            fix=f"remove or correct {key.split('.')[-1]} in {path}",
        )
    if not new:
        return None
    return Finding(
        path,
        "MI-UNIT-EXEC-CHANGED",
        Severity.HIGH,
        f"{key.split('.')[-1]} now runs: {value}",
        f"unit:{key}",
        None,
        f"line {line}: {value}",
        fix=f"check {path}; revert it or mail-integrity update --accept {path} --reason '...'",
    )


def _ld_env(values: list[tuple[int, str]]) -> list[tuple[int, str]]:
    return [(n, v) for n, v in values if "LD_" in v]


def diff(path: str, before: Facts, after: Facts) -> list[Finding]:
    old, new = _keys(before), _keys(after)
    out: list[Finding] = []
    for key, entries in sorted(new.items()):
        short = key.split(".")[-1]
        old_values = {v for _, v in old.get(key, [])}
        added = [(n, v) for n, v in entries if v not in old_values and v != ""]
        if short in EXEC_KEYS:
            for n, v in added:
                f = _exec_finding(path, key, n, v, new=True)
                if f:
                    out.append(f)
        elif short in IDENTITY_KEYS and added:
            n, v = added[-1]
            out.append(
                Finding(
                    path,
                    "MI-UNIT-IDENTITY-CHANGED",
                    Severity.HIGH,
                    f"{short}= of the mail service changed to {v}",
                    f"unit:{key}",
                    ", ".join(sorted(old_values)) or None,
                    f"line {n}: {v}",
                )
            )
        elif short in ENV_KEYS:
            for n, v in _ld_env(added):
                out.append(
                    Finding(
                        path,
                        "MI-UNIT-LOADER-ENV",
                        Severity.HIGH,
                        f"{short}= sets a dynamic-loader variable ({v}): code injected into "
                        "the mail daemon",
                        f"unit:{key}",
                        None,
                        f"line {n}: {v}",
                    )
                )
    for key, entries in sorted(old.items()):
        short = key.split(".")[-1]
        if short not in SANDBOX_KEYS:
            continue
        now = [v for _, v in new.get(key, [])]
        if not now or now[-1].lower() in {"no", "false", "0", "off", ""}:
            was = entries[-1][1] if entries else ""
            if was.lower() in {"no", "false", "0", "off", ""}:
                continue
            out.append(
                Finding(
                    path,
                    "MI-UNIT-SANDBOX-REMOVED",
                    Severity.HIGH,
                    f"sandboxing {short}={was} removed from the mail service",
                    f"unit:{key}",
                    was,
                    now[-1] if now else None,
                )
            )
    return out


def assess(path: str, facts: Facts) -> list[Finding]:
    """Risky state with no baseline: programs run from unsafe places; in an override or
    drop-in (the admin's or an intruder's, never a package's), any command, identity or
    loader variable."""
    out: list[Finding] = []
    override = path.startswith(OVERRIDE_PREFIXES)
    for key, entries in sorted(_keys(facts).items()):
        short = key.split(".")[-1]
        live = [(n, v) for n, v in entries if v != ""]
        if short in EXEC_KEYS:
            for n, v in live:
                f = _exec_finding(path, key, n, v, new=override)
                if f:
                    out.append(f)
        elif short in ENV_KEYS:
            for n, v in _ld_env(live):
                out.append(
                    Finding(
                        path,
                        "MI-UNIT-LOADER-ENV",
                        Severity.HIGH,
                        f"{short}= sets a dynamic-loader variable ({v}) for the mail daemon",
                        f"unit:{key}",
                        None,
                        f"line {n}: {v}",
                    )
                )
        elif short in {"User", "Group"} and override and live:
            n, v = live[-1]
            out.append(
                Finding(
                    path,
                    "MI-UNIT-IDENTITY-CHANGED",
                    Severity.HIGH,
                    f"an override sets {short}={v} for the mail service",
                    f"unit:{key}",
                    None,
                    f"line {n}: {v}",
                )
            )
    return out
