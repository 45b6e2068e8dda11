"""Tests for the aliases(5), :include: and .forward analyzers."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.analyzers import aliases as al
from integrity.model import Severity

DATA = Path(__file__).parent / "data" / "sendmail"
STOCK = (DATA / "aliases").read_text()
PATH = "/etc/aliases"


def _rules(findings: list) -> dict[str, Severity]:
    return {f.rule: f.severity for f in findings}


def test_stock_debian_aliases_parse_cleanly() -> None:
    """The Debian example aliases file yields its four aliases and no warnings."""
    facts = al.parse(STOCK)
    assert sorted(facts["aliases"]) == ["abuse", "mailer-daemon", "postmaster", "spam"]
    assert facts["warnings"] == []
    assert json.loads(json.dumps(facts)) == facts


def test_stock_debian_aliases_assess_clean() -> None:
    """The Debian example aliases file has no finding at all."""
    assert al.assess(PATH, al.parse(STOCK)) == []


@pytest.mark.parametrize(
    ("text", "name", "kinds"),
    [
        ("a: b, c\n", "a", ["address", "address"]),
        ("a: b,\n  c\n", "a", ["address", "address"]),
        ("a: b,\\\nc\n", "a", ["address", "address"]),
        ('a: "|/usr/bin/prog x, y"\n', "a", ["program"]),
        ("a: :include:/etc/mail/list\n", "a", ["include"]),
        ("a: :INCLUDE:/etc/mail/list\n", "a", ["include"]),
        ("a: /var/log/a.log\n", "a", ["file"]),
        ('a: error:5.1.1 "no such user"\n', "a", ["error"]),
        ("a: bob@example.com, \\root\n", "a", ["address", "address"]),
        ("# comment\nA:b\n", "a", ["address"]),
    ],
)
def test_parse_target_kinds(text: str, name: str, kinds: list[str]) -> None:
    """Continuations, quoting and target forms are classified per aliases(5)."""
    facts = al.parse(text)
    assert [t["kind"] for t in facts["aliases"][name]["targets"]] == kinds


@pytest.mark.parametrize(
    ("command", "program", "kind"),
    [
        ("/usr/bin/uudecode", "uudecode", "decoder"),
        ("/bin/sh -c 'cat > /tmp/x'", "sh", "shell"),
        ("/usr/bin/python3.11 /srv/x.py", "python3.11", "interpreter"),
        ("/usr/bin/env perl -e 1", "perl", "interpreter"),
        ("exec /usr/bin/gawk '{print}'", "gawk", "interpreter"),
        ("/usr/bin/procmail -f-", "procmail", "mda"),
        ("/usr/local/bin/filter", "filter", "other"),
        ("'unbalanced", "'unbalanced", "other"),
    ],
)
def test_program_kind(command: str, program: str, kind: str) -> None:
    """A pipe's program is resolved through wrappers and classified by basename."""
    assert al.program_kind(command) == (program, kind)


def test_duplicate_alias_is_warned_and_reported() -> None:
    """A second definition of a name is a parse warning and a LOW finding."""
    facts = al.parse("root: alice\nROOT: mallory\n")
    assert facts["warnings"][0][0] == 2
    assert _rules(al.assess(PATH, facts))["MI-ALIAS-DUPLICATE"] == Severity.LOW


