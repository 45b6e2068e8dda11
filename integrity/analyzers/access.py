"""sendmail access map and relay-domains (class R) analyzers: who may relay through us.

Split by concern, as postfix's own code is: *parse* (lines -> entries with line numbers),
*meaning* (entries -> relay grants: networks, client names, recipient domains), *rules*
(grants -> findings, for a state and for a change). Networks are judged by their union
(networks.py), the same way as postfix mynetworks and exim relay nets.

``AuthInfo:`` lines carry SMTP AUTH passwords: they are counted, never kept.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from integrity.analyzers._shape import as_list
from integrity.analyzers.networks import is_public, judge_networks, parse_network
from integrity.analyzers.postfix import new_risks
from integrity.analyzers.sendmail import _is_tld
from integrity.model import Facts, Finding, Severity

# --------------------------------------------------------------------------- parse

#: tags whose entries decide relaying or rejection (cf/README "access_db")
_TAGS = frozenset({"connect", "from", "to", "spam"})
_SECRET_TAGS = frozenset({"authinfo"})
_TAGGED = re.compile(r"([A-Za-z_]+):(.*)")
_BLOCK = ("REJECT", "DISCARD", "ERROR")


def _split(line: str) -> tuple[str, str] | None:
    """``key<whitespace>value``; a quoted key (``"To:a b"``) is not sendmail syntax."""
    parts = line.split(None, 1)
    if len(parts) != 2:
        return None
    return parts[0], parts[1].strip()


def parse_access(text: str) -> Facts:
    """access -> {"entries": [[line, tag, key, action]], "authinfo": n, "warnings": [...]}.

    ``tag`` is lower case ("" for a bare key), ``key`` lower case, ``action`` the upper-case
    first word of the value (RELAY, OK, REJECT, DISCARD, ERROR, SKIP, QUARANTINE, or
    ERROR for an SMTP reply code). Other tags (GreetPause:, ClientRate:...) are kept too.
    """
    entries: list[list[Any]] = []
    warnings: list[list[Any]] = []
    secret = 0
    for no, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        split = _split(line)
        tagged = _TAGGED.fullmatch((split or (line, ""))[0])
        tag = tagged.group(1).lower() if tagged and not tagged.group(1).isdigit() else ""
        if tag in _SECRET_TAGS:
            secret += 1  # the value is a password: nothing of the line is kept
            continue
        if split is None:
            warnings.append([no, "entry without a value"])
            continue
        key = (tagged.group(2) if tagged and tag else split[0]).lower()
        entries.append([no, tag, key, _action(split[1])])
    return {"entries": entries, "authinfo": secret, "warnings": warnings}


def _action(value: str) -> str:
    word = re.split(r"[\s:]", value, maxsplit=1)[0].upper()
    if word[:1] in ("4", "5") and word[:3].isdigit():
        return "ERROR"  # "550 go away" is an ERROR with that reply
    return word


def parse_relay_domains(text: str) -> Facts:
    """relay-domains (class R file): one domain, host or network per line."""
    entries = []
    for no, raw in enumerate(text.splitlines(), 1):
        word = raw.split("#", 1)[0].strip().lower()
        if word:
            entries.append([no, "", word.split()[0], "RELAY"])
    return {"entries": entries, "warnings": []}


# --------------------------------------------------------------------------- meaning


@dataclass(frozen=True, slots=True)
class Entry:
    line: int
    tag: str
    key: str
    action: str

    @property
    def shown(self) -> str:
        tag = f"{self.tag.capitalize()}:" if self.tag else ""
        return f"{tag}{self.key} {self.action}"


def entries_of(facts: Facts) -> list[Entry]:
    out = []
    for item in as_list(facts.get("entries")):
        if isinstance(item, list) and len(item) == 4:
            no, tag, key, action = item
            out.append(Entry(int(no) if isinstance(no, int) else 0, str(tag), str(key),
                             str(action)))  # fmt: skip
    return out


def key_kind(key: str) -> str:
    """What an access key names: net, any, tld, domain, address (user@...), or other."""
    if key in ("", ".", "*", "@"):
        return "any"
    if "@" in key:
        local, _, domain = key.partition("@")
        return "any" if not domain else "address" if local else key_kind(domain)
    if key.startswith("ipv6:") or (parse_network(key) is not None and not key.isalpha()):
        return "net"
    label = key.strip(".")
    if "." not in label:
        return "tld" if label != "localhost" and _is_tld(label) else "domain"
    return "domain"


def relay_grants(facts: Facts) -> list[Entry]:
    """Entries that let mail through as a relay: RELAY on a client, recipient or sender."""
    return [e for e in entries_of(facts) if e.action == "RELAY" and e.tag in ("", *_TAGS)]


# --------------------------------------------------------------------------- rules

_C, _H, _L = Severity.CRITICAL, Severity.HIGH, Severity.LOW


def _open(path: str, what: str, entries: list[Entry], attr: str, name: str) -> Finding:
    shown = ", ".join(e.shown for e in entries[:5])
    return Finding(
        path,
        "MI-SENDMAIL-ACCESS-OPEN-RELAY",
        _C,
        f"{name} makes this host an open relay: {what} ({shown})",
        attr,
        after=shown,
        fix=f"remove the RELAY grant from {path} and rebuild its map",
    )


def assess_access(path: str, facts: Facts, name: str = "the access map") -> list[Finding]:
    """Open-relay grants in force: public networks (by their union), whole TLDs, any domain."""
    grants = relay_grants(facts)
    out: list[Finding] = []
    nets = [e for e in grants if e.tag in ("", "connect", "to") and key_kind(e.key) == "net"]
    verdict = judge_networks(e.key for e in nets)
    if verdict.scope == "open":
        public = [e for e in nets if (n := parse_network(e.key)) is not None and is_public(n)]
        out.append(_open(path, f"RELAY for {verdict.text}", public, "relay:networks", name))
    elif verdict.scope == "wide":
        wide = [e for e in nets if e.key in verdict.wide_entries]
        out.append(
            Finding(
                path,
                "MI-SENDMAIL-ACCESS-RELAY-WIDE",
                _H,
                f"a whole public network may relay: {', '.join(e.shown for e in wide[:5])} "
                "(wider than /24 or /48)",
                "relay:networks",
                after=", ".join(e.key for e in wide),
                fix="narrow the RELAY networks to the hosts that really submit mail",
            )
        )
    broad = [e for e in grants if key_kind(e.key) in ("tld", "any")]
    if broad:
        what = "RELAY for a whole top-level domain or any domain"
        out.append(_open(path, what, broad, "relay:domains", name))
    return out


def diff_access(path: str, before: Facts, after: Facts, name: str = "access") -> list[Finding]:
    """New RELAY grants are high (open ones critical); removed REJECTs are low."""
    old, new = entries_of(before), entries_of(after)
    old_keys = {(e.tag, e.key, e.action) for e in old}
    new_keys = {(e.tag, e.key, e.action) for e in new}
    changes: list[Finding] = []
    for e in relay_grants(after):
        if (e.tag, e.key, e.action) not in old_keys:
            changes.append(
                Finding(
                    path,
                    "MI-SENDMAIL-ACCESS-RELAY-ADDED",
                    _H,
                    f"new relay grant in {name} (line {e.line}): {e.shown}",
                    f"relay:{e.tag or 'any'}:{e.key}",
                    after=e.shown,
                    fix=f"remove line {e.line} of {path} if not intended, then rebuild the map",
                )
            )
    for e in old:
        if e.action in _BLOCK and (e.tag, e.key, e.action) not in new_keys:
            changes.append(
                Finding(
                    path,
                    "MI-SENDMAIL-ACCESS-REJECT-REMOVED",
                    _L,
                    f"{name} no longer rejects {e.tag + ':' if e.tag else ''}{e.key}",
                    f"block:{e.tag or 'any'}:{e.key}",
                    before=e.shown,
                )
            )
    return new_risks(changes, assess_access(path, before, name), assess_access(path, after, name))


def assess_relay_domains(path: str, facts: Facts) -> list[Finding]:
    """class R: the same grants as access RELAY entries on bare keys."""
    return assess_access(path, facts, "relay-domains (class R)")


def diff_relay_domains(path: str, before: Facts, after: Facts) -> list[Finding]:
    return diff_access(path, before, after, "relay-domains")
