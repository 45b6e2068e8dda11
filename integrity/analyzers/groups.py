"""/etc/group: who belongs to the groups that open mail queues, secrets and set-gid powers.

mta-facts §1: a member of smmsp, smmta, postdrop, Debian-exim, mail, ssl-cert or sasl can
read queues or secrets, or use the MTA's set-gid programs; a member of Debian-exim is an
exim admin. Only these groups are kept in the facts.
"""

from __future__ import annotations

from typing import Any

from integrity.analyzers._shape import as_dict, as_list
from integrity.model import Facts, Finding, Severity

FACTS_ONLY = True  # /etc/group changes for every new user: only the mail groups matter

#: group -> what membership gives
MAIL_GROUPS = {
    "smmsp": "sendmail's MSP group: reads the client queue",
    "smmta": "sendmail's MTA group: reads /etc/mail and the queue",
    "postdrop": "postfix's set-gid group: writes the maildrop queue",
    "postfix": "postfix's own group",
    "Debian-exim": "exim admin: reads the spool, passwd.client and the TLS key",
    "mail": "the mail spool group: reads and writes mailboxes",
    "ssl-cert": "reads the TLS private keys in /etc/ssl/private",
    "sasl": "reads the SASL password database",
    "dovecot": "reads dovecot's password and SQL/LDAP configuration",
}
#: groups with members by design on Debian (the MTA's own accounts)
EXPECTED = {
    "smmsp": {"smmta", "smmsp"},
    "smmta": {"smmta"},
    "sasl": {"smmta", "smmsp", "postfix"},
    "ssl-cert": {"postfix", "Debian-exim", "dovecot"},
    "mail": {"Debian-exim"},
}


def parse(text: str) -> Facts:
    groups: dict[str, list[str]] = {}
    warnings: list[list[Any]] = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.startswith("#"):
            continue
        parts = line.split(":")
        if len(parts) != 4:
            warnings.append([number, "not a name:password:gid:members line"])
            continue
        if parts[0] in MAIL_GROUPS:
            groups[parts[0]] = sorted(m for m in parts[3].split(",") if m.strip())
    return {"groups": groups, "warnings": warnings}


def _members(facts: Facts) -> dict[str, set[str]]:
    return {g: {str(m) for m in as_list(v)} for g, v in as_dict(facts.get("groups")).items()}


def _finding(path: str, group: str, added: set[str], sev: Severity, rule: str) -> Finding:
    who = ", ".join(sorted(added))
    return Finding(
        path, rule, sev,
        f"group {group} gained member(s) {who}: {MAIL_GROUPS.get(group, 'mail group')}",
        f"group:{group}", None, who, fix=f"gpasswd -d USER {group} for each of {who}",
    )  # fmt: skip


def diff(path: str, before: Facts, after: Facts) -> list[Finding]:
    old, new = _members(before), _members(after)
    out = []
    for group in sorted(new):
        added = new[group] - old.get(group, set())
        if added:
            out.append(_finding(path, group, added, Severity.HIGH, "MI-GROUP-MEMBER-ADDED"))
    return out


def assess(path: str, facts: Facts) -> list[Finding]:
    out = []
    for group, members in sorted(_members(facts).items()):
        extra = members - EXPECTED.get(group, set())
        if extra:
            sev = Severity.HIGH if group == "Debian-exim" else Severity.MEDIUM
            out.append(_finding(path, group, extra, sev, "MI-GROUP-MEMBERSHIP"))
    return out
