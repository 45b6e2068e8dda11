"""Tests for the sendmail .cf and .mc analyzers, on the real Debian 12 generated files."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.analyzers import sendmail as sm
from integrity.model import Severity

DATA = Path(__file__).parent / "data" / "sendmail"
CF = (DATA / "sendmail.cf").read_text()
SUBMIT = (DATA / "submit.cf").read_text()
GENERIC = (DATA / "generic-linux.cf").read_text()
MC = (DATA / "sendmail.mc").read_text()
CF_PATH, MC_PATH = "/etc/mail/sendmail.cf", "/etc/mail/sendmail.mc"
CF_FACTS, MC_FACTS = sm.parse_cf(CF), sm.parse_mc(MC)


def _rules(findings: list) -> dict[str, Severity]:
    return {f.rule: f.severity for f in findings}


def _edit(text: str, old: str, new: str) -> str:
    assert old in text, old
    return text.replace(old, new, 1)


def _worst(findings: list) -> int:
    return max((f.severity.rank for f in findings), default=-1)


@pytest.mark.parametrize(
    ("name", "parser", "assess"),
    [
        ("sendmail.cf", sm.parse_cf, sm.assess_cf),
        ("submit.cf", sm.parse_cf, sm.assess_cf),
        ("generic-linux.cf", sm.parse_cf, sm.assess_cf),
        ("sendmail.mc", sm.parse_mc, sm.assess_mc),
        ("submit.mc", sm.parse_mc, sm.assess_mc),
        ("generic-linux.mc", sm.parse_mc, sm.assess_mc),
    ],
)
def test_stock_configs_have_no_high_finding(
    name: str, parser: Callable[[str], dict], assess: Callable[[str, dict], list]
) -> None:
    """Stock Debian and upstream configs parse without warnings and assess below HIGH."""
    facts = parser((DATA / name).read_text())
    assert facts["warnings"] == []
    assert json.loads(json.dumps(facts)) == facts
    assert _worst(assess(f"/etc/mail/{name}", facts)) < Severity.HIGH.rank


def test_debian_cf_values() -> None:
    """The generated Debian .cf yields the option values listed in mta-facts 2.3."""
    facts = sm.parse_cf(CF)
    opts = facts["options"]
    assert opts["DefaultUser"] == "mail:mail"
    assert opts["QueueFileMode"] == "0640"
    assert opts["TrustedUser"] == "smmta"
    assert opts["DontBlameSendmail"].startswith(",AssumeSafeChown")
    assert facts["mailers"]["prog"]["P"] == "/bin/sh"
    assert facts["mailers"]["local"]["A"] == "sensible-mda $g $u $h ${client_addr}"
    assert facts["classes"]["t"] == ["root", "daemon", "uucp"]
    assert facts["class_files"]["R"] == ["/etc/mail/relay-domains"]
    assert len(facts["daemon_port_options"]) == 2


def test_embedded_mc_is_parsed() -> None:
    """The .mc Debian appends to the .cf is parsed into facts['embedded_mc']."""
    embedded = sm.parse_cf(CF)["embedded_mc"]
    assert embedded == sm.parse_mc(MC)
    assert "access_db" in embedded["features"]
    assert sm.parse_cf(GENERIC)["embedded_mc"] is None


def test_submit_cf_is_msp() -> None:
    """submit.cf is judged as the MSP: goaway privacy, RunAsUser smmsp, no findings."""
    facts = sm.parse_cf(SUBMIT)
    assert facts["options"]["RunAsUser"] == "smmsp"
    assert facts["options"]["PrivacyOptions"] == "goaway,noetrn,restrictqrun"
    assert _rules(sm.assess_cf("/etc/mail/submit.cf", facts)) == {
        "MI-SENDMAIL-BANNER-VERSION": Severity.INFO
    }


@pytest.mark.parametrize(
    ("line", "name", "value"),
    [
        ("Op goaway\n", "PrivacyOptions", "goaway"),
        ("Ouroot\n", "DefaultUser", "root"),
        ("O privacyoptions = noexpn\n", "PrivacyOptions", "noexpn"),
        ("O PrivacyOpt=novrfy\n", "PrivacyOptions", "novrfy"),
        ("O Timeout.queuereturn=5d\n", "Timeout.queuereturn", "5d"),
        ("O ForwardPath\n", "ForwardPath", ""),
    ],
)
def test_option_forms(line: str, name: str, value: str) -> None:
    """Short letters, case, unique prefixes, sub-options and empty values are understood."""
    assert sm.parse_cf(line)["options"][name] == value


def test_mailer_continuation_lines() -> None:
    """Mailer definitions continue on lines that start with white space."""
    facts = sm.parse_cf("Mprog,\tP=/usr/sbin/smrsh, F=lsDFMoqeu9,\n\t\tA=smrsh -c $u\n")
    assert facts["mailers"]["prog"] == {
        "P": "/usr/sbin/smrsh",
        "F": "lsDFMoqeu9",
        "A": "smrsh -c $u",
    }


def test_mc_reader_handles_quotes_dnl_and_comments() -> None:
    """m4 quoting, dnl inside arguments and # comments are handled like m4 does."""
    text = (
        "divert(-1)\n# FEATURE(`promiscuous_relay')\ndivert(0)dnl\n"
        "dnl FEATURE(`relay_local_from')\n"
        "define(`confPRIVACY_FLAGS',dnl\n`goaway, restrictqrun')dnl\n"
        "FEATURE(`access_db', `hash -T<TMPF> /etc/mail/access')dnl\n"
        "FEATURE(`smrsh', `/usr/libexec/sendmail/smrsh')\n"
        "RELAY_DOMAIN(`example.org')MAILER(`local')\n"
    )
    facts = sm.parse_mc(text)
    assert sorted(facts["features"]) == ["access_db", "smrsh"]
    assert facts["options"]["PrivacyOptions"] == "goaway, restrictqrun"
    assert facts["mailers"]["prog"]["P"] == "/usr/libexec/sendmail/smrsh"
    assert facts["classes"]["R"] == ["example.org"]
    assert facts["warnings"] == []


