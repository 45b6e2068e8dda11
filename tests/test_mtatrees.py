"""Sanity checks of the real Debian package trees that the integration tests scan."""

from __future__ import annotations

import grp
import hashlib
import os
import pwd
import re
import stat
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity.model import Severity
from tests import mtatrees
from tests.mtatrees import PACKAGES, Tamper

MTAS = sorted(PACKAGES)
IS_ROOT = os.geteuid() == 0
ROOT_SKIP = pytest.mark.skipif(not IS_ROOT, reason="chown and set-id bits need root")


F = TypeVar("F", bound=Callable[..., object])


def tree_test(fn: F) -> F:
    """Mark a test that scans real package trees: root-only and seconds, not milliseconds."""
    marked: F = pytest.mark.root(pytest.mark.slow(ROOT_SKIP(fn)))
    return marked


# Berkeley DB hash files carry this magic at byte 12 (native byte order).
DB_HASH_MAGIC = 0x061561


@pytest.fixture(scope="session")
def trees(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """One pristine tree (with its dpkg database) per MTA, shared read-only by the tests."""
    if not IS_ROOT:
        pytest.skip("chown and set-id bits need root")
    try:
        for mta in MTAS:
            mtatrees.fetch(mta)
    except (RuntimeError, OSError) as exc:
        pytest.skip(f"Debian packages unavailable (run .ci/fetch-debs): {exc}")
    built = {}
    for mta in MTAS:
        root = mtatrees.build_tree(mta, tmp_path_factory.mktemp(mta) / "root")
        mtatrees.write_dpkg_db(mta, root)
        built[mta] = root
    return built


def tree_path(root: Path, path: str) -> Path:
    return root / path.lstrip("/")


def owner_group_mode(target: Path) -> tuple[str, str, int]:
    st_ = target.lstat()
    owner = pwd.getpwuid(st_.st_uid).pw_name
    group = grp.getgrgid(st_.st_gid).gr_name
    return owner, group, stat.S_IMODE(st_.st_mode)


# ----------------------------------------------------------------- no root needed


def test_fetch_script_lists_the_same_packages() -> None:
    """.ci/fetch-debs downloads exactly the packages mtatrees.PACKAGES names."""
    script = (Path(__file__).parent.parent / ".ci" / "fetch-debs").read_text()
    block = re.search(r"^PACKAGES=\((.*?)\)", script, re.MULTILINE | re.DOTALL)
    assert block is not None
    assert sorted(block.group(1).split()) == sorted(p for ps in PACKAGES.values() for p in ps)


@pytest.mark.parametrize(
    ("mta", "layout"), [("qmail", "debian"), ("sendmail", "upstream"), ("", "debian")]
)
def test_build_tree_rejects_unknown_mta_or_layout(tmp_path: Path, mta: str, layout: str) -> None:
    """An unknown MTA or layout is a ValueError before anything is unpacked."""
    with pytest.raises(ValueError, match=r"not supported|unknown MTA"):
        mtatrees.build_tree(mta, tmp_path / "root", layout=layout)
    assert not (tmp_path / "root").exists()


@settings(max_examples=50)
@given(
    st.lists(
        st.tuples(
            st.from_regex(r"[A-Za-z][A-Za-z0-9_.-]{0,12}", fullmatch=True),
            st.from_regex(r"[a-z][a-z0-9@.]{0,20}", fullmatch=True),
        ),
        max_size=20,
    )
)
def test_alias_rows_lowercase_keys_and_end_marker(pairs: list[tuple[str, str]]) -> None:
    """Alias rows keep every entry, lower-case the key and end with newaliases' @ marker."""
    text = "# comment\n\n" + "".join(f"{k}: {v}\n" for k, v in pairs)
    rows = mtatrees._alias_rows(text).splitlines()
    assert rows[-1] == "@\t@"
    assert rows[:-1] == [f"{k.lower()}\t{v}" for k, v in pairs]


# ----------------------------------------------------------------- accounts and debs


@pytest.mark.root
@pytest.mark.skipif(not IS_ROOT, reason="groupadd/useradd need root")
def test_ensure_accounts_is_idempotent() -> None:
    """A second call creates nothing and every MTA account resolves by name."""
    mtatrees.ensure_accounts()
    mtatrees.ensure_accounts()
    for name in mtatrees.GROUPS:
        assert grp.getgrnam(name).gr_name == name
    for name, group in mtatrees.USERS:
        assert pwd.getpwnam(name).pw_gid == grp.getgrnam(group).gr_gid


@tree_test
@pytest.mark.parametrize("mta", MTAS)
def test_fetch_returns_one_deb_per_package(trees: dict[str, Path], mta: str) -> None:
    """fetch() gives one existing .deb per package, in PACKAGES order."""
    debs = mtatrees.fetch(mta)
    assert [d.name.split("_")[0] for d in debs] == PACKAGES[mta]
    assert all(d.is_file() and d.parent == mtatrees.DEB_CACHE for d in debs)


# ----------------------------------------------------------------- post-install state


@tree_test
@pytest.mark.parametrize("mta", MTAS)
def test_tree_has_every_post_install_owner_and_mode(trees: dict[str, Path], mta: str) -> None:
    """Every entry of expected_state() is in the tree with that type, owner, group, mode."""
    wrong = []
    for spec in mtatrees.expected_state(mta):
        target = tree_path(trees[mta], spec.path)
        is_dir = stat.S_ISDIR(target.lstat().st_mode)
        got = (*owner_group_mode(target), is_dir)
        want = (spec.owner, spec.group, spec.mode, spec.kind == "d")
        if got != want:
            wrong.append((spec.path, got, want))
    assert wrong == []


# Literal values from mta-facts (§2.2, §3.2, §4.1, §4.2, §5.1, §6), not from expected_state.
FACTS = [
    ("sendmail", "/usr/libexec/sendmail/sendmail", "root", "smmsp", 0o2755),
    ("sendmail", "/usr/libexec/sendmail/mailstats", "root", "smmsp", 0o2755),
    ("sendmail", "/usr/sbin/sensible-mda", "root", "root", 0o4755),
    ("sendmail", "/usr/libexec/sendmail/mail.local", "root", "root", 0o755),
    ("sendmail", "/etc/mail", "smmta", "smmsp", 0o2755),
    ("sendmail", "/etc/mail/sendmail.cf", "root", "smmsp", 0o644),
    ("sendmail", "/etc/mail/aliases.db", "smmta", "smmsp", 0o640),
    ("sendmail", "/etc/mail/access", "root", "root", 0o600),
    ("sendmail", "/etc/mail/tls/sendmail-common.key", "root", "smmsp", 0o640),
    ("sendmail", "/etc/aliases", "root", "root", 0o644),
    ("sendmail", "/var/spool/mqueue", "smmta", "smmsp", 0o2750),
    ("sendmail", "/var/spool/mqueue-client", "smmsp", "smmsp", 0o2770),
    ("sendmail", "/var/lib/sendmail", "smmta", "smmsp", 0o2751),
    ("sendmail", "/var/mail", "root", "mail", 0o3777),
    ("postfix", "/usr/sbin/postdrop", "root", "postdrop", 0o2555),
    ("postfix", "/usr/sbin/postqueue", "root", "postdrop", 0o2555),
    ("postfix", "/usr/sbin/postlog", "root", "root", 0o755),
    ("postfix", "/usr/sbin/sendmail", "root", "root", 0o755),
    ("postfix", "/var/spool/postfix", "root", "root", 0o755),
    ("postfix", "/var/spool/postfix/public", "postfix", "postdrop", 0o2710),
    ("postfix", "/var/spool/postfix/maildrop", "postfix", "postdrop", 0o1730),
    ("postfix", "/var/spool/postfix/incoming", "postfix", "root", 0o700),
    ("postfix", "/var/spool/postfix/deferred", "postfix", "root", 0o700),
    ("postfix", "/var/spool/postfix/private", "postfix", "root", 0o700),
    ("postfix", "/var/spool/postfix/pid", "root", "root", 0o755),
    ("postfix", "/var/lib/postfix", "postfix", "postfix", 0o755),
    ("postfix", "/etc/postfix/main.cf", "root", "root", 0o644),
    ("postfix", "/etc/ssl/private", "root", "ssl-cert", 0o710),
    ("postfix", "/var/mail", "root", "mail", 0o2775),
    ("exim4", "/usr/sbin/exim4", "root", "root", 0o4755),
    ("exim4", "/etc/exim4/passwd.client", "root", "Debian-exim", 0o640),
    ("exim4", "/var/lib/exim4/config.autogenerated", "root", "Debian-exim", 0o644),
    ("exim4", "/var/spool/exim4", "Debian-exim", "Debian-exim", 0o750),
    ("exim4", "/var/spool/exim4/input", "Debian-exim", "Debian-exim", 0o750),
    ("exim4", "/var/log/exim4", "Debian-exim", "adm", 0o2750),
    ("dovecot", "/etc/dovecot/private", "root", "root", 0o700),
    ("dovecot", "/etc/dovecot/dovecot-sql.conf.ext", "root", "dovecot", 0o640),
    ("dovecot", "/etc/dovecot/dovecot.conf", "root", "root", 0o644),
    ("dovecot", "/etc/dovecot/conf.d/10-ssl.conf", "root", "root", 0o644),
    ("dovecot", "/usr/sbin/dovecot", "root", "root", 0o755),
    ("dovecot", "/etc/ssl/private/ssl-cert-snakeoil.key", "root", "ssl-cert", 0o640),
]


@tree_test
@pytest.mark.parametrize(("mta", "path", "owner", "group", "mode"), FACTS)
def test_tree_matches_mta_facts(
    trees: dict[str, Path], mta: str, path: str, owner: str, group: str, mode: int
) -> None:
    """The owner, group and mode mta-facts lists for a path is what the tree has."""
    assert owner_group_mode(tree_path(trees[mta], path)) == (owner, group, mode)


LINKS = [
    ("sendmail", "/etc/mail/aliases", "../aliases"),
    ("sendmail", "/usr/sbin/sendmail", "/etc/alternatives/sendmail"),
    ("sendmail", "/etc/alternatives/sendmail", "/usr/libexec/sendmail/sendmail"),
    ("sendmail", "/usr/sbin/newaliases", "/etc/alternatives/newaliases"),
    ("sendmail", "/etc/mail/smrsh/mail.local", "/usr/libexec/sendmail/mail.local"),
    ("sendmail", "/var/spool/mail", "../mail"),
    ("postfix", "/usr/bin/newaliases", "../sbin/sendmail"),
    ("exim4", "/usr/sbin/sendmail", "exim4"),
    ("dovecot", "/etc/dovecot/private/dovecot.key", "/etc/ssl/private/ssl-cert-snakeoil.key"),
]


@tree_test
@pytest.mark.parametrize(("mta", "path", "target"), LINKS)
def test_symlinks_point_where_debian_points_them(
    trees: dict[str, Path], mta: str, path: str, target: str
) -> None:
    """Alternatives, the aliases link and the snakeoil links are symlinks with these targets."""
    assert os.readlink(tree_path(trees[mta], path)) == target


@tree_test
@pytest.mark.parametrize(
    ("mta", "path"),
    [
        ("sendmail", "/etc/mail/aliases.db"),
        ("sendmail", "/etc/mail/access.db"),
        ("postfix", "/etc/aliases.db"),
    ],
)
def test_maps_are_real_berkeley_db_hash_files(trees: dict[str, Path], mta: str, path: str) -> None:
    """Generated maps are real Berkeley DB hash files, made by the package's own tools."""
    header = tree_path(trees[mta], path).read_bytes()[:16]
    assert int.from_bytes(header[12:16], "little") == DB_HASH_MAGIC


def cf_option(text: str, name: str) -> str:
    match = re.search(rf"^O {name}=(.*)$", text, re.MULTILINE)
    assert match is not None, name
    return match.group(1)


@tree_test
@pytest.mark.parametrize(
    ("cf", "option", "value"),
    [
        (
            "sendmail.cf",
            "PrivacyOptions",
            "needmailhelo,needexpnhelo,needvrfyhelo,restrictqrun,restrictexpand,"
            "nobodyreturn,authwarnings",
        ),
        ("sendmail.cf", "TrustedUser", "smmta"),
        ("sendmail.cf", "DefaultUser", "mail:mail"),
        ("sendmail.cf", "QueueFileMode", "0640"),
        ("sendmail.cf", "QueueDirectory", "/var/spool/mqueue"),
        ("sendmail.cf", "AliasFile", "/etc/mail/aliases"),
        ("submit.cf", "RunAsUser", "smmsp"),
        ("submit.cf", "QueueDirectory", "/var/spool/mqueue-client"),
        ("submit.cf", "PrivacyOptions", "goaway,noetrn,restrictqrun"),
    ],
)
def test_generated_cf_has_debian_option_values(
    trees: dict[str, Path], cf: str, option: str, value: str
) -> None:
    """m4 over the Debian .mc gives the option values mta-facts §2.3 lists."""
    text = tree_path(trees["sendmail"], f"/etc/mail/{cf}").read_text()
    assert cf_option(text, option) == value


@tree_test
@pytest.mark.parametrize("name", ["sendmail", "submit"])
def test_generated_cf_embeds_its_mc_and_no_temp_paths(trees: dict[str, Path], name: str) -> None:
    """The .cf ends with the Debian '# ' copy of its .mc and names no temp-root path."""
    root = trees["sendmail"]
    text = tree_path(root, f"/etc/mail/{name}.cf").read_text()
    mc = tree_path(root, f"/etc/mail/{name}.mc").read_text()
    head, sep, tail = text.partition(f"### /etc/mail/{name}.mc ###\n")
    assert sep
    assert tail == "".join(f"# {line}\n" for line in mc.splitlines())
    assert str(root) not in text
    assert "##### in /etc/mail\n" in head
    assert "P=/usr/sbin/sensible-mda" in head or name == "submit"


def main_cf(root: Path) -> dict[str, str]:
    text = tree_path(root, "/etc/postfix/main.cf").read_text()
    pairs = re.findall(r"^(\w+)[ \t]*=[ \t]*(.*?)[ \t]*$", text, re.MULTILINE)
    return dict(pairs)


@tree_test
@pytest.mark.parametrize(
    ("param", "value"),
    [
        ("mynetworks", "127.0.0.0/8 [::ffff:127.0.0.0]/104 [::1]/128"),
        (
            "smtpd_relay_restrictions",
            "permit_mynetworks permit_sasl_authenticated defer_unauth_destination",
        ),
        ("alias_maps", "hash:/etc/aliases"),
        ("smtpd_tls_key_file", "/etc/ssl/private/ssl-cert-snakeoil.key"),
        ("compatibility_level", "3.6"),
        ("inet_interfaces", "all"),
    ],
)
def test_postfix_main_cf_is_the_debian_internet_site(
    trees: dict[str, Path], param: str, value: str
) -> None:
    """main.cf is main.cf.debian + main.cf.tls + the postinst's postconf -e values."""
    assert main_cf(trees["postfix"])[param] == value


@tree_test
def test_exim_autogenerated_config_is_update_exim4_conf_output(trees: dict[str, Path]) -> None:
    """config.autogenerated carries the debconf-default macros and no temp-root path."""
    root = trees["exim4"]
    text = tree_path(root, "/var/lib/exim4/config.autogenerated").read_text()
    assert "\nMAIN_RELAY_NETS=: 127.0.0.1 : ::::1\n" in text
    assert "\nMAIN_LOCAL_DOMAINS=@:localhost:mail.example.org\n" in text
    assert "# dynamically by /usr/sbin/update-exim4.conf\n" in text
    assert str(root) not in text


# ----------------------------------------------------------------- dpkg database


def md5sums_mismatches(root: Path, pkg: str) -> list[str]:
    lines = tree_path(root, f"/var/lib/dpkg/info/{pkg}.md5sums").read_text().splitlines()
    bad = []
    for line in lines:
        digest, rel = line.split(maxsplit=1)
        if hashlib.md5(tree_path(root, rel).read_bytes()).hexdigest() != digest:
            bad.append(rel)
    return bad


@tree_test
@pytest.mark.parametrize("mta", MTAS)
def test_dpkg_md5sums_match_the_unpacked_files(trees: dict[str, Path], mta: str) -> None:
    """Every <pkg>.md5sums line holds for the pristine tree, so triage can trust it."""
    root = trees[mta]
    for pkg in PACKAGES[mta]:
        assert tree_path(root, f"/var/lib/dpkg/info/{pkg}.md5sums").stat().st_size > 0
        assert md5sums_mismatches(root, pkg) == []


@tree_test
@pytest.mark.parametrize("mta", MTAS)
def test_dpkg_status_lists_packages_installed_with_conffile_md5s(
    trees: dict[str, Path], mta: str
) -> None:
    """status has each package 'install ok installed', and its Conffiles md5s hold."""
    root = trees[mta]
    status = tree_path(root, "/var/lib/dpkg/status").read_text()
    paragraphs = [p for p in status.split("\n\n") if p.strip()]
    assert [p.splitlines()[0] for p in paragraphs] == [f"Package: {p}" for p in PACKAGES[mta]]
    for para in paragraphs:
        assert "\nStatus: install ok installed\n" in para
        for path, digest in re.findall(r"^ (/\S+) ([0-9a-f]{32})$", para, re.MULTILINE):
            assert hashlib.md5(tree_path(root, path).read_bytes()).hexdigest() == digest


@tree_test
@pytest.mark.parametrize("mta", MTAS)
def test_dpkg_statoverride_matches_the_tree(trees: dict[str, Path], mta: str) -> None:
    """Each statoverride line is in dpkg's format and the tree has exactly that state."""
    root = trees[mta]
    lines = tree_path(root, "/var/lib/dpkg/statoverride").read_text().splitlines()
    assert lines
    for line in lines:
        owner, group, mode, path = line.split(" ", 3)
        assert owner_group_mode(tree_path(root, path)) == (owner, group, int(mode, 8))


@tree_test
def test_sendmail_statoverride_is_what_postinst_adds(trees: dict[str, Path]) -> None:
    """sendmail-bin's postinst overrides exactly the two set-gid binaries."""
    text = tree_path(trees["sendmail"], "/var/lib/dpkg/statoverride").read_text()
    assert text == (
        "root smmsp 2755 /usr/libexec/sendmail/sendmail\n"
        "root smmsp 2755 /usr/libexec/sendmail/mailstats\n"
    )


# ----------------------------------------------------------------- tampers

TAMPERS = [(mta, t) for mta in MTAS for t in mtatrees.tamper_cases(mta)]


def copy_of_path(src_root: Path, path: str, dst_root: Path) -> Path:
    """A root holding just ``path`` (and its parents) copied from the pristine tree.

    A tamper touches only its own path; copying whole trees per case would cost seconds.
    """
    rel = path.lstrip("/")
    dst_root.mkdir()
    if os.path.lexists(src_root / rel):
        cmd = ["cp", "-a", "--parents", "--no-dereference", rel, str(dst_root)]
        subprocess.run(cmd, cwd=src_root, check=True)
    else:
        (dst_root / rel).parent.mkdir(parents=True, exist_ok=True)
    return dst_root


def snapshot(target: Path) -> tuple[os.stat_result, str] | None:
    """lstat plus content digest (regular files only), None when the path is absent."""
    try:
        st_ = target.lstat()
    except FileNotFoundError:
        return None
    digest = hashlib.sha256(target.read_bytes()).hexdigest() if stat.S_ISREG(st_.st_mode) else ""
    return st_, digest


def changed_as_declared(
    attribute: str,
    before: tuple[os.stat_result, str] | None,
    after: tuple[os.stat_result, str] | None,
) -> bool:
    """Whether the before/after snapshots differ in the declared way, and only that one."""
    if attribute == "added":
        return before is None and after is not None
    if attribute == "removed":
        return before is not None and after is None
    assert before is not None and after is not None
    (b, bd), (a, ad) = before, after
    checks = {
        "mode": stat.S_IMODE(b.st_mode) != stat.S_IMODE(a.st_mode) and bd == ad,
        "uid": b.st_uid != a.st_uid and stat.S_IMODE(b.st_mode) == stat.S_IMODE(a.st_mode),
        "content": bd != ad and stat.S_IMODE(b.st_mode) == stat.S_IMODE(a.st_mode),
        "mtime": b.st_mtime_ns != a.st_mtime_ns and bd == ad and b.st_mode == a.st_mode,
        "ftype": stat.S_IFMT(b.st_mode) != stat.S_IFMT(a.st_mode),
    }
    return checks[attribute]


@tree_test
@pytest.mark.parametrize(("mta", "tamper"), TAMPERS, ids=[f"{m}-{t.name}" for m, t in TAMPERS])
def test_tamper_really_changes_what_it_declares(
    trees: dict[str, Path], tmp_path: Path, mta: str, tamper: Tamper
) -> None:
    """apply() on a copy of the tree changes the declared attribute of the declared path."""
    root = copy_of_path(trees[mta], tamper.path, tmp_path / "root")
    target = tree_path(root, tamper.path)
    before = snapshot(target)
    tamper.apply(root)
    assert changed_as_declared(tamper.attribute, before, snapshot(target))


@pytest.mark.parametrize(("mta", "tamper"), TAMPERS, ids=[f"{m}-{t.name}" for m, t in TAMPERS])
def test_tamper_expectations_are_well_formed(mta: str, tamper: Tamper) -> None:
    """Each tamper names a known severity, an MI- rule prefix or None, and an absolute path."""
    assert tamper.expect_severity in {str(s) for s in Severity}
    assert tamper.expect_rule_prefix is None or tamper.expect_rule_prefix.startswith("MI-")
    assert tamper.path.startswith("/")
    assert tamper.attribute in {"mode", "uid", "content", "mtime", "ftype", "removed", "added"}


def test_tamper_names_are_unique_per_mta() -> None:
    """Tamper names identify a scenario within its MTA (they become test ids)."""
    for mta in MTAS:
        names = [t.name for t in mtatrees.tamper_cases(mta)]
        assert len(names) == len(set(names)), mta
