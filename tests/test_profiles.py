"""The shipped profiles (baselines/*.toml): they load, and encode the documented values."""

from __future__ import annotations

import grp
import os
import pwd
import stat
from functools import cache
from pathlib import Path

import pytest

from integrity import policy
from integrity.model import Role
from integrity.policy import Expect, Policy, Rule

SHIPPED = Path(policy.__file__).resolve().parent.parent / "baselines"
DIRS = [SHIPPED]
NAMES = sorted(policy.available(DIRS))
MTA_PROFILES = ["sendmail", "sendmail-debian", "sendmail-rhel", "postfix", "exim4", "dovecot"]


@cache
def loaded(name: str) -> Policy:
    """Profiles are immutable once loaded, so each test module reads each one once."""
    return policy.load([name], dirs=DIRS)


def own(name: str, path: str) -> Rule:
    """The rule the named profile gives ``path`` (must exist)."""
    got = loaded(name).rule_for(path)
    assert got is not None, path
    return got


def test_every_expected_profile_is_shipped() -> None:
    """common, ground, self and one profile per supported MTA layout are in baselines/."""
    assert sorted(["common", "ground", "self", *MTA_PROFILES]) == NAMES


@pytest.mark.parametrize("name", NAMES)
def test_shipped_profile_loads(name: str) -> None:
    """Every shipped profile validates and has rules with a note citing their source."""
    pol = loaded(name)
    assert pol.profiles[-1] == name
    assert pol.rules
    assert all(r.note for r in pol.rules)


@pytest.mark.parametrize("name", MTA_PROFILES)
def test_mta_profiles_include_common_and_self(name: str) -> None:
    """Each MTA profile brings the shared chain (with the ground under the MTA: units,
    loader, PAM, TLS) and the monitor's own files along."""
    profile = policy.read_profile(SHIPPED / f"{name}.toml")
    assert loaded(name).profiles == ("ground", "common", "self", name)
    assert profile.mta in policy.MTAS
    assert profile.detect


@pytest.mark.parametrize(
    ("name", "path", "owner", "group", "modes"),
    [
        # PRODUCT.md: upstream sendmail 8.12 values to ship
        ("sendmail", "/", ("root",), ("root",), (0o755,)),
        ("sendmail", "/var", ("root",), ("root",), (0o755,)),
        ("sendmail", "/var/spool", ("root",), ("root",), (0o755,)),
        ("sendmail", "/etc", ("root",), ("root",), (0o755,)),
        ("sendmail", "/etc/mail", ("root",), ("root",), (0o755,)),
        ("sendmail", "/usr/sbin/sendmail", ("root",), ("smmsp",), (0o2555,)),
        ("sendmail", "/var/spool/clientmqueue", ("smmsp",), ("smmsp",), (0o770,)),
        ("sendmail", "/var/spool/mqueue", ("root",), (), (0o700,)),
        ("sendmail", "/etc/mail/sendmail.cf", ("root",), ("bin", "root"), (0o444,)),
        ("sendmail", "/etc/mail/submit.cf", ("root",), ("bin", "root"), (0o444,)),
        # mta-facts §2.2 (Debian postinst / update_*)
        ("sendmail-debian", "/usr/libexec/sendmail/sendmail", ("root",), ("smmsp",), (0o2755,)),
        ("sendmail-debian", "/usr/sbin/sensible-mda", ("root",), ("root",), (0o4755,)),
        ("sendmail-debian", "/etc/mail", ("smmta",), ("smmsp",), (0o2755,)),
        ("sendmail-debian", "/etc/mail/aliases.db", ("smmta",), ("smmsp",), (0o640,)),
        ("sendmail-debian", "/var/spool/mqueue", ("smmta",), ("smmsp",), (0o2750,)),
        ("sendmail-debian", "/var/spool/mqueue-client", ("smmsp",), ("smmsp",), (0o2770,)),
        # mta-facts §3.2: upstream and Debian both accepted
        ("postfix", "/usr/sbin/postdrop", ("root",), ("postdrop",), (0o2755, 0o2555)),
        ("postfix", "/var/spool/postfix/maildrop", ("postfix",), ("postdrop",), (0o730, 0o1730)),
        ("postfix", "/var/spool/postfix/public", ("postfix",), ("postdrop",), (0o710, 0o2710)),
        ("postfix", "/var/lib/postfix", ("postfix",), (), (0o700, 0o755)),
        # mta-facts §4.2, §5.1, §6
        ("exim4", "/usr/sbin/exim4", ("root",), ("root",), (0o4755,)),
        ("exim4", "/etc/exim4/passwd.client", ("root",), ("Debian-exim",), (0o640,)),
        ("exim4", "/var/spool/exim4", ("Debian-exim",), ("Debian-exim",), (0o750,)),
        ("dovecot", "/etc/dovecot/private", ("root",), ("root",), (0o700,)),
        ("dovecot", "/etc/dovecot/dovecot-sql.conf.ext", ("root",), ("dovecot",), (0o640,)),
        ("common", "/var/mail", ("root",), ("mail",), (0o2775, 0o3777)),
        ("common", "/etc/ssl/private", ("root",), ("ssl-cert", "root"), (0o710, 0o700)),
    ],
)
def test_documented_values(
    name: str, path: str, owner: tuple[str, ...], group: tuple[str, ...], modes: tuple[int, ...]
) -> None:
    """The owner, group and allowed modes are the ones PRODUCT.md and mta-facts.md give."""
    expect = own(name, path).expect
    assert (expect.owner, expect.group, expect.mode) == (owner, group, modes)


