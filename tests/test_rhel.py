"""RHEL/Fedora sendmail (issue 10 classes 1 and 2): a tree laid out from Fedora's
sendmail.spec %files, with the real sendmail 8.17 binaries and cf tree.

init -> tamper -> verify, and audit, as on a real host: the profile is detected, the real
binary behind the alternatives links is monitored with its expectations, /etc/mail and
/etc/smrsh are recursive, /var/mail's target is a monitored spool.
"""

from __future__ import annotations

import os
import shutil
import stat
from collections.abc import Callable
from pathlib import Path

import pytest

from integrity import api
from integrity.model import Report, Severity
from tests import mtatrees

pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(os.geteuid() != 0, reason="real package trees need chown (root)"),
]


@pytest.fixture(scope="module")
def rhel(tmp_path_factory) -> tuple[Path, Path]:
    """The RHEL tree and its baseline, built once; tests copy them before tampering."""
    try:
        mtatrees.fetch("sendmail")
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"sendmail packages unavailable (run .ci/fetch-debs): {exc}")
    base = tmp_path_factory.mktemp("rhel")
    root = mtatrees.build_tree("sendmail", base / "root", layout="rhel")
    db = base / "baseline.db"
    api.init(api.Options(root=str(root), db=str(db)))
    return root, db


def _verify(root: Path, db: Path) -> Report:
    return api.verify(api.Options(root=str(root), db=str(db)), record_run=False)


def _audit(root: Path) -> Report:
    return api.audit(api.Options(root=str(root)))


def _has(rep: Report, path: str, rule: str, severity: Severity) -> bool:
    return any(
        f.path == path and f.rule.startswith(rule) and f.severity == severity for f in rep.findings
    )


def _shown(rep: Report) -> str:
    return "\n".join(f"{f.severity} {f.path}: {f.rule} {f.message}" for f in rep.findings)


def test_rhel_layout_matches_the_spec(rhel):
    """The tree has the %files owners and modes and the alternatives chain of %post."""
    root, _ = rhel
    for spec in mtatrees.rhel_state():
        st = (root / spec.path.lstrip("/")).lstat()
        assert stat.S_IMODE(st.st_mode) == spec.mode, spec.path
    assert os.readlink(root / "usr/sbin/sendmail") == "/etc/alternatives/mta"
    assert os.readlink(root / "etc/alternatives/mta") == "/usr/sbin/sendmail.sendmail"
    assert os.readlink(root / "var/mail") == "spool/mail"


def test_rhel_profile_detected_and_pristine_audit_is_clean(rhel):
    """Only sendmail-rhel is detected, and the stock tree has nothing high or critical."""
    root, _ = rhel
    rep = _audit(root)
    assert "sendmail-rhel" in rep.header["profiles"]
    assert "sendmail" not in rep.header["profiles"]
    assert "sendmail-debian" not in rep.header["profiles"]
    bad = [f for f in rep.findings if f.severity.rank >= Severity.HIGH.rank]
    assert bad == [], _shown(rep)


def test_rhel_clean_verify_is_silent(rhel):
    """verify right after init: no findings, and the chain targets are scanned."""
    root, db = rhel
    rep = _verify(root, db)
    assert rep.findings == [], _shown(rep)
    assert rep.exit_code() == 0


def _chmod(path: str, add: int) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / path.lstrip("/")
        os.chmod(target, stat.S_IMODE(target.lstat().st_mode) | add)

    return apply


def _repoint_alternative(root: Path) -> None:
    """The mta alternative now names a set-uid copy outside every profile path."""
    evil = root / "usr/local/sbin/sendmail.evil"
    evil.parent.mkdir(parents=True, exist_ok=True)
    shutil.copy(root / "usr/sbin/sendmail.sendmail", evil)
    os.chmod(evil, 0o4755)
    link = root / "etc/alternatives/mta"
    link.unlink()
    link.symlink_to("/usr/local/sbin/sendmail.evil")


