"""Units, PAM and the dynamic loader: what starts, authenticates and links the mail daemons."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrity.analyzers import get, loader, pam, units
from integrity.judge import is_rotation
from integrity.model import Severity

POSTFIX_AT = """[Unit]
Description=Postfix Mail Transport Agent (instance %i)
[Service]
Type=forking
ExecStartPre=/usr/lib/postfix/configure-instance.sh %i
ExecStart=/usr/sbin/postmulti -i %i -p start
ExecStop=/usr/sbin/postmulti -i %i -p stop
"""
DOVECOT = """[Service]
Type=notify
ExecStart=/usr/sbin/dovecot -F
PrivateTmp=true
ProtectSystem=full
PrivateDevices=true
"""
DEBIAN_COMMON_AUTH = """auth\t[success=1 default=ignore]\tpam_unix.so nullok
auth\trequisite\t\t\tpam_deny.so
auth\trequired\t\t\tpam_permit.so
auth\toptional\t\t\tpam_cap.so
"""
DOVECOT_PAM = "#%PAM-1.0\n\n@include common-auth\n@include common-account\n"


def rules(findings):
    return sorted((f.rule, str(f.severity)) for f in findings)


def test_registered():
    """The four analyzers are reachable by the names profiles use."""
    for name in ("systemd-unit", "pam", "ld-preload", "ld-conf"):
        assert get(name) is not None, name


def test_stock_units_assess_clean():
    """Packaged units that run programs from package directories are not findings."""
    for text in (POSTFIX_AT, DOVECOT, "[Service]\nExecStart=/etc/cron.daily/exim4-base x\n"):
        assert units.assess("/lib/systemd/system/x.service", units.parse(text)) == []


def test_dropin_exec_from_tmp_is_critical():
    """A drop-in whose ExecStartPre runs a script from /tmp: root code anyone can write."""
    drop = "[Service]\nExecStartPre=/bin/sh -c '/tmp/.x/run.sh'\n"
    path = "/etc/systemd/system/postfix@.service.d/override.conf"
    facts = units.parse(drop)
    assert rules(units.assess(path, facts)) == [("MI-UNIT-EXEC-UNSAFE", "critical")]
    assert rules(units.diff(path, units.parse(""), facts)) == [("MI-UNIT-EXEC-UNSAFE", "critical")]


def test_dropin_exec_in_system_dir_is_high():
    """Any command added by an override is high: root code at every start."""
    path = "/etc/systemd/system/dovecot.service.d/x.conf"
    facts = units.parse("[Service]\nExecStartPost=/usr/bin/logger started\n")
    assert rules(units.assess(path, facts)) == [("MI-UNIT-EXEC-CHANGED", "high")]


def test_exec_outside_package_dirs_is_critical():
    """/usr/local and /opt are not package-owned: critical when a unit starts using them."""
    before = units.parse(DOVECOT)
    after = units.parse(DOVECOT.replace("/usr/sbin/dovecot", "/usr/local/sbin/dovecot"))
    found = units.diff("/lib/systemd/system/dovecot.service", before, after)
    assert rules(found) == [("MI-UNIT-EXEC-UNSAFE", "critical")]


def test_exec_reset_and_override():
    """``ExecStart=`` then a new command: the reset is kept and the new command judged."""
    facts = units.parse("[Service]\nExecStart=\nExecStart=/usr/sbin/postfix start\n")
    assert facts["keys"]["Service.ExecStart"] == [[2, ""], [3, "/usr/sbin/postfix start"]]


def test_identity_env_and_sandbox():
    """User= changed and LD_PRELOAD set are high; sandboxing removed is high."""
    before = units.parse(DOVECOT)
    after = units.parse(
        DOVECOT.replace("ProtectSystem=full\n", "")
        + "User=root\nEnvironment=LD_PRELOAD=/usr/lib/x.so\n"
    )
    found = rules(units.diff("/lib/systemd/system/dovecot.service", before, after))
    assert found == [
        ("MI-UNIT-IDENTITY-CHANGED", "high"),
        ("MI-UNIT-LOADER-ENV", "high"),
        ("MI-UNIT-SANDBOX-REMOVED", "high"),
    ]


def test_sandbox_set_to_no_is_removed():
    """PrivateTmp=false counts as removing it."""
    before = units.parse(DOVECOT)
    after = units.parse(DOVECOT.replace("PrivateTmp=true", "PrivateTmp=false"))
    found = units.diff("/lib/systemd/system/dovecot.service", before, after)
    assert rules(found) == [("MI-UNIT-SANDBOX-REMOVED", "high")]


def test_continuation_lines_joined():
    """A backslash continues the command on the next line (systemd.syntax(7))."""
    facts = units.parse("[Service]\nExecStartPre=/bin/sh -c \\\n  '/var/tmp/x'\n")
    assert facts["keys"]["Service.ExecStartPre"] == [[2, "/bin/sh -c '/var/tmp/x'"]]
    found = units.assess("/lib/systemd/system/postfix.service", facts)
    assert rules(found) == [("MI-UNIT-EXEC-UNSAFE", "critical")]


@pytest.mark.parametrize(
    ("path", "why"),
    [
        ("/tmp/x", "a place local users can write"),
        ("/home/bob/x", "a place local users can write"),
        ("/opt/x", "outside the package-owned directories"),
        ("/usr/local/bin/x", "outside the package-owned directories"),
        ("/usr/sbin/postfix", None),
        ("true", None),
    ],
)
def test_place_of(path, why):
    """Where a unit's program lives decides whether anyone else could have written it."""
    assert units.place_of(path) == why


