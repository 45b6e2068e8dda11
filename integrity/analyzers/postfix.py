"""Postfix main.cf and master.cf analyzers: what a changed parameter or service means.

Postfix's own start-up check only refuses a relay rule set with no working
``reject_unauth_destination``; it cannot see an OK-returning lookup, a world-wide
``mynetworks`` or an XCLIENT hole. Those are what these functions look for.
The module also holds the small helpers the exim and dovecot analyzers share
(:func:`classify_network`, :func:`new_risks`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from dataclasses import replace
from typing import Any

from integrity.analyzers.networks import is_public, judge_networks, parse_network
from integrity.analyzers.programs import command_class, command_program
from integrity.model import Facts, Finding, Severity

_C, _H, _M, _L, _I = (
    Severity.CRITICAL,
    Severity.HIGH,
    Severity.MEDIUM,
    Severity.LOW,
    Severity.INFO,
)
_PARAM_NAME = re.compile(r"[A-Za-z0-9_.-]+")
_DEPTH = 12  # expansion / restriction-class recursion limit: survives self-references

# ---------------------------------------------------------------------------
# Shared helpers (also used by exim.py and dovecot.py)


def classify_network(entry: str) -> str:
    """How far one client-network entry reaches: any, wide, public, local or other.

    ``any`` is the whole address space (an open relay when it grants relaying),
    ``wide`` a public prefix shorter than /24 (IPv4) or /48 (IPv6), ``public`` a
    narrower public range, ``local`` loopback/private/link-local, ``other`` a
    hostname, table or file that cannot be judged from the text. Sets of entries are
    judged together by :func:`integrity.analyzers.networks.judge_networks`.
    """
    net = parse_network(entry.strip().lstrip("!"))
    if net is None:
        return "other"
    if net.prefixlen == 0:
        return "any"
    if not is_public(net):
        return "local"
    limit = 24 if net.version == 4 else 48
    return "wide" if net.prefixlen < limit else "public"


def new_risks(changes: list[Finding], before: list[Finding], after: list[Finding]) -> list[Finding]:
    """Risky states present after but not before, plus the plain changes they don't explain.

    A change whose attribute already carries a new risk is dropped, so one
    difference yields one finding with the highest meaning.
    """
    seen = {(f.rule, f.attribute, str(f.after)) for f in before}
    risks = [f for f in after if (f.rule, f.attribute, str(f.after)) not in seen]
    risky_attrs = {f.attribute for f in risks}
    return risks + [f for f in changes if f.attribute not in risky_attrs]


def str_map(value: object) -> dict[str, str]:
    """The str->str part of a stored mapping; facts from the DB are never trusted."""
    if not isinstance(value, dict):
        return {}
    return {k: v for k, v in value.items() if isinstance(k, str) and isinstance(v, str)}


def _short(value: str | None, limit: int = 120) -> str | None:
    if value is None:
        return None
    return value if len(value) <= limit else value[: limit - 3] + "..."


# ---------------------------------------------------------------------------
# Reading: logical lines, expansion, lists


def _logical_lines(text: str, warnings: list[list[Any]]) -> Iterator[tuple[int, str]]:
    """Join continuation lines (leading whitespace), skip blanks and ``#`` comment lines."""
    start, parts = 0, list[str]()
    for no, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        if not stripped or stripped.startswith("#"):
            continue
        if line[0].isspace():
            if parts:
                parts.append(stripped)
            else:
                warnings.append([no, "continuation line with nothing to continue"])
            continue
        if parts:
            yield start, " ".join(parts)
        start, parts = no, [stripped]
    if parts:
        yield start, " ".join(parts)


def _compat_below(params: dict[str, str], level: int) -> bool:
    raw = params.get("compatibility_level", "0").strip()
    match = re.match(r"\d+", raw)
    return (int(match.group()) if match else 0) < level


def defaults(params: dict[str, str]) -> dict[str, str]:
    """The ``postconf -d`` values (Debian 12, postfix 3.7) the checks depend on."""
    old = _compat_below(params, 1)
    older = _compat_below(params, 2)
    return {
        "smtpd_relay_restrictions": ""
        if old
        else "permit_mynetworks, permit_sasl_authenticated, defer_unauth_destination",
        "smtpd_recipient_restrictions": "",
        "relay_domains": "$mydestination" if older else "",
        "mynetworks_style": "subnet" if older else "host",
        "allow_mail_to_commands": "alias, forward",
        "allow_mail_to_files": "alias, forward",
        "default_privs": "nobody",
        "mail_owner": "postfix",
        "setgid_group": "postdrop",
        "disable_vrfy_command": "no",
        "smtpd_sasl_security_options": "noanonymous",
        "smtpd_sasl_auth_enable": "no",
        "smtpd_tls_auth_only": "no",
        "import_environment": "MAIL_CONFIG MAIL_DEBUG MAIL_LOGTAG TZ XAUTHORITY DISPLAY LANG=C "
        "POSTLOG_SERVICE POSTLOG_HOSTNAME",
        "export_environment": "TZ MAIL_CONFIG LANG",
        "inet_interfaces": "all",
        **_DIRECTORY_DEFAULTS,
    }


