"""Package-aware triage: is a changed file exactly what the package manager installed?

A binary whose content changed is HIGH, unless the new content is byte for byte what the
package database lists for that path (an upgrade): then it is INFO. The package database
is on the same host as the attacker, so this only explains changes, it never vouches for
a file the baseline did not already cover; the lead judge decides what to downgrade.

Backends are read-only and lazy: the dpkg md5sums index is built on the first lookup and
kept, so triaging many files reads each ``*.md5sums`` file once.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import shutil
import stat
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Protocol

import blake3

from integrity.model import FileRecord, FileType, PackageVerdict

_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_CHUNK = 1 << 20
_DB_FILE_MAX = 256 * 2**20
_HEX_ALGOS = {32: "md5", 40: "sha1", 56: "sha224", 64: "sha256", 96: "sha384", 128: "sha512"}
_HASHLIB_ALGOS = frozenset(_HEX_ALGOS.values())
_ABSENT_STATES = frozenset({"not-installed"})
_CONFFILE_FLAGS = frozenset({"obsolete", "remove-on-upgrade"})
_USRMERGE = ("/bin/", "/sbin/", "/lib/", "/lib32/", "/lib64/", "/libx32/")
_RPM_TIMEOUT = 300


@dataclass(frozen=True, slots=True)
class PackageFile:
    """What the package database says one path should contain."""

    package: str
    version: str
    algo: str  # hashlib name: "md5" (dpkg), "sha256" (modern rpm)...
    digest: str  # lowercase hex
    conffile: bool


@dataclass(frozen=True, slots=True)
class Override:
    """A ``dpkg-statoverride`` entry: the owner, group and mode postinst really sets."""

    owner: str
    group: str
    mode: int


class PackageBackend(Protocol):
    name: str

    def lookup(self, path: str) -> PackageFile | None: ...

    def overrides(self) -> dict[str, Override]: ...


# --------------------------------------------------------------------------- safe reads


def _host(root: str, path: str) -> str:
    return os.path.join(root, path.lstrip("/"))


def _escapes(root: str, full: str) -> bool:
    """Under a root, an absolute symlink in a parent would resolve against the host."""
    real_root = os.path.realpath(root)
    if real_root == "/":
        return False
    parent = os.path.realpath(os.path.dirname(full))
    return os.path.commonpath([real_root, parent]) != real_root


def _open_regular(root: str, path: str) -> int | None:
    """A descriptor on a regular file; never follows a final symlink, never blocks on a FIFO."""
    full = _host(root, path)
    if _escapes(root, full):
        return None
    try:
        fd = os.open(full, _READ_FLAGS)
    except OSError:
        return None
    try:
        if stat.S_ISREG(os.fstat(fd).st_mode):
            return fd
    except OSError:
        pass
    os.close(fd)
    return None


def _chunks(fd: int, size: int = _CHUNK) -> Iterator[memoryview]:
    """Successive reads into one reused buffer (``readv``: no allocation per chunk)."""
    buf = bytearray(size)
    view = memoryview(buf)
    while (n := os.readv(fd, [buf])) > 0:
        yield view[:n]


def _hash_live(root: str, path: str, algos: tuple[str, ...]) -> dict[str, str] | None:
    """Hex digests of one read of the file, for each algo ("blake3" or a hashlib name)."""
    if not all(a == "blake3" or a in _HASHLIB_ALGOS for a in algos):
        return None
    fd = _open_regular(root, path)
    if fd is None:
        return None
    hashers = {a: blake3.blake3() if a == "blake3" else hashlib.new(a) for a in algos}
    try:
        for chunk in _chunks(fd):
            for h in hashers.values():
                h.update(chunk)
    except OSError:
        return None
    finally:
        os.close(fd)
    return {a: h.hexdigest() for a, h in hashers.items()}


def file_digest(root: str, path: str, algo: str) -> str | None:
    """Hex ``algo`` digest of ``path`` inside ``root``; None if not a readable regular file."""
    found = _hash_live(root, path, (algo,))
    return None if found is None else found[algo]


def _read_text(root: str, path: str) -> str | None:
    fd = _open_regular(root, path)
    if fd is None:
        return None
    try:
        data = bytearray()
        for chunk in _chunks(fd, min(os.fstat(fd).st_size + 1, _CHUNK)):
            data += chunk
            if len(data) > _DB_FILE_MAX:
                return None
    except OSError:
        return None
    finally:
        os.close(fd)
    return data.decode("utf-8", "surrogateescape")


# --------------------------------------------------------------------------- dpkg


def _paragraphs(text: str) -> Iterator[dict[str, str]]:
    """deb822 stanzas; continuation lines are kept, joined with newlines."""
    fields: dict[str, str] = {}
    last = ""
    for line in text.splitlines():
        if not line.strip():
            if fields:
                yield fields
            fields, last = {}, ""
        elif line[0] in " \t" and last:
            fields[last] += "\n" + line.strip()
        elif ":" in line:
            last, _, value = line.partition(":")
            fields[last] = value.strip()
    if fields:
        yield fields


def parse_status(text: str) -> tuple[dict[str, str], dict[str, PackageFile]]:
    """Versions of the packages present, and their conffiles (md5 of the shipped copy).

    ``obsolete`` conffiles and the ``newconffile`` placeholder are skipped: they do not
    say what the current version ships.
    """
    versions: dict[str, str] = {}
    conffiles: dict[str, PackageFile] = {}
    for para in _paragraphs(text):
        name, version = para.get("Package", ""), para.get("Version", "")
        state = para.get("Status", "").rpartition(" ")[2]
        if not name or state in _ABSENT_STATES:
            continue
        versions[name] = version
        for line in para.get("Conffiles", "").splitlines():
            if entry := _conffile(line):
                conffiles[entry[0]] = PackageFile(name, version, "md5", entry[1], True)
    return versions, conffiles


def _conffile(line: str) -> tuple[str, str] | None:
    """`` /etc/x md5 [obsolete] [remove-on-upgrade]``; the path may hold spaces."""
    words = line.strip().split(" ")
    flags: set[str] = set()
    while len(words) > 2 and words[-1] in _CONFFILE_FLAGS:
        flags.add(words.pop())
    path, digest = " ".join(words[:-1]), words[-1]
    if "obsolete" in flags or not path.startswith("/") or not _is_md5(digest):
        return None
    return path, digest.lower()


def parse_statoverride(text: str) -> dict[str, Override]:
    """``owner group mode path`` lines (mode octal); malformed lines are skipped."""
    out: dict[str, Override] = {}
    for line in text.splitlines():
        cols = line.split(maxsplit=3)
        if len(cols) == 4 and re.fullmatch(r"[0-7]{1,5}", cols[2]) and cols[3].startswith("/"):
            out[cols[3]] = Override(cols[0], cols[1], int(cols[2], 8))
    return out


def parse_diversions(text: str) -> dict[str, tuple[str, str]]:
    """``from -> (to, diverting package)``; a local diversion's package is ``:``."""
    lines = text.splitlines()
    return {
        lines[i]: (lines[i + 1], lines[i + 2])
        for i in range(0, len(lines) - 2, 3)
        if lines[i].startswith("/") and lines[i + 1].startswith("/")
    }