#: Every (profile, path) allowed a set-id bit on a file: mta-facts §2.4, §3.2, §4.2, §5.2.
SETID_FILES = {
    ("common", "/usr/bin/procmail"),
    ("common", "/usr/bin/lockfile"),
    ("common", "/usr/bin/maildrop"),
    ("common", "/usr/bin/lockmail.maildrop"),
    ("common", "/usr/bin/dotlockfile"),
    ("common", "/usr/bin/dotlock.mailutils"),
    ("sendmail", "/usr/sbin/sendmail"),
    ("sendmail-debian", "/usr/libexec/sendmail/sendmail"),
    ("sendmail-debian", "/usr/libexec/sendmail/mailstats"),
    ("sendmail-debian", "/usr/sbin/sensible-mda"),
    ("sendmail-rhel", "/usr/sbin/sendmail.sendmail"),
    ("postfix", "/usr/sbin/postdrop"),
    ("postfix", "/usr/sbin/postqueue"),
    ("postfix", "/usr/sbin/postlog"),
    ("exim4", "/usr/sbin/exim4"),
}


def test_setid_only_where_documented() -> None:
    """Only the listed set-id binaries may carry 06000 bits; everything else is a finding."""
    found = {
        (r.profile, r.pattern)
        for name in NAMES
        for r in loaded(name).rules
        if r.role is Role.BINARY and r.expect.allows_setid()
    }
    assert found == SETID_FILES


@pytest.mark.parametrize("name", NAMES)
def test_secrets_never_world_readable(name: str) -> None:
    """No allowed mode of a secret grants anything to others, and no analyzer reads it."""
    for r in loaded(name).rules:
        if r.role is Role.SECRET:
            assert r.analyzer is None
            assert all(m & 0o007 == 0 for m in r.expect.mode), r.pattern


@pytest.mark.parametrize("name", NAMES)
def test_queues_and_spools_have_child_expectations(name: str) -> None:
    """Queue and spool dirs say what their (never hashed) entries may look like."""
    for r in loaded(name).rules:
        if r.role in (Role.QUEUE, Role.SPOOL):
            assert r.children is not None, r.pattern


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        (["usr/libexec/smrsh"], ["sendmail"]),
        (["etc/mail/sendmail.cf"], ["sendmail"]),
        (["etc/mail/sendmail.cf", "usr/libexec/sendmail/sendmail"], ["sendmail-debian"]),
        (["usr/sbin/sendmail"], []),
        (["usr/sbin/sendmail", "usr/sbin/postfix"], ["postfix"]),
        (["etc/postfix/main.cf"], ["postfix"]),
        (["usr/sbin/exim4"], ["exim4"]),
        (["usr/sbin/exim4", "usr/sbin/dovecot"], ["dovecot", "exim4"]),
    ],
)
def test_detect_tells_layouts_apart(tmp_path: Path, tree: list[str], expected: list[str]) -> None:
    """Upstream and Debian sendmail, postfix, exim4 and dovecot are told apart by their files."""
    for entry in tree:
        target = tmp_path / entry
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text("")
    assert policy.detect(str(tmp_path), dirs=DIRS) == expected