_DIRECTORY_DEFAULTS = {
    "command_directory": "/usr/sbin",
    "daemon_directory": "/usr/lib/postfix/sbin",
    "queue_directory": "/var/spool/postfix",
    "data_directory": "/var/lib/postfix",
    "shlib_directory": "/usr/lib/postfix",
    "meta_directory": "/etc/postfix",
    "config_directory": "/etc/postfix",
    "sendmail_path": "/usr/sbin/sendmail",
}
_VAR = re.compile(
    r"\$(?:\{([A-Za-z0-9_]+)(?:([?:])([^{}]*))?\}|\(([A-Za-z0-9_]+)\)|([A-Za-z0-9_]+))"
)


def expand(value: str, lookup: dict[str, str], depth: int = 0) -> str:
    """Expand ``$name``, ``${name}``, ``$(name)``, ``${name?x}`` and ``${name:x}``.

    Unknown names stay as written: a check must not mistake them for empty.
    """
    if depth > _DEPTH or "$" not in value:
        return value

    def sub(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(4) or match.group(5)
        if name not in lookup:
            return match.group(0)
        inner = expand(lookup[name], lookup, depth + 1)
        if match.group(2) == "?":
            return expand(match.group(3), lookup, depth + 1) if inner.strip() else ""
        if match.group(2) == ":":
            return "" if inner.strip() else expand(match.group(3), lookup, depth + 1)
        return inner

    return _VAR.sub(sub, value)


def split_list(value: str) -> list[str]:
    """Split a postfix list on commas and whitespace, keeping ``{ ... }`` groups whole."""
    items, buf, depth = [], "", 0
    for ch in value:
        depth += (ch == "{") - (ch == "}")
        if depth <= 0 and (ch.isspace() or ch == ","):
            if buf:
                items.append(buf)
            buf, depth = "", 0
        else:
            buf += ch
    if buf:
        items.append(buf)
    return items


def _with_defaults(params: dict[str, str]) -> dict[str, str]:
    return {**defaults(params), **params}


def _effective(params: dict[str, str]) -> dict[str, str]:
    lookup = _with_defaults(params)
    return {k: expand(v, lookup) for k, v in lookup.items()}


# ---------------------------------------------------------------------------
# Relay restriction evaluation (shared by main.cf and master.cf)

_BLOCKERS = frozenset(
    {
        "reject_unauth_destination",
        "defer_unauth_destination",
        "reject",
        "defer",
        "defer_if_permit",
        "check_relay_domains",
    }
)
_OK_TABLE = re.compile(r"static:\{?\s*(ok|relay|permit)\s*\}?", re.IGNORECASE)


def _scan(
    items: list[str], classes: dict[str, str], depth: int = 0
) -> tuple[str, str | None, list[str]]:
    """Walk one restriction list like smtpd does: ("guards"|"opens"|"neutral", culprit, notes).

    ``guards``: a relay-blocking item comes before anything that permits every
    client; ``opens``: an unconditional permit comes first. Notes name the
    risky conditional permits met before the decision.
    """
    notes: list[str] = []
    i = 0
    while i < len(items):
        item = items[i].lower()
        if item == "warn_if_reject":
            i += 2
            continue
        if item in _BLOCKERS:
            return "guards", item, notes
        if item == "permit":
            return "opens", "permit", notes
        if item.startswith("check_") and item.endswith("_access") and i + 1 < len(items):
            if _OK_TABLE.fullmatch(items[i + 1]):
                return "opens", f"{items[i]} {items[i + 1]}", notes
            i += 1
        elif item in ("permit_tls_all_clientcerts", "permit_mx_backup"):
            notes.append(item)
        elif item in classes and depth < _DEPTH:
            status, culprit, sub = _scan(split_list(classes[item]), classes, depth + 1)
            notes += sub
            if status != "neutral":
                return status, f"{items[i]} ({culprit})", notes
        i += 1
    return "neutral", None, notes


def _classes(eff: dict[str, str]) -> dict[str, str]:
    names = split_list(eff.get("smtpd_restriction_classes", ""))
    return {n.lower(): eff[n] for n in names if n in eff}


def relay_findings(
    path: str, where: str, eff: dict[str, str], certain: bool = True, attr: str = "param:"
) -> list[Finding]:
    """Open-relay verdict for one smtpd service, given its effective parameters.

    ``certain`` is False when a list came from postfix defaults because main.cf
    was not at hand: the verdict then drops from CRITICAL to HIGH.
    """
    classes = _classes(eff)
    out: list[Finding] = []
    scans = {}
    for name in ("smtpd_relay_restrictions", "smtpd_recipient_restrictions"):
        scans[name] = _scan(split_list(eff.get(name, "")), classes)
        for note in scans[name][2]:
            out.append(_restriction_note(path, where, name, note, attr))
    if any(s[0] == "guards" for s in scans.values()):
        return out
    opener = next((n for n, s in scans.items() if s[0] == "opens"), None)
    if opener is not None:
        culprit = scans[opener][1]
        out.append(
            Finding(
                path,
                "MI-POSTFIX-OPEN-RELAY",
                _C if certain else _H,
                f"{where} relays mail for anyone: '{culprit}' in {opener} permits every "
                "client before any reject_unauth_destination",
                f"{attr}{opener}",
                after=_short(eff.get(opener)),
                fix=f"remove '{culprit}' from {opener} or put reject_unauth_destination before it",
            )
        )
    else:
        out.append(
            Finding(
                path,
                "MI-POSTFIX-RELAY-UNGUARDED",
                _M,
                f"{where} has no reject_unauth_destination or defer_unauth_destination in "
                "smtpd_relay_restrictions or smtpd_recipient_restrictions: smtpd refuses to "
                "start",
                f"{attr}smtpd_relay_restrictions",
                after=_short(eff.get("smtpd_relay_restrictions")),
                fix="smtpd_relay_restrictions = permit_mynetworks, permit_sasl_authenticated, "
                "defer_unauth_destination",
            )
        )
    return out


def _restriction_note(path: str, where: str, param: str, note: str, attr: str) -> Finding:
    if note == "permit_tls_all_clientcerts":
        return Finding(
            path,
            "MI-POSTFIX-RELAY-TLS-ALL-CERTS",
            _H,
            f"{where} lets any client with a certificate from any trusted CA relay "
            f"(permit_tls_all_clientcerts in {param})",
            f"{attr}{param}",
            after=note,
            fix="use permit_tls_clientcerts with relay_clientcerts instead",
        )
    return Finding(
        path,
        "MI-POSTFIX-RELAY-MX-BACKUP",
        _M,
        f"{where} relays for any domain that lists this host as MX (permit_mx_backup in "
        f"{param}, deprecated)",
        f"{attr}{param}",
        after=note,
        fix="list backup domains in relay_domains and remove permit_mx_backup",
    )


# ---------------------------------------------------------------------------
# main.cf


def parse_main(text: str) -> Facts:
    """main.cf -> {"params": {name: raw value}, "warnings": [...]}; later definitions win."""
    warnings: list[list[Any]] = []
    params: dict[str, str] = {}
    for line_no, logical in _logical_lines(text, warnings):
        name, sep, value = logical.partition("=")
        name = name.strip()
        if not sep or not _PARAM_NAME.fullmatch(name):
            warnings.append([line_no, "not a 'name = value' line"])
            continue
        params[name] = value.strip()
    return {"params": params, "warnings": warnings}


# --- tables named by network lists and client-access restrictions (meaning of files)

_TABLE_REF = re.compile(r"(?:([a-z]+):)?(/[^\s,]+)")
#: table types whose text source we can read (hash/btree/lmdb/cdb: the postmap input)
_TEXT_TABLES = frozenset({"", "hash", "btree", "lmdb", "cdb", "dbm", "sdbm", "texthash", "cidr"})
_MAX_TABLE_ENTRIES = 5000
_CLIENT_ACCESS = ("check_client_access", "check_reverse_client_hostname_access")
_GRANTS = frozenset({"ok", "relay", "permit"})


def table_ref(entry: str) -> tuple[str, str] | None:
    """(type, path) of a ``/file/name`` or ``type:/path`` list entry we can read, or None."""
    m = _TABLE_REF.fullmatch(entry.strip().lstrip("!"))
    if m is None or (m.group(1) or "") not in _TEXT_TABLES:
        return None
    return m.group(1) or "", m.group(2)


def _client_tables(eff: dict[str, str]) -> list[str]:
    """Tables of check_client_access items in the relay lists, before any relay guard."""
    out = []
    for name in _RELAY_LISTS:
        items = split_list(eff.get(name, ""))
        for i, item in enumerate(items):
            if item.lower() in _BLOCKERS:
                break
            if item.lower() in _CLIENT_ACCESS and i + 1 < len(items):
                out.append(items[i + 1])
    return out


def references_main(facts: Facts) -> list[str]:
    """Files whose content is part of main.cf's meaning: mynetworks tables and lists,
    and the client-access tables consulted before reject_unauth_destination."""
    eff = _effective(str_map(facts.get("params")))
    entries = split_list(eff.get("mynetworks", "")) + _client_tables(eff)
    refs = [r[1] for e in entries if (r := table_ref(e)) is not None]
    return sorted(set(refs))


def expand_main(facts: Facts, texts: dict[str, str | None]) -> Facts:
    """main.cf facts + {"tables": {path: [[key, value], ...] or None if unreadable}}."""
    tables: dict[str, Any] = {}
    for path, text in sorted(texts.items()):
        tables[path] = None if text is None else _table_rows(text)
    return {**facts, "tables": tables}


def _table_rows(text: str) -> list[list[str]]:
    """A network list file (one or more patterns a line) or a table source (key value)."""
    rows: list[list[str]] = []
    for line in text.splitlines():
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        parts = line.split(None, 1)
        rows.append([parts[0], parts[1] if len(parts) > 1 else ""])
        if len(rows) >= _MAX_TABLE_ENTRIES:
            break
    return rows


def _tables(facts: Facts) -> dict[str, list[list[str]] | None]:
    raw = facts.get("tables")
    if not isinstance(raw, dict):
        return {}
    return {str(k): v if isinstance(v, list) else None for k, v in raw.items()}


def network_entries(entries: list[str], tables: dict[str, list[list[str]] | None]) -> list[str]:
    """A network list with its files and tables replaced by what they hold (a plain file
    may hold several patterns per line; a table's keys are the networks it matches)."""
    out: list[str] = []
    for entry in entries:
        ref = table_ref(entry)
        rows = tables.get(ref[1]) if ref is not None else None
        if ref is None or rows is None:
            out.append(entry)
        elif ref[0] == "":
            out += [w for row in rows for w in split_list(" ".join(row))]
        else:
            out += [row[0] for row in rows if row]
    return out


def _client_grants(path: str, eff: dict[str, str], tables: dict[str, Any]) -> list[Finding]:
    """OK/RELAY/PERMIT rows of client-access tables met before the relay guard: the
    clients they match relay, so they are judged like mynetworks (by their union)."""
    out: list[Finding] = []
    for spec in _client_tables(eff):
        ref = table_ref(spec)
        rows = tables.get(ref[1]) if ref is not None else None
        if ref is None or not rows:
            continue
        keys = [r[0] for r in rows if len(r) > 1 and _first_word(r[1]) in _GRANTS]
        out += network_findings(
            path, f"table:{ref[1]}", keys, rule="MI-POSTFIX-CLIENT-ACCESS", where=spec
        )
    return out


def _first_word(value: str) -> str:
    words = value.split()
    return words[0].lower() if words else ""


def assess_main(path: str, facts: Facts) -> list[Finding]:
    """Risky main.cf state, judged on the effective (expanded, defaulted) values and on
    the content of the tables its network lists and client-access checks name."""
    eff = _effective(str_map(facts.get("params")))
    tables = _tables(facts)
    out = _mynetworks_state(path, "param:mynetworks", eff, tables)
    out += _client_grants(path, eff, tables)
    out += relay_findings(path, "main.cf", eff)
    for check in _MAIN_CHECKS:
        out += check(path, eff)
    return out


def _mynetworks_state(
    path: str, attr: str, eff: dict[str, str], tables: dict[str, Any] | None = None
) -> list[Finding]:
    if "mynetworks" not in eff:
        if eff.get("mynetworks_style", "").strip().lower() == "class":
            return [
                Finding(
                    path,
                    "MI-POSTFIX-MYNETWORKS-WIDE",
                    _H,
                    "every host in this machine's whole address class may relay "
                    "(mynetworks_style = class)",
                    "param:mynetworks_style",
                    after="class",
                    fix="mynetworks_style = host, or an explicit mynetworks list",
                )
            ]
        return []
    entries = split_list(eff["mynetworks"])
    named = [r[1] for e in entries if (r := table_ref(e)) is not None and r[1] in (tables or {})]
    where = "mynetworks" + (f" (with {', '.join(named)})" if named else "")
    return _network_findings(path, attr, where, network_entries(entries, tables or {}))


def _network_findings(path: str, attr: str, name: str, entries: list[str]) -> list[Finding]:
    return network_findings(path, attr, entries, rule="MI-POSTFIX-MYNETWORKS", where=name)


def network_findings(
    path: str, attr: str, entries: list[str], *, rule: str, where: str
) -> list[Finding]:
    """Relay networks judged by their union (shared by postfix mynetworks, exim relay
    nets and sendmail access): the Internet or a public /8 or more, however it is split,
    is an open relay (critical); a whole public network wider than /24 or /48 is high."""
    verdict = judge_networks(entries)
    granted = [e for e in entries if not e.strip().startswith("!")]
    if verdict.scope == "open":
        shown = ", ".join(granted[:6]) + (" ..." if len(granted) > 6 else "")
        text = (
            f"every client on the Internet may relay: {where} covers {verdict.text} "
            f"({shown})"
        )
        fix = f"remove the public ranges from {where}"
        return [Finding(path, f"{rule}-OPEN", _C, text, attr, after=shown, fix=fix)]
    out = []
    for entry in verdict.wide_entries:
        text = (
            f"a whole public network may relay: {where} contains {entry} "
            "(wider than /24 or /48)"
        )
        fix = f"narrow {entry} in {where} to the hosts that really submit mail"
        out.append(Finding(path, f"{rule}-WIDE", _H, text, attr, after=entry, fix=fix))
    return out


_LOCAL_ONLY = ("127.", "[::1]", "::1", "localhost", "[::ffff:127.")


def _xclient(path: str, eff: dict[str, str], attr: str = "param:") -> list[Finding]:
    out = []
    for name in ("smtpd_authorized_xclient_hosts", "smtpd_authorized_xforward_hosts"):
        wide = [e for e in split_list(eff.get(name, "")) if not e.startswith(_LOCAL_ONLY)]
        if wide:
            out.append(
                Finding(
                    path,
                    "MI-POSTFIX-XCLIENT-HOSTS",
                    _H,
                    f"hosts beyond loopback may claim any client address and so bypass "
                    f"mynetworks ({name} = {', '.join(wide[:5])})",
                    f"{attr}{name}",
                    after=_short(eff.get(name)),
                    fix=f"limit {name} to the local proxy (127.0.0.1) or empty it",
                )
            )
    return out


_PRIVILEGED = frozenset({"root", "0", "postfix"})


def _privileges(path: str, eff: dict[str, str]) -> list[Finding]:
    out = []
    privs = eff.get("default_privs", "").strip()
    if privs in _PRIVILEGED or privs == eff.get("mail_owner", "").strip():
        out.append(
            Finding(
                path,
                "MI-POSTFIX-DEFAULT-PRIVS",
                _C,
                f"program and file deliveries from root-owned aliases run as {privs} "
                "(default_privs must be an unprivileged account)",
                "param:default_privs",
                after=privs,
                fix="default_privs = nobody",
            )
        )
    for name in ("mail_owner", "setgid_group"):
        if eff.get(name, "").strip() in ("root", "0"):
            out.append(
                Finding(
                    path,
                    "MI-POSTFIX-OWNER-ROOT",
                    _C,
                    f"postfix's {name} is root: the queue and its helpers run with root rights",
                    f"param:{name}",
                    after=eff[name],
                    fix=f"{name} = {defaults({})[name]}",
                )
            )
    return out


def _mail_to(path: str, eff: dict[str, str]) -> list[Finding]:
    out = []
    for name in ("allow_mail_to_commands", "allow_mail_to_files"):
        if "include" in split_list(eff.get(name, "").lower()):
            what = "programs" if name.endswith("commands") else "files"
            out.append(
                Finding(
                    path,
                    "MI-POSTFIX-MAIL-TO-INCLUDE",
                    _M,
                    f":include: lists may now deliver to {what} ({name} has include)",
                    f"param:{name}",
                    after=eff[name],
                    fix=f"{name} = alias, forward",
                )
            )
    return out


def _sasl_tls(path: str, eff: dict[str, str]) -> list[Finding]:
    out = []
    if "noanonymous" not in split_list(eff.get("smtpd_sasl_security_options", "").lower()):
        out.append(
            Finding(
                path,
                "MI-POSTFIX-SASL-ANONYMOUS",
                _H,
                "SMTP AUTH may accept anonymous logins, which count as authenticated for "
                "relaying (smtpd_sasl_security_options lacks noanonymous)",
                "param:smtpd_sasl_security_options",
                after=eff.get("smtpd_sasl_security_options"),
                fix="smtpd_sasl_security_options = noanonymous",
            )
        )
    if _yes(eff.get("smtpd_sasl_auth_enable")) and not _yes(eff.get("smtpd_tls_auth_only")):
        out.append(
            Finding(
                path,
                "MI-POSTFIX-SASL-CLEARTEXT",
                _M,
                "SMTP AUTH is offered before STARTTLS, so passwords may cross the network "
                "in clear (smtpd_tls_auth_only = no)",
                "param:smtpd_tls_auth_only",
                after=eff.get("smtpd_tls_auth_only"),
                fix="smtpd_tls_auth_only = yes",
            )
        )
    for name, value in sorted(eff.items()):
        if name.endswith(("tls_protocols", "tls_mandatory_protocols")) and _ssl_enabled(value):
            out.append(
                Finding(
                    path,
                    "MI-POSTFIX-TLS-SSL",
                    _H,
                    f"broken SSLv2/SSLv3 is allowed for TLS ({name} = {value})",
                    f"param:{name}",
                    after=value,
                    fix=f"{name} = >=TLSv1.2",
                )
            )
    return out


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "1", "on")


