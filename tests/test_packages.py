"""Package-aware triage: dpkg md5sums/conffiles/statoverride/diversions, rpm dumps, safe hashing."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrity import packages
from integrity.model import FileRecord, FileType
from integrity.packages import (
    DpkgBackend,
    Override,
    PackageFile,
    RpmBackend,
    detect_backend,
    file_digest,
    make_triage,
    parse_diversions,
    parse_md5sums,
    parse_statoverride,
    parse_status,
    provenance,
)
from integrity.scanner import Collected, IdNames, collect

from . import mtatrees

DATA = Path(__file__).parent / "data" / "rpm"
RPM_VERSION = "3.5.25-1.el9"


def md5(data: bytes) -> str:
    return hashlib.md5(data).hexdigest()


def write(root: Path, path: str, data: bytes) -> None:
    full = root / path.lstrip("/")
    full.parent.mkdir(parents=True, exist_ok=True)
    full.write_bytes(data)


def record(root: Path, path: str) -> FileRecord:
    """The record the real collector makes of the live file (blake3 digest included)."""
    got = collect(str(root), path, names=IdNames(str(root)))
    assert isinstance(got, Collected), got
    return got.record


@pytest.fixture
def alarm() -> Iterator[None]:
    """Turn a hang (a FIFO opened blocking) into a test failure after 5 s."""

    def expire(signum: int, frame: object) -> None:
        raise TimeoutError("blocked")

    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(5)
    yield
    signal.alarm(0)
    signal.signal(signal.SIGALRM, old)


# --------------------------------------------------------------------------- a fake dpkg tree

FILES = {
    "/usr/libexec/mta/mta": b"\x7fELF the mta binary v1\n",
    "/usr/libexec/mta/helper": b"\x7fELF helper v1\n",
    "/usr/bin/mailx": b"\x7fELF mailx (listed as bin/mailx: merged /usr)\n",
    "/usr/sbin/sendmail": b"#!/bin/sh\n# wrapper from mta-wrap\n",
    "/usr/sbin/sendmail.real": b"\x7fELF sendmail from mta-bin\n",
    "/etc/mta/mta.conf": b"# shipped mta.conf\nrelay = no\n",
    "/etc/mta/old.conf": b"# obsolete conffile\n",
    "/etc/mta/left.conf": b"# conffile of a removed package\n",
}

STATUS = f"""\
Package: mta-bin
Status: install ok installed
Priority: optional
Version: 1.2-3
Conffiles:
 /etc/mta/mta.conf {md5(FILES["/etc/mta/mta.conf"])}
 /etc/mta/old.conf {md5(FILES["/etc/mta/old.conf"])} obsolete
Description: a mail transfer agent
 with a long description
 .
 over several lines

Package: mta-wrap
Status: install ok installed
Architecture: amd64
Multi-Arch: same
Version: 0.9

Package: mta-gone
Status: deinstall ok config-files
Version: 0.1
Conffiles:
 /etc/mta/left.conf {md5(FILES["/etc/mta/left.conf"])}

