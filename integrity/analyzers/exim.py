"""Exim4 analyzers: Debian's update-exim4.conf.conf and hand-written exim configuration.

On Debian the relay policy is spread over debconf values (dc_relay_nets), macros
(MAIN_RELAY_NETS, SYSTEM_ALIASES_*) and the acl_check_rcpt ACL; a change in any of
them can turn the host into an open relay, so each is read on its own.
Conditionals (``.ifdef``) are not evaluated: every branch is read, because the
macros that decide them usually live in another file.
"""

from __future__ import annotations

import re
import shlex
from typing import Any

from integrity.analyzers.postfix import network_findings, new_risks, str_map
from integrity.analyzers.programs import command_class, command_program
from integrity.model import Facts, Finding, Severity

_C, _H, _M, _I = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.INFO
_DEPTH = 12


def _short(value: object, limit: int = 120) -> str | None:
    if value is None:
        return None
    text = str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def exim_list(value: str) -> list[str]:
    """Split an exim list: ``:`` separated (``::`` is a literal colon) or ``<x`` for another."""
    value = value.strip()
    sep = ":"
    if len(value) > 1 and value[0] == "<" and not value[1].isalnum() and not value[1].isspace():
        sep, value = value[1], value[2:]
    items, buf, i = [], "", 0
    while i < len(value):
        if value[i] == sep:
            if value[i + 1 : i + 2] == sep:
                buf, i = buf + sep, i + 2
                continue
            items.append(buf.strip())
            buf = ""
        else:
            buf += value[i]
        i += 1
    items.append(buf.strip())
    return [item for item in items if item]


def debconf_list(value: str) -> list[str]:
    """A dc_* list as update-exim4.conf reads it: ``;`` switches the separator."""
    if ";" in value and not value.lstrip().startswith("<"):
        value = "<; " + value
    return exim_list(value)


# ---------------------------------------------------------------------------
# update-exim4.conf.conf

_DC_LINE = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)=(.*)")


def parse_debconf(text: str) -> Facts:
    """update-exim4.conf.conf (shell ``name='value'`` lines) -> {"settings": {...}}."""
    settings: dict[str, str] = {}
    warnings: list[list[Any]] = []
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        match = _DC_LINE.fullmatch(stripped)
        if match is None:
            warnings.append([no, "not a shell 'name=value' line"])
            continue
        settings[match.group(1)] = _unquote(match.group(2))
    return {"settings": settings, "warnings": warnings}


def _unquote(raw: str) -> str:
    try:
        words = shlex.split(raw, comments=True)
    except ValueError:
        return raw.strip().strip("'\"")
    return " ".join(words)


def assess_debconf(path: str, facts: Facts) -> list[Finding]:
    """Open relay networks or domains, and a world/group-writable generated config."""
    settings = str_map(facts.get("settings"))
    out = _relay_nets(path, "dc:dc_relay_nets", debconf_list(settings.get("dc_relay_nets", "")))
    out += _relay_domains(
        path, "dc:dc_relay_domains", debconf_list(settings.get("dc_relay_domains", ""))
    )
    mode = settings.get("CFILEMODE", "644").strip()
    if re.fullmatch(r"[0-7]{1,4}", mode) and int(mode, 8) & 0o022:
        out.append(
            Finding(
                path,
                "MI-EXIM-CFILEMODE-WRITABLE",
                _C,
                f"the generated exim configuration becomes writable by others "
                f"(CFILEMODE={mode}): anyone in that group can run commands as root",
                "dc:CFILEMODE",
                after=mode,
                fix="CFILEMODE='644'",
            )
        )
    return out


def _relay_nets(path: str, attr: str, entries: list[str]) -> list[Finding]:
    where = attr.split(":", 1)[1]
    return network_findings(path, attr, entries, rule="MI-EXIM-RELAY-NETS", where=where)