def _ssl_enabled(value: str) -> bool:
    items = [i.lower() for i in split_list(value.replace(":", " "))]
    return any(i in ("sslv2", "sslv3", ">=sslv2", ">=sslv3") for i in items)


def _vrfy(path: str, eff: dict[str, str]) -> list[Finding]:
    if _yes(eff.get("disable_vrfy_command")):
        return []
    return [
        Finding(
            path,
            "MI-POSTFIX-VRFY-ENABLED",
            _L,
            "anyone can probe which addresses exist with SMTP VRFY",
            "param:disable_vrfy_command",
            after=eff.get("disable_vrfy_command"),
            fix="disable_vrfy_command = yes",
        )
    ]


_LOADER_VARS = re.compile(r"^(LD_|GCONV_PATH|PERL5LIB|PERL5OPT|PYTHONPATH|BASH_ENV|ENV=)")
# Names to recognise in a parameter value, never paths this code opens.
_UNSAFE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/home/", "/run/user")  # noqa: S108


def _environment(path: str, eff: dict[str, str]) -> list[Finding]:
    out = []
    for name in ("import_environment", "export_environment"):
        bad = [v for v in split_list(eff.get(name, "")) if _LOADER_VARS.match(v)]
        if bad:
            out.append(
                Finding(
                    path,
                    "MI-POSTFIX-ENV-LOADER",
                    _H,
                    f"loader variables reach postfix's root processes ({name} has "
                    f"{', '.join(n.split('=')[0] for n in bad)})",
                    f"param:{name}",
                    after=_short(eff.get(name)),
                    fix=f"remove {', '.join(n.split('=')[0] for n in bad)} from {name}",
                )
            )
    return out