Package: mta-purged
Status: purge ok not-installed
Version: 0.0
"""

MD5SUMS = {
    "mta-bin": [
        ("usr/libexec/mta/mta", FILES["/usr/libexec/mta/mta"]),
        ("usr/libexec/mta/helper", FILES["/usr/libexec/mta/helper"]),
        ("bin/mailx", FILES["/usr/bin/mailx"]),
        ("usr/sbin/sendmail", FILES["/usr/sbin/sendmail.real"]),  # diverted by mta-wrap
    ],
    "mta-wrap:amd64": [("usr/sbin/sendmail", FILES["/usr/sbin/sendmail"])],
    "mta-purged": [("usr/libexec/mta/purged", b"stale")],
}

STATOVERRIDE = """\
root smmsp 2755 /usr/libexec/mta/mta
root mail 640 /etc/mta/with space.conf
malformed line
root root 9999 /not/octal
#0 #0 755 /usr/libexec/mta/helper
"""

DIVERSIONS = "/usr/sbin/sendmail\n/usr/sbin/sendmail.real\nmta-wrap\n"


@pytest.fixture
def dpkg_root(tmp_path: Path) -> Path:
    for path, data in FILES.items():
        write(tmp_path, path, data)
    info = "/var/lib/dpkg/info"
    for pkg, lines in MD5SUMS.items():
        text = "".join(f"{md5(data)}  {rel}\n" for rel, data in lines)
        write(tmp_path, f"{info}/{pkg}.md5sums", text.encode())
    write(tmp_path, "/var/lib/dpkg/status", STATUS.encode())
    write(tmp_path, "/var/lib/dpkg/statoverride", STATOVERRIDE.encode())
    write(tmp_path, "/var/lib/dpkg/diversions", DIVERSIONS.encode())
    write(tmp_path, "/etc/mta/local.conf", b"# written by the admin\n")
    (tmp_path / "bin").symlink_to("usr/bin")  # merged /usr, as on Debian 12
    return tmp_path


def test_detect_backend_dpkg(dpkg_root: Path) -> None:
    """A root with var/lib/dpkg/status gets the dpkg backend."""
    backend = detect_backend(str(dpkg_root))
    assert isinstance(backend, DpkgBackend)
    assert backend.name == "dpkg"


def test_detect_backend_none(tmp_path: Path) -> None:
    """A root with no package database (and no rpm database in it) has no backend."""
    assert detect_backend(str(tmp_path)) is None


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/usr/libexec/mta/mta", PackageFile("mta-bin", "1.2-3", "md5", "", False)),
        ("/usr/bin/mailx", PackageFile("mta-bin", "1.2-3", "md5", "", False)),
        ("/bin/mailx", PackageFile("mta-bin", "1.2-3", "md5", "", False)),
        ("/usr/sbin/sendmail", PackageFile("mta-wrap", "0.9", "md5", "", False)),
        ("/usr/sbin/sendmail.real", PackageFile("mta-bin", "1.2-3", "md5", "", False)),
        ("/etc/mta/mta.conf", PackageFile("mta-bin", "1.2-3", "md5", "", True)),
        ("/etc/mta/left.conf", PackageFile("mta-gone", "0.1", "md5", "", True)),
        ("/etc/mta/old.conf", None),
        ("/usr/libexec/mta/purged", None),
        ("/etc/mta/local.conf", None),
    ],
    ids=[
        "md5sums",
        "usrmerge-live",
        "usrmerge-listed",
        "diverting-package",
        "diverted-away",
        "conffile",
        "config-files-state",
        "obsolete-conffile",
        "not-installed",
        "unpackaged",
    ],
)
def test_dpkg_lookup(dpkg_root: Path, path: str, expected: PackageFile | None) -> None:
    """Lookup follows md5sums, conffiles, diversions, merged /usr; absent packages do not count."""
    found = DpkgBackend(str(dpkg_root)).lookup(path)
    if expected is None:
        assert found is None
        return
    assert found is not None
    assert (found.package, found.version, found.algo, found.conffile) == (
        expected.package,
        expected.version,
        expected.algo,
        expected.conffile,
    )
    live = (dpkg_root / path.lstrip("/")).resolve()
    assert found.digest == md5(live.read_bytes())


def test_dpkg_index_is_cached(dpkg_root: Path) -> None:
    """The md5sums are read once: later lookups do not touch the files again."""
    backend = DpkgBackend(str(dpkg_root))
    assert backend.lookup("/usr/libexec/mta/mta") is not None
    shutil.rmtree(dpkg_root / "var/lib/dpkg/info")
    assert backend.lookup("/usr/libexec/mta/helper") is not None


def test_statoverride(dpkg_root: Path) -> None:
    """statoverride lines become Overrides (octal modes); malformed lines are skipped."""
    assert DpkgBackend(str(dpkg_root)).overrides() == {
        "/usr/libexec/mta/mta": Override("root", "smmsp", 0o2755),
        "/etc/mta/with space.conf": Override("root", "mail", 0o640),
        "/usr/libexec/mta/helper": Override("#0", "#0", 0o755),
    }


TRIAGE = [
    ("/usr/libexec/mta/mta", None, "content matches package mta-bin 1.2-3 (dpkg md5sums)"),
    ("/usr/libexec/mta/mta", b"\x7fELF trojan\n", None),
    ("/usr/bin/mailx", None, "content matches package mta-bin 1.2-3 (dpkg md5sums)"),
    ("/usr/sbin/sendmail", None, "content matches package mta-wrap 0.9 (dpkg md5sums)"),
    ("/usr/sbin/sendmail.real", None, "content matches package mta-bin 1.2-3 (dpkg md5sums)"),
    ("/etc/mta/mta.conf", None, "content matches package mta-bin 1.2-3 (dpkg conffiles)"),
    ("/etc/mta/mta.conf", b"relay = yes\n", None),
    ("/etc/mta/local.conf", None, None),
]


@pytest.mark.parametrize(("path", "replace", "expected"), TRIAGE)
def test_dpkg_triage(
    dpkg_root: Path, path: str, replace: bytes | None, expected: str | None
) -> None:
    """A changed file is explained only when its live content is the package's."""
    if replace is not None:
        write(dpkg_root, path, replace)
    triage = make_triage(str(dpkg_root), DpkgBackend(str(dpkg_root)))
    assert triage(record(dpkg_root, path)) == expected


