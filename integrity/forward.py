"""A one-shot verify's findings to the SIEM (AIDE's ``report_url=syslog``).

Same outbox and the same life cycle as ``watch``: a finding seen for the first time goes
out as a finding, a high or critical one still open is sent again (``realert``), one that
is gone is sent as resolved. Acknowledged and waived findings are not sent.
"""

from __future__ import annotations

from dataclasses import replace

from integrity import emit
from integrity.api import Tracked
from integrity.model import Finding, Report
from integrity.standing import is_standing
from integrity.store import finding_key, row_finding
from integrity.syslog import SyslogSender

#: how long a cron verify waits for the server before leaving the rest in the outbox
FLUSH_TIMEOUT = 10.0


def events(report: Report, tracked: Tracked, *, host: str) -> list[emit.Event]:
    """The messages, in order: findings the SIEM has not had (new, or standing since init),
    re-alerts of open high or critical ones, then resolutions."""
    fresh = {finding_key(f) for f in tracked.new}
    out = []
    for f in tracked.new:
        out.append(emit.finding_event(_with_fix(f), host=host))
    for f in report.findings:
        key = finding_key(f)
        if key in fresh:
            continue
        if key in tracked.unsent:
            out.append(emit.finding_event(_with_fix(f), host=host))
        elif is_standing(f):
            out.append(emit.finding_event(f, host=host, action="realert"))
    for row in tracked.resolved:
        out.append(emit.resolved_event(row_finding(row), host=host))
    return out


def send(sender: SyslogSender, report: Report, tracked: Tracked, *, host: str) -> list[str]:
    """Queue every message in the outbox, give the sender ``FLUSH_TIMEOUT`` to deliver them
    (what is left goes out with the next run or the daemon), and return the keys sent."""
    sender.start()
    try:
        for event in events(report, tracked, host=host):
            sender.send(*event)
    finally:
        sender.close(FLUSH_TIMEOUT)
    sent = {finding_key(f) for f in tracked.new}
    for f in report.findings:
        if is_standing(f) or finding_key(f) in tracked.unsent:
            sent.add(finding_key(f))
    return sorted(sent)


def _with_fix(f: Finding) -> Finding:
    if f.fix:
        return f
    return replace(f, fix=f"if intended: mail-integrity update --accept {f.path} --reason '...'")