def _directories(path: str, eff: dict[str, str]) -> list[Finding]:
    out = []
    for name in _DIRECTORY_DEFAULTS:
        value = eff.get(name, "").strip()
        if value.startswith(_UNSAFE_DIRS):
            out.append(
                Finding(
                    path,
                    "MI-POSTFIX-DIRECTORY-UNSAFE",
                    _C,
                    f"postfix runs or reads its programs from a user-writable place "
                    f"({name} = {value})",
                    f"param:{name}",
                    after=value,
                    fix=f"{name} = {_DIRECTORY_DEFAULTS[name]}",
                )
            )
    return out


def _relay_domains(path: str, eff: dict[str, str]) -> list[Finding]:
    bad = [
        d
        for d in split_list(eff.get("relay_domains", ""))
        if ":" not in d and not d.startswith(("$", "/")) and ("*" in d or "." not in d.strip("."))
    ]
    if not bad:
        return []
    return [
        Finding(
            path,
            "MI-POSTFIX-RELAY-DOMAINS-WIDE",
            _H,
            f"postfix relays to whole top-level domains or wildcards "
            f"(relay_domains has {', '.join(bad[:5])})",
            "param:relay_domains",
            after=_short(eff.get("relay_domains")),
            fix="list only the domains this host is a backup or gateway for",
        )
    ]


