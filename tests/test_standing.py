"""Standing findings, pure: which findings count, which are acknowledged or waived."""

from __future__ import annotations

import pytest

from integrity.config import Waiver
from integrity.model import Finding, Severity
from integrity.standing import is_standing, partition, waiver_for
from integrity.store import finding_key, text_of

F = Finding("/etc/aliases", "MI-ALIAS-DECODE", Severity.CRITICAL, "pipes into uudecode",
            "alias:decode", None, "/usr/bin/uudecode")
Q = Finding("/var/spool/mqueue/qfX", "MI-QUEUE-FILE-EXPOSED", Severity.HIGH, "readable",
            "mode", None, "0644")


def split(findings, acks=None, waivers=()):
    return partition(findings, acks or {}, waivers, key=finding_key, text=text_of)


@pytest.mark.parametrize("severity, standing", [
    (Severity.CRITICAL, True), (Severity.HIGH, True), (Severity.MEDIUM, False),
    (Severity.LOW, False), (Severity.INFO, False),
])
def test_high_and_critical_stand(severity, standing):
    """Only high and critical conditions are kept open past init."""
    f = Finding("/x", "MI-X", severity, "m")
    assert is_standing(f) is standing


def test_acknowledged_value_is_quiet_and_a_new_value_counts():
    """An acknowledgement holds for the value it saw; another value is a new risk."""
    ack = {finding_key(F): {"ack_who": "root@mx1", "ack_at": "t", "ack_reason": "legacy",
                            "ack_after": text_of(F.after)}}
    counted, quiet = split([F], ack)
    assert counted == [] and [(a.finding, a.by, a.reason) for a in quiet] == [
        (F, "root@mx1", "legacy")]
    other = Finding(F.path, F.rule, F.severity, F.message, F.attribute, None, "/bin/sh")
    counted, quiet = split([other], ack)
    assert counted == [other] and quiet == []


@pytest.mark.parametrize("rule, path, hit", [
    ("MI-QUEUE-*", "/var/spool/mqueue/*", True),
    ("MI-QUEUE-FILE-EXPOSED", "/var/spool/*", True),  # * crosses /
    ("MI-QUEUE-FILE-OWNER", "/var/spool/mqueue/*", False),
    ("MI-QUEUE-*", "/var/spool/other/*", False),
])
def test_waiver_matches_rule_and_path_globs(rule, path, hit):
    """A waiver needs both its rule pattern and its path glob to match."""
    w = Waiver(rule, path, "why")
    assert (waiver_for(Q, [w]) is w) is hit
    counted, quiet = split([Q, F], waivers=[w])
    assert (counted == [F]) is hit and len(quiet) == (1 if hit else 0)
