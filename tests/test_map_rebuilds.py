"""Map rebuilds on the real Debian trees (issue 10 class 6): newaliases/makemap for
sendmail, postalias/postmap for postfix, each with the package's own binary."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from integrity import api
from integrity.model import Report, Severity
from tests import mtatrees

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="real package trees need chown (root)"),
    pytest.mark.skipif(
        not any(shutil.which(d) for d in ("db5.3_dump", "db_dump")),
        reason="reading Berkeley DB maps needs db_dump (apt install db5.3-util)",
    ),
]


@pytest.fixture(scope="module")
def pristine(request, tmp_path_factory) -> tuple[Path, Path]:
    mta = request.param
    try:
        mtatrees.fetch(mta)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"{mta} packages unavailable: {exc}")
    base = tmp_path_factory.mktemp(mta)
    root = mtatrees.build_tree(mta, base / "root")
    if mta == "postfix":  # an admin table and its map, then the baseline
        (root / "etc/postfix/transport").write_text("example.net smtp:[relay.example.net]\n")
        mtatrees.postfix_tool(root, "postmap", "/etc/postfix/transport")
    db = base / "baseline.db"
    api.init(api.Options(root=str(root), db=str(db)))
    return root, db


def _maps(rep: Report) -> set[tuple[str, str, Severity]]:
    return {(f.path, f.rule, f.severity) for f in rep.findings if f.attribute == "content"}


def _verify(root: Path, db: Path) -> Report:
    return api.verify(api.Options(root=str(root), db=str(db)), record_run=False)


@pytest.mark.parametrize("pristine", ["sendmail"], indirect=True)
def test_debian_newaliases_and_access_rebuild_are_info(pristine, tmp_path):
    """newaliases (makemap -N) and `make -C /etc/mail` rebuilds: info, nothing high."""
    root, db = mtatrees.copy_baselined(pristine, tmp_path)
    aliases = mtatrees.alias_rows((root / "etc/aliases").read_text())
    mtatrees.sendmail_makemap(root, "/etc/mail/aliases", aliases, ["-N"])
    access = mtatrees.map_rows((root / "etc/mail/access").read_text())
    mtatrees.sendmail_makemap(root, "/etc/mail/access", access)
    rep = _verify(root, db)
    assert _maps(rep) == {
        ("/etc/mail/aliases.db", "MI-MAP-REBUILT", Severity.INFO),
        ("/etc/mail/access.db", "MI-MAP-REBUILT", Severity.INFO),
    }, rep.findings
    assert not [f for f in rep.findings if f.severity.rank >= Severity.HIGH.rank]


@pytest.mark.parametrize("pristine", ["sendmail"], indirect=True)
def test_debian_alias_map_written_from_another_input_is_high(pristine, tmp_path):
    """An alias map holding a pipe the aliases file does not have: edited directly."""
    root, db = mtatrees.copy_baselined(pristine, tmp_path)
    text = (root / "etc/aliases").read_text() + 'backup: "|/bin/sh -c id"\n'
    mtatrees.sendmail_makemap(root, "/etc/mail/aliases", mtatrees.alias_rows(text), ["-N"])
    rep = _verify(root, db)
    hit = [f for f in rep.findings if f.path == "/etc/mail/aliases.db"]
    assert [(f.rule, f.severity) for f in hit] == [("MI-MAP-EDITED", Severity.HIGH)]
    assert "backup" in hit[0].message and "/bin/sh" not in hit[0].message


@pytest.mark.parametrize("pristine", ["postfix"], indirect=True)
def test_postalias_and_postmap_rebuilds_are_info(pristine, tmp_path):
    """postalias and postmap rewrite the bytes; same content: info."""
    root, db = mtatrees.copy_baselined(pristine, tmp_path)
    mtatrees.postfix_tool(root, "postalias", "/etc/aliases")
    mtatrees.postfix_tool(root, "postmap", "/etc/postfix/transport")
    rep = _verify(root, db)
    assert _maps(rep) == {
        ("/etc/aliases.db", "MI-MAP-REBUILT", Severity.INFO),
        ("/etc/postfix/transport.db", "MI-MAP-REBUILT", Severity.INFO),
    }, rep.findings


@pytest.mark.parametrize("pristine", ["postfix"], indirect=True)
def test_postmap_from_another_input_is_high(pristine, tmp_path):
    """transport.db rebuilt from a doctored copy while transport stays: high, key named."""
    root, db = mtatrees.copy_baselined(pristine, tmp_path)
    table = root / "etc/postfix/transport"
    original = table.read_text()
    stamp = table.stat()
    table.write_text(original + "example.org smtp:[evil.example]\n")
    mtatrees.postfix_tool(root, "postmap", "/etc/postfix/transport")
    table.write_text(original)
    os.utime(table, ns=(stamp.st_atime_ns, stamp.st_mtime_ns))
    rep = _verify(root, db)
    hit = [f for f in rep.findings if f.path == "/etc/postfix/transport.db"]
    assert [(f.rule, f.severity) for f in hit] == [("MI-MAP-EDITED", Severity.HIGH)], hit
    assert "example.org" in hit[0].message


# ------------------------------------------------ messages that tell the truth (class 8)


@pytest.mark.parametrize("pristine", ["sendmail"], indirect=True)
def test_debian_m4_regeneration_is_regenerated_not_hand_edited(pristine, tmp_path):
    """sendmailconfig re-runs m4 with the .mc untouched: only the build stamp moves."""
    import time

    root, db = mtatrees.copy_baselined(pristine, tmp_path)
    before = (root / "etc/mail/sendmail.cf").read_text()
    time.sleep(1.1)  # the stamp has a one-second clock
    mtatrees.regenerate_sendmail_cf(root)
    assert (root / "etc/mail/sendmail.cf").read_text() != before
    rep = _verify(root, db)
    cf = {(f.rule, f.severity) for f in rep.findings if f.path == "/etc/mail/sendmail.cf"}
    assert ("MI-GENERATED-REGENERATED", Severity.INFO) in cf, rep.findings
    assert not any(f.rule == "MI-GENERATED-HAND-EDITED" for f in rep.findings)
    assert "regenerated from /etc/mail/sendmail.mc" in next(
        f.message for f in rep.findings if f.rule == "MI-GENERATED-REGENERATED"
    )


@pytest.mark.parametrize("pristine", ["sendmail"], indirect=True)
def test_debian_cf_rule_edit_is_still_hand_edited(pristine, tmp_path):
    """An edit of a rewriting rule (no O line) is not a regeneration."""
    root, db = mtatrees.copy_baselined(pristine, tmp_path)
    cf = root / "etc/mail/sendmail.cf"
    cf.write_text(cf.read_text().replace("\nSParse0", "\nR$*\t$#local $: root\nSParse0", 1))
    rep = _verify(root, db)
    assert any(
        f.path == "/etc/mail/sendmail.cf" and f.rule == "MI-GENERATED-HAND-EDITED"
        for f in rep.findings
    ), rep.findings
