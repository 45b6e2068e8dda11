"""Dovecot analyzer (dovecot.conf, conf.d/*.conf, *.conf.ext): login and TLS safety.

Settings are flattened to ``section path/key`` (``service auth/unix_listener
auth-userdb/mode``); repeated anonymous sections such as ``passdb`` are numbered
(``passdb#2``). Password values (SQL ``connect`` strings, LDAP ``dnpass``...) are
replaced by ``<set>`` at parse time, so they never reach the baseline or a finding.
Each file is judged alone: a setting made in another conf.d file is not seen.
"""

from __future__ import annotations

import re
from typing import Any

from integrity.analyzers.postfix import classify_network, new_risks, str_map
from integrity.model import Facts, Finding, Severity

_C, _H, _M, _I = Severity.CRITICAL, Severity.HIGH, Severity.MEDIUM, Severity.INFO
_SECRET = "<set>"  # noqa: S105  (the placeholder that replaces a secret)
_SECRET_KEYS = re.compile(
    r"(^|_)(password|passwd|pass|dnpass|secret|client_secret|key_password)$", re.IGNORECASE
)
_INLINE_SECRET = re.compile(
    r"\b(password|passwd|pass|dnpass|secret)(\s*=\s*)(\"[^\"]*\"|'[^']*'|\S+)", re.IGNORECASE
)
_URL_CREDENTIALS = re.compile(r"(//)[^/@\s]+@")
_SECTION = re.compile(r"(!?[A-Za-z0-9_.-]+)(?:\s+(.*?))?\s*\{\s*(.*)$")
_SETTING = re.compile(r"([A-Za-z0-9_.-]+)\s*=\s*(.*)")


def redact(key: str, value: str) -> str:
    """The value as it may be stored: secrets become ``<set>``, inline ones are cut out."""
    leaf = key.rsplit("/", 1)[-1]
    if _SECRET_KEYS.search(leaf) and value:
        return _SECRET
    if leaf.startswith("ssl") and leaf.endswith("key") and value and not value.startswith("<"):
        return _SECRET  # an inline private key, not a <file reference
    value = _INLINE_SECRET.sub(lambda m: f"{m.group(1)}{m.group(2)}{_SECRET}", value)
    return _URL_CREDENTIALS.sub(r"\1<set>@", value)


def _strip_comment(line: str) -> str:
    """Drop a ``#`` comment that is not inside quotes."""
    quote = ""
    for i, ch in enumerate(line):
        if ch in "\"'" and (not quote or quote == ch):
            quote = "" if quote else ch
        elif ch == "#" and not quote:
            return line[:i]
    return line


def _lines(text: str) -> list[tuple[int, str]]:
    out: list[tuple[int, str]] = []
    pending: tuple[int, str] | None = None
    for no, raw in enumerate(text.splitlines(), 1):
        line = _strip_comment(raw).strip()
        if pending is not None:
            no, line = pending[0], pending[1] + " " + line
            pending = None
        if line.endswith("\\"):
            pending = (no, line[:-1].strip())
        elif line:
            out.append((no, line))
    if pending is not None:
        out.append(pending)
    return out


class _State:
    def __init__(self) -> None:
        self.stack: list[str] = []
        self.counts: dict[str, int] = {}
        self.settings: dict[str, str] = {}
        self.includes: list[str] = []
        self.warnings: list[list[Any]] = []

    def open(self, name: str, arg: str) -> None:
        base = "/".join(self.stack)
        label = f"{name} {_unquote(arg)}" if arg else name
        key = f"{base}/{label}" if base else label
        self.counts[key] = self.counts.get(key, 0) + 1
        if self.counts[key] > 1:
            label += f"#{self.counts[key]}"
        self.stack.append(label)
        self.settings.setdefault("/".join(self.stack) + "/", "")

    def set(self, key: str, value: str) -> None:
        full = "/".join([*self.stack, key])
        self.settings[full] = redact(full, _unquote(value.strip()))

    def line(self, no: int, line: str) -> None:
        if line.startswith("!include"):
            word, _, target = line.partition(" ")
            self.includes.append(f"{word} {target.strip()}")
        elif line == "}":
            if self.stack:
                self.stack.pop()
            else:
                self.warnings.append([no, "'}' without an open section"])
        elif (setting := _SETTING.fullmatch(line)) is not None:
            self.set(setting.group(1), setting.group(2))
        elif (section := _SECTION.fullmatch(line)) is not None:
            self.open(section.group(1), section.group(2) or "")
            rest = section.group(3).strip()
            closes = rest.endswith("}")
            inner = rest[:-1].strip() if closes else rest
            if inner:  # one-line section: name { key = value }
                self.line(no, inner)
            if closes:
                self.line(no, "}")
        else:
            self.warnings.append([no, "not a setting, section or !include line"])


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "\"'":
        return value[1:-1]
    return value


