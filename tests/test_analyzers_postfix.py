"""Tests for the postfix main.cf and master.cf analyzers, on Debian 12's stock files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.analyzers import postfix as pf
from integrity.model import Finding, Severity

DATA = Path(__file__).parent / "data" / "postfix"
MAIN = (DATA / "main.cf").read_text()  # what debconf writes for "Internet Site"
MASTER = (DATA / "master.cf").read_text()  # /usr/share/postfix/master.cf.dist
MAIN_PATH, MASTER_PATH = "/etc/postfix/main.cf", "/etc/postfix/master.cf"
SEVERE = (Severity.HIGH, Severity.CRITICAL)


def _severe(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in SEVERE]


def _pairs(findings: list[Finding]) -> set[tuple[str, Severity]]:
    return {(f.rule, f.severity) for f in findings}


def _main_diff(edited: str) -> list[Finding]:
    return pf.diff_main(MAIN_PATH, pf.parse_main(MAIN), pf.parse_main(edited))


# --- stock files -------------------------------------------------------------


def test_stock_main_parses_without_warnings() -> None:
    """Debian's main.cf parses cleanly into JSON-able facts with the debconf values."""
    facts = pf.parse_main(MAIN)
    assert facts["warnings"] == []
    assert facts["params"]["mynetworks"] == "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128"
    assert json.loads(json.dumps(facts)) == facts


def test_stock_main_has_no_severe_finding() -> None:
    """A stock Debian main.cf produces no HIGH or CRITICAL finding, only the VRFY note."""
    findings = pf.assess_main(MAIN_PATH, pf.parse_main(MAIN))
    assert _severe(findings) == []
    assert _pairs(findings) == {("MI-POSTFIX-VRFY-ENABLED", Severity.LOW)}


def test_stock_master_parses_all_services() -> None:
    """master.cf.dist yields its 31 services, with pipe user= and argv= split out."""
    facts = pf.parse_master(MASTER)
    assert facts["warnings"] == []
    assert len(facts["services"]) == 31
    maildrop = facts["services"]["maildrop/unix"]
    assert maildrop["attrs"] == {
        "flags": "DRXhu",
        "user": "vmail",
        "argv": "/usr/bin/maildrop -d ${recipient}",
    }
    assert facts["services"]["relay/unix"]["overrides"] == {"syslog_name": "postfix/$service_name"}
    assert json.loads(json.dumps(facts)) == facts


def test_stock_master_assess_is_clean() -> None:
    """A stock master.cf has no finding at all."""
    assert pf.assess_master(MASTER_PATH, pf.parse_master(MASTER)) == []


def test_unchanged_files_diff_empty() -> None:
    """Diffing a file against itself, or against a comment-only edit, finds nothing."""
    assert _main_diff(MAIN) == []
    assert _main_diff(MAIN + "\n# a new comment\n") == []
    master = pf.parse_master(MASTER)
    assert pf.diff_master(MASTER_PATH, master, pf.parse_master(MASTER + "#x\n")) == []


# --- parser edge cases -------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "params", "warned"),
    [
        ("a = 1\n", {"a": "1"}, 0),
        ("a = 1\na = 2\n", {"a": "2"}, 0),  # later definitions win
        ("a = x,\n    y\n", {"a": "x, y"}, 0),  # continuation line
        ("a = x\n# comment\n  y\n", {"a": "x y"}, 0),  # comments do not break it
        ("a = x # not a comment\n", {"a": "x # not a comment"}, 0),
        ("  a = 1\n", {}, 1),  # continuation with nothing before it
        ("just words\n", {}, 1),
        ("a =\n", {"a": ""}, 0),
        ("smtp_tls_CApath=/etc/ssl/certs\n", {"smtp_tls_CApath": "/etc/ssl/certs"}, 0),
    ],
)
def test_parse_main_edge_cases(text: str, params: dict[str, str], warned: int) -> None:
    """main.cf parsing follows postfix's line rules and warns on what it cannot read."""
    facts = pf.parse_main(text)
    assert facts["params"] == params
    assert len(facts["warnings"]) == warned


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("$a", "1"),
        ("${a}", "1"),
        ("$(a)", "1"),
        ("x $a y", "x 1 y"),
        ("${a?yes}", "yes"),
        ("${empty?yes}", ""),
        ("${empty:fallback}", "fallback"),
        ("${a:fallback}", ""),
        ("$unknown", "$unknown"),
        ("$loop", "$loop"),  # self-reference stops
        ("$b", "1 1"),
    ],
)
def test_expand(value: str, expected: str) -> None:
    """$name expansion handles every postfix form, unknown names and loops."""
    lookup = {"a": "1", "b": "$a $a", "empty": "", "loop": "$loop"}
    result = pf.expand(value, lookup)
    assert result.endswith(expected) if value == "$loop" else result == expected