def _new_file(path: str, mode: int) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        target = root / path.lstrip("/")
        target.write_text("# dropped\n")
        os.chmod(target, mode)

    return apply


def _smrsh_link(name: str, dest: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / "etc/smrsh" / name).symlink_to(dest)

    return apply


def _smrsh_via_wrapper(root: Path) -> None:
    """An innocent name, a chain of links, a shell at the end."""
    wrap = root / "usr/local/bin/mailfilter"
    wrap.parent.mkdir(parents=True, exist_ok=True)
    (root / "usr/bin").mkdir(parents=True, exist_ok=True)
    shutil.copy("/bin/dash" if os.path.exists("/bin/dash") else "/bin/sh", root / "usr/bin/dash")
    wrap.symlink_to("/usr/bin/dash")
    (root / "etc/smrsh/mailfilter").symlink_to("/usr/local/bin/mailfilter")


TAMPERS: list[tuple[str, Callable[[Path], None], str, str, Severity]] = [
    ("setuid-real-binary", _chmod("/usr/sbin/sendmail.sendmail", stat.S_ISUID),
     "/usr/sbin/sendmail.sendmail", "MI-SETID-ADDED", Severity.CRITICAL),
    ("alternative-to-setuid-copy", _repoint_alternative,
     "/usr/local/sbin/sendmail.evil", "MI-EXPECT-SETID", Severity.CRITICAL),
    ("alternative-repointed", _repoint_alternative,
     "/etc/alternatives/mta", "MI-LINK-TARGET-CHANGED", Severity.HIGH),
    ("new-file-in-etc-mail", _new_file("/etc/mail/relay.cf", 0o644),
     "/etc/mail/relay.cf", "MI-FILE-ADDED", Severity.MEDIUM),
    ("new-setuid-file-in-etc-mail", _new_file("/etc/mail/helper", 0o4755),
     "/etc/mail/helper", "MI-EXPECT-SETID", Severity.CRITICAL),
    ("smrsh-shell", _smrsh_link("sh", "/bin/bash"),
     "/etc/smrsh/sh", "MI-SMRSH-SHELL", Severity.CRITICAL),
    ("smrsh-interpreter", _smrsh_link("filter", "/usr/bin/python3.11"),
     "/etc/smrsh/filter", "MI-SMRSH-SHELL", Severity.CRITICAL),
    ("smrsh-shell-behind-links", _smrsh_via_wrapper,
     "/etc/smrsh/mailfilter", "MI-SMRSH-SHELL", Severity.CRITICAL),
    ("smrsh-new-mda", _smrsh_link("procmail", "/usr/bin/procmail"),
     "/etc/smrsh/procmail", "MI-SMRSH-ENTRY-ADDED", Severity.HIGH),
    ("spool-behind-var-mail-world-writable", _chmod("/var/spool/mail", 0o002),
     "/var/spool/mail", "MI-PERM-WORLD-WRITABLE", Severity.CRITICAL),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "apply", "path", "rule", "severity"), TAMPERS, ids=[t[0] for t in TAMPERS]
)
def test_rhel_tamper_verify_and_audit(rhel, tmp_path, name, apply, path, rule, severity):
    """Each attack is found by verify at its severity, and audit agrees on high/critical."""
    root, db = mtatrees.copy_baselined(rhel, tmp_path)
    apply(root)
    rep = _verify(root, db)
    assert _has(rep, path, rule, severity), _shown(rep)
    if severity.rank >= Severity.HIGH.rank and not rule.startswith(("MI-LINK", "MI-SMRSH-ENTRY")):
        audit = _audit(root)
        assert any(f.path == path and f.severity.rank >= severity.rank for f in audit.findings), (
            _shown(audit)
        )


# ---------------------------------------------------------------- map rebuilds (class 6)

NEEDS_DB_DUMP = pytest.mark.skipif(
    not any(shutil.which(d) for d in ("db5.3_dump", "db_dump")),
    reason="reading Berkeley DB maps needs db_dump (apt install db5.3-util)",
)