_MAIN_CHECKS: tuple[Callable[[str, dict[str, str]], list[Finding]], ...] = (
    _xclient,
    _privileges,
    _mail_to,
    _sasl_tls,
    _vrfy,
    _environment,
    _directories,
    _relay_domains,
)

# Which parameter change means what (diff_main): rule, severity, meaning.
_CHANGE_CLASSES: tuple[tuple[frozenset[str], str, Severity, str], ...] = (
    (
        frozenset(_DIRECTORY_DEFAULTS),
        "MI-POSTFIX-DIRECTORY-CHANGED",
        _C,
        "root now runs or reads postfix programs from another place",
    ),
    (
        frozenset(
            {
                "mailbox_command",
                "mailbox_transport",
                "fallback_transport",
                "content_filter",
                "smtpd_milters",
                "non_smtpd_milters",
                "mailbox_command_maps",
                "luser_relay",
            }
        ),
        "MI-POSTFIX-DIVERT-CHANGED",
        _H,
        "mail is now handed to a different program or filter",
    ),
    (
        frozenset({"mail_owner", "setgid_group", "default_privs"}),
        "MI-POSTFIX-OWNER-CHANGED",
        _H,
        "postfix now runs deliveries or its queue under another account",
    ),
    (
        frozenset(
            {
                "alias_maps",
                "alias_database",
                "virtual_alias_maps",
                "transport_maps",
                "smtp_sasl_password_maps",
                "smtpd_tls_key_file",
                "smtpd_tls_cert_file",
                "smtpd_tls_chain_files",
                "smtp_tls_key_file",
                "smtp_tls_chain_files",
                "smtp_tls_CApath",
                "smtp_tls_CAfile",
                "smtpd_tls_CApath",
                "smtpd_tls_CAfile",
                "sender_dependent_relayhost_maps",
            }
        ),
        "MI-POSTFIX-PATH-CHANGED",
        _H,
        "postfix now reads aliases, routes, keys or credentials from another file",
    ),
    (
        frozenset({"inet_interfaces", "inet_protocols"}),
        "MI-POSTFIX-EXPOSURE-CHANGED",
        _I,
        "postfix now listens on other interfaces",
    ),
)