@pytest.mark.parametrize(
    ("entry", "scope"),
    [
        ("0.0.0.0/0", "any"),
        ("0/0", "any"),
        ("[::]/0", "any"),
        ("::/0", "any"),
        ("*", "any"),
        ("8.0.0.0/8", "wide"),
        ("[2a00::]/32", "wide"),
        ("[::ffff:0.0.0.0]/96", "any"),
        ("[::ffff:127.0.0.0]/104", "local"),
        ("93.184.216.0/24", "public"),
        ("93.184.216.34", "public"),
        ("10.0.0.0/8", "local"),
        ("127.0.0.0/8", "local"),
        ("[::1]/128", "local"),
        ("[fe80::]/64", "local"),
        ("hash:/etc/postfix/network_table", "other"),
        ("mail.example.org", "other"),
    ],
)
def test_classify_network(entry: str, scope: str) -> None:
    """Client network entries are graded by how much of the Internet they cover."""
    assert pf.classify_network(entry) == scope


# --- risky edits to the stock main.cf ---------------------------------------

RISKY_MAIN = [
    ("mynetworks = 0.0.0.0/0", "MI-POSTFIX-MYNETWORKS-OPEN", Severity.CRITICAL),
    ("mynetworks = 127.0.0.0/8 [::]/0", "MI-POSTFIX-MYNETWORKS-OPEN", Severity.CRITICAL),
    # issue 10 class 5: a public /8 is as open as 0/0 (was WIDE/high); /16 stays wide
    ("mynetworks = 127.0.0.0/8, 8.0.0.0/8", "MI-POSTFIX-MYNETWORKS-OPEN", Severity.CRITICAL),
    ("mynetworks = 127.0.0.0/8, 8.8.0.0/16", "MI-POSTFIX-MYNETWORKS-WIDE", Severity.HIGH),
    ("mynetworks = 0.0.0.0/1 128.0.0.0/1", "MI-POSTFIX-MYNETWORKS-OPEN", Severity.CRITICAL),
    ("mynetworks = [::]/1 [8000::]/1", "MI-POSTFIX-MYNETWORKS-OPEN", Severity.CRITICAL),
    (
        "smtpd_relay_restrictions = permit_mynetworks, permit, reject_unauth_destination",
        "MI-POSTFIX-OPEN-RELAY",
        Severity.CRITICAL,
    ),
    (
        "smtpd_restriction_classes = everyone\neveryone = permit\n"
        "smtpd_relay_restrictions = everyone, reject_unauth_destination",
        "MI-POSTFIX-OPEN-RELAY",
        Severity.CRITICAL,
    ),
    (
        "smtpd_relay_restrictions = check_client_access static:OK, defer_unauth_destination",
        "MI-POSTFIX-OPEN-RELAY",
        Severity.CRITICAL,
    ),
    (
        "smtpd_relay_restrictions = permit_mynetworks, permit_tls_all_clientcerts, "
        "reject_unauth_destination",
        "MI-POSTFIX-RELAY-TLS-ALL-CERTS",
        Severity.HIGH,
    ),
    (
        "smtpd_relay_restrictions = permit_mynetworks permit_mx_backup reject_unauth_destination",
        "MI-POSTFIX-RELAY-MX-BACKUP",
        Severity.MEDIUM,
    ),
    ("smtpd_authorized_xclient_hosts = 192.0.2.0/24", "MI-POSTFIX-XCLIENT-HOSTS", Severity.HIGH),
    ("default_privs = root", "MI-POSTFIX-DEFAULT-PRIVS", Severity.CRITICAL),
    ("default_privs = postfix", "MI-POSTFIX-DEFAULT-PRIVS", Severity.CRITICAL),
    ("mail_owner = root", "MI-POSTFIX-OWNER-ROOT", Severity.CRITICAL),
    (
        "allow_mail_to_commands = alias, forward, include",
        "MI-POSTFIX-MAIL-TO-INCLUDE",
        Severity.MEDIUM,
    ),
    ("smtpd_sasl_security_options = noplaintext", "MI-POSTFIX-SASL-ANONYMOUS", Severity.HIGH),
    ("smtpd_tls_protocols = SSLv3, TLSv1.2", "MI-POSTFIX-TLS-SSL", Severity.HIGH),
    (
        "smtpd_sasl_auth_enable = yes",
        "MI-POSTFIX-SASL-CLEARTEXT",
        Severity.MEDIUM,
    ),
    (
        "import_environment = MAIL_CONFIG LD_PRELOAD=/srv/x.so",
        "MI-POSTFIX-ENV-LOADER",
        Severity.HIGH,
    ),
    ("daemon_directory = /tmp/pf", "MI-POSTFIX-DIRECTORY-UNSAFE", Severity.CRITICAL),
    ("relay_domains = com", "MI-POSTFIX-RELAY-DOMAINS-WIDE", Severity.HIGH),
]