@pytest.mark.parametrize(
    ("path", "replace", "expected"),
    [
        ("/usr/libexec/mta/mta", None, "matches package mta-bin 1.2-3"),
        ("/usr/libexec/mta/mta", b"evil", "differs from package mta-bin 1.2-3"),
        ("/etc/mta/mta.conf", b"edited", "differs from package mta-bin 1.2-3 (conffile)"),
        ("/etc/mta/local.conf", None, "not from any package"),
    ],
)
def test_dpkg_provenance(dpkg_root: Path, path: str, replace: bytes | None, expected: str) -> None:
    """provenance says whether the live file is, differs from, or is not a package's file."""
    if replace is not None:
        write(dpkg_root, path, replace)
    assert provenance(str(dpkg_root), DpkgBackend(str(dpkg_root)), record(dpkg_root, path)) == (
        expected
    )


def test_triage_refuses_a_file_swapped_after_the_scan(dpkg_root: Path) -> None:
    """If the file on disk no longer has the scanned digest, nothing is explained."""
    path = "/usr/libexec/mta/mta"
    write(dpkg_root, path, b"\x7fELF trojan that was scanned\n")
    scanned = record(dpkg_root, path)
    write(dpkg_root, path, FILES[path])  # put the package's bytes back before triage
    triage = make_triage(str(dpkg_root), DpkgBackend(str(dpkg_root)))
    assert triage(scanned) is None
    assert triage(record(dpkg_root, path)) is not None


def test_triage_never_follows_a_symlink(dpkg_root: Path) -> None:
    """A packaged path replaced by a symlink to the genuine bytes is not explained."""
    path = "/usr/libexec/mta/mta"
    full = dpkg_root / path.lstrip("/")
    genuine = dpkg_root / "genuine"
    full.rename(genuine)
    full.symlink_to(genuine)
    rec = FileRecord(path=path, ftype=FileType.FILE, mode=0o755, uid=0, gid=0)
    assert make_triage(str(dpkg_root), DpkgBackend(str(dpkg_root)))(rec) is None
    assert file_digest(str(dpkg_root), path, "md5") is None
    link = record(dpkg_root, path)
    assert link.ftype is FileType.SYMLINK
    assert make_triage(str(dpkg_root), DpkgBackend(str(dpkg_root)))(link) is None


def test_file_digest_fifo_does_not_block(tmp_path: Path, alarm: None) -> None:
    """A FIFO where a file was expected gives None at once instead of hanging."""
    os.mkfifo(tmp_path / "fifo")
    assert file_digest(str(tmp_path), "/fifo", "md5") is None


@pytest.mark.parametrize(
    ("algo", "expected"),
    [
        ("md5", hashlib.md5(b"abc\n").hexdigest()),
        ("sha256", hashlib.sha256(b"abc\n").hexdigest()),
        ("sha512", hashlib.sha512(b"abc\n").hexdigest()),
        ("crc32", None),
    ],
)
def test_file_digest_algorithms(tmp_path: Path, algo: str, expected: str | None) -> None:
    """file_digest speaks the package databases' algorithms; unknown ones give None."""
    write(tmp_path, "/f", b"abc\n")
    assert file_digest(str(tmp_path), "/f", algo) == expected


def test_file_digest_does_not_escape_root(tmp_path: Path) -> None:
    """A parent symlink pointing outside the root is not followed to a host file."""
    root = tmp_path / "root"
    outside = tmp_path / "host-etc"
    write(outside, "/shadow", b"host secret\n")
    root.mkdir()
    (root / "etc").symlink_to(outside)
    assert file_digest(str(root), "/etc/shadow", "md5") is None