def test_pam_stock_is_clean():
    """Debian's common-auth and dovecot's PAM file are not findings."""
    for text in (DEBIAN_COMMON_AUTH, DOVECOT_PAM):
        assert pam.assess("/etc/pam.d/x", pam.parse(text)) == []


def test_pam_permit_first_is_bypass():
    """``auth sufficient pam_permit.so`` before the real check lets any password in."""
    after = pam.parse("auth sufficient pam_permit.so\n" + DOVECOT_PAM)
    assert rules(pam.assess("/etc/pam.d/dovecot", after)) == [("MI-PAM-AUTH-BYPASS", "critical")]
    found = pam.diff("/etc/pam.d/dovecot", pam.parse(DOVECOT_PAM), after)
    assert rules(found) == [("MI-PAM-AUTH-BYPASS", "critical")]


def test_pam_success_done_is_bypass():
    """The bracket form ``[success=done default=ignore] pam_permit.so`` is the same bypass."""
    facts = pam.parse("auth [success=done default=ignore] pam_permit.so\n" + DEBIAN_COMMON_AUTH)
    assert rules(pam.assess("/etc/pam.d/common-auth", facts)) == [
        ("MI-PAM-AUTH-BYPASS", "critical")
    ]


def test_pam_auth_lost():
    """common-auth losing pam_unix (only pam_permit left) is critical."""
    after = pam.parse("auth required pam_permit.so\n")
    found = pam.diff("/etc/pam.d/common-auth", pam.parse(DEBIAN_COMMON_AUTH), after)
    assert ("MI-PAM-AUTH-LOST", "critical") in rules(found)
    assert ("MI-PAM-AUTH-LOST", "critical") in rules(pam.assess("/etc/pam.d/x", after))


def test_pam_permit_added_after_check():
    """pam_permit added anywhere in an auth stack that had none is critical."""
    before = pam.parse("auth required pam_unix.so\n")
    after = pam.parse("auth required pam_unix.so\nauth sufficient pam_permit.so\n")
    assert rules(pam.diff("/etc/pam.d/smtp", before, after)) == [
        ("MI-PAM-PERMIT-ADDED", "critical")
    ]


def test_pam_comment_change_is_no_meaning():
    """A comment edit changes no fact."""
    assert pam.parse("# hi\n" + DOVECOT_PAM) == pam.parse(DOVECOT_PAM)


def test_preload_any_library_is_critical():
    """/etc/ld.so.preload naming a library is critical, in audit and on change."""
    facts = loader.parse_preload("/usr/lib/libsneaky.so /lib/x.so\n")
    assert len(loader.assess_preload("/etc/ld.so.preload", facts)) == 2
    found = loader.diff_preload("/etc/ld.so.preload", loader.parse_preload(""), facts)
    assert {f.severity for f in found} == {Severity.CRITICAL}
    assert loader.assess_preload("/etc/ld.so.preload", loader.parse_preload("# none\n")) == []


def test_ldconf_dirs():
    """A library dir in /tmp is critical; one outside the system dirs high; system dirs fine."""
    stock = loader.parse_conf("/usr/local/lib/x86_64-linux-gnu\n/lib/x86_64-linux-gnu\n")
    assert loader.assess_conf("/etc/ld.so.conf.d/x.conf", stock) == []
    bad = loader.parse_conf("/tmp/lib\n/opt/vendor/lib\ninclude /etc/ld.so.conf.d/*.conf\n")
    assert rules(loader.diff_conf("/etc/ld.so.conf", stock, bad)) == [
        ("MI-LOADER-PATH-ADDED", "high"),
        ("MI-LOADER-PATH-WRITABLE", "critical"),
    ]
    assert rules(loader.assess_conf("/etc/ld.so.conf", bad)) == [
        ("MI-LOADER-PATH-WRITABLE", "critical")
    ]


@pytest.mark.parametrize(
    ("before", "after", "expected"),
    [
        ("../../archive/mx/privkey1.pem", "../../archive/mx/privkey2.pem", True),
        ("../../archive/mx/privkey9.pem", "../../archive/mx/privkey10.pem", True),
        ("/etc/dehydrated/privkey-1700.pem", "/etc/dehydrated/privkey-1800.pem", True),
        ("../../archive/mx/privkey1.pem", "/tmp/privkey2.pem", False),
        ("../../archive/mx/privkey1.pem", "../../archive/mx/cert2.pem", False),
        ("../../archive/mx/privkey1.pem", "../../archive/mx/privkey1.pem", False),
        (None, "x", False),
    ],
)
def test_is_rotation(before, after, expected):
    """A renewal moves a link to another version of the same file in the same directory."""
    assert is_rotation(before, after) is expected


@given(st.text(max_size=400))
def test_parsers_never_raise(text):
    """Every parser takes any text without raising."""
    units.parse(text)
    pam.parse(text)
    loader.parse_preload(text)
    loader.parse_conf(text)


def test_real_unit_files_of_the_packages(tmp_path: Path):
    """The real Debian units of postfix, exim4 and dovecot (from the .debs) assess clean."""
    from tests import mtatrees

    seen = 0
    for mta in ("postfix", "exim4", "dovecot"):
        try:
            debs = mtatrees.fetch(mta)
        except Exception as exc:  # no cache and no network: say so
            pytest.skip(f"no {mta} packages: {exc}")
        for deb in debs:
            out = tmp_path / deb.name
            mtatrees._run(["dpkg-deb", "-x", str(deb), str(out)])
            for unit in (out / "lib/systemd/system").glob("*"):
                path = f"/lib/systemd/system/{unit.name}"
                assert units.assess(path, units.parse(unit.read_text())) == [], path
                seen += 1
    assert seen >= 6