@pytest.mark.parametrize(("edit", "rule", "severity"), RISKY_MAIN)
def test_risky_main_edit_assess(edit: str, rule: str, severity: Severity) -> None:
    """Each risky main.cf edit is caught by assess with the documented severity."""
    findings = pf.assess_main(MAIN_PATH, pf.parse_main(MAIN + edit + "\n"))
    assert (rule, severity) in _pairs(findings)


@pytest.mark.parametrize(("edit", "rule", "severity"), RISKY_MAIN)
def test_risky_main_edit_diff(edit: str, rule: str, severity: Severity) -> None:
    """The same edit, seen as a change from stock, yields that rule once per attribute."""
    findings = _main_diff(MAIN + edit + "\n")
    assert (rule, severity) in _pairs(findings)
    attrs = [f.attribute for f in findings if f.rule == rule]
    assert len(attrs) == len(set(attrs)) or rule.endswith("MYNETWORKS-OPEN")


def test_mynetworks_replaced_in_place() -> None:
    """Rewriting the stock mynetworks line to 0/0 yields a CRITICAL and nothing else."""
    edited = MAIN.replace("mynetworks = 127.0.0.0/8", "mynetworks = 0/0 127.0.0.0/8")
    findings = _main_diff(edited)
    assert [(f.rule, f.severity, f.attribute) for f in findings] == [
        ("MI-POSTFIX-MYNETWORKS-OPEN", Severity.CRITICAL, "param:mynetworks")
    ]
    assert findings[0].fix


