"""/etc/group: members joining the mail groups are reported; other changes stay low."""

from __future__ import annotations

from pathlib import Path

from hypothesis import given
from hypothesis import strategies as st

from integrity import api
from integrity.analyzers import groups

STOCK = """root:x:0:
mail:x:8:
smmsp:x:115:smmta
postdrop:x:116:
Debian-exim:x:117:
users:x:100:
"""


def test_parse_keeps_only_the_mail_groups():
    """Only mail-relevant groups are in the facts, with their members."""
    facts = groups.parse(STOCK)
    assert facts["groups"]["smmsp"] == ["smmta"]
    assert "users" not in facts["groups"] and "root" not in facts["groups"]


def test_new_member_of_postdrop_is_high():
    """A user added to postdrop: high, naming the user and what the group gives."""
    after = groups.parse(STOCK.replace("postdrop:x:116:", "postdrop:x:116:mallory"))
    found = groups.diff("/etc/group", groups.parse(STOCK), after)
    assert [(f.rule, str(f.severity)) for f in found] == [("MI-GROUP-MEMBER-ADDED", "high")]
    assert "mallory" in found[0].message


def test_stock_membership_is_not_a_finding_but_exim_admins_are():
    """Debian's own accounts in smmsp are expected; a human in Debian-exim is high."""
    assert groups.assess("/etc/group", groups.parse(STOCK)) == []
    found = groups.assess("/etc/group", groups.parse(STOCK.replace("Debian-exim:x:117:",
                                                                    "Debian-exim:x:117:bob")))
    assert [str(f.severity) for f in found] == ["high"]


@given(st.text())
def test_parse_never_raises(text):
    """Arbitrary text parses to facts."""
    facts = groups.parse(text)
    assert isinstance(facts["groups"], dict)


def test_unrelated_group_change_is_low_and_mail_group_change_high(tmp_path: Path):
    """End to end: a new user group is low; joining the mail group is high (exit bit 8)."""
    (tmp_path / "etc").mkdir()
    group = tmp_path / "etc/group"
    group.write_text(STOCK)
    group.chmod(0o644)
    opts = api.Options(root=str(tmp_path), db=str(tmp_path / "b.db"), profiles=("common",))
    api.init(opts)
    group.write_text(STOCK + "alice:x:1000:\n")
    rep = api.verify(opts, record_run=False)
    assert [(f.rule, str(f.severity)) for f in rep.findings if f.path == "/etc/group"] == [
        ("MI-CONTENT-CHANGED", "low")
    ]
    group.write_text(STOCK.replace("mail:x:8:", "mail:x:8:alice") + "alice:x:1000:\n")
    rep = api.verify(opts, record_run=False)
    assert any(f.rule == "MI-GROUP-MEMBER-ADDED" for f in rep.findings)
    assert rep.exit_code() & 8
