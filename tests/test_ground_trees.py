"""The ground under the MTA on real package trees: units, drop-ins, loader, PAM, TLS renewals.

The trees are the real Debian 12 postfix, exim4 and dovecot packages (tests/mtatrees.py)
with their real unit and PAM files, plus Debian's stock common-* PAM files; a RHEL-style
layout adds /etc/pam.d/smtp -> /etc/alternatives/mta-pam -> smtp.sendmail.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
from collections.abc import Callable
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

COMMON_AUTH = """# /etc/pam.d/common-auth - authentication settings common to all services
auth\t[success=1 default=ignore]\tpam_unix.so nullok
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
"""
COMMON_ACCOUNT = """account\t[success=1 new_authtok_reqd=done default=ignore]\tpam_unix.so
account\trequisite\t\t\tpam_deny.so
account\trequired\t\t\tpam_permit.so
"""
RHEL_SMTP = (
    "#%PAM-1.0\nauth       include      password-auth\naccount    include      password-auth\n"
)
PASSWORD_AUTH = (
    "auth        required      pam_env.so\n"
    "auth        sufficient    pam_unix.so\n"
    "auth        required      pam_deny.so\n"
)


def _write(root: Path, path: str, text: str, mode: int = 0o644) -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    os.chmod(target, mode)
    return target


def _link(root: Path, path: str, dest: str) -> None:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(dest)


def _certbot(root: Path, version: int) -> None:
    arch = root / "etc/letsencrypt/archive/mx.example.org"
    arch.mkdir(parents=True, exist_ok=True)
    os.chmod(root / "etc/letsencrypt/archive", 0o700)
    _write(
        root,
        f"/etc/letsencrypt/archive/mx.example.org/privkey{version}.pem",
        f"KEY{version}",
        0o600,
    )
    _write(root, f"/etc/letsencrypt/archive/mx.example.org/cert{version}.pem", f"CERT{version}")
    _write(root, f"/etc/letsencrypt/archive/mx.example.org/fullchain{version}.pem", f"FC{version}")
    for name in ("privkey", "cert", "fullchain"):
        _link(root, f"/etc/letsencrypt/live/mx.example.org/{name}.pem",
              f"../../archive/mx.example.org/{name}{version}.pem")  # fmt: skip


def _ground(root: Path) -> None:
    """What a stock Debian host has besides the MTA: PAM common files, the loader config,
    an enabled unit, a certbot certificate; a RHEL-style smtp PAM alternative."""
    _write(root, "/etc/pam.d/common-auth", COMMON_AUTH)
    _write(root, "/etc/pam.d/common-account", COMMON_ACCOUNT)
    _write(root, "/etc/pam.d/password-auth", PASSWORD_AUTH)
    _write(root, "/etc/pam.d/smtp.sendmail", RHEL_SMTP)
    _link(root, "/etc/alternatives/mta-pam", "/etc/pam.d/smtp.sendmail")
    _link(root, "/etc/pam.d/smtp", "/etc/alternatives/mta-pam")
    _write(root, "/etc/ld.so.conf", "include /etc/ld.so.conf.d/*.conf\n")
    _write(root, "/etc/ld.so.conf.d/x86_64-linux-gnu.conf", "/usr/local/lib/x86_64-linux-gnu\n"
           "/lib/x86_64-linux-gnu\n/usr/lib/x86_64-linux-gnu\n")  # fmt: skip
    (root / "etc/systemd/system/multi-user.target.wants").mkdir(parents=True, exist_ok=True)
    _certbot(root, 1)


@pytest.fixture(scope="module", params=["postfix", "exim4", "dovecot"])
def pristine(request, tmp_path_factory) -> tuple[str, Path, Path]:
    mta = request.param
    mtatrees.ensure_accounts()
    base = tmp_path_factory.mktemp(f"ground-{mta}")
    root = mtatrees.build_tree(mta, base / "root")
    mtatrees.write_dpkg_db(mta, root)
    _ground(root)
    db = base / "baseline.db"
    api.init(api.Options(root=str(root), db=str(db)))
    return mta, root, db


def _host(pristine, tmp_path: Path) -> tuple[Path, Path]:
    _, root, db = pristine
    subprocess.run(["cp", "-a", str(root), str(tmp_path / "root")], check=True)
    shutil.copy(db, tmp_path / "baseline.db")
    shutil.copy(key_path(str(db)), tmp_path / "baseline.key")  # its host-local checksum key
    return tmp_path / "root", tmp_path / "baseline.db"


def _unit(mta: str) -> str:
    return {
        "postfix": "/lib/systemd/system/postfix@.service",
        "exim4": "/lib/systemd/system/exim4-base.service",
        "dovecot": "/lib/systemd/system/dovecot.service",
    }[mta]


def _dropin_dir(mta: str) -> str:
    return "/etc/systemd/system/" + _unit(mta).rsplit("/", 1)[-1] + ".d"


def _edit(path: str, old: str, new: str) -> Callable[[Path, str], None]:
    def apply(root: Path, _mta: str) -> None:
        target = root / path.lstrip("/")
        target.write_text(target.read_text().replace(old, new, 1))

    return apply


def _dropin(text: str) -> Callable[[Path, str], None]:
    def apply(root: Path, mta: str) -> None:
        _write(root, _dropin_dir(mta) + "/override.conf", text)

    return apply


def _unit_edit(root: Path, mta: str) -> None:
    target = root / _unit(mta).lstrip("/")
    target.write_text(target.read_text().replace("[Service]", "[Service]\nUser=root\n", 1))


def _renew(root: Path, _mta: str) -> None:
    _certbot(root, 2)


def _key_readable(root: Path, _mta: str) -> None:
    _certbot(root, 2)
    os.chmod(root / "etc/letsencrypt/archive/mx.example.org/privkey2.pem", 0o644)


def _repoint_pam(root: Path, _mta: str) -> None:
    _write(
        root,
        "/etc/pam.d/smtp.evil",
        "auth sufficient pam_permit.so\naccount include password-auth\n",
    )
    _link(root, "/etc/alternatives/mta-pam", "/etc/pam.d/smtp.evil")


# name -> (tamper, path that must carry the finding, worst severity there, a rule expected)
CASES: dict[str, tuple[Callable[[Path, str], None], str | None, str, str]] = {
    "dropin-exec-tmp": (
        _dropin("[Service]\nExecStartPre=/bin/sh -c /tmp/.x/run\n"),
        "DROPIN", "critical", "MI-UNIT-EXEC-UNSAFE",
    ),
    "dropin-exec-system": (
        _dropin("[Service]\nExecStartPre=/usr/bin/logger hi\n"),
        "DROPIN", "high", "MI-UNIT-EXEC-CHANGED",
    ),
    "dropin-ld-preload": (
        _dropin("[Service]\nEnvironment=LD_PRELOAD=/usr/lib/libx.so\n"),
        "DROPIN", "high", "MI-UNIT-LOADER-ENV",
    ),
    "packaged-unit-edited": (_unit_edit, "UNIT", "high", "MI-UNIT-IDENTITY-CHANGED"),
    "ld-so-preload-created": (
        lambda root, _m: _write(root, "/etc/ld.so.preload", "/usr/lib/x86_64-linux-gnu/libz.so\n"),
        "/etc/ld.so.preload", "critical", "MI-LOADER-PRELOAD",
    ),
    "ld-so-conf-tmp": (
        lambda root, _m: _write(root, "/etc/ld.so.conf.d/zz.conf", "/tmp/lib\n"),
        "/etc/ld.so.conf.d/zz.conf", "critical", "MI-LOADER-PATH-WRITABLE",
    ),
    "common-auth-permit-first": (
        _edit(
            "/etc/pam.d/common-auth",
            "auth\t[success=1",
            "auth sufficient pam_permit.so\nauth\t[success=1",
        ),
        "/etc/pam.d/common-auth", "critical", "MI-PAM-AUTH-BYPASS",
    ),
    "common-auth-lost-unix": (
        _edit("/etc/pam.d/common-auth", "pam_unix.so nullok", "pam_permit.so"),
        "/etc/pam.d/common-auth", "critical", "MI-PAM-AUTH-LOST",
    ),
    "pam-alternative-repointed": (
        _repoint_pam, "/etc/alternatives/mta-pam", "high", "MI-LINK-TARGET-CHANGED",
    ),
    "pam-alternative-target-bypass": (
        _repoint_pam, "/etc/pam.d/smtp.evil", "critical", "MI-PAM-AUTH-BYPASS",
    ),
    "tls-key-made-readable": (
        _key_readable, "/etc/letsencrypt/archive/mx.example.org/privkey2.pem", "high", "",
    ),
}  # fmt: skip


def _resolve(path: str | None, mta: str) -> str:
    if path == "DROPIN":
        return _dropin_dir(mta) + "/override.conf"
    if path == "UNIT":
        return _unit(mta)
    assert path is not None
    return path


@pytest.mark.parametrize("case", sorted(CASES))
def test_ground_tamper_found(pristine, case, tmp_path):
    """Each attack on what starts, links or authenticates the mail daemons is found at its
    severity, on the file that carries it."""
    mta = pristine[0]
    tamper, where, severity, rule = CASES[case]
    root, db = _host(pristine, tmp_path)
    tamper(root, mta)
    rep = api.verify(api.Options(root=str(root), db=str(db)), record_run=False)
    path = _resolve(where, mta)
    mine = [f for f in rep.findings if f.path == path]
    assert mine, f"nothing on {path}; all: {[(f.path, f.rule) for f in rep.findings]}"
    assert max(f.severity.rank for f in mine) == Severity(severity).rank, [
        f.to_json() for f in mine
    ]
    if rule:
        assert rule in {f.rule for f in mine}
    assert rep.exit_code() & 8


def test_stock_ground_is_quiet(pristine):
    """The stock trees: audit reports nothing high about units, PAM or the loader."""
    _, root, _ = pristine
    rep = api.audit(api.Options(root=str(root)))
    bad = [f for f in rep.findings if f.severity.rank >= Severity.HIGH.rank]
    assert bad == [], [f.to_json() for f in bad]


def test_certbot_renewal_is_low(pristine, tmp_path):
    """A renewal (new numbered versions, live/ links moved) is low, never high."""
    root, db = _host(pristine, tmp_path)
    _renew(root, pristine[0])
    rep = api.verify(api.Options(root=str(root), db=str(db)), record_run=False)
    # the copied tree has new inodes and the archive directory a new mtime: low metadata
    tls = [f for f in rep.findings if "/letsencrypt/" in f.path and f.rule != "MI-METADATA-CHANGED"]
    assert {f.rule for f in tls} == {"MI-TLS-RENEWED"}, [(f.path, f.rule) for f in tls]
    assert len(tls) == 6  # three new versions, three links moved
    assert max(f.severity.rank for f in rep.findings) <= Severity.LOW.rank
    assert not rep.exit_code() & 8


def test_unit_upgrade_matching_package_is_info(pristine, tmp_path):
    """A unit whose new bytes match its package's md5sums (an upgrade) is info, not high."""
    mta = pristine[0]
    root, db = _host(pristine, tmp_path)
    unit = root / _unit(mta).lstrip("/")
    unit.write_text(unit.read_text() + "\n# upgraded\n")
    digest = hashlib.md5(unit.read_bytes()).hexdigest()
    rel = _unit(mta).lstrip("/")
    for sums in (root / "var/lib/dpkg/info").glob("*.md5sums"):
        lines = sums.read_text().splitlines()
        if any(line.endswith("  " + rel) for line in lines):
            sums.write_text("".join(
                (f"{digest}  {rel}" if line.endswith("  " + rel) else line) + "\n" for line in lines
            ))  # fmt: skip
    rep = api.verify(api.Options(root=str(root), db=str(db)), record_run=False)
    mine = [f for f in rep.findings if f.path == _unit(mta)]
    assert [(f.rule, f.severity) for f in mine] == [("MI-PACKAGE-UPGRADE", Severity.INFO)]


def test_audit_flags_the_same_states(pristine, tmp_path):
    """With no baseline, audit finds the preload, the PAM bypass and the unsafe drop-in."""
    mta = pristine[0]
    root, _ = _host(pristine, tmp_path)
    for case in ("ld-so-preload-created", "common-auth-permit-first", "dropin-exec-tmp"):
        CASES[case][0](root, mta)
    rep = api.audit(api.Options(root=str(root)))
    crit = {(f.path, f.rule) for f in rep.findings if f.severity == Severity.CRITICAL}
    assert ("/etc/ld.so.preload", "MI-LOADER-PRELOAD") in crit
    assert ("/etc/pam.d/common-auth", "MI-PAM-AUTH-BYPASS") in crit
    assert (_dropin_dir(mta) + "/override.conf", "MI-UNIT-EXEC-UNSAFE") in crit