@pytest.mark.parametrize(
    ("edit", "rule", "severity"),
    [
        ('decode: "|/usr/bin/uudecode"\n', "MI-ALIAS-DECODE", Severity.CRITICAL),
        ("decode: |/usr/local/bin/mystery\n", "MI-ALIAS-DECODE", Severity.CRITICAL),
        ('x: "|/bin/bash -c id"\n', "MI-ALIAS-PIPE-SHELL", Severity.CRITICAL),
        ('x: "|/usr/bin/perl /srv/x"\n', "MI-ALIAS-PIPE-INTERPRETER", Severity.CRITICAL),
        ("x: /etc/passwd\n", "MI-ALIAS-FILE-SYSTEM", Severity.CRITICAL),
        ("x: /home/bob/.ssh/authorized_keys\n", "MI-ALIAS-FILE-SYSTEM", Severity.CRITICAL),
        ('x: "|/usr/local/bin/filter"\n', "MI-ALIAS-PIPE-ADDED", Severity.HIGH),
        ("x: /srv/archive/mail\n", "MI-ALIAS-FILE-ADDED", Severity.HIGH),
        ("x: :include:/etc/mail/lists/x\n", "MI-ALIAS-INCLUDE-ADDED", Severity.HIGH),
        ("x: bob\n", "MI-ALIAS-ADDED", Severity.MEDIUM),
    ],
)
def test_diff_new_target(edit: str, rule: str, severity: Severity) -> None:
    """A target added to the stock file gets the rule and severity of its risk."""
    findings = al.diff(PATH, al.parse(STOCK), al.parse(STOCK + edit))
    assert _rules(findings)[rule] == severity


@pytest.mark.parametrize(
    ("edit", "rule", "severity"),
    [
        ('decode: "|/usr/bin/uudecode"\n', "MI-ALIAS-DECODE", Severity.CRITICAL),
        ('x: "|/bin/sh"\n', "MI-ALIAS-PIPE-SHELL", Severity.CRITICAL),
        ("x: /root/.rhosts\n", "MI-ALIAS-FILE-SYSTEM", Severity.CRITICAL),
        ('x: "|/usr/local/bin/filter"\n', "MI-ALIAS-PIPE", Severity.MEDIUM),
        ('x: "|/usr/bin/procmail"\n', "MI-ALIAS-PIPE", Severity.LOW),
        ("x: /srv/archive/mail\n", "MI-ALIAS-FILE", Severity.MEDIUM),
        ("x: /var/log/mail-copy\n", "MI-ALIAS-FILE", Severity.LOW),
        ("x: :include:/etc/mail/lists/x\n", "MI-ALIAS-INCLUDE", Severity.INFO),
    ],
)
def test_assess_risky_state(edit: str, rule: str, severity: Severity) -> None:
    """Risky targets in an aliases file are reported with no baseline."""
    assert _rules(al.assess(PATH, al.parse(STOCK + edit)))[rule] == severity


def test_dev_null_target_is_not_a_risk() -> None:
    """Sending an alias to /dev/null is the usual way to drop its mail."""
    assert al.assess(PATH, al.parse(STOCK + "nobody: /dev/null\n")) == []


@pytest.mark.parametrize(
    ("old", "new", "rule", "severity"),
    [
        ("abuse:\t\tpostmaster", "abuse:\t\talice", "MI-ALIAS-CHANGED", Severity.MEDIUM),
        ("abuse:\t\tpostmaster\n", "", "MI-ALIAS-REMOVED", Severity.MEDIUM),
        ("postmaster:\troot\n", "", "MI-ALIAS-REMOVED", Severity.HIGH),
    ],
)
def test_diff_address_changes(old: str, new: str, rule: str, severity: Severity) -> None:
    """Re-pointed or removed aliases are MEDIUM, losing postmaster or root is HIGH."""
    assert old in STOCK
    findings = al.diff(PATH, al.parse(STOCK), al.parse(STOCK.replace(old, new)))
    assert _rules(findings) == {rule: severity}


def test_diff_of_identical_files_is_empty() -> None:
    """Comments and spacing alone are not meaningful: the judge adds the generic finding."""
    edited = STOCK.replace("# Other aliases", "# other aliases, edited").replace(":\t\t", ": ")
    assert al.diff(PATH, al.parse(STOCK), al.parse(edited)) == []