def _relay_domains(path: str, attr: str, entries: list[str]) -> list[Finding]:
    bad = [e for e in entries if "*" in e or e.startswith("^")]
    if not bad:
        return []
    return [
        Finding(
            path,
            "MI-EXIM-RELAY-DOMAINS-OPEN",
            _C,
            f"anyone may relay to any matching domain: relay domains contain {', '.join(bad[:5])}",
            attr,
            after=", ".join(bad),
            fix=f"list explicit domains in {attr.split(':', 1)[1]}",
        )
    ]


_DC_MEANING: dict[str, tuple[str, Severity, str]] = {
    "dc_relay_nets": ("MI-EXIM-RELAY-NETS-ADDED", _H, "more networks may relay through exim"),
    "dc_relay_domains": (
        "MI-EXIM-RELAY-DOMAINS-ADDED",
        _M,
        "exim now relays to more domains",
    ),
    "dc_eximconfig_configtype": (
        "MI-EXIM-CONFIGTYPE-CHANGED",
        _M,
        "exim's whole delivery setup changed type",
    ),
    "dc_local_interfaces": (
        "MI-EXIM-INTERFACES-CHANGED",
        _I,
        "exim now listens on other interfaces",
    ),
}


def diff_debconf(path: str, before: Facts, after: Facts) -> list[Finding]:
    """One finding per changed dc_* value; new relay networks are HIGH."""
    old, new = str_map(before.get("settings")), str_map(after.get("settings"))
    changes = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        rule, severity, meaning = _DC_MEANING.get(
            name, ("MI-EXIM-SETTING-CHANGED", _M, "an exim debconf setting changed")
        )
        if name in ("dc_relay_nets", "dc_relay_domains"):
            added = set(debconf_list(new.get(name, ""))) - set(debconf_list(old.get(name, "")))
            if not added:
                rule, severity = "MI-EXIM-SETTING-CHANGED", _M
        changes.append(
            Finding(
                path,
                rule,
                severity,
                f"{meaning}: {name} is now '{new.get(name, '')}' (was '{old.get(name, '')}')",
                f"dc:{name}",
                old.get(name),
                new.get(name),
                fix=f"restore {name}='{old.get(name, '')}' and run update-exim4.conf",
            )
        )
    return new_risks(changes, assess_debconf(path, before), assess_debconf(path, after))


# ---------------------------------------------------------------------------
# exim4.conf / exim4.conf.template / conf.d fragments

_VERBS = frozenset({"accept", "deny", "require", "warn", "drop", "defer", "discard"})
_LIST_KINDS = frozenset({"hostlist", "domainlist", "addresslist", "localpartlist"})
_MACRO = re.compile(r"([A-Z][A-Za-z0-9_]*)\s*(==?)\s*(.*)")
_OPTION = re.compile(r"(!?[a-z][a-z0-9_]*)\s*=\s*(.*)")
_BLOCK = re.compile(r"([A-Za-z0-9_.-]+):")
_BARE = re.compile(r"[a-z][a-z0-9_]*")
_SKIP_SECTIONS = frozenset({"retry", "rewrite"})


def _exim_lines(text: str) -> list[tuple[int, str]]:
    """Logical lines: comments dropped, trailing-backslash continuations joined."""
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if stripped.startswith("#") or (not stripped and pending is None):
            continue
        if pending is not None:
            start, joined = pending
            stripped = joined + stripped
            no = start
            pending = None
        if stripped.endswith("\\"):
            pending = (no, stripped[:-1])
            continue
        if stripped:
            out.append((no, stripped))
    if pending is not None and pending[1].strip():
        out.append(pending)
    return out