_MD5SUMS_LINE = re.compile(r"^([0-9a-fA-F]{32}) [ *](?:\./|/)?(.+)$", re.MULTILINE)
_MD5 = re.compile(r"[0-9a-fA-F]{32}")


def parse_md5sums(text: str) -> Iterator[tuple[str, str]]:
    """(absolute path, md5) pairs of one ``<pkg>.md5sums`` file (``md5  rel/path`` lines)."""
    for m in _MD5SUMS_LINE.finditer(text):
        yield "/" + m[2], m[1].lower()


def _is_md5(text: str) -> bool:
    return _MD5.fullmatch(text) is not None


class DpkgBackend:
    """Debian's own lists: ``info/*.md5sums``, ``status`` (conffiles), ``statoverride``.

    The md5sums index is one dict ``path -> (package, md5)``, built on the first lookup;
    on a full Debian host (~100k packaged files) that takes well under a second.
    """

    name = "dpkg"

    def __init__(self, root: str) -> None:
        self.root = root
        self._index: dict[str, tuple[str, str]] | None = None
        self._versions: dict[str, str] = {}
        self._conffiles: dict[str, PackageFile] = {}
        self._overrides: dict[str, Override] | None = None

    def lookup(self, path: str) -> PackageFile | None:
        """The package entry for ``path``, also under its merged-/usr alias."""
        found = self._find(path)
        if found is None and (alias := _usrmerge_alias(path)) is not None:
            found = self._find(alias)
        return found

    def overrides(self) -> dict[str, Override]:
        if self._overrides is None:
            text = _read_text(self.root, "/var/lib/dpkg/statoverride") or ""
            self._overrides = parse_statoverride(text)
        return self._overrides

    def _find(self, path: str) -> PackageFile | None:
        index = self._load()
        if (conf := self._conffiles.get(path)) is not None:
            return conf
        if (hit := index.get(path)) is None:
            return None
        return PackageFile(hit[0], self._versions[hit[0]], "md5", hit[1], False)

    def _load(self) -> dict[str, tuple[str, str]]:
        if self._index is None:
            status = _read_text(self.root, "/var/lib/dpkg/status") or ""
            self._versions, self._conffiles = parse_status(status)
            diversions = parse_diversions(_read_text(self.root, "/var/lib/dpkg/diversions") or "")
            self._index = self._md5sums(diversions)
        return self._index

    def _md5sums(self, diversions: dict[str, tuple[str, str]]) -> dict[str, tuple[str, str]]:
        """Every present package's md5sums in one dict, diverted paths moved aside."""
        index: dict[str, tuple[str, str]] = {}
        info = "/var/lib/dpkg/info"
        for name in _md5sums_files(_host(self.root, info)):
            package = name.removesuffix(".md5sums").partition(":")[0]
            if package not in self._versions:
                continue
            for path, digest in parse_md5sums(_read_text(self.root, f"{info}/{name}") or ""):
                to, diverter = diversions.get(path, (path, package))
                index[path if diverter == package else to] = (package, digest)
        return index