def diff_main(path: str, before: Facts, after: Facts) -> list[Finding]:
    """One finding per parameter whose value (as written, defaults filled in) changed."""
    old = _with_defaults(str_map(before.get("params")))
    new = _with_defaults(str_map(after.get("params")))
    changes: list[Finding] = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) != new.get(name):
            changes.append(_param_change(path, name, old.get(name), new.get(name)))
    changes += _table_changes(path, before, after)
    return new_risks(changes, assess_main(path, before), assess_main(path, after))


def _table_changes(path: str, before: Facts, after: Facts) -> list[Finding]:
    """A changed network table is a change of the networks it feeds: judged as one."""
    old_t, new_t = _tables(before), _tables(after)
    out = []
    for name in ("mynetworks",):
        old_eff = _effective(str_map(before.get("params")))
        new_eff = _effective(str_map(after.get("params")))
        if old_eff.get(name) != new_eff.get(name):
            continue  # the parameter itself changed: _param_change judged it
        entries = split_list(new_eff.get(name, ""))
        changed = [
            r[1] for e in entries
            if (r := table_ref(e)) is not None and old_t.get(r[1]) != new_t.get(r[1])
        ]  # fmt: skip
        if changed:
            old_nets = " ".join(network_entries(entries, old_t))
            new_nets = " ".join(network_entries(entries, new_t))
            f = _mynetworks_change(path, old_nets, new_nets)
            out.append(replace(f, message=f"{f.message} (via {', '.join(changed)})",
                               fix=f"restore {', '.join(changed)}"))  # fmt: skip
    return out


def _param_change(path: str, name: str, old: str | None, new: str | None) -> Finding:
    attr, before, after = f"param:{name}", _short(old), _short(new)
    if name == "mynetworks":
        return _mynetworks_change(path, old or "", new or "")
    for names, rule, severity, meaning in _CHANGE_CLASSES:
        if name in names:
            return Finding(
                path,
                rule,
                severity,
                f"{meaning}: {name} is now '{after or ''}' (was '{before or ''}')",
                attr,
                before,
                after,
                fix=f"restore {name} = {before or ''} if this was not intended",
            )
    return Finding(
        path,
        "MI-POSTFIX-PARAM-CHANGED",
        _M,
        f"postfix parameter {name} is now '{after or ''}' (was '{before or ''}')",
        attr,
        before,
        after,
    )


_SCOPE_SEVERITY = {"any": _C, "wide": _H, "public": _H, "other": _M, "local": _M}


def _mynetworks_change(path: str, old: str, new: str) -> Finding:
    added = [e for e in split_list(new) if e not in split_list(old)]
    severity = max(
        (_SCOPE_SEVERITY[classify_network(e)] for e in added if not e.startswith("!")),
        key=lambda s: s.rank,
        default=_M,
    )
    what = f"now also trusts {', '.join(added[:5])}" if added else "lost entries"
    return Finding(
        path,
        "MI-POSTFIX-MYNETWORKS-CHANGED",
        severity,
        f"the set of clients allowed to relay changed: mynetworks {what}",
        "param:mynetworks",
        _short(old),
        _short(new),
        fix=f"restore mynetworks = {_short(old)}",
    )