class _Conf:
    """Parser state for one exim file (kept out of the facts, which stay plain dicts)."""

    def __init__(self) -> None:
        self.section = ""
        self.block: str | None = None
        self.block_kind = ""
        self.depth = 0  # .ifdef nesting: a guarded value never hides an unguarded one
        self.fixed: set[tuple[str, str]] = set()
        self.facts: dict[str, Any] = {
            "options": {},
            "macros": {},
            "lists": {},
            "acls": {},
            "drivers": {},
            "includes": [],
            "warnings": [],
        }

    def line(self, no: int, text: str) -> None:
        if text.startswith("."):
            self.directive(text)
        elif text.startswith("begin ") or text == "begin":
            self.section, self.block = text[6:].strip().lower(), None
        elif self.section in _SKIP_SECTIONS:
            return
        elif (macro := _MACRO.fullmatch(text)) is not None:
            self.macro(*macro.groups())
        elif (block := _BLOCK.fullmatch(text)) is not None:
            self.block, self.block_kind = block.group(1), ""
        elif self.block is not None:
            self.block_line(no, text)
        else:
            self.main_line(no, text)

    def directive(self, text: str) -> None:
        word, _, rest = text.partition(" ")
        if word in (".include", ".include_if_exists"):
            self.facts["includes"].append(rest.strip())
        elif word.startswith((".ifdef", ".ifndef", ".if")) and not word.startswith(".include"):
            self.depth += 1
        elif word == ".endif":
            self.depth = max(self.depth - 1, 0)

    def put(self, scope: str, target: dict[str, str], values: dict[str, str]) -> None:
        """Store option values; inside .ifdef they never replace an unconditional value."""
        for key, value in values.items():
            if self.depth == 0:
                self.fixed.add((scope, key))
            elif (scope, key) in self.fixed:
                continue
            target[key] = value

    def macro(self, name: str, op: str, value: str) -> None:
        if name not in self.facts["macros"] or op == "==":
            self.facts["macros"][name] = value.strip()

    def main_line(self, no: int, text: str) -> None:
        first, _, rest = text.partition(" ")
        if first in _LIST_KINDS:
            name, sep, value = rest.partition("=")
            if sep:
                self.facts["lists"][name.strip()] = {"kind": first, "value": value.strip()}
                return
        if (opt := _OPTION.fullmatch(text)) is not None:
            self.put("", self.facts["options"], {opt.group(1): opt.group(2).strip()})
        elif _BARE.fullmatch(text):
            self.put("", self.facts["options"], _bare(text))
        else:
            self.facts["warnings"].append([no, "not an exim option, list or macro line"])

    def block_line(self, no: int, text: str) -> None:
        block = self.block or ""
        first = (text.split(None, 1) or [""])[0]
        is_acl = self.section == "acl" or block.startswith("acl_")
        if self.block_kind in ("", "acl") and first in _VERBS and is_acl:
            self.block_kind = "acl"
            stmt: dict[str, Any] = {"verb": first, "conditions": []}
            self.facts["acls"].setdefault(block, []).append(stmt)
            text = text[len(first) :].strip()
            if not text:
                return
        if self.block_kind == "acl":
            stmts = self.facts["acls"][block]
            stmts[-1]["conditions"].append(_condition(text))
            return
        self.block_kind = "driver"
        driver = self.facts["drivers"].setdefault(block, {"section": self.section, "options": {}})
        if (opt := _OPTION.fullmatch(text)) is not None:
            self.put(block, driver["options"], {opt.group(1): opt.group(2).strip()})
        elif _BARE.fullmatch(text):
            self.put(block, driver["options"], _bare(text))
        else:
            self.facts["warnings"].append([no, f"unreadable line in block {block}"])


def _bare(word: str) -> dict[str, str]:
    """A bare boolean option: ``name`` is true, ``no_name`` false."""
    if word.startswith("no_"):
        return {word[3:]: "false"}
    return {word: "true"}


def _condition(text: str) -> list[str]:
    name, sep, value = text.partition("=")
    if not sep:
        return [text.strip(), ""]
    return [name.strip(), value.strip()]


def parse_conf(text: str) -> Facts:
    """An exim config or fragment -> options, macros, named lists, ACLs and drivers."""
    conf = _Conf()
    for no, line in _exim_lines(text):
        conf.line(no, line)
    return conf.facts


def _dict(value: object) -> dict[str, Any]:
    return {k: v for k, v in value.items() if isinstance(k, str)} if isinstance(value, dict) else {}


def expand_macros(value: str, macros: dict[str, str], depth: int = 0) -> str:
    """Replace the file's own macros in a value; unknown macros stay as written."""
    if depth > _DEPTH:
        return value
    out = re.sub(r"\b[A-Z][A-Z0-9_]*\b", lambda m: macros.get(m.group(), m.group()), value)
    return out if out == value else expand_macros(out, macros, depth + 1)