@pytest.mark.parametrize(
    ("edit", "rule", "severity"),
    [
        (
            "daemon_directory = /usr/local/libexec/postfix",
            "MI-POSTFIX-DIRECTORY-CHANGED",
            Severity.CRITICAL,
        ),
        (
            "content_filter = smtp-amavis:[127.0.0.1]:10024",
            "MI-POSTFIX-DIVERT-CHANGED",
            Severity.HIGH,
        ),
        ("smtpd_milters = inet:localhost:8891", "MI-POSTFIX-DIVERT-CHANGED", Severity.HIGH),
        ("mailbox_command = /usr/bin/procmail", "MI-POSTFIX-DIVERT-CHANGED", Severity.HIGH),
        ("mail_owner = mailer", "MI-POSTFIX-OWNER-CHANGED", Severity.HIGH),
        ("setgid_group = users", "MI-POSTFIX-OWNER-CHANGED", Severity.HIGH),
        ("alias_maps = hash:/tmp/aliases", "MI-POSTFIX-PATH-CHANGED", Severity.HIGH),
        (
            "mynetworks = 127.0.0.0/8 [::1]/128 93.184.216.34",
            "MI-POSTFIX-MYNETWORKS-CHANGED",
            Severity.HIGH,
        ),
        (
            "mynetworks = 127.0.0.0/8 [::1]/128 10.1.0.0/16",
            "MI-POSTFIX-MYNETWORKS-CHANGED",
            Severity.MEDIUM,
        ),
        ("inet_interfaces = loopback-only", "MI-POSTFIX-EXPOSURE-CHANGED", Severity.INFO),
        ("biff = yes", "MI-POSTFIX-PARAM-CHANGED", Severity.MEDIUM),
        ("disable_vrfy_command = yes", "MI-POSTFIX-PARAM-CHANGED", Severity.MEDIUM),
    ],
)
def test_main_change_meaning(edit: str, rule: str, severity: Severity) -> None:
    """A changed parameter is graded by what it controls, with before and after values."""
    findings = _main_diff(MAIN + edit + "\n")
    assert _pairs(findings) == {(rule, severity)}
    name = edit.split("=", 1)[0].strip()
    assert findings[0].attribute == f"param:{name}"
    assert findings[0].after == edit.split("=", 1)[1].strip()


def test_mynetworks_style_class() -> None:
    """Without a mynetworks list, mynetworks_style = class trusts a whole class network."""
    text = MAIN.replace("mynetworks = ", "#") + "mynetworks_style = class\n"
    findings = pf.assess_main(MAIN_PATH, pf.parse_main(text))
    assert ("MI-POSTFIX-MYNETWORKS-WIDE", Severity.HIGH) in _pairs(findings)


def test_relay_unguarded_noted() -> None:
    """No reject_unauth_destination anywhere is reported: smtpd would refuse to start."""
    findings = pf.assess_main(MAIN_PATH, pf.parse_main(MAIN + "smtpd_relay_restrictions =\n"))
    assert ("MI-POSTFIX-RELAY-UNGUARDED", Severity.MEDIUM) in _pairs(findings)


def test_recipient_list_guards_relay() -> None:
    """A permit in the relay list is harmless when the recipient list rejects relaying."""
    edit = (
        "smtpd_relay_restrictions = permit\n"
        "smtpd_recipient_restrictions = permit_mynetworks, reject_unauth_destination\n"
    )
    assert _severe(pf.assess_main(MAIN_PATH, pf.parse_main(MAIN + edit))) == []


def test_relay_restrictions_expand_variables() -> None:
    """Restriction lists are judged after $name expansion."""
    edit = (
        "open_rules = permit\nsmtpd_relay_restrictions = $open_rules, reject_unauth_destination\n"
    )
    findings = pf.assess_main(MAIN_PATH, pf.parse_main(MAIN + edit))
    assert ("MI-POSTFIX-OPEN-RELAY", Severity.CRITICAL) in _pairs(findings)


def test_old_compatibility_level_changes_defaults() -> None:
    """Without compatibility_level, the empty relay default leaves relaying unguarded."""
    text = MAIN.replace("compatibility_level = 3.6", "").replace("smtpd_relay_restrictions =", "#")
    findings = pf.assess_main(MAIN_PATH, pf.parse_main(text))
    assert "MI-POSTFIX-RELAY-UNGUARDED" in {f.rule for f in findings}


# --- master.cf ---------------------------------------------------------------

SUBMISSION = (
    "submission inet n       -       y       -       -       smtpd\n"
    "  -o syslog_name=postfix/submission\n"
    "  -o smtpd_tls_security_level=encrypt\n"
    "  -o smtpd_sasl_auth_enable=yes\n"
    "  -o smtpd_relay_restrictions=\n"
    "  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject\n"
)