def test_missing_required_aliases_are_info() -> None:
    """An aliases file without postmaster and MAILER-DAEMON gets INFO notes."""
    found = [f for f in al.assess(PATH, al.parse("root: alice\n")) if f.severity == Severity.INFO]
    assert {f.attribute for f in found} == {"alias:postmaster", "alias:mailer-daemon"}


def test_include_list_targets_are_unnamed() -> None:
    """An :include: list has bare targets, judged like an alias's."""
    facts = al.parse('bob\n"|/bin/sh -c id"\nalice@example.com\n')
    assert facts["aliases"] == {}
    assert _rules(al.assess("/etc/mail/lists/x", facts)) == {
        "MI-ALIAS-PIPE-SHELL": Severity.CRITICAL
    }


def test_secrets_in_commands_are_redacted() -> None:
    """Password-like arguments and URL credentials never reach a finding."""
    text = 'rt: "|/usr/bin/rt-mailgate --url https://bob:hunter2@rt/ --password=hunter2"\n'
    findings = al.diff(PATH, al.parse(""), al.parse(text))
    assert findings
    assert all("hunter2" not in json.dumps(f.to_json()) for f in findings)


@pytest.mark.parametrize(
    ("text", "rule", "severity"),
    [
        ('"|/usr/bin/uudecode"\n', "MI-FORWARD-DECODE", Severity.CRITICAL),
        # runs as bob, not as root: high, not critical (a decoder stays critical)
        ("|/usr/bin/python3 /home/bob/x.py\n", "MI-FORWARD-PIPE-INTERPRETER", Severity.HIGH),
        ("/home/bob/.bashrc\n", "MI-FORWARD-FILE-SYSTEM", Severity.CRITICAL),
        ('bob, "|/usr/bin/procmail -f-"\n', "MI-FORWARD-PIPE", Severity.LOW),
    ],
)
def test_forward_assess(text: str, rule: str, severity: Severity) -> None:
    """A .forward is judged like an alias with no name."""
    assert _rules(al.assess_forward("/home/bob/.forward", al.parse_forward(text))) == {
        rule: severity
    }


def test_forward_diff() -> None:
    """Pointing a .forward at a new address is MEDIUM, adding a shell pipe HIGH (as bob)."""
    before = al.parse_forward("bob@example.com\n")
    moved = al.diff_forward("/home/bob/.forward", before, al.parse_forward("eve@evil.test\n"))
    assert _rules(moved) == {"MI-FORWARD-CHANGED": Severity.MEDIUM}
    piped = al.parse_forward('bob@example.com, "|/bin/sh -c id"\n')
    assert _rules(al.diff_forward("/home/bob/.forward", before, piped)) == {
        "MI-FORWARD-PIPE-SHELL": Severity.HIGH
    }


def test_forward_name_colon_is_not_an_alias() -> None:
    """In a .forward nothing is an alias name, even text that looks like one."""
    facts = al.parse_forward("bob: alice\n")
    assert facts["aliases"] == {}
    assert len(facts["targets"]) == 1


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_parsers_never_raise(data: bytes) -> None:
    """Any bytes, decoded with replacement, parse to JSON-able facts."""
    text = data.decode("utf-8", errors="replace")
    for facts in (al.parse(text), al.parse_forward(text)):
        assert isinstance(facts, dict)
        json.dumps(facts)
        assert isinstance(al.assess(PATH, facts), list)
        assert isinstance(al.assess_forward(PATH, facts), list)


_JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=20,
)


@settings(max_examples=200, deadline=None)
@given(_JSON, _JSON)
def test_judges_never_raise_on_arbitrary_facts(before: object, after: object) -> None:
    """diff and assess accept any JSON value (facts come back from the database)."""
    for b in (before, al.parse(STOCK)):
        assert isinstance(al.diff(PATH, b, after), list)  # type: ignore[arg-type]
        assert isinstance(al.diff_forward(PATH, b, after), list)  # type: ignore[arg-type]
    assert isinstance(al.assess(PATH, after), list)  # type: ignore[arg-type]