def _conf_parts(facts: Facts) -> tuple[dict[str, str], dict[str, str], dict[str, str]]:
    """(options, macros, lists name->value) with macros expanded in options and lists."""
    macros = str_map(facts.get("macros"))
    options = {k: expand_macros(v, macros) for k, v in str_map(facts.get("options")).items()}
    lists = {
        name: expand_macros(str(spec.get("value", "")), macros)
        for name, spec in _dict(facts.get("lists")).items()
        if isinstance(spec, dict)
    }
    return options, macros, lists


def assess_conf(path: str, facts: Facts) -> list[Finding]:
    """Open relay lists, a broken acl_check_rcpt, root alias deliveries, cleartext AUTH."""
    options, macros, lists = _conf_parts(facts)
    out = _relay_sources(path, macros, lists)
    out += _alias_macros(path, macros)
    acl_name = options.get("acl_smtp_rcpt", "acl_check_rcpt")
    acls = _dict(facts.get("acls"))
    if isinstance(acls.get(acl_name), list):
        out += _rcpt_acl(path, acl_name, acls[acl_name], macros)
    drivers = _dict(facts.get("drivers"))
    for name in sorted(drivers):
        spec = drivers[name] if isinstance(drivers[name], dict) else {}
        out += _driver_state(path, name, str_map(spec.get("options")))
    return out


def _relay_sources(path: str, macros: dict[str, str], lists: dict[str, str]) -> list[Finding]:
    out: list[Finding] = []
    nets_seen: set[str] = set()
    for attr, value in (
        ("list:relay_from_hosts", lists.get("relay_from_hosts")),
        ("macro:MAIN_RELAY_NETS", macros.get("MAIN_RELAY_NETS")),
    ):
        entries = [e for e in exim_list(value or "") if e not in nets_seen]
        nets_seen.update(entries)
        out += _relay_nets(path, attr, entries)
    domains_seen: set[str] = set()
    for attr, value in (
        ("list:relay_to_domains", lists.get("relay_to_domains")),
        ("macro:MAIN_RELAY_TO_DOMAINS", macros.get("MAIN_RELAY_TO_DOMAINS")),
    ):
        entries = [e for e in exim_list(value or "") if e not in domains_seen]
        domains_seen.update(entries)
        out += _relay_domains(path, attr, entries)
    return out


def _alias_macros(path: str, macros: dict[str, str]) -> list[Finding]:
    out = []
    if macros.get("SYSTEM_ALIASES_USER", "").strip() in ("root", "0"):
        out.append(
            Finding(
                path,
                "MI-EXIM-ALIASES-ROOT",
                _C,
                "pipes and files in /etc/aliases would run as root (SYSTEM_ALIASES_USER = root)",
                "macro:SYSTEM_ALIASES_USER",
                after="root",
                fix="remove the SYSTEM_ALIASES_USER macro or set it to an unprivileged user",
            )
        )
    for kind in ("PIPE", "FILE"):
        name = f"SYSTEM_ALIASES_{kind}_TRANSPORT"
        if name in macros:
            what = "programs" if kind == "PIPE" else "files"
            out.append(
                Finding(
                    path,
                    f"MI-EXIM-ALIASES-{kind}",
                    _M,
                    f"/etc/aliases may now deliver to {what} ({name} = {macros[name]}): "
                    "check its pipe and file entries",
                    f"macro:{name}",
                    after=macros[name],
                    fix=f"remove the {name} macro if aliases need no {what}",
                )
            )
    return out


_MODIFIERS = frozenset(
    {
        "control",
        "message",
        "log_message",
        "logwrite",
        "add_header",
        "remove_header",
        "set",
        "delay",
        "endpass",
        "udpsend",
        "queue",
        "continue",
        "debug",
        "log_reject_target",
    }
)
_MATCH_ALL = frozenset({"*", "0.0.0.0/0", "::/0", "::::/0", "<; ::/0"})