def _master_diff(edited: str) -> list[Finding]:
    return pf.diff_master(MASTER_PATH, pf.parse_master(MASTER), pf.parse_master(edited))


@pytest.mark.parametrize(
    ("text", "key", "overrides"),
    [
        ("s inet n - y - - smtpd -o a=1 -o b=2\n", "s/inet", {"a": "1", "b": "2"}),
        ("s inet n - y - - smtpd\n  -o a = 1\n", "s/inet", {"a": "1"}),
        ("s inet n - y - - smtpd\n  -o { a = x y }\n", "s/inet", {"a": "x y"}),
        ("127.0.0.1:10025 inet n - n - - smtpd -oa=1\n", "127.0.0.1:10025/inet", {"a": "1"}),
    ],
)
def test_parse_master_overrides(text: str, key: str, overrides: dict[str, str]) -> None:
    """-o overrides are read in every syntax master(5) allows."""
    assert pf.parse_master(text)["services"][key]["overrides"] == overrides


def test_parse_master_short_line_warns() -> None:
    """A service line with too few fields is a warning, not a service."""
    facts = pf.parse_master("smtp inet n -\n")
    assert facts["services"] == {}
    assert facts["warnings"] == [[1, "service line has fewer than 8 fields"]]


def test_debian_submission_example_is_safe() -> None:
    """Debian's commented submission example, enabled, raises nothing severe."""
    facts = pf.parse_master(MASTER + SUBMISSION)
    assert _severe(pf.assess_master(MASTER_PATH, facts)) == []


RISKY_MASTER = [
    (
        "evil unix - n n - - pipe\n  flags=F user=root argv=/bin/sh -c $recipient\n",
        "MI-POSTFIX-PIPE-ROOT",
        Severity.CRITICAL,
        True,
    ),
    (
        "open inet n - y - - smtpd\n  -o smtpd_relay_restrictions=permit\n"
        "  -o smtpd_recipient_restrictions=\n",
        "MI-POSTFIX-OPEN-RELAY",
        Severity.CRITICAL,
        True,
    ),
    (
        "open inet n - y - - smtpd\n  -o smtpd_recipient_restrictions=permit\n"
        "  -o smtpd_relay_restrictions=permit_mynetworks\n",
        "MI-POSTFIX-OPEN-RELAY",
        Severity.CRITICAL,
        True,
    ),
    (
        "open inet n - y - - smtpd -o mynetworks=0/0\n",
        "MI-POSTFIX-MYNETWORKS-OPEN",
        Severity.CRITICAL,
        True,
    ),
    (
        "x inet n - y - - smtpd -o smtpd_authorized_xclient_hosts=10.0.0.0/8\n",
        "MI-POSTFIX-XCLIENT-HOSTS",
        Severity.HIGH,
        True,
    ),
    (
        "vmail unix - n n - - pipe\n  flags=F user=vmail argv=/usr/bin/tee /tmp/x\n",
        "MI-POSTFIX-PIPE-ADDED",
        Severity.HIGH,
        False,
    ),
    ("2525 inet n - y - - smtpd\n", "MI-POSTFIX-LISTENER-ADDED", Severity.HIGH, False),
    ("foo unix - - y - - error\n", "MI-POSTFIX-SERVICE-ADDED", Severity.MEDIUM, False),
]


@pytest.mark.parametrize(("edit", "rule", "severity", "in_assess"), RISKY_MASTER)
def test_risky_master_edit(edit: str, rule: str, severity: Severity, in_assess: bool) -> None:
    """Each risky master.cf addition is graded in diff, and in assess for standing risks."""
    assert (rule, severity) in _pairs(_master_diff(MASTER + edit))
    assessed = _pairs(pf.assess_master(MASTER_PATH, pf.parse_master(MASTER + edit)))
    assert ((rule, severity) in assessed) == in_assess