@pytest.mark.parametrize(
    ("name", "path", "pattern", "role"),
    [
        ("sendmail-debian", "/etc/mail/smrsh/procmail", "/etc/mail/smrsh/procmail", Role.BINARY),
        ("sendmail-debian", "/etc/mail/new-file", "/etc/mail/new-file", Role.CONFIG),
        ("sendmail-debian", "/etc/sasldb2", "/etc/sasldb2", Role.SECRET),
        ("postfix", "/etc/postfix/sasl_passwd.db", "/etc/postfix/sasl_passwd.db", Role.SECRET),
        ("postfix", "/etc/postfix/virtual.db", "/etc/postfix/*.db", Role.MAP),
        (
            "exim4",
            "/etc/exim4/conf.d/main/00_local_macros",
            "/etc/exim4/conf.d/main/00_local_macros",
            Role.CONFIG,
        ),
        (
            "exim4",
            "/etc/exim4/conf.d/router/400_system_aliases",
            "/etc/exim4/conf.d/**",
            Role.CONFIG,
        ),
        ("dovecot", "/etc/mail-integrity/config.toml", "/etc/mail-integrity/**", Role.CONFIG),
        (
            "dovecot",
            "/etc/ssl/private/ssl-cert-snakeoil.key",
            "/etc/ssl/private/*.key",
            Role.SECRET,
        ),
    ],
)
def test_shipped_lookups(name: str, path: str, pattern: str, role: Role) -> None:
    """Representative paths resolve to the intended rule across includes and overrides."""
    got = own(name, path)
    assert (got.pattern, got.role) == (pattern, role)


@pytest.mark.parametrize("name", MTA_PROFILES)
def test_parents_are_outside_queues(name: str) -> None:
    """Implicit parent dirs never sit inside a queue/spool (their modes are not ours)."""
    pol = loaded(name)
    queues = [r.pattern for r in pol.rules if r.role in (Role.QUEUE, Role.SPOOL)]
    for parent in pol.parents():
        assert not any(parent.startswith(q + "/") for q in queues), parent


# --------------------------------------------------------------------------- real trees

#: mtatrees MTA name -> the shipped profile that must be detected on its tree.
TREE_PROFILE = {
    "sendmail": "sendmail-debian",
    "postfix": "postfix",
    "exim4": "exim4",
    "dovecot": "dovecot",
}


@pytest.fixture(scope="module")
def real_tree(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> tuple[str, Path]:
    """A Debian 12 tree of one MTA as its maintainer scripts leave it (tests/mtatrees.py)."""
    if os.geteuid() != 0:
        pytest.skip("chown and set-id bits need root")
    from tests import mtatrees

    mta = str(request.param)
    try:
        mtatrees.fetch(mta)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"Debian packages unavailable (run .ci/fetch-debs): {exc}")
    return mta, mtatrees.build_tree(mta, tmp_path_factory.mktemp(mta) / "root")


def _violations(path: str, st: os.stat_result, expect: Expect) -> list[str]:
    mode = stat.S_IMODE(st.st_mode)
    owner, group = pwd.getpwuid(st.st_uid).pw_name, grp.getgrgid(st.st_gid).gr_name
    out = []
    if expect.owner and owner not in expect.owner:
        out.append(f"{path}: owner {owner} not in {expect.owner}")
    if expect.group and group not in expect.group:
        out.append(f"{path}: group {group} not in {expect.group}")
    if expect.mode and mode not in expect.mode:
        out.append(f"{path}: mode {policy.format_mode(mode)} not allowed")
    if mode & expect.deny:
        out.append(f"{path}: mode {policy.format_mode(mode)} has denied bits")
    return out


def _walk(root: Path) -> list[str]:
    found = []
    for top, dirs, files in os.walk(root):
        for name in dirs + files:
            found.append("/" + os.path.relpath(os.path.join(top, name), root))
    return found


@pytest.mark.slow
@pytest.mark.root
@pytest.mark.parametrize("real_tree", sorted(TREE_PROFILE), indirect=True)
def test_profile_matches_post_install_tree(real_tree: tuple[str, Path]) -> None:
    """On a pristine Debian tree the profile is detected, and every listed path that exists
    meets its expectation (owner, group, mode, deny), queue children included; no path the
    profile calls mandatory is missing."""
    mta, root = real_tree
    name = TREE_PROFILE[mta]
    assert policy.detect(str(root), dirs=DIRS) == [name]
    pol = loaded(name)
    problems: list[str] = []
    for path in _walk(root):
        st = os.lstat(root / path.lstrip("/"))
        if stat.S_ISLNK(st.st_mode):
            continue  # a symlink's own mode means nothing; the judge checks its target
        rule_ = pol.rule_for(path)
        if rule_ is not None:
            problems += _violations(path, st, rule_.expect)
        elif (box := pol.container_for(path)) is not None and box.children is not None:
            problems += _violations(path, st, box.children)
    assert problems == []
    required = [r.pattern for r in pol.rules if not r.optional and not r.is_glob]
    assert [p for p in required if not os.path.lexists(root / p.lstrip("/"))] == []