# (old text in sendmail.cf, replacement, rule, severity): risky edits of the stock .cf
CF_EDITS = [
    ("O DefaultUser=mail:mail", "O DefaultUser=root", "MI-SENDMAIL-DEFAULTUSER-ROOT", "critical"),
    ("O DefaultUser=mail:mail", "Ou0:0", "MI-SENDMAIL-DEFAULTUSER-ROOT", "critical"),
    ("O QueueFileMode=0640", "O QueueFileMode=0644", "MI-SENDMAIL-QUEUEFILEMODE-OPEN", "high"),
    ("O TempFileMode=0640", "O TempFileMode=0666", "MI-SENDMAIL-TEMPFILEMODE-OPEN", "medium"),
    (
        "GroupReadableDefaultAuthInfoFile",
        "GroupReadableDefaultAuthInfoFile,RunProgramInUnsafeDirPath",
        "MI-SENDMAIL-DBS-UNSAFE",
        "critical",
    ),
    (
        "GroupReadableDefaultAuthInfoFile",
        "GroupReadableDefaultAuthInfoFile,GroupWritableAliasFile",
        "MI-SENDMAIL-DBS-UNSAFE",
        "high",
    ),
    ("O TrustedUser=smmta", "O TrustedUser=bob", "MI-SENDMAIL-TRUSTEDUSER-UNUSUAL", "high"),
    (
        "O ForwardPath=$z/.forward.$w:$z/.forward",
        "O ForwardPath=/tmp/$u.forward:$z/.forward",
        "MI-SENDMAIL-FORWARDPATH-UNSAFE",
        "high",
    ),
    (
        "O HelpFile=/etc/mail/helpfile",
        "O HelpFile=/tmp/helpfile",
        "MI-SENDMAIL-PATH-UNSAFE",
        "high",
    ),
    ("Cwlocalhost", "Cwlocalhost\nCRcom", "MI-SENDMAIL-OPEN-RELAY", "critical"),
    ("Cwlocalhost", "Cwlocalhost\nCR 64", "MI-SENDMAIL-OPEN-RELAY", "critical"),
    ("Troot", "Troot\nTmallory", "MI-SENDMAIL-TRUSTED-USERS", "medium"),
    ("Mprog,\t\tP=/bin/sh,", "Mprog,\t\tP=/bin/bash,", "MI-SENDMAIL-PROG-NO-SMRSH", "high"),
    ("F=lsDFMoqeu9,", "F=lsDFMoqeu9S,", "MI-SENDMAIL-PROG-AS-ROOT", "critical"),
    ("Fw/etc/mail/local-host-names", "Fw|/usr/bin/hostnames", "MI-SENDMAIL-CLASS-PROGRAM", "high"),
    ("O AliasWait=10", "O AuthMechanisms=PLAIN LOGIN", "MI-SENDMAIL-AUTH-PLAINTEXT", "medium"),
    ("O AliasWait=10", "O UnsafeGroupWrites=False", "MI-SENDMAIL-UNSAFEGROUPWRITES-OFF", "medium"),
]