@pytest.mark.parametrize(
    ("old", "new", "rule", "severity"),
    [
        (
            "argv=/usr/bin/maildrop -d ${recipient}",
            "argv=/usr/bin/maildrop -d ${recipient} -V9",
            "MI-POSTFIX-PIPE-CHANGED",
            Severity.HIGH,
        ),
        ("user=vmail", "user=list", "MI-POSTFIX-PIPE-CHANGED", Severity.HIGH),
        (
            "relay     unix  -       -       y",
            "relay     unix  -       -       n",
            "MI-POSTFIX-CHROOT-CHANGED",
            Severity.INFO,
        ),
        (
            "syslog_name=postfix/$service_name",
            "syslog_name=postfix/relay",
            "MI-POSTFIX-OVERRIDE-CHANGED",
            Severity.MEDIUM,
        ),
        (
            "-o syslog_name=postfix/$service_name",
            "-o syslog_name=postfix/$service_name -o mynetworks=10.0.0.0/8",
            "MI-POSTFIX-OVERRIDE-RISKY",
            Severity.HIGH,
        ),
        (
            "local     unix  -       n       n       -       -       local",
            "local     unix  -       n       n       -       -       pipe",
            "MI-POSTFIX-SERVICE-PRIVILEGE",
            Severity.HIGH,
        ),
    ],
)
def test_master_change_meaning(old: str, new: str, rule: str, severity: Severity) -> None:
    """Changes to existing services are graded by what they let the service do."""
    assert old in MASTER
    assert (rule, severity) in _pairs(_master_diff(MASTER.replace(old, new, 1)))


def test_master_service_removed() -> None:
    """A removed service is a MEDIUM change."""
    edited = MASTER.replace("anvil     unix  -       -       y       -       1       anvil\n", "")
    assert _pairs(_master_diff(edited)) == {("MI-POSTFIX-SERVICE-REMOVED", Severity.MEDIUM)}


def test_half_override_is_high_without_main() -> None:
    """Overriding one relay list is HIGH alone, but judged exactly with main.cf at hand."""
    edit = "open inet n - y - - smtpd -o smtpd_relay_restrictions=permit\n"
    master = pf.parse_master(MASTER + edit)
    alone = pf.assess_master(MASTER_PATH, master)
    assert ("MI-POSTFIX-OPEN-RELAY", Severity.HIGH) in _pairs(alone)
    guarded = pf.parse_main(MAIN + "smtpd_recipient_restrictions = reject_unauth_destination\n")
    assert _severe(pf.assess_services(MASTER_PATH, guarded, master)) == []
    open_main = pf.parse_main(MAIN)
    both = pf.assess_services(MASTER_PATH, open_main, master)
    assert ("MI-POSTFIX-OPEN-RELAY", Severity.CRITICAL) in _pairs(both)


# --- never raise -------------------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)
lines = st.lists(
    st.sampled_from(
        ["mynetworks = ", "smtpd_relay_restrictions = ", "  ", "#", "-o ", "x", "=", "$", "{"]
    )
    | st.text(max_size=30),
    max_size=12,
).map("\n".join)


@settings(max_examples=60, deadline=None)
@given(text=lines | st.text())
def test_parsers_never_raise(text: str) -> None:
    """Any text parses into JSON-able facts, and assess/diff of them return lists."""
    for parse, assess, diff in (
        (pf.parse_main, pf.assess_main, pf.diff_main),
        (pf.parse_master, pf.assess_master, pf.diff_master),
    ):
        facts = parse(text)
        assert isinstance(facts, dict)
        json.dumps(facts)
        assert isinstance(assess("/p", facts), list)
        assert isinstance(diff("/p", parse(MAIN), facts), list)


@settings(max_examples=60, deadline=None)
@given(before=st.dictionaries(st.sampled_from(["params", "services", "x"]), junk), after=junk)
def test_analyzers_survive_junk_facts(before: dict, after: object) -> None:
    """Corrupt stored facts never make diff or assess raise."""
    after_facts = after if isinstance(after, dict) else {"params": after, "services": after}
    for diff, assess in ((pf.diff_main, pf.assess_main), (pf.diff_master, pf.assess_master)):
        assert isinstance(diff("/p", before, after_facts), list)
        assert isinstance(assess("/p", after_facts), list)
