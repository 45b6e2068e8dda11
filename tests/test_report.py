"""report: the JSON contract scripts depend on, and text that file names cannot forge."""

from __future__ import annotations

import json
import os
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.model import Finding, Report, ScanWarning, Severity
from integrity.report import render_json, render_text, safe

ODD = os.fsdecode(b"/etc/mail/\xff")
SUMMARY_KEYS = {"added", "removed", "changed", "by_severity"}
FINDING_KEYS = {"path", "rule", "severity", "attribute", "before", "after", "message"}


def sample() -> Report:
    """A report with one finding per severity, a fix, a warning and odd path bytes."""
    findings = [
        Finding(
            "/usr/sbin/sendmail",
            "MI-SETID-ADDED",
            Severity.CRITICAL,
            "u+s added",
            "mode",
            "0755",
            "4755",
            fix="chmod 0755 /usr/sbin/sendmail",
        ),
        Finding("/etc/aliases", "MI-FILE-REMOVED", Severity.HIGH, "removed", "", "file", None),
        Finding(
            ODD,
            "MI-CONTENT-CHANGED",
            Severity.MEDIUM,
            "changed",
            "content",
            "blake3:aa",
            "blake3:bb",
        ),
        Finding("/etc/mail/x", "MI-METADATA-CHANGED", Severity.LOW, "metadata only", "mtime_ns"),
        Finding("/etc/mail/a.db", "MI-MAP-REBUILT", Severity.INFO, "rebuilt", "content"),
    ]
    return Report(
        findings=findings,
        warnings=[ScanWarning("/var/spool/mqueue/qf1", "vanished during the scan")],
        added=1,
        removed=1,
        changed=3,
        scanned=40,
    )


# --------------------------------------------------------------------------- JSON


def test_json_has_the_promised_top_level_shape() -> None:
    """summary/findings/warnings exist with the PRODUCT.md keys (extensions allowed)."""
    doc = json.loads(render_json(sample()))
    assert set(doc) >= {"summary", "findings", "warnings"}
    summary = doc["summary"]
    assert set(summary) >= SUMMARY_KEYS
    assert (summary["added"], summary["removed"], summary["changed"]) == (1, 1, 3)


def test_json_by_severity_counts_every_lowercase_severity() -> None:
    """by_severity has all five lowercase names, zero included."""
    report = sample()
    report.findings = report.findings[:2]
    doc = json.loads(render_json(report))
    assert doc["summary"]["by_severity"] == {
        "info": 0,
        "low": 0,
        "medium": 0,
        "high": 1,
        "critical": 1,
    }


def test_json_findings_have_exactly_the_contract_keys() -> None:
    """Each finding has path, rule, severity, attribute, before, after, message (+fix if any)."""
    doc = json.loads(render_json(sample()))
    for f, src in zip(doc["findings"], sample().findings, strict=True):
        assert set(f) == FINDING_KEYS | ({"fix"} if src.fix else set())
        assert f["severity"] == str(src.severity).lower() == src.severity.value
        assert (f["path"], f["rule"], f["before"], f["after"]) == (
            src.path,
            src.rule,
            src.before,
            src.after,
        )


def test_json_warnings_have_path_and_message() -> None:
    """Each warning is exactly {path, message}."""
    doc = json.loads(render_json(sample()))
    assert doc["warnings"] == [
        {"path": "/var/spool/mqueue/qf1", "message": "vanished during the scan"}
    ]


def test_json_is_ascii_and_round_trips_non_utf8_paths() -> None:
    """A non-UTF-8 name comes out as a JSON escape and parses back to the same str."""
    text = render_json(sample())
    assert text.isascii()
    paths = [f["path"] for f in json.loads(text)["findings"]]
    assert ODD in paths


def test_empty_report_json() -> None:
    """No findings: zero counts, empty lists, still the full shape."""
    doc = json.loads(render_json(Report()))
    assert doc["findings"] == [] and doc["warnings"] == []
    assert set(doc["summary"]["by_severity"].values()) == {0}


