"""One redaction layer for every secret-bearing value an analyzer lets out.

Applied where facts and findings leave the analyzers (``analyzers.get`` wraps ``parse``,
``diff`` and ``assess``), so the database, verify's text and JSON, history, export,
syslog, the outbox and the logs only ever see what this module lets through. Pure.

What counts as a secret:

* a value under a key that names one (``*password*``, ``*passwd*``, ``*secret*``,
  ``bind_pw``, ``dnpass``, exim's ``client_send``, a macro such as ``LDAP_PASS``...),
  unless the value only points elsewhere (``hash:/etc/postfix/sasl_passwd``, a path);
* inline credentials in any string: ``static:user:password`` and ``inline:{...}`` tables
  under such a key, ``password=...``/``pass=...`` assignments (LDAP/SQL lookups, dovecot
  connect strings), ``user:password@`` in URLs, the password of an exim SQL server list
  (``host/db/user/password``), sendmail AuthInfo ``"P:..."``/``"P=..."``, and PEM private
  keys.

A changed secret is still seen (the file's hash changes); its value never is.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Callable, Iterable
from dataclasses import replace
from typing import Any

from integrity.model import Facts, Finding

REDACTED = "<redacted>"

_SECRET_KEY = re.compile(
    r"(?i)(password|passwd|passphrase|secret|bind_?pw|dnpass|client_send|credential"
    r"|private_?key|api_?key|auth_?token|(^|[^a-z])pass($|[^a-z])|(^|[^a-z])pwd($|[^a-z])"
    r"|(^|_)pw$)"
)
#: keys that name a secret but hold a harmless value (exim router options)
_NOT_SECRET = frozenset({"pass_router", "pass_on_timeout"})
#: exim lookup server lists: host/database/user/password
_SERVERS_KEY = re.compile(r"(?i)(mysql|pgsql|oracle|ibase|redis)_servers$")
#: a value that only names where the secret lives: a table file, a path, a dovecot <file
_REFERENCE = re.compile(r"^\s*(<?/|([a-z][a-z0-9_+-]*:)+/|\$\{)", re.IGNORECASE)
_TABLE_ITEM = re.compile(r"[\s,]+")
_INLINE_ASSIGN = re.compile(
    r"""(?ix)
    \b((?:[a-z0-9_]*?)(?:password|passwd|passphrase|secret|bind_?pw|dnpass|pass|pwd|_pw))
    (\s*[=:]\s*)
    ("[^"]*"|'[^']*'|[^\s,;}"']+)
    """
)
#: a command-line option that takes a secret as its next word: ``--api-key VALUE``
_SECRET_FLAG = re.compile(
    r"(?i)(\s--?[a-z0-9_-]*?(?:password|passwd|passphrase|secret|api[-_]?key|token|pw)\s+)"
    r"(\"[^\"]*\"|'[^']*'|[^\s\"']+)"
)
_URL_CREDS = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@]*):[^@\s/]*@")
_AUTHINFO = re.compile(r'"P([:=])[^"]*"')
_SERVERS = re.compile(r"(?i)(servers\s*=\s*)([^;}]*)")
_PEM = re.compile(
    r"-----BEGIN [A-Z ]*PRIVATE KEY-----.*?(-----END [A-Z ]*PRIVATE KEY-----|$)", re.S
)
#: exim ``server_condition = ${if eq{$auth3}{literal}}``: a password written in the test
_AUTH_LITERAL = re.compile(r"(\{\$auth\d\}\s*\{)([^{}$]*)(\})")
_STATIC = re.compile(r"(?i)\b(static|inline):(\{[^}]*\}?|\S+)")


#: a literal every pattern of ``text`` needs: most strings (alias targets, options) have
#: none, and skip the seven substitutions (a 5,000-alias file: 1 s of an init)
_MAYBE = re.compile(r'(?i)-----BEGIN|://|"P[:=]|servers|\{\$auth|pass|secret|api|token|pw')


@functools.lru_cache(maxsize=4096)
def is_secret_key(key: str) -> bool:
    """Does this setting's name say it holds a secret? (the last part of a dotted path)"""
    leaf = re.split(r"[./#]", key)[-1] if key else ""
    return leaf.lower() not in _NOT_SECRET and bool(_SECRET_KEY.search(leaf))


