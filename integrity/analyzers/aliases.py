"""aliases(5), :include: lists and .forward files: where mail for a name really goes.

A mail alias can run a program or write a file as a privileged user, so the targets
are classified (address, program, file, include, error) and programs are resolved
to a kind (decoder, shell, interpreter, known MDA, other). ``decode: "|/usr/bin/uudecode"``
is the classic hole: anyone can mail a file onto the host. Severities follow
reference/mta-facts.md section 2.8 and PRODUCT.md.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Iterator
from typing import Any

from integrity.analyzers._shape import as_dict as _dict
from integrity.analyzers._shape import as_list as _list
from integrity.analyzers._shape import as_str as _str
from integrity.model import Facts, Finding, Severity

_DECODERS = frozenset(
    ["uudecode", "uudeview", "decode", "uudec", "mimencode", "mmencode", "munpack", "base64"]
)
_SHELLS = frozenset(["sh", "bash", "dash", "csh", "tcsh", "ksh", "zsh", "ash", "busybox"])
_INTERPRETER = re.compile(
    r"^(perl|python|ruby|php|awk|gawk|mawk|nawk|sed|tclsh|wish|lua|node|nodejs)[0-9.]*$"
)
_MDAS = frozenset(
    [
        "procmail",
        "maildrop",
        "vacation",
        "vacation.sendmail",
        "mail.local",
        "sensible-mda",
        "deliver",
        "dovecot-lda",
        "mailman",
        "mailman3",
        "slocal",
        "cyrdeliver",
        "deliverquota",
        "rt-mailgate",
        "spamc",
        "formail",
        "smrsh",
    ]
)
#: wrappers whose first argument is the real program
_WRAPPERS = frozenset(["exec", "env", "nice", "nohup"])
_CRITICAL_KINDS = {"decoder": "DECODER", "shell": "SHELL", "interpreter": "INTERPRETER"}
_REQUIRED = ("postmaster", "mailer-daemon")
_PROTECTED = frozenset(["root", "postmaster", "mailer-daemon"])
_MAIL_DIRS = ("/var/mail/", "/var/spool/mail/", "/var/log/")
_SYSTEM_DIRS = ("/etc/", "/root/", "/bin/", "/sbin/", "/usr/", "/lib", "/boot/", "/var/spool/cron")
_SYSTEM_NAMES = frozenset(
    ["authorized_keys", "authorized_keys2", ".rhosts", ".shosts", "hosts.equiv", "crontab"]
)
_SECRET_ARG = re.compile(r"(?i)((?:pass(?:word)?|passwd|pwd|secret|token|key)[=:])\S+")
_URL_CREDS = re.compile(r"(://[^/\s:@]+:)[^/\s@]+@")
_NAME = re.compile(r"^([^\s:#\"|/\\,][^\s:,\"]*)\s*:(?!include:)(.*)$", re.IGNORECASE | re.DOTALL)


# --------------------------------------------------------------------------- parsing


def _logical_lines(text: str) -> Iterator[tuple[int, str]]:
    """Join continuations: a line starting with blank, or a previous line ending in ``\\``."""
    buf: list[str] = []
    start = 0
    joining = False
    for no, raw in enumerate(text.split("\n"), 1):
        line = raw.rstrip("\r")
        if buf and (joining or line[:1] in (" ", "\t")):
            buf.append(line.strip())
        else:
            if buf:
                yield start, " ".join(buf)
            buf, start = [], no
            if line.startswith("#") or not line.strip():
                joining = False
                continue
            buf.append(line)
        joining = line.endswith("\\")
        if joining:
            buf[-1] = buf[-1][:-1]
    if buf:
        yield start, " ".join(buf)


def _split_targets(value: str) -> list[str]:
    """Comma-separated targets; commas inside double quotes or after ``\\`` do not split."""
    out: list[str] = []
    cur: list[str] = []
    quoted = escaped = False
    for ch in value:
        if escaped:
            cur.append(ch)
            escaped = False
        elif ch == "\\":
            cur.append(ch)
            escaped = True
        elif ch == '"':
            cur.append(ch)
            quoted = not quoted
        elif ch == "," and not quoted:
            out.append("".join(cur).strip())
            cur = []
        else:
            cur.append(ch)
    out.append("".join(cur).strip())
    return [t for t in out if t]


def _unquote(target: str) -> str:
    inner = target.strip()
    if len(inner) >= 2 and inner[0] == '"' and inner[-1] == '"':
        inner = inner[1:-1].replace('\\"', '"')
    return inner.strip()


def redact(text: str) -> str:
    """Mask password-like arguments and URL credentials before they reach a finding."""
    return _URL_CREDS.sub(r"\1***@", _SECRET_ARG.sub(r"\1***", text))


def _command_words(command: str) -> list[str]:
    try:
        return shlex.split(command)
    except ValueError:
        return command.split()


def program_kind(command: str) -> tuple[str, str]:
    """(basename of the program a pipe runs, its kind): decoder, shell, interpreter, mda, other."""
    words = _command_words(command)
    while len(words) > 1 and words[0].rsplit("/", 1)[-1] in _WRAPPERS:
        words = [w for w in words[1:] if not (w.startswith("-") or "=" in w)] or words[1:]
    base = words[0].rsplit("/", 1)[-1] if words else ""
    if base in _DECODERS:
        return base, "decoder"
    if base in _SHELLS:
        return base, "shell"
    if _INTERPRETER.match(base):
        return base, "interpreter"
    return base, "mda" if base in _MDAS else "other"


def classify(target: str) -> dict[str, Any]:
    """One alias target -> {"raw", "kind", ...}: what sendmail will do with it."""
    text = _unquote(target)
    low = text.lower()
    if text.startswith("|"):
        command = text[1:].strip()
        base, kind = program_kind(command)
        return {"raw": target, "kind": "program", "command": command, "program": base,
                "program_kind": kind}  # fmt: skip
    if low.startswith(":include:"):
        return {"raw": target, "kind": "include", "path": text[9:].strip()}
    if text.startswith("/"):
        return {"raw": target, "kind": "file", "path": text}
    if low.startswith("error:"):
        return {"raw": target, "kind": "error"}
    return {"raw": target, "kind": "address", "address": text.lstrip("\\")}


def _parse(text: str, named: bool) -> Facts:
    aliases: dict[str, Any] = {}
    targets: list[dict[str, Any]] = []
    warnings: list[list[Any]] = []
    for no, line in _logical_lines(text if isinstance(text, str) else ""):
        m = _NAME.match(line) if named else None
        if m is None:
            targets.extend(classify(t) for t in _split_targets(line))
            continue
        name, value = m.group(1), m.group(2)
        key = name.lower()
        if key in aliases:
            warnings.append(
                [no, f"duplicate alias {name!r} (first on line {aliases[key]['line']})"]
            )
        found = [classify(t) for t in _split_targets(value)]
        if not found:
            warnings.append([no, f"alias {name!r} has no target"])
        aliases[key] = {"name": name, "line": no, "targets": found}
    return {"aliases": aliases, "targets": targets, "warnings": warnings}


def parse(text: str) -> Facts:
    """An aliases file (``name: target, ...``) or an :include: list (bare targets)."""
    return _parse(text, named=True)


def parse_forward(text: str) -> Facts:
    """A .forward file: the targets of one user, no ``name:``."""
    return _parse(text, named=False)


# --------------------------------------------------------------------------- judging


def _entries(facts: Facts) -> dict[str, list[dict[str, Any]]]:
    """name -> targets, with the unnamed targets (include list, .forward) under ``""``."""
    out: dict[str, list[dict[str, Any]]] = {}
    for key, entry in _dict(_dict(facts).get("aliases")).items():
        out[str(key)] = [t for t in _list(_dict(entry).get("targets")) if isinstance(t, dict)]
    unnamed = [t for t in _list(_dict(facts).get("targets")) if isinstance(t, dict)]
    if unnamed:
        out[""] = unnamed
    return out


def _who(name: str, area: str) -> str:
    if name:
        return f"alias {name!r}"
    return "this .forward" if area == "FORWARD" else "this list"


def _system_file(path: str) -> bool:
    base = path.rstrip("/").rsplit("/", 1)[-1]
    if path.startswith("/dev/"):
        return path != "/dev/null"
    return (
        path.startswith(_SYSTEM_DIRS)
        or base.startswith(".")
        or base in _SYSTEM_NAMES
        or "/.ssh/" in path
    )


def _decode_name(name: str) -> bool:
    return "decode" in name


def _program_finding(
    path: str, area: str, name: str, target: dict[str, Any], new: bool
) -> Finding | None:
    """A pipe target judged: decoder/shell/interpreter critical; new pipes high."""
    prog, kind = _str(target.get("program")), _str(target.get("program_kind"))
    command = redact(_str(target.get("command")))
    who = _who(name, area)
    fix = f"remove the pipe to {prog or 'this program'} from {who}"
    if _decode_name(name) or kind == "decoder":
        rule, sev = f"MI-{area}-DECODE", Severity.CRITICAL
        text = f"{who} pipes into {prog}: anyone can mail a file onto this host"
    elif kind in _CRITICAL_KINDS:
        rule, sev = f"MI-{area}-PIPE-{_CRITICAL_KINDS[kind]}", Severity.CRITICAL
        text = f"{who} pipes into the {kind} {prog}: anyone can run commands by sending mail"
    elif new:
        rule, sev = f"MI-{area}-PIPE-ADDED", Severity.HIGH
        text = f"{who} now pipes mail into {prog or 'a program'}"
    else:
        rule = f"MI-{area}-PIPE"
        sev = Severity.LOW if kind == "mda" else Severity.MEDIUM
        text = f"{who} pipes mail into {prog or 'a program'}" + (
            " (a known delivery agent)" if kind == "mda" else ""
        )
    attr = f"{area.lower()}:{name}" if name else area.lower()
    if area == "FORWARD" and sev == Severity.CRITICAL and "-PIPE-" in rule:
        # a .forward runs its pipes as its owner, not as root or DefaultUser: serious for
        # that account, but a user piping their own mail is not a host takeover (a decoder
        # stays critical: anyone can then write files as that user, ~/.ssh included)
        sev, text = Severity.HIGH, f"{text} (as the owner of {path})"
    return Finding(path, rule, sev, text, attr, None, command, fix)


def _file_finding(
    path: str, area: str, name: str, target: dict[str, Any], new: bool
) -> Finding | None:
    dest = _str(target.get("path"))
    who = _who(name, area)
    attr = f"{area.lower()}:{name}" if name else area.lower()
    fix = f"remove {dest} from {who}"
    if _system_file(dest):
        text = f"{who} appends mail to the system file {dest}: anyone can write into it by mail"
        return Finding(
            path, f"MI-{area}-FILE-SYSTEM", Severity.CRITICAL, text, attr, None, dest, fix
        )
    if dest == "/dev/null":
        return None
    if new:
        text = f"{who} now appends mail to the file {dest}"
        return Finding(path, f"MI-{area}-FILE-ADDED", Severity.HIGH, text, attr, None, dest, fix)
    sev = Severity.LOW if dest.startswith(_MAIL_DIRS) else Severity.MEDIUM
    text = f"{who} appends mail to the file {dest}"
    return Finding(path, f"MI-{area}-FILE", sev, text, attr, None, dest, fix)


def _include_finding(
    path: str, area: str, name: str, target: dict[str, Any], new: bool
) -> Finding | None:
    dest = _str(target.get("path"))
    who = _who(name, area)
    attr = f"{area.lower()}:{name}" if name else area.lower()
    fix = f"check that {dest} is root-owned and not group/world-writable, or remove it"
    if new:
        text = f"{who} now also takes its targets from {dest} (:include:)"
        return Finding(path, f"MI-{area}-INCLUDE-ADDED", Severity.HIGH, text, attr, None, dest, fix)
    text = f"{who} takes its targets from {dest}: that file needs the same protection"
    return Finding(path, f"MI-{area}-INCLUDE", Severity.INFO, text, attr, None, dest, fix)


_JUDGES = {"program": _program_finding, "file": _file_finding, "include": _include_finding}


def _target_findings(
    path: str, area: str, name: str, targets: list[dict[str, Any]], new: bool
) -> list[Finding]:
    out: list[Finding] = []
    for target in targets:
        judge = _JUDGES.get(_str(target.get("kind")))
        finding = judge(path, area, name, target, new) if judge else None
        if finding is not None:
            out.append(finding)
    return out


def _assess(path: str, facts: Facts, area: str) -> list[Finding]:
    entries = _entries(facts)
    out: list[Finding] = []
    for name, targets in sorted(entries.items()):
        out.extend(_target_findings(path, area, name, targets, new=False))
    named = [n for n in entries if n]
    if area == "ALIAS" and named:
        for required in _REQUIRED:
            if required not in entries:
                out.append(
                    Finding(
                        path,
                        "MI-ALIAS-REQUIRED-MISSING",
                        Severity.INFO,
                        f"there is no {required} alias: RFC 5321 wants it to reach a person",
                        f"alias:{required}",
                        fix=f"add '{required}: root' (and forward root to a person)",
                    )
                )
    return out + _duplicate_findings(path, facts)


def _duplicate_findings(path: str, facts: Facts) -> list[Finding]:
    out: list[Finding] = []
    for warning in _list(_dict(facts).get("warnings")):
        text = _str(warning[1]) if isinstance(warning, list) and len(warning) == 2 else ""
        if text.startswith("duplicate alias"):
            out.append(
                Finding(
                    path,
                    "MI-ALIAS-DUPLICATE",
                    Severity.LOW,
                    f"{text}: a later definition can hide behind an earlier one",
                    "alias",
                    None,
                    warning[0],
                    "keep one definition per alias name",
                )
            )
    return out


def assess(path: str, facts: Facts) -> list[Finding]:
    """Risky aliases right now: pipes, file targets, includes, missing required names."""
    return _assess(path, facts, "ALIAS")


def assess_forward(path: str, facts: Facts) -> list[Finding]:
    """Risky .forward right now: pipes into shells/decoders, writes into system files."""
    return _assess(path, facts, "FORWARD")


def _raw(targets: list[dict[str, Any]]) -> list[str]:
    return [_str(t.get("raw")) for t in targets]


def _shown(targets: list[str]) -> list[str]:
    return [redact(t) for t in targets]


def _changed(path: str, area: str, name: str, old: list[str], new: list[str]) -> Finding:
    old, new = _shown(old), _shown(new)
    who = _who(name, area)
    attr = f"{area.lower()}:{name}" if name else area.lower()
    if not old:
        text = f"new {who} goes to {', '.join(new)}"
        return Finding(path, f"MI-{area}-ADDED", Severity.MEDIUM, text, attr, None, new)
    text = f"{who} now goes to {', '.join(new) or 'nothing'} instead of {', '.join(old)}"
    return Finding(path, f"MI-{area}-CHANGED", Severity.MEDIUM, text, attr, old, new)


def _removed(path: str, area: str, name: str, old: list[str]) -> Finding:
    old = _shown(old)
    sev = Severity.HIGH if name in _PROTECTED else Severity.MEDIUM
    who = _who(name, area)
    text = f"{who} was removed: its mail now " + (
        "stays unread on this host or bounces" if name in _PROTECTED else "goes elsewhere"
    )
    attr = f"{area.lower()}:{name}" if name else area.lower()
    return Finding(path, f"MI-{area}-REMOVED", sev, text, attr, old, None, f"restore {who}")


def _diff_entry(
    path: str, area: str, name: str, old: list[dict[str, Any]], new: list[dict[str, Any]]
) -> list[Finding]:
    """New risky targets judged one by one; any other difference is one MEDIUM change."""
    old_raw, new_raw = _raw(old), _raw(new)
    out: list[Finding] = []
    plain_change = bool(set(old_raw) - set(new_raw))
    for target in new:
        if _str(target.get("raw")) in old_raw:
            continue
        found = _target_findings(path, area, name, [target], new=True)
        out.extend(found)
        plain_change = plain_change or not found
    if plain_change or (not out and old_raw != new_raw):
        out.append(_changed(path, area, name, old_raw, new_raw))
    return out


def _diff(path: str, before: Facts, after: Facts, area: str) -> list[Finding]:
    old_e, new_e = _entries(before), _entries(after)
    out: list[Finding] = []
    for name in sorted(set(old_e) | set(new_e)):
        if name not in new_e:
            out.append(_removed(path, area, name, _raw(old_e[name])))
        else:
            out.extend(_diff_entry(path, area, name, old_e.get(name, []), new_e[name]))
    return out


def diff(path: str, before: Facts, after: Facts) -> list[Finding]:
    """What an aliases change means: new pipes/files/includes, re-pointed or removed aliases."""
    return _diff(path, before, after, "ALIAS")


def diff_forward(path: str, before: Facts, after: Facts) -> list[Finding]:
    """What a .forward change means: new pipes and files, re-pointed forwarding."""
    return _diff(path, before, after, "FORWARD")