# --------------------------------------------------------------------------- text


def test_text_groups_findings_by_severity_most_serious_first() -> None:
    """Headings go CRITICAL, HIGH, MEDIUM, LOW, INFO, each followed by its findings."""
    lines = render_text(sample()).splitlines()
    heads = [ln for ln in lines if ln and ln.split(" ")[0].isupper() and "(" in ln]
    assert heads == [
        "CRITICAL (1)",
        "HIGH (1)",
        "MEDIUM (1)",
        "LOW (1)",
        "INFO (1)",
        "WARNINGS (1): paths not fully checked",
    ]
    crit = lines.index("CRITICAL (1)")
    assert lines[crit + 1].startswith("  /usr/sbin/sendmail: u+s added [MI-SETID-ADDED]")
    assert lines[crit + 2].strip() == "mode: 0755 -> 4755"
    assert lines[crit + 3].strip() == "fix: chmod 0755 /usr/sbin/sendmail"


def test_text_summary_line_counts() -> None:
    """The first line gives the counts, and says when nothing was found."""
    assert render_text(sample()).splitlines()[0] == (
        "40 paths checked: 1 added, 1 removed, 3 changed; "
        "findings: 1 critical, 1 high, 1 medium, 1 low, 1 info"
    )
    assert render_text(Report(scanned=5)) == (
        "5 paths checked: 0 added, 0 removed, 0 changed; no findings"
    )


FORGERIES = [
    "/etc/mail/x\nCRITICAL (1)",
    "/etc/mail/x\r  /etc/shadow: fine [MI-OK]",
    "/etc/mail/\x1b[2K\x1b[1Gclean",
    "/etc/mail/\u202eevil",
    "/etc/mail/\x00nul",
    "/etc/mail/\u2028sep",
]


@pytest.mark.parametrize("path", FORGERIES)
def test_control_characters_in_paths_cannot_forge_lines(path: str) -> None:
    """A file name with newline, CR, escape or bidi characters stays on one escaped line."""
    report = Report(
        findings=[Finding(path, "MI-FILE-ADDED", Severity.MEDIUM, f"new file {path}", "", None)],
        warnings=[ScanWarning(path, f"cannot read {path}")],
    )
    text = render_text(report)
    assert text.splitlines() == text.split("\n")  # no \r, \u2028 or other line breaks
    lines = text.split("\n")
    # summary, blank, MEDIUM heading, the finding, blank, WARNINGS heading, the warning
    assert len(lines) == 7
    assert all(line.isprintable() for line in lines)
    assert lines[3].startswith("  /etc/mail/") and lines[3].endswith(" [MI-FILE-ADDED]")
    assert not any(line.startswith(("CRITICAL", "  /etc/shadow")) for line in lines)


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_safe_output_is_always_one_printable_line(text: str) -> None:
    """safe() of any string, surrogates included, is printable and encodable."""
    out = safe(text)
    assert out.isprintable()
    out.encode("utf-8")


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        ("blake3:" + "a" * 64, "blake3:aaaaaaaaaaaa…"),
        (["a", "b\nc"], "[a, b\\x0ac]"),
        (None, "-"),
    ],
)
def test_text_values_are_shortened_and_escaped(value: Any, shown: str) -> None:
    """Digests are abbreviated, lists joined, control characters escaped, None is '-'."""
    f = Finding("/p", "MI-X", Severity.LOW, "m", "attr", value, "x")
    lines = render_text(Report(findings=[f])).splitlines()
    assert lines[-1] == f"      attr: {shown} -> x"


def test_text_warnings_are_capped_unless_verbose() -> None:
    """Over 20 warnings: the first 20 and a count; -v shows them all."""
    report = Report(warnings=[ScanWarning(f"/q/{i}", "vanished") for i in range(25)])
    assert render_text(report).splitlines()[-1] == "  ... and 5 more (-v shows all)"
    assert render_text(report, verbose=True).splitlines()[-1] == "  /q/24: vanished"