def test_unreadable_file_gives_none(tmp_path: Path) -> None:
    """A directory or a missing file has no digest."""
    (tmp_path / "dir").mkdir()
    assert file_digest(str(tmp_path), "/dir", "md5") is None
    assert file_digest(str(tmp_path), "/missing", "md5") is None


# --------------------------------------------------------------------------- pure parsers


def test_parse_status_fields() -> None:
    """Versions of present packages, and their non-obsolete conffiles."""
    versions, conffiles = parse_status(STATUS)
    assert versions == {"mta-bin": "1.2-3", "mta-wrap": "0.9", "mta-gone": "0.1"}
    assert sorted(conffiles) == ["/etc/mta/left.conf", "/etc/mta/mta.conf"]


def test_parse_status_conffile_with_space_and_flag() -> None:
    """A conffile path may hold spaces and carry remove-on-upgrade."""
    text = "Package: p\nStatus: install ok installed\nVersion: 1\nConffiles:\n"
    text += f" /etc/p/a b.conf {'0' * 32} remove-on-upgrade\n /etc/p/c {'1' * 31}\n"
    _, conffiles = parse_status(text)
    assert list(conffiles) == ["/etc/p/a b.conf"]


def test_parse_md5sums_forms() -> None:
    """Two-space and binary-marker lines, ./ prefixes and spaces in names; junk skipped."""
    d = "0123456789abcdef0123456789ABCDEF"
    text = f"{d}  usr/bin/a\n{d} *usr/bin/b\n{d}  ./usr/bin/c d\nshort  usr/x\n\n"
    assert list(parse_md5sums(text)) == [
        ("/usr/bin/a", d.lower()),
        ("/usr/bin/b", d.lower()),
        ("/usr/bin/c d", d.lower()),
    ]


def test_parse_diversions_local() -> None:
    """Diversion triples, a local one (package ':') included; a truncated triple is dropped."""
    text = "/a\n/a.distrib\n:\n/b\n/b.real\npkg\n/c\n/c.x\n"
    assert parse_diversions(text) == {"/a": ("/a.distrib", ":"), "/b": ("/b.real", "pkg")}


@given(st.text())
def test_parsers_never_raise(text: str) -> None:
    """Whatever the database files hold, the parsers return values, never exceptions."""
    parse_status(text)
    list(parse_md5sums(text))
    parse_statoverride(text)
    parse_diversions(text)
    RpmBackend.from_dump(text, {"p": "1"})


@given(
    st.lists(
        st.tuples(
            st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp")), min_size=1),
            st.binary(),
        ),
        max_size=5,
    )
)
def test_md5sums_round_trip(entries: list[tuple[str, bytes]]) -> None:
    """Lines written as dh_md5sums writes them parse back to the same paths and digests."""
    rels = [rel.lstrip("/ ").removeprefix("./") or "x" for rel, _ in entries]
    text = "".join(f"{md5(data)}  {rel}\n" for rel, (_, data) in zip(rels, entries, strict=True))
    expected = [("/" + rel, md5(data)) for rel, (_, data) in zip(rels, entries, strict=True)]
    assert list(parse_md5sums(text)) == expected


# --------------------------------------------------------------------------- rpm


def rpm_content(path: str) -> bytes:
    """The bytes the recorded dump's digests were computed from (see data/rpm/README.md)."""
    return f"{path} as shipped in postfix-{RPM_VERSION}\n".encode()


@pytest.fixture
def rpm_backend() -> RpmBackend:
    text = (DATA / "postfix.dump").read_text()
    return RpmBackend.from_dump(text, {"postfix": RPM_VERSION})


def test_rpm_dump_recorded_sample_is_consistent() -> None:
    """Every regular file in the recorded dump has the size and sha256 of its content."""
    lines = (DATA / "postfix.dump").read_text().splitlines()
    assert len(lines) == 10
    for line in lines:
        path, size, _, digest, mode = line.split()[:5]
        if mode.startswith("010"):
            assert int(size) == len(rpm_content(path))
            assert digest == hashlib.sha256(rpm_content(path)).hexdigest()