def parse(text: str) -> Facts:
    """A dovecot config file -> {"settings", "includes", "warnings"}; secrets redacted."""
    state = _State()
    for no, line in _lines(text):
        state.line(no, line)
    if state.stack:
        state.warnings.append([0, f"{len(state.stack)} section(s) never closed"])
    return {"settings": state.settings, "includes": state.includes, "warnings": state.warnings}


def _includes(facts: Facts) -> list[str]:
    raw = facts.get("includes")
    return [i for i in raw if isinstance(i, str)] if isinstance(raw, list) else []


def _sections(settings: dict[str, str], kind: str) -> dict[str, dict[str, str]]:
    """Settings grouped by each section whose last path part is ``kind`` (passdb#2...)."""
    out: dict[str, dict[str, str]] = {}
    for key, value in settings.items():
        section, _, leaf = key.rpartition("/")
        if section and section.rsplit("/", 1)[-1].split("#")[0].split(" ")[0] == kind:
            out.setdefault(section, {})[leaf] = value
    return out


def _f(path: str, rule: str, sev: Severity, msg: str, key: str, value: str, fix: str) -> Finding:
    return Finding(path, rule, sev, msg, f"setting:{key}", after=value, fix=fix)


def assess(path: str, facts: Facts) -> list[Finding]:
    """Risky login, TLS and passdb state in this one file."""
    settings = str_map(facts.get("settings"))
    out = _tls_state(path, settings) + _auth_state(path, settings)
    out += _passdb_state(path, settings, _includes(facts))
    out += _network_state(path, settings)
    return out


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "1", "on")


def _tls_state(path: str, s: dict[str, str]) -> list[Finding]:
    out = []
    ssl = s.get("ssl", "yes").strip().lower()
    if ssl == "no":
        out.append(
            _f(
                path,
                "MI-DOVECOT-SSL-OFF",
                _H,
                "POP3/IMAP logins and mail travel without TLS (ssl = no)",
                "ssl",
                ssl,
                "ssl = yes (or required)",
            )
        )
    plain = s.get("disable_plaintext_auth", s.get("auth_allow_cleartext", ""))
    cleartext = plain.strip().lower() == "no" if "disable_plaintext_auth" in s else _yes(plain)
    if cleartext and ssl != "required":
        key = "disable_plaintext_auth" if "disable_plaintext_auth" in s else "auth_allow_cleartext"
        out.append(
            _f(
                path,
                "MI-DOVECOT-PLAINTEXT-AUTH",
                _H,
                f"passwords may be sent in clear over unencrypted POP3/IMAP ({key} = "
                f"{plain}, ssl = {ssl})",
                key,
                plain,
                "disable_plaintext_auth = yes, or ssl = required",
            )
        )
    proto = s.get("ssl_min_protocol", "").strip()
    if proto in ("SSLv3", "TLSv1", "TLSv1.1"):
        out.append(
            _f(
                path,
                "MI-DOVECOT-TLS-OLD",
                _M,
                f"clients may negotiate a broken TLS version (ssl_min_protocol = {proto})",
                "ssl_min_protocol",
                proto,
                "ssl_min_protocol = TLSv1.2",
            )
        )
    return out


def _auth_state(path: str, s: dict[str, str]) -> list[Finding]:
    out = []
    if "anonymous" in s.get("auth_mechanisms", "").lower().split():
        out.append(
            _f(
                path,
                "MI-DOVECOT-AUTH-ANONYMOUS",
                _H,
                "anyone may log in without a password (auth_mechanisms has anonymous)",
                "auth_mechanisms",
                s["auth_mechanisms"],
                "remove anonymous from auth_mechanisms",
            )
        )
    for key in ("auth_verbose_passwords", "auth_debug_passwords"):
        value = s.get(key, "no").strip().lower()
        if value not in ("no", "false", ""):
            out.append(
                _f(
                    path,
                    "MI-DOVECOT-PASSWORDS-LOGGED",
                    _H,
                    f"user passwords are written to the logs ({key} = {value})",
                    key,
                    value,
                    f"{key} = no",
                )
            )
    if _yes(s.get("auth_debug")):
        out.append(
            _f(
                path,
                "MI-DOVECOT-AUTH-DEBUG",
                _M,
                "every authentication step is logged in detail (auth_debug = yes)",
                "auth_debug",
                "yes",
                "auth_debug = no",
            )
        )
    if s.get("first_valid_uid", "").strip() == "0":
        out.append(
            _f(
                path,
                "MI-DOVECOT-ROOT-UID",
                _H,
                "mail may be accessed as root (first_valid_uid = 0)",
                "first_valid_uid",
                "0",
                "first_valid_uid = 1000 (or the lowest real user uid)",
            )
        )
    return out


