"""sendmail access map and relay-domains: what a relay grant means (issue 10 class 3)."""

from __future__ import annotations

import pytest

from integrity.analyzers import access as ac
from integrity.model import Severity

PATH = "/etc/mail/access"
STOCK = """\
# By default we allow relaying from localhost...
Connect:localhost.localdomain		RELAY
Connect:localhost			RELAY
Connect:127.0.0.1			RELAY
From:spammer@example.net		REJECT
cyberspammer.com			550 We don't accept mail from spammers
"""


def _rules(findings):
    return {(f.rule, f.severity) for f in findings}


def test_stock_access_is_not_a_finding() -> None:
    """The stock localhost RELAY lines and REJECTs raise nothing."""
    assert ac.assess_access(PATH, ac.parse_access(STOCK)) == []


@pytest.mark.parametrize(
    "line",
    [
        "Connect:0.0.0.0/0 RELAY",
        "Connect:0.0.0.0/1 RELAY\nConnect:128.0.0.0/1 RELAY",
        "\n".join(f"{n} RELAY" for n in range(1, 20)),
        "8 RELAY",
        "Connect:IPv6:2001 RELAY",
        "To:com RELAY",
        "de RELAY",
        "To:. RELAY",
        "From:org RELAY",
    ],
)
def test_open_relay_grants_are_critical(line: str) -> None:
    """RELAY to public space (by the union of entries), a whole TLD or any domain: critical."""
    facts = ac.parse_access(STOCK + line + "\n")
    assert ("MI-SENDMAIL-ACCESS-OPEN-RELAY", Severity.CRITICAL) in _rules(
        ac.assess_access(PATH, facts)
    )


def test_wide_public_network_is_high() -> None:
    """A public /16 may relay: high, not critical."""
    facts = ac.parse_access(STOCK + "Connect:93.184 RELAY\n")
    assert _rules(ac.assess_access(PATH, facts)) == {
        ("MI-SENDMAIL-ACCESS-RELAY-WIDE", Severity.HIGH)
    }


@pytest.mark.parametrize(
    ("line", "rule", "severity"),
    [
        ("To:partner.example RELAY", "MI-SENDMAIL-ACCESS-RELAY-ADDED", Severity.HIGH),
        ("Connect:192.0.2.7 RELAY", "MI-SENDMAIL-ACCESS-RELAY-ADDED", Severity.HIGH),
        ("Connect:0.0.0.0/1 RELAY\n128 RELAY", "MI-SENDMAIL-ACCESS-OPEN-RELAY", Severity.CRITICAL),
    ],
)
def test_new_grants(line: str, rule: str, severity: Severity) -> None:
    """A new RELAY grant is high; one that opens the host is critical."""
    before = ac.parse_access(STOCK)
    after = ac.parse_access(STOCK + line + "\n")
    assert (rule, severity) in _rules(ac.diff_access(PATH, before, after))


def test_removed_reject_is_low() -> None:
    """Dropping a REJECT loosens the filter a little: low, naming the key."""
    before = ac.parse_access(STOCK)
    after = ac.parse_access(STOCK.replace("From:spammer@example.net\t\tREJECT\n", ""))
    found = ac.diff_access(PATH, before, after)
    assert [(f.rule, f.severity) for f in found] == [
        ("MI-SENDMAIL-ACCESS-REJECT-REMOVED", Severity.LOW)
    ]
    assert "spammer@example.net" in found[0].message


def test_authinfo_lines_never_reach_facts() -> None:
    """AuthInfo: values are passwords: counted, never kept."""
    facts = ac.parse_access(STOCK + 'AuthInfo:smtp.example.net "U:u" "P:hunter2"\n')
    assert facts["authinfo"] == 1
    assert "hunter2" not in repr(facts) and "smtp.example.net" not in repr(facts)


def test_relay_domains_tld_is_open() -> None:
    """relay-domains (class R) holding a TLD or a public /8 is an open relay."""
    facts = ac.parse_relay_domains("example.org\ncom\n")
    assert ("MI-SENDMAIL-ACCESS-OPEN-RELAY", Severity.CRITICAL) in _rules(
        ac.assess_relay_domains("/etc/mail/relay-domains", facts)
    )
    facts = ac.parse_relay_domains("example.org\n# ours\n")
    assert ac.assess_relay_domains("/etc/mail/relay-domains", facts) == []