def _unconditional(stmt: dict[str, Any], macros: dict[str, str]) -> bool:
    """An ``accept`` with no condition, or only ones that match every client."""
    for cond in stmt.get("conditions", []):
        if not isinstance(cond, list) or len(cond) != 2:
            return False
        name, value = str(cond[0]), expand_macros(str(cond[1]), macros).strip()
        if name in _MODIFIERS:
            continue
        if name == "hosts" and value in _MATCH_ALL:
            continue
        if name == "condition" and value.lower() in ("true", "yes", "1"):
            continue
        return False
    return True


def _relay_require(stmt: dict[str, Any]) -> bool:
    """``require domains = +local_domains : +relay_to_domains`` or its ``deny !domains`` twin."""
    for cond in stmt.get("conditions", []):
        if not isinstance(cond, list) or len(cond) != 2:
            continue
        items = set(exim_list(str(cond[1])))
        wanted = {"+local_domains", "+relay_to_domains"}
        if stmt.get("verb") == "require" and cond[0] == "domains" and items <= wanted and items:
            return True
        if stmt.get("verb") == "deny" and cond[0] == "!domains" and items <= wanted and items:
            return True
    return False


def _rcpt_acl(path: str, name: str, stmts: list[Any], macros: dict[str, str]) -> list[Finding]:
    attr = f"acl:{name}"
    stmts = [s for s in stmts if isinstance(s, dict)]
    if not any(_relay_require(s) for s in stmts):
        return [
            Finding(
                path,
                "MI-EXIM-ACL-RELAY-CHECK-LOST",
                _C,
                f"exim may relay mail for anyone: {name} no longer requires "
                "domains = +local_domains : +relay_to_domains",
                attr,
                fix="restore 'require message = relay not permitted / domains = "
                f"+local_domains : +relay_to_domains' in {name}",
            )
        ]
    for index, stmt in enumerate(stmts):
        if stmt.get("verb") == "accept" and _unconditional(stmt, macros):
            return [
                Finding(
                    path,
                    "MI-EXIM-ACL-ACCEPT-ALL",
                    _C,
                    f"exim relays mail for anyone: statement {index + 1} of {name} accepts "
                    "every recipient before the relay check",
                    attr,
                    after=f"accept (statement {index + 1})",
                    fix=f"remove the unconditional accept from {name}",
                )
            ]
        if _relay_require(stmt):
            break
    return []


def _driver_state(path: str, name: str, options: dict[str, str]) -> list[Finding]:
    out = []
    if options.get("user", "").strip() in ("root", "0"):
        out.append(
            Finding(
                path,
                "MI-EXIM-DRIVER-ROOT",
                _C,
                f"driver {name} delivers as root (user = root)",
                f"driver:{name}",
                after="user = root",
                fix=f"remove 'user = root' from {name}",
            )
        )
    for key in ("command", "data"):
        value = options.get(key, "")
        if key == "data":  # a redirect router: only its |pipe items run programs
            pipes = [w.lstrip('"|') for w in exim_list(value) if w.lstrip('"').startswith("|")]
            value = pipes[0] if pipes else ""
        elif options.get("driver") != "pipe":
            continue
        kind = command_class(value) if value else None
        if kind:
            out.append(
                Finding(
                    path,
                    "MI-EXIM-PIPE-SHELL",
                    _C,
                    f"{name} pipes mail into {command_program(value)} ({kind}): a message can "
                    "run any command",
                    f"driver:{name}",
                    after=_short(value),
                    fix=f"point {name} at the delivery program itself, not a shell",
                )
            )
    if options.get("driver") == "plaintext" and "server_condition" in options:
        advertise = options.get("server_advertise_condition", "")
        if "tls" not in advertise.lower():
            out.append(
                Finding(
                    path,
                    "MI-EXIM-AUTH-CLEARTEXT",
                    _H,
                    f"authenticator {name} offers plaintext passwords without TLS "
                    "(server_advertise_condition does not require it)",
                    f"driver:{name}",
                    after=advertise or None,
                    fix="server_advertise_condition = ${if eq{$tls_in_cipher}{}{}{*}}",
                )
            )
    return out