# ---------------------------------------------------------------------------
# master.cf

_RELAY_LISTS = ("smtpd_relay_restrictions", "smtpd_recipient_restrictions")
_RISKY_OVERRIDES = frozenset(
    {
        *_RELAY_LISTS,
        "smtpd_client_restrictions",
        "smtpd_helo_restrictions",
        "smtpd_sender_restrictions",
        "smtpd_restriction_classes",
        "mynetworks",
        "mynetworks_style",
        "smtpd_authorized_xclient_hosts",
        "smtpd_authorized_xforward_hosts",
        "smtpd_sasl_security_options",
        "content_filter",
        "smtpd_milters",
    }
)


def parse_master(text: str) -> Facts:
    """master.cf -> {"services": {"name/type": {...}}, "warnings": [...]}."""
    warnings: list[list[Any]] = []
    services: dict[str, dict[str, Any]] = {}
    for line_no, logical in _logical_lines(text, warnings):
        fields = logical.split()
        if len(fields) < 8:
            warnings.append([line_no, "service line has fewer than 8 fields"])
            continue
        service = dict(
            zip(
                ("name", "type", "private", "unpriv", "chroot", "wakeup", "maxproc", "command"),
                fields[:8],
                strict=True,
            )
        )
        entry: dict[str, Any] = {**service, **_service_args(fields[8:])}
        services[f"{fields[0]}/{fields[1]}"] = entry
    return {"services": services, "warnings": warnings}


def _service_args(args: list[str]) -> dict[str, Any]:
    """Split command arguments into -o overrides, pipe(8) attributes and the rest."""
    overrides: dict[str, str] = {}
    attrs: dict[str, str] = {}
    other: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "-o" and i + 1 < len(args):
            i, text = _override_text(args, i + 1)
            name, _, value = text.partition("=")
            overrides[name.strip()] = value.strip()
        elif arg.startswith("-o") and "=" in arg:
            name, _, value = arg[2:].partition("=")
            overrides[name.strip()] = value.strip()
        elif arg.startswith("argv="):
            attrs["argv"] = " ".join([arg[5:], *args[i + 1 :]])
            break
        elif "=" in arg and not arg.startswith("-"):
            key, _, value = arg.partition("=")
            attrs[key] = value
        else:
            other.append(arg)
        i += 1
    return {"overrides": overrides, "attrs": attrs, "args": other}


def _override_text(args: list[str], i: int) -> tuple[int, str]:
    """The text of one ``-o`` value: ``name=value`` or a ``{ name = value }`` group."""
    if args[i] != "{":
        if i + 2 < len(args) and args[i + 1] == "=":  # -o name = value
            return i + 2, f"{args[i]}={args[i + 2]}"
        return i, args[i]
    j = i + 1
    while j < len(args) and args[j] != "}":
        j += 1
    return j, " ".join(args[i + 1 : j])


def _services(facts: Facts) -> dict[str, dict[str, Any]]:
    raw = facts.get("services")
    if not isinstance(raw, dict):
        return {}
    return {k: v for k, v in raw.items() if isinstance(k, str) and isinstance(v, dict)}


def _root_user(user: str) -> bool:
    return user.split(":")[0].strip() in ("root", "0")


def assess_master(path: str, facts: Facts) -> list[Finding]:
    """Risky master.cf state: root pipes and per-service overrides that open relaying.

    main.cf is not at hand here, so a list a service does not override is taken at
    its postfix default; :func:`assess_services` judges both files together.
    """
    stock = {"compatibility_level": "3.6"}  # what Debian's main.cf sets on install
    return _assess_services(path, stock, _services(facts), certain_without_main=False)


def assess_services(path: str, main: Facts, master: Facts) -> list[Finding]:
    """The exact per-service relay verdict: main.cf values plus each service's -o overrides."""
    params = str_map(main.get("params"))
    return _assess_services(path, params, _services(master), certain_without_main=True)


def _assess_services(
    path: str,
    params: dict[str, str],
    services: dict[str, dict[str, Any]],
    *,
    certain_without_main: bool,
) -> list[Finding]:
    out: list[Finding] = []
    for key in sorted(services):
        svc = services[key]
        attrs = str_map(svc.get("attrs"))
        if svc.get("command") == "pipe" and _root_user(attrs.get("user", "")):
            out.append(_pipe_root(path, key, attrs))
        if svc.get("command") == "pipe" and command_class(attrs.get("argv", "")):
            out.append(_pipe_shell(path, key, attrs))
        overrides = str_map(svc.get("overrides"))
        if svc.get("command") != "smtpd" or not overrides:
            continue
        eff = _effective({**params, **overrides})
        where = f"master.cf service {key}"
        if any(n in overrides for n in _RELAY_LISTS):
            certain = certain_without_main or all(n in overrides for n in _RELAY_LISTS)
            out += relay_findings(path, where, eff, certain)
        if "mynetworks" in overrides:
            out += _network_findings(
                path, f"service:{key}", f"{key} -o mynetworks", split_list(eff["mynetworks"])
            )
        out += _xclient(path, {k: eff[k] for k in overrides if k in eff})
    return out


def _pipe_shell(path: str, key: str, attrs: dict[str, str]) -> Finding:
    program = command_program(attrs.get("argv", ""))
    return Finding(
        path,
        "MI-POSTFIX-PIPE-SHELL",
        _C,
        f"pipe service {key} hands mail to {program} ({command_class(attrs.get('argv', ''))}):"
        f" a message can run any command as {attrs.get('user') or 'its user'}",
        f"service:{key}",
        after=_short(attrs.get("argv"), 60),
        fix=f"point service {key} at the delivery program itself, not a shell",
    )


