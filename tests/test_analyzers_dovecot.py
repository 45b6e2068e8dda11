"""Tests for the dovecot analyzer on Debian 12's stock dovecot-core configuration."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.analyzers import dovecot as dc
from integrity.model import Finding, Severity

DATA = Path(__file__).parent / "data" / "dovecot"
STOCK = sorted(p for p in DATA.rglob("*") if p.is_file())
AUTH = (DATA / "conf.d" / "10-auth.conf").read_text()
SSL = (DATA / "conf.d" / "10-ssl.conf").read_text()
LOGGING = (DATA / "conf.d" / "10-logging.conf").read_text()
MAIL = (DATA / "conf.d" / "10-mail.conf").read_text()
MASTER = (DATA / "conf.d" / "10-master.conf").read_text()
MAINCONF = (DATA / "dovecot.conf").read_text()
PATH = "/etc/dovecot/conf.d/10-auth.conf"
SEVERE = (Severity.HIGH, Severity.CRITICAL)


def _pairs(findings: list[Finding]) -> set[tuple[str, Severity]]:
    return {(f.rule, f.severity) for f in findings}


@pytest.mark.parametrize("path", STOCK, ids=lambda p: p.name)
def test_stock_files_clean(path: Path) -> None:
    """Every stock dovecot file parses without warnings and has no finding at all."""
    facts = dc.parse(path.read_text())
    assert facts["warnings"] == []
    assert json.loads(json.dumps(facts)) == facts
    assert dc.assess(str(path), facts) == []


def test_stock_structure() -> None:
    """Settings, sections and !include lines land where the checks look for them."""
    assert dc.parse(AUTH)["includes"] == ["!include auth-system.conf.ext"]
    ssl = dc.parse(SSL)["settings"]
    assert ssl["ssl"] == "yes"
    assert ssl["ssl_key"] == "</etc/dovecot/private/dovecot.key"
    master = dc.parse(MASTER)["settings"]
    assert "service auth/unix_listener auth-userdb/" in master


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = 1\n", {"a": "1"}),
        ("a = 1 # trailing comment\n", {"a": "1"}),
        ('a = "x # y"\n', {"a": "x # y"}),
        ("a = x \\\n  y\n", {"a": "x y"}),
        ("passdb {\n driver = pam\n}\npassdb {\n driver = static\n}\n", None),
        ("service auth {\n unix_listener auth-master {\n  mode = 0600\n }\n}\n", None),
        ("plugin { a = b }\n", {"plugin/": "", "plugin/a": "b"}),
    ],
)
def test_parse_edge_cases(text: str, expected: dict[str, str] | None) -> None:
    """Comments, quotes, continuations, repeated and nested sections all parse."""
    facts = dc.parse(text)
    assert facts["warnings"] == []
    if expected is not None:
        assert facts["settings"] == expected
    elif "static" in text:
        assert facts["settings"]["passdb#2/driver"] == "static"
    else:
        assert facts["settings"]["service auth/unix_listener auth-master/mode"] == "0600"


@pytest.mark.parametrize(
    "text",
    ["}\n", "passdb {\n", "what is this\n"],
)
def test_parse_warns(text: str) -> None:
    """Unbalanced braces and unreadable lines are warnings, not exceptions."""
    assert dc.parse(text)["warnings"]


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("connect = host=db dbname=mail user=dovecot password=S3cretPw\n", "S3cretPw"),
        ("dnpass = S3cretPw\n", "S3cretPw"),
        ("uris = ldap://admin:S3cretPw@ldap.example.org\n", "S3cretPw"),
        ("ssl_key_password = S3cretPw\n", "S3cretPw"),
        ('passdb {\n driver = static\n args = password="S3cretPw"\n}\n', "S3cretPw"),
        ("ssl_key = -----BEGIN PRIVATE KEY-----S3cretPw\n", "S3cretPw"),
    ],
)
def test_passwords_never_in_facts(text: str, secret: str) -> None:
    """Password values are replaced by <set> and appear in no fact or finding."""
    facts = dc.parse(text)
    assert secret not in json.dumps(facts)
    assert "<set>" in json.dumps(facts)
    for finding in dc.assess("/p", facts) + dc.diff("/p", dc.parse(""), facts):
        assert secret not in json.dumps(finding.to_json())


RISKY = [
    (AUTH, "#disable_plaintext_auth = yes", "disable_plaintext_auth = no",
     "MI-DOVECOT-PLAINTEXT-AUTH", Severity.HIGH),
    (SSL, "ssl = yes", "ssl = no", "MI-DOVECOT-SSL-OFF", Severity.HIGH),
    (AUTH, "auth_mechanisms = plain", "auth_mechanisms = plain anonymous",
     "MI-DOVECOT-AUTH-ANONYMOUS", Severity.HIGH),
    (LOGGING, "#auth_verbose_passwords = no", "auth_verbose_passwords = plain",
     "MI-DOVECOT-PASSWORDS-LOGGED", Severity.HIGH),
    (LOGGING, "#auth_debug_passwords = no", "auth_debug_passwords = yes",
     "MI-DOVECOT-PASSWORDS-LOGGED", Severity.HIGH),
    (LOGGING, "#auth_debug = no", "auth_debug = yes", "MI-DOVECOT-AUTH-DEBUG", Severity.MEDIUM),
    (AUTH, "#!include auth-static.conf.ext", "!include auth-static.conf.ext",
     "MI-DOVECOT-AUTH-STATIC", Severity.CRITICAL),
    (AUTH, "#!include auth-master.conf.ext", "!include auth-master.conf.ext",
     "MI-DOVECOT-AUTH-MASTER", Severity.HIGH),
    (AUTH, "!include auth-system.conf.ext",
     "!include auth-system.conf.ext\npassdb {\n  driver = pam\n  args = nopassword=y\n}",
     "MI-DOVECOT-AUTH-STATIC", Severity.CRITICAL),
    (MAIL, "#first_valid_uid = 500", "first_valid_uid = 0", "MI-DOVECOT-ROOT-UID", Severity.HIGH),
    (MAINCONF, "#login_trusted_networks =", "login_trusted_networks = 0.0.0.0/0 10.0.0.0/8 #",
     "MI-DOVECOT-TRUSTED-NETWORKS", Severity.HIGH),
    (SSL, "#ssl_min_protocol = TLSv1.2", "ssl_min_protocol = TLSv1", "MI-DOVECOT-TLS-OLD",
     Severity.MEDIUM),
    (MASTER, "  #unix_listener /var/spool/postfix/private/auth {",
     "  unix_listener auth-client {\n    mode = 0666\n  }\n  #unix_listener x {",
     "MI-DOVECOT-LISTENER-MODE", Severity.MEDIUM),
]  # fmt: skip


@pytest.mark.parametrize(
    ("stock", "old", "new", "rule", "severity"),
    RISKY,
    ids=[f"{i}-{r[3]}" for i, r in enumerate(RISKY)],
)
def test_risky_edit(stock: str, old: str, new: str, rule: str, severity: Severity) -> None:
    """Each risky edit of a stock file is caught by assess and, once, by diff."""
    assert old in stock
    edited = dc.parse(stock.replace(old, new, 1))
    assert (rule, severity) in _pairs(dc.assess(PATH, edited))
    changes = dc.diff(PATH, dc.parse(stock), edited)
    assert (rule, severity) in _pairs(changes)
    assert all(f.fix for f in changes if f.severity in SEVERE)


def test_plaintext_auth_with_required_ssl_is_fine() -> None:
    """Plaintext auth is acceptable when the same file makes TLS mandatory."""
    facts = dc.parse("disable_plaintext_auth = no\nssl = required\n")
    assert dc.assess(PATH, facts) == []


@pytest.mark.parametrize(
    ("stock", "old", "new", "rule", "severity"),
    [
        (SSL, "</etc/dovecot/private/dovecot.key", "</tmp/k.pem", "MI-DOVECOT-KEY-PATH-CHANGED",
         Severity.HIGH),
        (AUTH, "!include auth-system.conf.ext", "!include auth-sql.conf.ext",
         "MI-DOVECOT-INCLUDE-CHANGED", Severity.MEDIUM),
        (MAIL, "mail_privileged_group = mail", "mail_privileged_group = users",
         "MI-DOVECOT-SETTING-CHANGED", Severity.MEDIUM),
        (AUTH, "auth_mechanisms = plain", "auth_mechanisms = plain\nprotocols = imap pop3",
         "MI-DOVECOT-PROTOCOLS-CHANGED", Severity.INFO),
    ],
)  # fmt: skip
def test_change_meaning(stock: str, old: str, new: str, rule: str, severity: Severity) -> None:
    """Plain changes are graded by what the setting controls."""
    assert old in stock
    changes = dc.diff(PATH, dc.parse(stock), dc.parse(stock.replace(old, new, 1)))
    assert _pairs(changes) == {(rule, severity)}


def test_master_passdb_added_in_diff_only() -> None:
    """A master passdb is HIGH when it appears, but the stock .ext file alone is not flagged."""
    text = "passdb {\n  driver = passwd-file\n  master = yes\n}\n"
    assert dc.assess(PATH, dc.parse(text)) == []
    changes = dc.diff(PATH, dc.parse("passdb {\n  driver = passwd-file\n}\n"), dc.parse(text))
    assert ("MI-DOVECOT-AUTH-MASTER", Severity.HIGH) in _pairs(changes)


def test_comment_only_edit_diff_empty() -> None:
    """A comment-only edit has no meaningful difference."""
    assert dc.diff(PATH, dc.parse(AUTH), dc.parse(AUTH + "\n# note\n")) == []


junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)
lines = st.lists(
    st.sampled_from(["passdb {", "}", "a = b", "!include x", "#", "\\", '"', "x {"])
    | st.text(max_size=30),
    max_size=12,
).map("\n".join)


@settings(max_examples=80, deadline=None)
@given(text=lines | st.text())
def test_parse_never_raises(text: str) -> None:
    """Any text parses into JSON-able facts, and assess/diff of them return lists."""
    facts = dc.parse(text)
    json.dumps(facts)
    assert isinstance(dc.assess("/p", facts), list)
    assert isinstance(dc.diff("/p", dc.parse(AUTH), facts), list)


@settings(max_examples=60, deadline=None)
@given(facts=st.dictionaries(st.sampled_from(["settings", "includes", "x"]), junk))
def test_survives_junk_facts(facts: dict) -> None:
    """Corrupt stored facts never make diff or assess raise."""
    assert isinstance(dc.diff("/p", facts, {}), list)
    assert isinstance(dc.assess("/p", facts), list)