def _rows(root: Path, source: str) -> str:
    return mtatrees._map_rows((root / source.lstrip("/")).read_text())


@NEEDS_DB_DUMP
def test_forced_rebuild_of_every_map_is_info(rhel, tmp_path):
    """%post's SM_FORCE_DBREBUILD rebuild (real makemap, new bytes) is info, never high."""
    root, db = mtatrees.copy_baselined(rhel, tmp_path)
    aliases = mtatrees._alias_rows((root / "etc/aliases").read_text())
    mtatrees.rhel_makemap(root, "/etc/aliases", aliases, ["-N"])
    for name in ("virtusertable", "access", "domaintable", "mailertable"):
        mtatrees.rhel_makemap(root, f"/etc/mail/{name}", _rows(root, f"/etc/mail/{name}"))
    rep = _verify(root, db)
    maps = [f for f in rep.findings if f.path.endswith(".db") and f.attribute == "content"]
    assert {f.path for f in maps} >= {"/etc/aliases.db", "/etc/mail/access.db"}
    assert {(f.rule, f.severity) for f in maps} == {("MI-MAP-REBUILT", Severity.INFO)}
    assert all(f.severity.rank < Severity.HIGH.rank for f in rep.findings), _shown(rep)


@NEEDS_DB_DUMP
def test_map_edited_directly_is_high_and_named(rhel, tmp_path):
    """makemap fed another input (source untouched): high, naming the foreign key."""
    root, db = mtatrees.copy_baselined(rhel, tmp_path)
    rows = _rows(root, "/etc/mail/access") + "Connect:203.0.113.9\tRELAY\n"
    mtatrees.rhel_makemap(root, "/etc/mail/access", rows)
    rep = _verify(root, db)
    hit = [f for f in rep.findings if f.path == "/etc/mail/access.db"]
    assert [(f.rule, f.severity) for f in hit] == [("MI-MAP-EDITED", Severity.HIGH)], _shown(rep)
    assert "connect:203.0.113.9" in hit[0].message and "RELAY" not in hit[0].message
    audit = _audit(root)
    assert _has(audit, "/etc/mail/access.db", "MI-MAP-EDITED", Severity.HIGH), _shown(audit)


@NEEDS_DB_DUMP
def test_source_edit_then_rebuild_judges_the_source(rhel, tmp_path):
    """The admin way: access gains an open RELAY and makemap runs: the source is critical,
    the map is a consistent rebuild (info)."""
    root, db = mtatrees.copy_baselined(rhel, tmp_path)
    with open(root / "etc/mail/access", "a") as fh:
        fh.write("To:com\tRELAY\n")
    mtatrees.rhel_makemap(root, "/etc/mail/access", _rows(root, "/etc/mail/access"))
    rep = _verify(root, db)
    assert _has(rep, "/etc/mail/access", "MI-SENDMAIL-ACCESS-OPEN-RELAY", Severity.CRITICAL)
    assert _has(rep, "/etc/mail/access.db", "MI-MAP-REBUILT", Severity.INFO), _shown(rep)
    audit = _audit(root)
    assert _has(audit, "/etc/mail/access", "MI-SENDMAIL-ACCESS-OPEN-RELAY", Severity.CRITICAL)


def test_unreadable_map_is_low_with_the_reason(rhel, tmp_path):
    """A map that cannot be read is low, and says why."""
    root, db = mtatrees.copy_baselined(rhel, tmp_path)
    target = root / "etc/mail/mailertable.db"
    mode = stat.S_IMODE(target.stat().st_mode)
    target.write_bytes(b"not a database at all\n")
    os.chmod(target, mode)
    rep = _verify(root, db)
    hit = [f for f in rep.findings if f.path == "/etc/mail/mailertable.db"]
    assert [(f.rule, f.severity) for f in hit] == [("MI-MAP-UNREADABLE", Severity.LOW)]
    assert "unknown map format" in hit[0].message