def _passdb_state(path: str, s: dict[str, str], includes: list[str]) -> list[Finding]:
    out = []
    for inc in includes:
        target = inc.split(" ", 1)[-1].rsplit("/", 1)[-1]
        if target == "auth-static.conf.ext":
            out.append(_static(path, "include", inc))
        elif target == "auth-master.conf.ext":
            out.append(
                Finding(
                    path,
                    "MI-DOVECOT-AUTH-MASTER",
                    _H,
                    "master users may log in as any user (auth-master.conf.ext is included)",
                    "include",
                    after=inc,
                    fix=f"remove '{inc}' unless master logins are intended",
                )
            )
    for section, opts in sorted(_sections(s, "passdb").items()):
        if opts.get("driver", "").strip() == "static":
            out.append(_static(path, f"setting:{section}/driver", "static"))
        for key, value in opts.items():
            if re.search(r"\bnopassword(=(y|yes|true|1))?\b", f"{key}={value}".lower()):
                out.append(_static(path, f"setting:{section}/{key}", value))
    return out


def _static(path: str, attr: str, value: str) -> Finding:
    return Finding(
        path,
        "MI-DOVECOT-AUTH-STATIC",
        _C,
        "logins succeed without the user's own password (static passdb or nopassword)",
        attr,
        after=value,
        fix="remove the static passdb / nopassword and include auth-system.conf.ext",
    )


def _network_state(path: str, s: dict[str, str]) -> list[Finding]:
    out = []
    wide = [
        n
        for n in s.get("login_trusted_networks", "").replace(",", " ").split()
        if classify_network(n) in ("any", "wide")
    ]
    if wide:
        out.append(
            _f(
                path,
                "MI-DOVECOT-TRUSTED-NETWORKS",
                _H,
                f"clients in {', '.join(wide[:5])} may claim any IP address and skip login "
                "penalties (login_trusted_networks)",
                "login_trusted_networks",
                s["login_trusted_networks"],
                "limit login_trusted_networks to your proxies",
            )
        )
    for section, opts in sorted(_sections(s, "unix_listener").items()):
        name = section.rsplit("/", 1)[-1]
        mode = opts.get("mode", "").strip()
        if (
            name.split("#")[0]
            in (
                "unix_listener auth-master",
                "unix_listener auth-client",
            )
            and re.fullmatch(r"0?[0-7]{3,4}", mode)
            and int(mode, 8) & 0o002
        ):
            out.append(
                _f(
                    path,
                    "MI-DOVECOT-LISTENER-MODE",
                    _M,
                    f"any local user may talk to the {name.split(' ', 1)[-1]} socket (mode {mode})",
                    f"{section}/mode",
                    mode,
                    "mode = 0600 (or 0660 with a dedicated group)",
                )
            )
    return out


_KEY_PATHS = ("ssl_key", "ssl_cert", "ssl_ca", "ssl_dh", "ssl_client_ca_dir")


def diff(path: str, before: Facts, after: Facts) -> list[Finding]:
    """Changed settings, sections and !include lines, graded by what they control."""
    old, new = str_map(before.get("settings")), str_map(after.get("settings"))
    changes: list[Finding] = []
    for key in sorted(set(old) | set(new)):
        change = _setting_change(path, key, old.get(key), new.get(key))
        if change is not None:
            changes.append(change)
    old_inc, new_inc = _includes(before), _includes(after)
    if old_inc != new_inc:
        changes.append(
            Finding(
                path,
                "MI-DOVECOT-INCLUDE-CHANGED",
                _M,
                "the set of included dovecot files changed (passdb/userdb selection lives there)",
                "include",
                old_inc,
                new_inc,
                fix="restore: " + "; ".join(old_inc) if old_inc else None,
            )
        )
    return new_risks(changes, assess(path, before), assess(path, after))


def _setting_change(path: str, key: str, old: str | None, new: str | None) -> Finding | None:
    if old == new:
        return None
    leaf = key.rsplit("/", 1)[-1]
    rule, sev, meaning = "MI-DOVECOT-SETTING-CHANGED", _M, "a dovecot setting changed"
    if leaf in _KEY_PATHS:
        rule, sev, meaning = "MI-DOVECOT-KEY-PATH-CHANGED", _H, "TLS key or certificate moved"
    elif leaf == "protocols":
        rule, sev, meaning = "MI-DOVECOT-PROTOCOLS-CHANGED", _I, "served protocols changed"
    elif "passdb" in key and leaf == "master" and _yes(new):
        rule, sev, meaning = "MI-DOVECOT-AUTH-MASTER", _H, "a master passdb was enabled"
    shown = key.rstrip("/") + (" (section)" if key.endswith("/") else "")
    return Finding(
        path,
        rule,
        sev,
        f"{meaning}: {shown} is now '{new if new is not None else '(removed)'}' "
        f"(was '{old if old is not None else '(unset)'}')",
        f"setting:{key}",
        old,
        new,
    )
