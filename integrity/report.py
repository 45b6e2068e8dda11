"""Report -> text for people, JSON for scripts and SIEM pipelines. Pure.

The JSON shape is a contract (PRODUCT.md): extend it, never break it.
"""

from __future__ import annotations

import json
from typing import Any

from integrity.model import Actor, Finding, Report, Severity

_ORDER = sorted(Severity, key=lambda s: -s.rank)


def to_json(report: Report) -> dict[str, Any]:
    return {
        "summary": {
            "added": report.added,
            "removed": report.removed,
            "changed": report.changed,
            "by_severity": report.by_severity(),
            "scanned": report.scanned,
            "acknowledged": len(report.acknowledged),
        },
        "findings": [f.to_json() for f in report.findings],
        "warnings": [w.to_json() for w in report.warnings],
        "header": report.header,
        "acknowledged": [a.to_json() for a in report.acknowledged],
    }


def render_json(report: Report) -> str:
    # surrogate-escaped (non-UTF-8) path bytes come out as \udcXX escapes: valid JSON
    return json.dumps(to_json(report), indent=2, sort_keys=False, default=str)


def safe(text: object) -> str:
    """Printable, unambiguous form of a value: names cannot forge lines or look alike.

    A backslash is doubled, an undecodable byte of a file name (a surrogate escape) shows
    as ``\\xNN``, and other unprintable characters as ``\\xNN``/``\\uNNNN``/``\\UNNNNNNNN``.
    """
    return "".join(_safe_char(c) for c in str(text))


def _safe_char(c: str) -> str:
    o = ord(c)
    if c == "\\":
        return "\\\\"
    if 0xDC80 <= o <= 0xDCFF:
        return f"\\x{o - 0xDC00:02x}"
    if c.isprintable():
        return c
    if o <= 0xFF:
        return f"\\x{o:02x}"
    return f"\\u{o:04x}" if o <= 0xFFFF else f"\\U{o:08x}"


def _value(v: object) -> str:
    if v is None:
        return "-"
    if isinstance(v, list | tuple):
        return "[" + ", ".join(safe(x) for x in v) + "]"
    text = safe(v)
    if text.startswith("blake3:"):
        return text[:19] + "…"
    return text if len(text) <= 80 else text[:77] + "..."


def render_finding(f: Finding) -> list[str]:
    lines = [f"  {safe(f.path)}: {safe(f.message)} [{f.rule}]"]
    if f.before is not None or f.after is not None:
        lines.append(f"      {f.attribute or 'value'}: {_value(f.before)} -> {_value(f.after)}")
    if f.fix:
        # a fix made of printable ASCII is a shell command with quoted names (perms.shell_path):
        # shown as is, so it can be pasted; anything else is escaped like every value
        shown = f.fix if f.fix.isascii() and f.fix.isprintable() else safe(f.fix)
        lines.append(f"      fix: {shown}")
    if f.actor is not None:
        lines.append(f"      by: {actor_text(f.actor)}")
    return lines


def actor_text(a: Actor) -> str:
    """``uid 1000 (alice), login uid 1000 (alice), /usr/bin/chmod pid 42 ...`` or why not."""
    if not a.attributed:
        return f"unknown ({safe(a.reason)})"

    def who(uid: int | None, name: str | None) -> str:
        return "unset" if uid is None else f"{uid}" + (f" ({safe(name)})" if name else "")

    parts = [f"uid {who(a.uid, a.user)}"]
    if a.euid != a.uid:
        parts.append(f"euid {who(a.euid, a.euser)}")
    parts.append(f"login uid {who(a.auid, a.auser)}")
    parts.append(f"{safe(a.exe or a.comm or '?')} pid {a.pid} ppid {a.ppid}")
    if a.args:
        parts.append("args " + _value(" ".join(a.args)))
    session = "unset" if a.session is None else str(a.session)
    parts.append(f"tty {safe(a.tty or 'none')}, session {session}")
    if a.event_id:
        parts.append(f"audit event {a.event_id}")
    return ", ".join(parts)


def render_standing(report: Report) -> str:
    """What ``init`` did not accept: it keeps alerting until fixed or acknowledged."""
    standing = [f for f in report.findings if f.severity.rank >= Severity.HIGH.rank]
    if not standing:
        return ""
    lines = [
        f"{len(standing)} high or critical finding(s) are NOT accepted into the baseline: "
        "every `verify` reports them (exit bit 8) and `watch` keeps alerting on them until "
        "they are fixed, or acknowledged with",
        "  mail-integrity update --accept PATH --reason '...'",
        "for these paths:",
    ]
    lines.extend(f"  {safe(p)}" for p in sorted({f.path for f in standing}))
    return "\n".join(lines)


def render_text(report: Report, *, verbose: bool = False) -> str:
    h = report.header
    lines = []
    if h:
        signed = "signed" if h.get("signed") else "unsigned"
        lines.append(
            f"mail-integrity {h.get('command', '')}: root {safe(h.get('root', '/'))}, "
            f"profiles {', '.join(h.get('profiles', []))}"
            + (f", baseline generation {h['generation']} ({signed})" if "generation" in h else "")
        )
        lines.extend(f"note: {safe(n)}" for n in h.get("notes") or [])
    counts = report.by_severity()
    lines.append(
        f"{report.scanned} paths checked: {report.added} added, {report.removed} removed, "
        f"{report.changed} changed; findings: "
        + ", ".join(f"{counts[str(s)]} {s}" for s in _ORDER if counts[str(s)])
        if report.findings
        else f"{report.scanned} paths checked: {report.added} added, {report.removed} removed, "
        f"{report.changed} changed; no findings"
    )
    for sev in _ORDER:
        group = [f for f in report.findings if f.severity == sev]
        if not group:
            continue
        lines.append("")
        lines.append(f"{str(sev).upper()} ({len(group)})")
        for f in group:
            lines.extend(render_finding(f))
    if report.acknowledged:
        lines.append("")
        lines.append(f"ACKNOWLEDGED ({len(report.acknowledged)}): still present, not counted")
        for a in report.acknowledged:
            f = a.finding
            lines.append(f"  {safe(f.path)}: {safe(f.message)} [{f.rule}, {f.severity}]")
            when = f" on {a.at}" if a.at else ""
            lines.append(f"      acknowledged by {safe(a.by)}{when}: {safe(a.reason)}")
    if report.warnings:
        lines.append("")
        lines.append(f"WARNINGS ({len(report.warnings)}): paths not fully checked")
        shown = report.warnings if verbose else report.warnings[:20]
        lines.extend(f"  {safe(w.path)}: {safe(w.message)}" for w in shown)
        if len(shown) < len(report.warnings):
            lines.append(f"  ... and {len(report.warnings) - len(shown)} more (-v shows all)")
    return "\n".join(lines)
