"""postfix network lists that name files and tables (issue 10 class 4): expanded, judged
on their content, and a change of the table judged as a change of the networks."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integrity import api
from integrity.analyzers import postfix as pf
from integrity.model import Severity
from tests import mtatrees

MAIN = "/etc/postfix/main.cf"
BASE = "smtpd_relay_restrictions = permit_mynetworks defer_unauth_destination\n"


def _facts(main: str, tables: dict[str, str]) -> dict:
    facts = pf.parse_main(BASE + main)
    refs = pf.references_main(facts)
    return pf.expand_main(facts, {r: tables.get(r) for r in refs})


def _rules(findings) -> set[tuple[str, Severity]]:
    return {(f.rule, f.severity) for f in findings}


@pytest.mark.parametrize(
    "entry",
    ["/etc/postfix/network_table", "cidr:/etc/postfix/network_table",
     "hash:/etc/postfix/network_table", "texthash:/etc/postfix/network_table"],
)  # fmt: skip
def test_table_entries_are_expanded_and_judged_by_their_union(entry: str) -> None:
    """Two /1s inside a table named by mynetworks: an open relay, whatever the table type."""
    facts = _facts(f"mynetworks = 127.0.0.0/8 {entry}\n",
                   {"/etc/postfix/network_table": "0.0.0.0/1 OK\n128.0.0.0/1 OK\n"})  # fmt: skip
    found = pf.assess_main(MAIN, facts)
    assert ("MI-POSTFIX-MYNETWORKS-OPEN", Severity.CRITICAL) in _rules(found)
    assert any("network_table" in f.message for f in found)


def test_plain_list_file_may_hold_several_patterns_a_line() -> None:
    """A /file/name list: every pattern on every line counts."""
    facts = _facts("mynetworks = /etc/postfix/nets\n",
                   {"/etc/postfix/nets": "# ours\n10.0.0.0/8 8.8.0.0/16\n"})  # fmt: skip
    assert ("MI-POSTFIX-MYNETWORKS-WIDE", Severity.HIGH) in _rules(pf.assess_main(MAIN, facts))


def test_table_change_is_a_mynetworks_change() -> None:
    """Only the table changed: judged as mynetworks gaining those networks."""
    main = "mynetworks = 127.0.0.0/8 cidr:/etc/postfix/nets.cidr\n"
    before = _facts(main, {"/etc/postfix/nets.cidr": "192.168.1.0/24 OK\n"})
    wide = _facts(main, {"/etc/postfix/nets.cidr": "192.168.1.0/24 OK\n93.184.0.0/16 OK\n"})
    found = pf.diff_main(MAIN, before, wide)
    assert ("MI-POSTFIX-MYNETWORKS-WIDE", Severity.HIGH) in _rules(found)
    narrow = _facts(main, {"/etc/postfix/nets.cidr": "192.168.1.0/24 OK\n93.184.216.34 OK\n"})
    found = pf.diff_main(MAIN, before, narrow)
    assert ("MI-POSTFIX-MYNETWORKS-CHANGED", Severity.HIGH) in _rules(found)
    assert any("via /etc/postfix/nets.cidr" in f.message for f in found)


def test_client_access_grants_before_the_guard_are_judged() -> None:
    """check_client_access OK rows before defer_unauth_destination relay their clients."""
    main = (
        "smtpd_relay_restrictions = permit_mynetworks "
        "check_client_access cidr:/etc/postfix/clients defer_unauth_destination\n"
    )
    facts = _facts(main, {"/etc/postfix/clients": "0.0.0.0/1 OK\n128.0.0.0/1 PERMIT\n"})
    assert ("MI-POSTFIX-CLIENT-ACCESS-OPEN", Severity.CRITICAL) in _rules(
        pf.assess_main(MAIN, facts)
    )
    after_guard = main.replace(
        "check_client_access cidr:/etc/postfix/clients defer_unauth_destination",
        "defer_unauth_destination check_client_access cidr:/etc/postfix/clients",
    )
    facts = _facts(after_guard, {"/etc/postfix/clients": "0.0.0.0/1 OK\n128.0.0.0/1 OK\n"})
    assert not any("CLIENT-ACCESS" in f.rule for f in pf.assess_main(MAIN, facts))


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="real package trees need chown (root)")
def test_real_tree_table_edit_is_reported_on_main_cf(tmp_path: Path) -> None:
    """On the real postfix tree: mynetworks names a cidr table; widening the table (main.cf
    untouched) is critical at verify, and audit says the same."""
    try:
        mtatrees.fetch("postfix")
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"postfix packages unavailable: {exc}")
    root = mtatrees.build_tree("postfix", tmp_path / "root")
    table = root / "etc/postfix/network_table"
    table.write_text("192.168.10.0/24 OK\n")
    main = root / "etc/postfix/main.cf"
    text = main.read_text().replace(
        "mynetworks = 127.0.0.0/8", "mynetworks = cidr:/etc/postfix/network_table 127.0.0.0/8"
    )
    main.write_text(text)
    db = tmp_path / "baseline.db"
    api.init(api.Options(root=str(root), db=str(db)))
    table.write_text("192.168.10.0/24 OK\n0.0.0.0/1 OK\n128.0.0.0/1 OK\n")
    rep = api.verify(api.Options(root=str(root), db=str(db)), record_run=False)
    assert any(f.path == MAIN and f.rule == "MI-POSTFIX-MYNETWORKS-OPEN" for f in rep.findings), (
        rep.findings
    )
    audit = api.audit(api.Options(root=str(root)))
    assert any(f.path == MAIN and f.rule == "MI-POSTFIX-MYNETWORKS-OPEN" for f in audit.findings)
    # the daemon's path-scoped check of the table alone re-judges main.cf too
    from integrity.session import Session

    session = Session(api.Options(root=str(root), db=str(db)))
    try:
        scoped, _, _ = session.check(["/etc/postfix/network_table"])
    finally:
        session.close()
    assert any(
        f.path == MAIN and f.rule == "MI-POSTFIX-MYNETWORKS-OPEN" for f in scoped.findings
    ), scoped.findings



def test_facts_change_with_same_bytes_is_not_called_a_content_change() -> None:
    """A baseline from an older analyzer (no .cf body digest yet), same bytes: the first
    verify says the analysis changed (low), not that the content did."""
    from integrity import judge as jd
    from integrity import policy as pol
    from integrity.analyzers import sendmail as sm
    from integrity.compare import compare
    from integrity.model import FileRecord, FileType, Role

    cf = "/etc/mail/sendmail.cf"
    new_f = sm.parse_cf("O PrivacyOptions=goaway\n")
    old_f = {k: v for k, v in new_f.items() if k != "body"}
    rec = FileRecord(cf, FileType.FILE, 0o644, 0, 0, digest="blake3:00", facts=old_f)
    new = FileRecord(cf, FileType.FILE, 0o644, 0, 0, digest="blake3:00", facts=new_f)
    rule = pol.Rule(
        cf, Role.GENERATED, "sendmail", pol.Expect(), analyzer="sendmail-cf",
        source="/etc/mail/sendmail.mc",
    )  # fmt: skip
    policy = pol.Policy(("sendmail",), (rule,))
    changes = compare({cf: rec}, {cf: new}, {cf: Role.GENERATED})
    found = jd.judge(changes, {cf: rec}, {cf: new}, policy)
    assert [(f.rule, f.severity) for f in found] == [("MI-ANALYSIS-CHANGED", Severity.LOW)]