def _pipe_root(path: str, key: str, attrs: dict[str, str]) -> Finding:
    return Finding(
        path,
        "MI-POSTFIX-PIPE-ROOT",
        _C,
        f"pipe service {key} would run '{_short(attrs.get('argv'), 60)}' as root "
        "(pipe(8) refuses it, but the intent is a root shell for mail)",
        f"service:{key}",
        after=attrs.get("user"),
        fix=f"set user= to a dedicated unprivileged account in service {key}",
    )


def diff_master(path: str, before: Facts, after: Facts) -> list[Finding]:
    """New, removed and changed services, graded by what they can do."""
    old, new = _services(before), _services(after)
    changes: list[Finding] = []
    for key in sorted(set(old) | set(new)):
        if key not in old:
            changes.append(_service_added(path, key, new[key]))
        elif key not in new:
            changes.append(
                Finding(
                    path,
                    "MI-POSTFIX-SERVICE-REMOVED",
                    _M,
                    f"master.cf service {key} was removed",
                    f"service:{key}",
                    before=old[key].get("command"),
                )
            )
        else:
            changes += _service_changes(path, key, old[key], new[key])
    return new_risks(changes, assess_master(path, before), assess_master(path, after))


def _service_added(path: str, key: str, svc: dict[str, Any]) -> Finding:
    attrs = str_map(svc.get("attrs"))
    if svc.get("command") == "pipe":
        return Finding(
            path,
            "MI-POSTFIX-PIPE-ADDED",
            _H,
            f"mail can now be piped into '{_short(attrs.get('argv'), 60)}' as user "
            f"{attrs.get('user')} (new pipe service {key})",
            f"service:{key}",
            after=attrs.get("argv"),
            fix=f"remove service {key} from master.cf if it was not intended",
        )
    if svc.get("type") == "inet":
        return Finding(
            path,
            "MI-POSTFIX-LISTENER-ADDED",
            _H,
            f"postfix now listens on a new network port: {svc.get('name')} runs "
            f"{svc.get('command')}",
            f"service:{key}",
            after=svc.get("command"),
            fix=f"remove service {key} from master.cf if it was not intended",
        )
    return Finding(
        path,
        "MI-POSTFIX-SERVICE-ADDED",
        _M,
        f"new master.cf service {key} runs {svc.get('command')}",
        f"service:{key}",
        after=svc.get("command"),
    )


def _service_changes(
    path: str, key: str, old: dict[str, Any], new: dict[str, Any]
) -> list[Finding]:
    out = []
    attr = f"service:{key}"
    oa, na = str_map(old.get("attrs")), str_map(new.get("attrs"))
    for name in ("argv", "user"):
        if oa.get(name) != na.get(name):
            out.append(
                Finding(
                    path,
                    "MI-POSTFIX-PIPE-CHANGED",
                    _H,
                    f"pipe service {key} now runs {name} '{_short(na.get(name), 80)}' "
                    f"(was '{_short(oa.get(name), 80)}')",
                    f"{attr}:{name}",
                    oa.get(name),
                    na.get(name),
                    fix=f"restore {name}={oa.get(name)} in service {key}",
                )
            )
    out += _override_changes(
        path, key, str_map(old.get("overrides")), str_map(new.get("overrides"))
    )
    out += _column_changes(path, key, old, new)
    return out


def _override_changes(
    path: str, key: str, old: dict[str, str], new: dict[str, str]
) -> list[Finding]:
    out = []
    for name in sorted(set(old) | set(new)):
        if old.get(name) == new.get(name):
            continue
        risky = name in _RISKY_OVERRIDES
        out.append(
            Finding(
                path,
                "MI-POSTFIX-OVERRIDE-RISKY" if risky else "MI-POSTFIX-OVERRIDE-CHANGED",
                _H if risky else _M,
                f"service {key} now overrides {name} = '{_short(new.get(name), 80) or ''}'"
                + (" (relay or client trust for that port)" if risky else ""),
                f"service:{key}:-o {name}",
                _short(old.get(name)),
                _short(new.get(name)),
                fix=f"restore -o {name}={old.get(name, '')} in service {key}"
                if name in old
                else f"remove -o {name} from service {key}",
            )
        )
    return out


def _column_changes(path: str, key: str, old: dict[str, Any], new: dict[str, Any]) -> list[Finding]:
    out = []
    for col in ("private", "unpriv", "chroot", "wakeup", "maxproc", "command", "args"):
        if old.get(col) == new.get(col):
            continue
        if col == "chroot":
            rule, sev = "MI-POSTFIX-CHROOT-CHANGED", _I
        elif col == "command" or (col == "unpriv" and new.get(col) == "n"):
            rule, sev = "MI-POSTFIX-SERVICE-PRIVILEGE", _H
        else:
            rule, sev = "MI-POSTFIX-SERVICE-CHANGED", _M
        out.append(
            Finding(
                path,
                rule,
                sev,
                f"service {key} column {col} is now {new.get(col)} (was {old.get(col)})",
                f"service:{key}:{col}",
                _short(str(old.get(col))),
                _short(str(new.get(col))),
            )
        )
    return out