_RISKY_OPTIONS = frozenset(
    {
        "spool_directory",
        "exim_user",
        "exim_group",
        "log_file_path",
        "exim_path",
        "tls_privatekey",
        "tls_certificate",
        "keep_environment",
        "add_environment",
        "acl_smtp_rcpt",
        "untrusted_set_sender",
        "allow_domain_literals",
        "percent_hack_domains",
        "prod_requires_admin",
        "queue_list_requires_admin",
    }
)
_TRUST = frozenset(
    {
        "trusted_users",
        "trusted_groups",
        "admin_groups",
        "MAIN_TRUSTED_USERS",
        "MAIN_TRUSTED_GROUPS",
        "MAIN_RELAY_NETS",
    }
)


def diff_conf(path: str, before: Facts, after: Facts) -> list[Finding]:
    """Changed options, macros, lists, ACLs and drivers, each graded by what it controls."""
    old_opts, old_macros, old_lists = _conf_parts(before)
    new_opts, new_macros, new_lists = _conf_parts(after)
    changes = _value_changes(path, "option", old_opts, new_opts)
    changes += _value_changes(path, "macro", old_macros, new_macros)
    changes += _value_changes(path, "list", old_lists, new_lists)
    changes += _block_changes(path, "acl", _dict(before.get("acls")), _dict(after.get("acls")))
    changes += _block_changes(
        path, "driver", _dict(before.get("drivers")), _dict(after.get("drivers"))
    )
    return new_risks(changes, assess_conf(path, before), assess_conf(path, after))


def _value_changes(path: str, kind: str, old: dict[str, str], new: dict[str, str]) -> list[Finding]:
    out = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        rule, severity = _value_meaning(name, old.get(name, ""), new.get(name, ""))
        out.append(
            Finding(
                path,
                rule,
                severity,
                f"exim {kind} {name} is now '{_short(new.get(name), 80) or ''}' "
                f"(was '{_short(old.get(name), 80) or ''}')",
                f"{kind}:{name}",
                _short(old.get(name)),
                _short(new.get(name)),
                fix=f"restore {name} = {_short(old.get(name))}" if name in old else None,
            )
        )
    return out


def _value_meaning(name: str, old: str, new: str) -> tuple[str, Severity]:
    added = set(exim_list(new)) - set(exim_list(old))
    if name in _TRUST and added:
        if "RELAY" in name:
            return "MI-EXIM-RELAY-NETS-ADDED", _H
        return "MI-EXIM-TRUSTED-ADDED", _H
    if name == "relay_from_hosts" and added:
        return "MI-EXIM-RELAY-NETS-ADDED", _H
    if name in ("relay_to_domains", "MAIN_RELAY_TO_DOMAINS") and added:
        return "MI-EXIM-RELAY-DOMAINS-ADDED", _M
    if name in _RISKY_OPTIONS or name.startswith("MAIN_TLS"):
        return "MI-EXIM-OPTION-RISKY", _H
    return "MI-EXIM-CONFIG-CHANGED", _M


def _block_changes(path: str, kind: str, old: dict[str, Any], new: dict[str, Any]) -> list[Finding]:
    out = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        rule, severity, what = "MI-EXIM-CONFIG-CHANGED", _M, "changed"
        if name not in old:
            what = "was added"
        elif name not in new:
            what = "was removed"
        if kind == "driver" and _gains_program(old.get(name), new.get(name)):
            rule, severity = "MI-EXIM-ROUTER-PIPE-ADDED", _H
            what += " and can now deliver to programs or files"
        out.append(
            Finding(
                path,
                rule,
                severity,
                f"exim {kind} {name} {what}",
                f"{kind}:{name}",
                fix=None,
            )
        )
    return out


def _gains_program(old: object, new: object) -> bool:
    def transports(spec: object) -> set[tuple[str, str]]:
        options = str_map(spec.get("options")) if isinstance(spec, dict) else {}
        return {(k, options[k]) for k in ("pipe_transport", "file_transport") if options.get(k)}

    return bool(transports(new) - transports(old))