def _md5sums_files(directory: str) -> list[str]:
    try:
        with os.scandir(directory) as it:
            return sorted(e.name for e in it if e.name.endswith(".md5sums"))
    except OSError:
        return []


def _usrmerge_alias(path: str) -> str | None:
    """``/usr/bin/x`` <-> ``/bin/x``: merged /usr moves files without updating md5sums."""
    if path.startswith("/usr/") and path[4:].startswith(_USRMERGE):
        return path[4:]
    if path.startswith(_USRMERGE):
        return "/usr" + path
    return None


# --------------------------------------------------------------------------- rpm

#: ``rpm -q --dump``: path size mtime digest mode owner group isconfig isdoc rdev symlink.
#: The path may hold spaces, so the line is matched from both ends.
_DUMP_LINE = re.compile(
    r"(?P<path>/.*?) (?P<size>\d+) (?P<mtime>-?\d+) (?P<digest>[0-9a-fA-F]*) "
    r"(?P<mode>0[0-7]+) (?P<owner>\S+) (?P<group>\S+) (?P<config>\d+) (?P<doc>\d+) "
    r"(?P<rdev>\d+) (?P<link>.+)"
)
_MARKER = re.compile(r"# package: (?P<name>\S+)(?: (?P<version>\S+))?\s*")
#: What ``detect_backend`` asks rpm for: a marker per package, then its ``--dump`` lines.
RPM_QUERYFORMAT = "# package: %{NAME} %|EPOCH?{%{EPOCH}:}|%{VERSION}-%{RELEASE}\\n"


class RpmBackend:
    """The rpm database, as ``rpm -q --dump`` text (recorded, or from ``detect_backend``)."""

    name = "rpm"

    def __init__(self, files: dict[str, PackageFile]) -> None:
        self._files = files

    @classmethod
    def from_dump(cls, text: str, packages: dict[str, str]) -> RpmBackend:
        """Parse dump lines; ``packages`` maps package name -> version.

        ``# package: NAME [VERSION]`` lines say whose files follow (what ``detect_backend``
        asks rpm to print). Without any, the dump must be of one package, the only key of
        ``packages``: plain ``rpm -q --dump`` output does not name the package.
        """
        current = next(iter(packages)) if len(packages) == 1 else None
        version = packages.get(current or "", "")
        files: dict[str, PackageFile] = {}
        for line in text.splitlines():
            if marker := _MARKER.fullmatch(line):
                current = marker["name"]
                version = marker["version"] or packages.get(current, "")
            elif current is not None and (entry := _dump_entry(line, current, version)):
                files[entry[0]] = entry[1]
        return cls(files)

    def lookup(self, path: str) -> PackageFile | None:
        return self._files.get(path)

    def overrides(self) -> dict[str, Override]:
        """rpm has no statoverride: the modes are in the package itself."""
        return {}


