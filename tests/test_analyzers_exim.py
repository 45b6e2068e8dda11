"""Tests for the exim4 analyzers: Debian's update-exim4.conf.conf and exim config files."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.analyzers import exim as ex
from integrity.model import Finding, Severity

DATA = Path(__file__).parent / "data" / "exim4"
DEBCONF = (DATA / "update-exim4.conf.conf").read_text()  # this host's, from debconf
TEMPLATE = (DATA / "exim4.conf.template").read_text()
CONFD = sorted(p for p in (DATA / "conf.d").rglob("*") if p.is_file())
ACL = (DATA / "conf.d" / "acl" / "30_exim4-config_check_rcpt").read_text()
OPTIONS = (DATA / "conf.d" / "main" / "02_exim4-config_options").read_text()
ALIASES_ROUTER = (DATA / "conf.d" / "router" / "400_exim4-config_system_aliases").read_text()
SEVERE = (Severity.HIGH, Severity.CRITICAL)
DC_PATH, CONF_PATH = "/etc/exim4/update-exim4.conf.conf", "/etc/exim4/exim4.conf.template"
RELAY_REQUIRE = (
    "  require\n"
    "    message = relay not permitted\n"
    "    domains = +local_domains : +relay_to_domains\n"
)


def _pairs(findings: list[Finding]) -> set[tuple[str, Severity]]:
    return {(f.rule, f.severity) for f in findings}


def _severe(findings: list[Finding]) -> list[Finding]:
    return [f for f in findings if f.severity in SEVERE]


# --- stock files -------------------------------------------------------------


def test_stock_debconf_parses_and_is_clean() -> None:
    """The debconf-written file parses cleanly and raises no finding at all."""
    facts = ex.parse_debconf(DEBCONF)
    assert facts["warnings"] == []
    assert facts["settings"]["dc_local_interfaces"] == "127.0.0.1 ; ::1"
    assert facts["settings"]["CFILEMODE"] == "644"
    assert ex.assess_debconf(DC_PATH, facts) == []


@pytest.mark.parametrize("path", [DATA / "exim4.conf.template", *CONFD], ids=lambda p: p.name)
def test_stock_conf_files_clean(path: Path) -> None:
    """Every stock exim4 config file parses without warnings and has no finding."""
    facts = ex.parse_conf(path.read_text())
    assert facts["warnings"] == []
    assert json.loads(json.dumps(facts)) == facts
    assert ex.assess_conf(str(path), facts) == []


def test_template_structure() -> None:
    """The template yields its ACLs, routers, lists and Debian macros."""
    facts = ex.parse_conf(TEMPLATE)
    assert {"acl_check_rcpt", "acl_check_mail", "acl_check_data"} <= set(facts["acls"])
    assert facts["drivers"]["system_aliases"]["section"] == "routers"
    assert facts["drivers"]["plain"]["options"]["driver"] == "plaintext"
    assert facts["lists"]["relay_from_hosts"] == {"kind": "hostlist", "value": "MAIN_RELAY_NETS"}
    assert facts["macros"]["MAIN_TRUSTED_USERS"] == "uucp"
    last = facts["acls"]["acl_check_rcpt"][-1]
    assert last == {"verb": "accept", "conditions": []}


# --- lists and parsing edge cases --------------------------------------------


@pytest.mark.parametrize(
    ("value", "items"),
    [
        ("a : b", ["a", "b"]),
        ("127.0.0.1 : ::::1", ["127.0.0.1", "::1"]),
        ("::::/0", ["::/0"]),
        ("<; 127.0.0.1 ; ::1", ["127.0.0.1", "::1"]),
        ("", []),
        (" : 10.0.0.0/8 : ", ["10.0.0.0/8"]),
    ],
)
def test_exim_list(value: str, items: list[str]) -> None:
    """Exim lists split on ':' with '::' as a literal colon, or on a '<x' separator."""
    assert ex.exim_list(value) == items


def test_debconf_list_semicolons() -> None:
    """A dc_* value with ';' is a semicolon list, as update-exim4.conf reads it."""
    assert ex.debconf_list("192.168.0.0/16 ; ::1") == ["192.168.0.0/16", "::1"]


@pytest.mark.parametrize(
    ("text", "settings", "warned"),
    [
        ("dc_a='x'\n", {"dc_a": "x"}, 0),
        ('dc_a="x y"\n', {"dc_a": "x y"}, 0),
        ("dc_a=plain\n", {"dc_a": "plain"}, 0),
        ("dc_a=''\n# note\n\n", {"dc_a": ""}, 0),
        ("dc_a='unterminated\n", {"dc_a": "unterminated"}, 0),
        ("this is not shell\n", {}, 1),
    ],
)
def test_parse_debconf_edge_cases(text: str, settings: dict[str, str], warned: int) -> None:
    """Shell quoting is undone; lines that are not assignments are warnings."""
    facts = ex.parse_debconf(text)
    assert facts["settings"] == settings
    assert len(facts["warnings"]) == warned


def test_parse_conf_edge_cases() -> None:
    """Continuations join, .ifdef branches are all read, bare options are booleans."""
    text = (
        "# comment\n"
        "MACRO = a \\\n   b\n"
        "primary_hostname = mail\n"
        "no_message_logs\n"
        ".ifdef X\nopt_a = 1\n.else\nopt_a = 2\n.endif\n"
        ".include /etc/exim4/extra\n"
        "??? odd line\n"
        "begin routers\n"
        "r1:\n  driver = redirect\n  no_verify\n"
        "begin rewrite\n*@x  $1@y  F\n"
    )
    facts = ex.parse_conf(text)
    assert facts["macros"] == {"MACRO": "a b"}
    assert facts["options"] == {"primary_hostname": "mail", "message_logs": "false", "opt_a": "2"}
    assert facts["includes"] == ["/etc/exim4/extra"]
    assert facts["drivers"]["r1"] == {
        "section": "routers",
        "options": {"driver": "redirect", "verify": "false"},
    }
    assert [w[1] for w in facts["warnings"]] == ["not an exim option, list or macro line"]


def test_acl_statement_with_inline_condition() -> None:
    """A verb line may carry its first condition, as 'deny condition = ...' does."""
    facts = ex.parse_conf("acl_check_rcpt:\n  deny    condition = ${if eq{1}{1}}\n  accept\n")
    assert facts["acls"]["acl_check_rcpt"][0] == {
        "verb": "deny",
        "conditions": [["condition", "${if eq{1}{1}}"]],
    }


# --- debconf edits -----------------------------------------------------------

DC_EDITS = [
    ("dc_relay_nets=''", "dc_relay_nets='0.0.0.0/0'", "MI-EXIM-RELAY-NETS-OPEN", Severity.CRITICAL),
    ("dc_relay_nets=''", "dc_relay_nets='::::/0'", "MI-EXIM-RELAY-NETS-OPEN", Severity.CRITICAL),
    (
        "dc_relay_nets=''",
        "dc_relay_nets='192.168.0.0/16 ; ::/0'",
        "MI-EXIM-RELAY-NETS-OPEN",
        Severity.CRITICAL,
    ),
    ("dc_relay_nets=''", "dc_relay_nets='*'", "MI-EXIM-RELAY-NETS-OPEN", Severity.CRITICAL),
    # issue 10 class 5: a public /8 is as open as 0/0 (was WIDE/high); /16 stays wide
    ("dc_relay_nets=''", "dc_relay_nets='8.0.0.0/8'", "MI-EXIM-RELAY-NETS-OPEN", Severity.CRITICAL),
    ("dc_relay_nets=''", "dc_relay_nets='8.8.0.0/16'", "MI-EXIM-RELAY-NETS-WIDE", Severity.HIGH),
    (
        "dc_relay_nets=''",
        "dc_relay_nets='0.0.0.0/1 ; 128.0.0.0/1'",
        "MI-EXIM-RELAY-NETS-OPEN",
        Severity.CRITICAL,
    ),
    (
        "dc_relay_domains=''",
        "dc_relay_domains='*'",
        "MI-EXIM-RELAY-DOMAINS-OPEN",
        Severity.CRITICAL,
    ),
    (
        "dc_relay_domains=''",
        "dc_relay_domains='*.example.com'",
        "MI-EXIM-RELAY-DOMAINS-OPEN",
        Severity.CRITICAL,
    ),
    ("CFILEMODE='644'", "CFILEMODE='666'", "MI-EXIM-CFILEMODE-WRITABLE", Severity.CRITICAL),
    ("CFILEMODE='644'", "CFILEMODE='664'", "MI-EXIM-CFILEMODE-WRITABLE", Severity.CRITICAL),
]


@pytest.mark.parametrize(("old", "new", "rule", "severity"), DC_EDITS)
def test_risky_debconf_edit(old: str, new: str, rule: str, severity: Severity) -> None:
    """Risky debconf edits are caught by assess and, once, by diff."""
    edited = ex.parse_debconf(DEBCONF.replace(old, new))
    assert (rule, severity) in _pairs(ex.assess_debconf(DC_PATH, edited))
    changes = ex.diff_debconf(DC_PATH, ex.parse_debconf(DEBCONF), edited)
    assert (rule, severity) in _pairs(changes)
    assert len({f.attribute for f in changes}) == len(changes)


@pytest.mark.parametrize(
    ("old", "new", "rule", "severity"),
    [
        (
            "dc_relay_nets=''",
            "dc_relay_nets='192.168.1.0/24'",
            "MI-EXIM-RELAY-NETS-ADDED",
            Severity.HIGH,
        ),
        (
            "dc_relay_domains=''",
            "dc_relay_domains='example.com'",
            "MI-EXIM-RELAY-DOMAINS-ADDED",
            Severity.MEDIUM,
        ),
        (
            "dc_eximconfig_configtype='local'",
            "dc_eximconfig_configtype='internet'",
            "MI-EXIM-CONFIGTYPE-CHANGED",
            Severity.MEDIUM,
        ),
        (
            "dc_local_interfaces='127.0.0.1 ; ::1'",
            "dc_local_interfaces=''",
            "MI-EXIM-INTERFACES-CHANGED",
            Severity.INFO,
        ),
        (
            "dc_smarthost=''",
            "dc_smarthost='relay.example.com'",
            "MI-EXIM-SETTING-CHANGED",
            Severity.MEDIUM,
        ),
    ],
)
def test_debconf_change_meaning(old: str, new: str, rule: str, severity: Severity) -> None:
    """Each debconf change is one finding graded by what the value controls."""
    changes = ex.diff_debconf(
        DC_PATH, ex.parse_debconf(DEBCONF), ex.parse_debconf(DEBCONF.replace(old, new))
    )
    assert _pairs(changes) == {(rule, severity)}
    assert changes[0].fix


def test_debconf_relay_net_removed_is_medium() -> None:
    """Removing a relay network is an ordinary change, not a new-entry alert."""
    with_net = ex.parse_debconf(DEBCONF.replace("dc_relay_nets=''", "dc_relay_nets='10.0.0.0/8'"))
    changes = ex.diff_debconf(DC_PATH, with_net, ex.parse_debconf(DEBCONF))
    assert _pairs(changes) == {("MI-EXIM-SETTING-CHANGED", Severity.MEDIUM)}


# --- config edits ------------------------------------------------------------

CONF_EDITS = [
    (ACL, RELAY_REQUIRE, "", "MI-EXIM-ACL-RELAY-CHECK-LOST", Severity.CRITICAL),
    (
        ACL,
        "acl_check_rcpt:\n",
        "acl_check_rcpt:\n  accept\n    control = dkim_disable_verify\n",
        "MI-EXIM-ACL-ACCEPT-ALL",
        Severity.CRITICAL,
    ),
    (
        ACL,
        "acl_check_rcpt:\n",
        "acl_check_rcpt:\n  accept  hosts = *\n",
        "MI-EXIM-ACL-ACCEPT-ALL",
        Severity.CRITICAL,
    ),
    (TEMPLATE, RELAY_REQUIRE, "", "MI-EXIM-ACL-RELAY-CHECK-LOST", Severity.CRITICAL),
    (
        TEMPLATE,
        "exim_path = /usr/sbin/exim4\n",
        "exim_path = /usr/sbin/exim4\nSYSTEM_ALIASES_USER = root\n",
        "MI-EXIM-ALIASES-ROOT",
        Severity.CRITICAL,
    ),
    (
        TEMPLATE,
        "exim_path = /usr/sbin/exim4\n",
        "exim_path = /usr/sbin/exim4\nSYSTEM_ALIASES_PIPE_TRANSPORT = address_pipe\n",
        "MI-EXIM-ALIASES-PIPE",
        Severity.MEDIUM,
    ),
    (
        TEMPLATE,
        "exim_path = /usr/sbin/exim4\n",
        "exim_path = /usr/sbin/exim4\nMAIN_RELAY_NETS = : 0.0.0.0/0\n",
        "MI-EXIM-RELAY-NETS-OPEN",
        Severity.CRITICAL,
    ),
    (
        TEMPLATE,
        "exim_path = /usr/sbin/exim4\n",
        "exim_path = /usr/sbin/exim4\nMAIN_RELAY_TO_DOMAINS = *\n",
        "MI-EXIM-RELAY-DOMAINS-OPEN",
        Severity.CRITICAL,
    ),
    (
        ALIASES_ROUTER,
        "  allow_defer\n",
        "  allow_defer\n  user = root\n",
        "MI-EXIM-DRIVER-ROOT",
        Severity.CRITICAL,
    ),
]


@pytest.mark.parametrize(
    ("stock", "old", "new", "rule", "severity"),
    CONF_EDITS,
    ids=[f"{i}-{edit[3]}" for i, edit in enumerate(CONF_EDITS)],
)
def test_risky_conf_edit(stock: str, old: str, new: str, rule: str, severity: Severity) -> None:
    """Risky config edits are caught by assess and by diff, one finding per attribute."""
    assert old in stock
    edited = ex.parse_conf(stock.replace(old, new, 1))
    assert (rule, severity) in _pairs(ex.assess_conf(CONF_PATH, edited))
    changes = ex.diff_conf(CONF_PATH, ex.parse_conf(stock), edited)
    assert (rule, severity) in _pairs(changes)
    assert len({f.attribute for f in changes}) == len(changes)


def test_conditional_accept_is_fine() -> None:
    """An accept limited to a private network does not count as accept-all."""
    edited = ACL.replace("acl_check_rcpt:\n", "acl_check_rcpt:\n  accept hosts = 10.0.0.0/8\n")
    assert _severe(ex.assess_conf(CONF_PATH, ex.parse_conf(edited))) == []


AUTH_SERVER = (
    "begin authenticators\n"
    "plain_server:\n"
    "  driver = plaintext\n"
    "  public_name = PLAIN\n"
    '  server_condition = "${if crypteq{$auth3}{${extract{1}{:}{${lookup{$auth2}'
    'lsearch{CONFDIR/passwd}{$value}{*:*}}}}}{1}{0}}"\n'
)


def test_plaintext_auth_without_tls() -> None:
    """A PLAIN server authenticator not limited to TLS is HIGH; with the TLS guard it is not."""
    bare = ex.assess_conf(CONF_PATH, ex.parse_conf(AUTH_SERVER))
    assert _pairs(bare) == {("MI-EXIM-AUTH-CLEARTEXT", Severity.HIGH)}
    guarded = AUTH_SERVER + "  server_advertise_condition = ${if eq{$tls_in_cipher}{}{}{*}}\n"
    assert ex.assess_conf(CONF_PATH, ex.parse_conf(guarded)) == []


CONF_CHANGES = [
    (
        OPTIONS,
        "trusted_users = MAIN_TRUSTED_USERS",
        "trusted_users = MAIN_TRUSTED_USERS : www-data",
        "MI-EXIM-TRUSTED-ADDED",
        Severity.HIGH,
    ),
    (
        OPTIONS,
        "MAIN_TRUSTED_USERS = uucp",
        "MAIN_TRUSTED_USERS = uucp : www-data",
        "MI-EXIM-TRUSTED-ADDED",
        Severity.HIGH,
    ),
    (
        OPTIONS,
        "spool_directory = SPOOLDIR",
        "spool_directory = /tmp/spool",
        "MI-EXIM-OPTION-RISKY",
        Severity.HIGH,
    ),
    (
        OPTIONS,
        "prdr_enable = true",
        "prdr_enable = false",
        "MI-EXIM-CONFIG-CHANGED",
        Severity.MEDIUM,
    ),
    (
        ALIASES_ROUTER,
        "  allow_defer\n",
        "  allow_defer\n  pipe_transport = address_pipe\n",
        "MI-EXIM-ROUTER-PIPE-ADDED",
        Severity.HIGH,
    ),
    (
        ACL,
        "    message = relay not permitted\n",
        "    message = relaying denied\n",
        "MI-EXIM-CONFIG-CHANGED",
        Severity.MEDIUM,
    ),
]


@pytest.mark.parametrize(
    ("stock", "old", "new", "rule", "severity"),
    CONF_CHANGES,
    ids=[f"{i}-{edit[3]}" for i, edit in enumerate(CONF_CHANGES)],
)
def test_conf_change_meaning(stock: str, old: str, new: str, rule: str, severity: Severity) -> None:
    """Changed options, macros, routers and ACLs are graded by what they control."""
    assert old in stock
    changes = ex.diff_conf(CONF_PATH, ex.parse_conf(stock), ex.parse_conf(stock.replace(old, new)))
    assert (rule, severity) in _pairs(changes)


def test_unchanged_conf_diff_empty() -> None:
    """A comment-only edit of the template yields no finding (the judge reports content)."""
    assert ex.diff_conf(CONF_PATH, ex.parse_conf(TEMPLATE), ex.parse_conf(TEMPLATE + "# x\n")) == []


# --- never raise -------------------------------------------------------------

junk = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=4) | st.dictionaries(st.text(max_size=10), c, max_size=4),
    max_leaves=20,
)
lines = st.lists(
    st.sampled_from(
        ["begin acl", "acl_check_rcpt:", "  accept", "  require", "X = 1", ".ifdef A", "r:", "\\"]
    )
    | st.text(max_size=30),
    max_size=12,
).map("\n".join)


@settings(max_examples=60, deadline=None)
@given(text=lines | st.text())
def test_parsers_never_raise(text: str) -> None:
    """Any text parses into JSON-able facts, and assess/diff of them return lists."""
    for parse, assess, diff, stock in (
        (ex.parse_conf, ex.assess_conf, ex.diff_conf, ACL),
        (ex.parse_debconf, ex.assess_debconf, ex.diff_debconf, DEBCONF),
    ):
        facts = parse(text)
        json.dumps(facts)
        assert isinstance(assess("/p", facts), list)
        assert isinstance(diff("/p", parse(stock), facts), list)


@settings(max_examples=60, deadline=None)
@given(
    facts=st.dictionaries(
        st.sampled_from(["settings", "options", "macros", "lists", "acls", "drivers"]), junk
    )
)
def test_analyzers_survive_junk_facts(facts: dict) -> None:
    """Corrupt stored facts never make diff or assess raise."""
    for diff, assess in ((ex.diff_conf, ex.assess_conf), (ex.diff_debconf, ex.assess_debconf)):
        assert isinstance(diff("/p", facts, {}), list)
        assert isinstance(assess("/p", facts), list)
