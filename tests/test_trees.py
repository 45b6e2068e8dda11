"""Real package trees: init -> clean verify -> each tamper -> verify, per MTA.

The trees are the real Debian 12 packages unpacked and given the owners and modes their
maintainer scripts set (tests/mtatrees.py). Profiles are detected, as on a real host.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from integrity import api
from integrity.model import Severity
from integrity.store import key_path
from tests import mtatrees

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="real package trees need chown (root)"),
]

MTAS = ("sendmail", "postfix", "exim4", "dovecot")


@pytest.fixture(scope="module")
def pristine(request, tmp_path_factory) -> tuple[str, Path, Path]:
    """(mta, tree, baseline db) built once per MTA; tests copy the tree before tampering."""
    mta = request.param
    mtatrees.ensure_accounts()
    base = tmp_path_factory.mktemp(mta)
    root = mtatrees.build_tree(mta, base / "root")
    mtatrees.write_dpkg_db(mta, root)
    db = base / "baseline.db"
    api.init(api.Options(root=str(root), db=str(db)))
    return mta, root, db


def copy_host(pristine: tuple[str, Path, Path], dest: Path) -> tuple[Path, Path]:
    _, root, db = pristine
    subprocess.run(["cp", "-a", str(root), str(dest / "root")], check=True)
    shutil.copy(db, dest / "baseline.db")
    shutil.copy(key_path(str(db)), dest / "baseline.key")  # its host-local checksum key
    return dest / "root", dest / "baseline.db"


@pytest.mark.parametrize("pristine", MTAS, indirect=True)
def test_profile_detected_and_init_reports_no_high(pristine):
    """The MTA's profile is detected and the stock tree violates nothing high or critical."""
    mta, root, _ = pristine
    rep = api.audit(api.Options(root=str(root)))
    assert any(p.startswith(mta.rstrip("4")) for p in rep.header["profiles"])
    bad = [f for f in rep.findings if f.severity.rank >= Severity.HIGH.rank]
    assert bad == [], "\n".join(f"{f.path}: {f.message} [{f.rule}]" for f in bad)


@pytest.mark.parametrize("pristine", MTAS, indirect=True)
def test_clean_verify_right_after_init_is_silent(pristine):
    """verify straight after init: exit 0, no findings, every path scanned."""
    _, root, db = pristine
    rep = api.verify(api.Options(root=str(root), db=str(db)), record_run=False)
    assert rep.findings == [] and rep.exit_code() == 0
    assert rep.scanned > 20


def _tamper_ids() -> list[tuple[str, str]]:
    return [(mta, t.name) for mta in MTAS for t in mtatrees.tamper_cases(mta)]


@pytest.mark.parametrize(("pristine", "name"), _tamper_ids(), indirect=["pristine"])
def test_each_tamper_is_reported_at_its_severity(pristine, name, tmp_path):
    """Every attack or mistake on the real tree is found on its path at its severity."""
    mta = pristine[0]
    tamper = next(t for t in mtatrees.tamper_cases(mta) if t.name == name)
    root, db = copy_host(pristine, tmp_path)
    tamper.apply(root)
    rep = api.verify(api.Options(root=str(root), db=str(db)), record_run=False)
    mine = [f for f in rep.findings if f.path == tamper.path]
    shown = json.dumps([f.to_json() for f in mine], default=str)
    assert mine, f"nothing reported for {tamper.path}; all: {[f.path for f in rep.findings]}"
    worst = max(f.severity.rank for f in mine)
    assert worst == Severity(tamper.expect_severity).rank, shown
    if worst >= Severity.HIGH.rank:
        assert rep.exit_code() & 8
    if tamper.attribute == "added":
        assert rep.exit_code() & 1
    elif tamper.attribute == "removed":
        assert rep.exit_code() & 2
    else:
        assert rep.exit_code() & 4 or any(f.rule.startswith("MI-QUEUE") for f in mine)


EXIM_CONF = Path("/etc/exim4/update-exim4.conf.conf")


@pytest.mark.skipif(not EXIM_CONF.exists(), reason="exim4 is not installed on this machine")
def test_real_exim4_host_init_and_verify_report_nothing(tmp_path):
    """This machine's real exim4 install, read-only: init + verify --root / report nothing."""
    opts = api.Options(root="/", db=str(tmp_path / "host.db"))
    init = api.init(opts)
    assert "exim4" in init.header["profiles"]
    rep = api.verify(opts, record_run=False)
    assert rep.findings == [], [f.to_json() for f in rep.findings]
    assert rep.exit_code() == 0


def test_audit_finds_the_classic_sendmail_mistakes_with_fixes(tmp_path):
    """World-readable mqueue, g+w aliases, SUID sendmail, a decode alias: each found, with a fix."""
    mtatrees.ensure_accounts()
    root = mtatrees.build_tree("sendmail", tmp_path / "root")
    os.chmod(root / "var/spool/mqueue", 0o2755)
    os.chmod(root / "etc/aliases", 0o664)
    os.chmod(root / "usr/libexec/sendmail/sendmail", 0o4755)
    with (root / "etc/aliases").open("a") as fh:
        fh.write('decode: "|/usr/bin/uudecode"\n')
    rep = api.audit(api.Options(root=str(root)))
    by_path: dict[str, list[str]] = {}
    for f in rep.findings:
        if f.severity.rank >= Severity.HIGH.rank:
            assert f.fix, f"no fix for {f.path}: {f.message}"
            by_path.setdefault(f.path, []).append(f.rule)
    assert "/var/spool/mqueue" in by_path
    assert "/etc/aliases" in by_path
    assert any("SETID" in r for r in by_path.get("/usr/libexec/sendmail/sendmail", []))
    assert any("DECODE" in r or "DECODER" in r for r in by_path["/etc/aliases"])
    assert rep.exit_code() & 8


@pytest.mark.parametrize(
    ("pristine", "path"),
    [
        ("sendmail", "/usr/libexec/sendmail/helper"),
        ("postfix", "/usr/lib/postfix/sbin/helper"),
        ("dovecot", "/usr/lib/dovecot/helper"),
        ("sendmail", "/etc/mail/smrsh/sh"),
    ],
    indirect=["pristine"],
)
def test_new_setuid_file_in_a_binary_dir_is_critical(pristine, path, tmp_path):
    """A set-user-ID file dropped next to the MTA's binaries: added (+1) and critical."""
    root, db = copy_host(pristine, tmp_path)
    target = root / path.lstrip("/")
    shutil.copy("/bin/true", target)
    os.chmod(target, 0o4755)
    rep = api.verify(api.Options(root=str(root), db=str(db)), record_run=False)
    mine = [f for f in rep.findings if f.path == path]
    assert any(f.severity == Severity.CRITICAL for f in mine), [f.to_json() for f in mine]
    assert rep.exit_code() & 1 and rep.exit_code() & 8