def _dump_entry(line: str, package: str, version: str) -> tuple[str, PackageFile] | None:
    """A regular file with a real digest; directories and symlinks carry only zeros."""
    m = _DUMP_LINE.fullmatch(line)
    if m is None or not stat.S_ISREG(int(m["mode"], 8)):
        return None
    digest = m["digest"].lower()
    algo = _HEX_ALGOS.get(len(digest))
    if algo is None or not digest.strip("0"):
        return None
    return m["path"], PackageFile(package, version, algo, digest, m["config"] != "0")


def _rpm_dump(root: str) -> str | None:
    rpm = shutil.which("rpm")
    if rpm is None:
        return None
    cmd = [rpm, "--root", os.path.abspath(root), "-qa", "--qf", RPM_QUERYFORMAT, "--dump"]
    try:
        done = subprocess.run(
            cmd, capture_output=True, check=False, timeout=_RPM_TIMEOUT, stdin=subprocess.DEVNULL
        )
    except (OSError, subprocess.TimeoutExpired):
        return None
    text = done.stdout.decode("utf-8", "surrogateescape")
    return text if done.returncode == 0 and _MARKER.search(text) else None


def detect_backend(root: str) -> PackageBackend | None:
    """dpkg when ``<root>/var/lib/dpkg/status`` exists, else rpm when it runs, else None."""
    try:
        is_dpkg = stat.S_ISREG(os.lstat(_host(root, "/var/lib/dpkg/status")).st_mode)
    except OSError:
        is_dpkg = False
    if is_dpkg:
        return DpkgBackend(root)
    text = _rpm_dump(root)
    return None if text is None else RpmBackend.from_dump(text, {})


# --------------------------------------------------------------------------- triage


def source(backend: PackageBackend, pf: PackageFile) -> str:
    """Which list vouched for the digest, for the message."""
    if backend.name == "dpkg":
        return "dpkg conffiles" if pf.conffile else "dpkg md5sums"
    return f"{backend.name} database"


def verdict(root: str, backend: PackageBackend, rec: FileRecord) -> PackageVerdict | None:
    """How the package database judges a changed regular file, from one read of it.

    The file is hashed with the package's algorithm and, in the same read, with the
    record's own: if the file changed since it was scanned, the recorded digest no longer
    matches and nothing is explained (no swap between scan and triage).
    """
    if rec.ftype is not FileType.FILE:
        return None
    pf = backend.lookup(rec.path)
    if pf is None:
        return PackageVerdict(False, False, "not from any package")
    label = f"package {pf.package} {pf.version}" + (" (conffile)" if pf.conffile else "")
    rec_algo, _, rec_hex = (rec.digest or "").partition(":")
    live = _hash_live(root, rec.path, (pf.algo, rec_algo) if rec.digest else (pf.algo,))
    if live is None:
        return PackageVerdict(False, False, f"listed in {label}; live content not readable")
    if rec.digest and not _same(live[rec_algo], rec_hex):
        return PackageVerdict(False, False, f"listed in {label}; changed while being checked")
    if not _same(live[pf.algo], pf.digest):
        return PackageVerdict(False, True, f"differs from {label}")
    text = f"content matches package {pf.package} {pf.version} ({source(backend, pf)})"
    return PackageVerdict(True, False, text)


def make_triage(root: str, backend: PackageBackend) -> Callable[[FileRecord], str | None]:
    """The explanation of a content change by the package database, or None."""

    def triage(rec: FileRecord) -> str | None:
        v = verdict(root, backend, rec)
        return v.text if v is not None and v.explained else None

    return triage


def _same(a: str, b: str) -> bool:
    """Constant-time, and safe on a non-ASCII digest read from a damaged record."""
    return hmac.compare_digest(
        a.encode("utf-8", "surrogateescape"), b.encode("utf-8", "surrogateescape")
    )


def provenance(root: str, backend: PackageBackend, rec: FileRecord) -> str:
    """Where the live file stands against the package database, for a finding's message."""
    pf = backend.lookup(rec.path)
    if pf is None:
        return "not from any package"
    label = f"package {pf.package} {pf.version}" + (" (conffile)" if pf.conffile else "")
    live = file_digest(root, rec.path, pf.algo) if rec.ftype is FileType.FILE else None
    if live is None:
        return f"listed in {label}; live content not readable"
    if _same(live, pf.digest):
        return f"matches {label}"
    return f"differs from {label}"