@functools.lru_cache(maxsize=4096)
def _servers_key(key: str) -> bool:
    return bool(_SERVERS_KEY.search(key))


def text(value: str) -> str:
    """A free-form string (a line, a message) with inline credentials cut out."""
    if not value or not _MAYBE.search(value):
        return value
    return _substitute(value)


def _substitute(value: str) -> str:
    out = _PEM.sub(REDACTED, value)
    out = _URL_CREDS.sub(rf"\1:{REDACTED}@", out)
    out = _AUTHINFO.sub(rf'"P\1{REDACTED}"', out)
    out = _SERVERS.sub(lambda m: m.group(1) + _server_list(m.group(2)), out)
    out = _AUTH_LITERAL.sub(rf"\1{REDACTED}\3", out)
    out = _SECRET_FLAG.sub(rf"\1{REDACTED}", out)
    return _INLINE_ASSIGN.sub(lambda m: f"{m.group(1)}{m.group(2)}{REDACTED}", out)


def _server_list(value: str) -> str:
    """exim ``host/db/user/password : host2/...``: the password part of each server."""
    items = []
    for item in value.split(":"):
        parts = item.split("/")
        if len(parts) >= 4:
            parts[-1] = REDACTED + (" " if item.endswith(" ") else "")
        items.append("/".join(parts))
    return ":".join(items)


def value(key: str, val: str) -> str:
    """A setting's value as it may be stored and shown."""
    if not val:
        return val
    if _servers_key(key):
        return _server_list(text(val))
    if not is_secret_key(key):
        return text(val)
    if _REFERENCE.match(val) and not _STATIC.search(val):
        return text(val)  # where the secret lives, not the secret
    if any(_REFERENCE.match(item) or _STATIC.match(item) for item in _TABLE_ITEM.split(val)):
        # a list of tables: keep the files, cut the inline ones
        return text(_STATIC.sub(lambda m: f"{m.group(1)}:{REDACTED}", val))
    return REDACTED


def facts(data: Any, key: str = "") -> Any:
    """Analyzer facts (dicts, lists, strings) with every secret value redacted."""
    if isinstance(data, dict):
        return {k: facts(v, str(k)) for k, v in data.items()}
    if isinstance(data, list):
        return [facts(v, key) for v in data]
    if isinstance(data, tuple):
        return tuple(facts(v, key) for v in data)
    if isinstance(data, str):
        return value(key, data)
    return data


def finding(f: Finding) -> Finding:
    """A finding's message and before/after values, redacted (rebuilt only if needed)."""
    message = text(f.message)
    before = facts(f.before, f.attribute)
    after = facts(f.after, f.attribute)
    fix = text(f.fix) if f.fix else f.fix
    if (message, before, after, fix) == (f.message, f.before, f.after, f.fix):
        return f
    return replace(f, message=message, before=before, after=after, fix=fix)


# -- the analyzers' output boundary (``analyzers.get`` wraps every analyzer with these) ---


def parse(fn: Callable[[str], Facts]) -> Callable[[str], Facts]:
    """``parse`` whose facts are stored and shown redacted."""

    def wrapped(content: str) -> Facts:
        out: Facts = facts(fn(content))
        return out

    return wrapped


def judged(
    fn: Callable[..., Iterable[Finding]],
) -> Callable[..., list[Finding]]:
    """``diff``/``assess``: facts in redacted (a baseline from before this layer holds
    them in clear), findings out redacted."""

    def wrapped(path: str, *data: Facts) -> list[Finding]:
        return [finding(f) for f in fn(path, *(facts(d) for d in data))]

    return wrapped