@pytest.mark.parametrize(("old", "new", "rule", "severity"), CF_EDITS)
def test_risky_cf_edit_in_assess_and_diff(old: str, new: str, rule: str, severity: str) -> None:
    """Each risky edit of the stock .cf shows in assess and in diff with its severity."""
    before = sm.parse_cf(CF)
    after = sm.parse_cf(_edit(CF, old, new))
    assert _rules(sm.assess_cf(CF_PATH, after))[rule] == Severity(severity)
    assert _rules(sm.diff_cf(CF_PATH, before, after))[rule] == Severity(severity)


def test_unknown_privacy_value_is_ignored_but_dbs_value_is_rated() -> None:
    """A DontBlameSendmail value outside Debian's list is rated; unknown ones are MEDIUM."""
    after = sm.parse_cf(_edit(CF, "GroupReadableDefaultAuthInfoFile", "Bogus"))
    found = [f for f in sm.assess_cf(CF_PATH, after) if f.rule == "MI-SENDMAIL-DBS-UNSAFE"]
    assert [(f.after, f.severity) for f in found] == [("bogus", Severity.MEDIUM)]


@pytest.mark.parametrize(
    ("before", "after", "severity"),
    [
        (
            "goaway",
            "needmailhelo,noexpn,novrfy,needexpnhelo,needvrfyhelo,noverb,authwarnings",
            None,
        ),
        ("goaway,restrictqrun", "goaway", Severity.MEDIUM),
        ("goaway", "needmailhelo,novrfy,authwarnings", Severity.HIGH),
        ("noexpn,novrfy", "authwarnings", Severity.HIGH),
    ],
)
def test_privacy_goaway_is_a_composite(before: str, after: str, severity: Severity | None) -> None:
    """Dropping goaway for its members is no loss; losing noexpn/novrfy is HIGH."""
    old = sm.parse_cf(f"O PrivacyOptions={before}\n")
    new = sm.parse_cf(f"O PrivacyOptions={after}\n")
    found = _rules(sm.diff_cf(CF_PATH, old, new)).get("MI-SENDMAIL-PRIVACY-WEAKENED")
    assert found == severity


def test_privacy_missing_is_medium() -> None:
    """A .cf with PrivacyOptions=public is MEDIUM in assess."""
    line = next(ln for ln in CF.splitlines() if ln.startswith("O PrivacyOptions="))
    facts = sm.parse_cf(_edit(CF, line, "O PrivacyOptions=public"))
    assert _rules(sm.assess_cf(CF_PATH, facts))["MI-SENDMAIL-PRIVACY-MISSING"] == Severity.MEDIUM