@pytest.mark.parametrize(
    ("path", "conffile"),
    [
        ("/etc/postfix/main.cf", True),
        ("/etc/postfix/master.cf", True),
        ("/usr/sbin/postdrop", False),
        ("/usr/share/doc/postfix/README", False),
        ("/etc/postfix", None),
        ("/usr/share/man/man1/mailq.postfix.1.gz", None),
        ("/var/spool/postfix/maildrop", None),
        ("/usr/sbin/sendmail", None),
    ],
    ids=["config", "config2", "setgid-binary", "doc", "dir", "symlink", "queue-dir", "absent"],
)
def test_rpm_lookup(rpm_backend: RpmBackend, path: str, conffile: bool | None) -> None:
    """Regular files are listed with sha256 and the config flag; dirs and symlinks are not."""
    found = rpm_backend.lookup(path)
    if conffile is None:
        assert found is None
        return
    assert found == PackageFile(
        "postfix", RPM_VERSION, "sha256", hashlib.sha256(rpm_content(path)).hexdigest(), conffile
    )


def test_rpm_triage(rpm_backend: RpmBackend, tmp_path: Path) -> None:
    """Triage against the rpm database: genuine bytes explained, altered bytes not."""
    for path in ("/usr/sbin/postqueue", "/usr/libexec/postfix/smtpd"):
        write(tmp_path, path, rpm_content(path))
    write(tmp_path, "/usr/libexec/postfix/smtpd", b"backdoored smtpd\n")
    triage = make_triage(str(tmp_path), rpm_backend)
    assert triage(record(tmp_path, "/usr/sbin/postqueue")) == (
        f"content matches package postfix {RPM_VERSION} (rpm database)"
    )
    assert triage(record(tmp_path, "/usr/libexec/postfix/smtpd")) is None
    smtpd = record(tmp_path, "/usr/libexec/postfix/smtpd")
    assert provenance(str(tmp_path), rpm_backend, smtpd) == (
        f"differs from package postfix {RPM_VERSION}"
    )
    assert rpm_backend.overrides() == {}


def test_rpm_markers_name_packages() -> None:
    """'# package:' lines (what detect_backend asks rpm for) attribute the lines below them."""
    d1, d2 = "a" * 64, "b" * 32
    text = (
        "# package: postfix 2:3.5.25-1.el9\n"
        f"/usr/sbin/postfix 10 1 {d1} 0100755 root root 0 0 0 X\n"
        "# package: cyrus-sasl\n"
        f"/etc/sasl2/smtpd conf 10 1 {d2} 0100640 root mail 1 0 0 X\n"
        "(contains no files)\n"
    )
    backend = RpmBackend.from_dump(text, {"cyrus-sasl": "2.1.27-21.el9"})
    assert backend.lookup("/usr/sbin/postfix") == PackageFile(
        "postfix", "2:3.5.25-1.el9", "sha256", d1, False
    )
    assert backend.lookup("/etc/sasl2/smtpd conf") == PackageFile(
        "cyrus-sasl", "2.1.27-21.el9", "md5", d2, True
    )


def test_rpm_unattributed_lines_are_dropped() -> None:
    """Without markers and with several candidate packages, no line is guessed at."""
    text = f"/usr/sbin/postfix 10 1 {'a' * 64} 0100755 root root 0 0 0 X\n"
    backend = RpmBackend.from_dump(text, {"postfix": "1", "other": "2"})
    assert backend.lookup("/usr/sbin/postfix") is None


# --------------------------------------------------------------------------- a real .deb


@dataclass(frozen=True)
class RealDeb:
    root: Path
    version: str
    listed: list[str]