@pytest.mark.parametrize(
    ("old", "new", "rule", "severity"),
    [
        (
            "O AliasFile=/etc/mail/aliases",
            "O AliasFile=/srv/aliases",
            "MI-SENDMAIL-PATH-CHANGED",
            Severity.HIGH,
        ),
        (
            "P=/usr/sbin/sensible-mda",
            "P=/usr/local/bin/deliver",
            "MI-SENDMAIL-MAILER-PROGRAM-CHANGED",
            Severity.HIGH,
        ),
        ("O LogLevel=9", "O LogLevel=2", "MI-SENDMAIL-OPTION-CHANGED", Severity.MEDIUM),
        ("\nDS\n", "\nDSmail.evil.test\n", "MI-SENDMAIL-SMARTHOST-CHANGED", Severity.HIGH),
        (
            "Cwlocalhost",
            "Cwlocalhost\nCRexample.org",
            "MI-SENDMAIL-RELAY-DOMAINS-ADDED",
            Severity.HIGH,
        ),
        (
            "Kaccess hash -T<TMPF> /etc/mail/access",
            "Kaccess hash -T<TMPF> /srv/access",
            "MI-SENDMAIL-MAP-CHANGED",
            Severity.HIGH,
        ),
        (
            "Addr=127.0.0.1\nO DaemonPortOptions=Family=inet,  Name=MSP",
            "Addr=0.0.0.0\nO DaemonPortOptions=Family=inet,  Name=MSP",
            "MI-SENDMAIL-LISTEN-CHANGED",
            Severity.MEDIUM,
        ),
        (
            ",GroupReadableDefaultAuthInfoFile",
            "",
            "MI-SENDMAIL-DBS-REMOVED",
            Severity.INFO,
        ),
    ],
)
def test_cf_changes_in_diff(old: str, new: str, rule: str, severity: Severity) -> None:
    """Changes of paths, mailers, options, smart host, relays, maps and sockets are graded."""
    findings = sm.diff_cf(CF_PATH, sm.parse_cf(CF), sm.parse_cf(_edit(CF, old, new)))
    assert _rules(findings)[rule] == severity


def test_hand_edited_cf_is_flagged() -> None:
    """An O-line change with the embedded .mc unchanged means the .cf was edited by hand."""
    after = sm.parse_cf(_edit(CF, "O LogLevel=9", "O LogLevel=2"))
    assert "MI-SENDMAIL-CF-HAND-EDITED" in _rules(sm.diff_cf(CF_PATH, sm.parse_cf(CF), after))


def test_identical_cf_diff_is_empty() -> None:
    """Comment-only edits have no meaning: diff returns nothing."""
    after = sm.parse_cf(_edit(CF, "# log level", "# logging level"))
    assert sm.diff_cf(CF_PATH, sm.parse_cf(CF), after) == []


# (text appended before MAILER_DEFINITIONS in the stock .mc, rule, severity)
MC_EDITS = [
    ("FEATURE(`promiscuous_relay')dnl\n", "MI-SENDMAIL-OPEN-RELAY", "critical"),
    ("FEATURE(`relay_local_from')dnl\n", "MI-SENDMAIL-RELAY", "high"),
    ("FEATURE(`relay_mail_from')dnl\n", "MI-SENDMAIL-RELAY", "high"),
    ("FEATURE(`loose_relay_check')dnl\n", "MI-SENDMAIL-RELAY", "high"),
    ("FEATURE(`relay_based_on_MX')dnl\n", "MI-SENDMAIL-RELAY", "medium"),
    ("FEATURE(`relay_entire_domain')dnl\n", "MI-SENDMAIL-RELAY", "medium"),
    ("define(`confDEF_USER_ID', `root')dnl\n", "MI-SENDMAIL-DEFAULTUSER-ROOT", "critical"),
    ("define(`confQUEUE_FILE_MODE', `0604')dnl\n", "MI-SENDMAIL-QUEUEFILEMODE-OPEN", "high"),
    ("RELAY_DOMAIN(`net')dnl\n", "MI-SENDMAIL-OPEN-RELAY", "critical"),
]


@pytest.mark.parametrize(("add", "rule", "severity"), MC_EDITS)
def test_risky_mc_edit(add: str, rule: str, severity: str) -> None:
    """A risky line added to the stock .mc shows in assess_mc and diff_mc."""
    after = sm.parse_mc(_edit(MC, "MAILER_DEFINITIONS", add + "MAILER_DEFINITIONS"))
    assert _rules(sm.assess_mc(MC_PATH, after))[rule] == Severity(severity)
    assert _rules(sm.diff_mc(MC_PATH, sm.parse_mc(MC), after))[rule] == Severity(severity)


def test_embedded_mc_feature_is_visible_from_cf() -> None:
    """FEATURE(promiscuous_relay) in the .mc appended to the .cf is CRITICAL from the .cf."""
    tail = "# MAILER_DEFINITIONS"
    after = sm.parse_cf(_edit(CF, tail, "# FEATURE(`promiscuous_relay')dnl\n" + tail))
    assert _rules(sm.assess_cf(CF_PATH, after))["MI-SENDMAIL-OPEN-RELAY"] == Severity.CRITICAL
    diff = sm.diff_cf(CF_PATH, sm.parse_cf(CF), after)
    assert _rules(diff)["MI-SENDMAIL-OPEN-RELAY"] == Severity.CRITICAL
    assert "MI-SENDMAIL-CF-HAND-EDITED" not in _rules(diff)


def test_smrsh_feature_clears_the_note_and_losing_it_is_high() -> None:
    """FEATURE(smrsh) removes the LOW note; removing it again is HIGH in diff."""
    with_smrsh = sm.parse_mc(
        _edit(MC, "MAILER_DEFINITIONS", "FEATURE(`smrsh')\nMAILER_DEFINITIONS")
    )
    assert "MI-SENDMAIL-SMRSH-MISSING" not in _rules(sm.assess_mc(MC_PATH, with_smrsh))
    assert "MI-SENDMAIL-SMRSH-MISSING" in _rules(sm.assess_mc(MC_PATH, sm.parse_mc(MC)))
    lost = sm.diff_mc(MC_PATH, with_smrsh, sm.parse_mc(MC))
    assert _rules(lost)["MI-SENDMAIL-FEATURE-CHANGED"] == Severity.HIGH


@settings(max_examples=100, deadline=None)
@given(st.binary(max_size=600))
def test_parsers_never_raise(data: bytes) -> None:
    """Any bytes, decoded with replacement, parse to JSON-able facts and judge cleanly."""
    text = data.decode("utf-8", errors="replace")
    for facts, assess in ((sm.parse_cf(text), sm.assess_cf), (sm.parse_mc(text), sm.assess_mc)):
        json.dumps(facts)
        assert isinstance(assess(CF_PATH, facts), list)


@settings(max_examples=100, deadline=None)
@given(st.text(alphabet="OCTFMKD`'(),=#\n \tdnlp{}:/|", max_size=300))
def test_parsers_never_raise_on_config_like_text(text: str) -> None:
    """Text made of .cf and m4 syntax characters never breaks the parsers."""
    cf, mc = sm.parse_cf(text), sm.parse_mc(text)
    assert isinstance(sm.diff_cf(CF_PATH, CF_FACTS, cf), list)
    assert isinstance(sm.diff_mc(MC_PATH, MC_FACTS, mc), list)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=100, deadline=None)
@given(_JSON, _JSON)
def test_judges_never_raise_on_arbitrary_facts(before: object, after: object) -> None:
    """diff and assess accept any JSON value (facts come back from the database)."""
    for b in (before, CF_FACTS):
        assert isinstance(sm.diff_cf(CF_PATH, b, after), list)  # type: ignore[arg-type]
        assert isinstance(sm.diff_mc(MC_PATH, b, after), list)  # type: ignore[arg-type]
    assert isinstance(sm.assess_cf(CF_PATH, after), list)  # type: ignore[arg-type]
    assert isinstance(sm.assess_mc(MC_PATH, after), list)  # type: ignore[arg-type]