def _sendmail_bin_deb() -> Path:
    """The cached sendmail-bin .deb, downloaded with apt-get when missing."""
    cached = mtatrees._cached_deb("sendmail-bin")
    if cached is not None:
        return cached
    target = Path("/tmp/debs")
    target.mkdir(exist_ok=True)
    cmd = ["apt-get", "download", "-q", "-o", "APT::Sandbox::User=root", "sendmail-bin"]
    done = subprocess.run(cmd, cwd=target, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        subprocess.run(["apt-get", "update", "-qq"], capture_output=True, check=False)
        done = subprocess.run(cmd, cwd=target, capture_output=True, text=True, check=False)
    found = sorted(target.glob("sendmail-bin_*.deb"))
    if not found:
        pytest.skip(f"sendmail-bin .deb unavailable: {done.stderr.strip()}")
    return found[-1]


def _control_field(control: str, name: str) -> str:
    for line in control.splitlines():
        if line.startswith(f"{name}:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"{name} missing from control")


@pytest.fixture(scope="module")
def real_deb(tmp_path_factory: pytest.TempPathFactory) -> RealDeb:
    """sendmail-bin unpacked into a root, with its md5sums, conffiles and a status entry."""
    if shutil.which("dpkg-deb") is None:
        pytest.skip("dpkg-deb not installed")
    deb = _sendmail_bin_deb()
    root, ctl = tmp_path_factory.mktemp("root"), tmp_path_factory.mktemp("ctl")
    subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
    subprocess.run(["dpkg-deb", "-e", str(deb), str(ctl)], check=True)
    version = _control_field((ctl / "control").read_text(), "Version")
    conf = [p for p in (ctl / "conffiles").read_text().splitlines() if p.strip()]
    conf_lines = "".join(f" {p} {md5((root / p.lstrip('/')).read_bytes())}\n" for p in conf)
    status = f"Package: sendmail-bin\nStatus: install ok installed\nVersion: {version}\n"
    write(root, "/var/lib/dpkg/status", (status + "Conffiles:\n" + conf_lines).encode())
    md5sums = (ctl / "md5sums").read_bytes()
    write(root, "/var/lib/dpkg/info/sendmail-bin.md5sums", md5sums)
    write(root, "/var/lib/dpkg/statoverride", b"root smmsp 2755 /usr/libexec/sendmail/sendmail\n")
    write(root, "/etc/mail/local-host-names", b"mail.example.org\n")
    listed = [path for path, _ in parse_md5sums(md5sums.decode())] + conf
    return RealDeb(root, version, listed)


@pytest.mark.slow
def test_real_deb_every_listed_file_triages(real_deb: RealDeb) -> None:
    """Every file sendmail-bin's md5sums and conffiles list is recognised as package content."""
    backend = detect_backend(str(real_deb.root))
    assert isinstance(backend, DpkgBackend)
    triage = make_triage(str(real_deb.root), backend)
    assert "/usr/libexec/sendmail/sendmail" in real_deb.listed
    for path in real_deb.listed:
        rec = record(real_deb.root, path)
        source = "dpkg conffiles" if path.startswith("/etc/") else "dpkg md5sums"
        assert triage(rec) == f"content matches package sendmail-bin {real_deb.version} ({source})"


@pytest.mark.slow
def test_real_deb_changed_byte(real_deb: RealDeb, tmp_path: Path) -> None:
    """One byte changed in the sendmail binary: not explained, and 'differs from package'."""
    root = tmp_path / "root"
    shutil.copytree(real_deb.root, root, symlinks=True)
    binary = root / "usr/libexec/sendmail/sendmail"
    data = bytearray(binary.read_bytes())
    data[len(data) // 2] ^= 0xFF
    binary.write_bytes(bytes(data))
    backend = DpkgBackend(str(root))
    rec = record(root, "/usr/libexec/sendmail/sendmail")
    assert make_triage(str(root), backend)(rec) is None
    assert provenance(str(root), backend, rec) == (
        f"differs from package sendmail-bin {real_deb.version}"
    )


@pytest.mark.slow
def test_real_deb_unlisted_and_overrides(real_deb: RealDeb) -> None:
    """A file no package lists is 'not from any package'; statoverride is read."""
    backend = DpkgBackend(str(real_deb.root))
    rec = record(real_deb.root, "/etc/mail/local-host-names")
    assert provenance(str(real_deb.root), backend, rec) == "not from any package"
    assert make_triage(str(real_deb.root), backend)(rec) is None
    assert backend.overrides() == {
        "/usr/libexec/sendmail/sendmail": Override("root", "smmsp", 0o2755)
    }


def test_source_labels() -> None:
    """Messages name the list that vouched for the digest."""
    dpkg, rpm = DpkgBackend("/nonexistent"), RpmBackend({})
    pf = PackageFile("p", "1", "md5", "0" * 32, False)
    assert packages.source(dpkg, pf) == "dpkg md5sums"
    assert packages.source(dpkg, PackageFile("p", "1", "md5", "0" * 32, True)) == "dpkg conffiles"
    assert packages.source(rpm, pf) == "rpm database"
