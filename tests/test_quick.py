"""The verify fast path (quick.py) says "unchanged" exactly when the full collector would.

Every case compares ``quick.record_text`` with ``store.record_json`` of what
``scanner.collect`` records for the same real file: byte-equal text when the file is
readable and steady, None (the full path decides) when it is not.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from integrity import api, quick, scanner
from integrity.model import FileRecord, FileType, Role, ScanWarning
from integrity.snapshot import Plan, Target, stream_drift
from integrity.store import Store, record_json

ROOT_ONLY = pytest.mark.skipif(os.geteuid() != 0, reason="needs chown, mknod and chattr (root)")


def _full(root: str, path: str, *, content: bool = True) -> str | None:
    got = scanner.collect(root, path, names=scanner.IdNames(root), read_content=content)
    if isinstance(got, ScanWarning) or got.warning is not None:
        return None
    return record_json(got.record)


def _quick(root: str, path: str, *, content: bool = True) -> str | None:
    return quick.record_text(root, path, quick.Names(scanner.IdNames(root)), content=content)


def _tool(*argv: str) -> bool:
    if shutil.which(argv[0]) is None:
        return False
    return subprocess.run(argv, capture_output=True).returncode == 0


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    root = tmp_path / "root"
    (root / "etc/mail").mkdir(parents=True)
    return root


def test_plain_files_dirs_and_links_give_the_canonical_text(tree: Path) -> None:
    """Files (empty, one read, several reads), links, odd names: record_json's exact bytes."""
    (tree / "etc/mail/small.cf").write_text("O DaemonPortOptions=Port=smtp\n")
    (tree / "etc/mail/empty").write_bytes(b"")
    (tree / "etc/mail/big.db").write_bytes(os.urandom(3 * 2**20 + 17))  # > one read
    (tree / "etc/mail/exact").write_bytes(b"x" * 2**20)  # the one-read boundary
    (tree / "etc/mail/link").symlink_to("small.cf")
    (tree / "etc/mail/dangling").symlink_to("/nowhere/\udcff")
    (tree / "etc/mail/caf\udce9").write_bytes(b"non-UTF-8 name")
    os.chmod(tree / "etc/mail/small.cf", 0o4640)
    for name in ("small.cf", "empty", "big.db", "exact", "link", "dangling", "caf\udce9"):
        path = f"/etc/mail/{name}"
        text = _quick(str(tree), path)
        assert text is not None, name
        assert text == _full(str(tree), path), name
    assert _quick(str(tree), "/etc/mail") == _full(str(tree), "/etc/mail")
    # a role whose content is never read: no digest, the same text as the collector's
    assert _quick(str(tree), "/etc/mail/small.cf", content=False) == _full(
        str(tree), "/etc/mail/small.cf", content=False
    )


def test_special_files_are_described_never_opened(tree: Path) -> None:
    """A FIFO or a socket gets its metadata text without ever being opened."""
    fifo = tree / "etc/mail/fifo"
    os.mkfifo(fifo)  # opening it for reading would block: it must not be opened
    sock = socket.socket(socket.AF_UNIX)
    sock.bind(str(tree / "etc/mail/sock"))
    try:
        for name in ("fifo", "sock"):
            text = _quick(str(tree), f"/etc/mail/{name}")
            assert text is not None and '"digest":null' in text
            assert text == _full(str(tree), f"/etc/mail/{name}")
    finally:
        sock.close()


@ROOT_ONLY
def test_device_node_owner_and_group_names(tree: Path) -> None:
    """Device nodes and owners with and without names match the collector."""
    os.mknod(tree / "etc/mail/null", 0o600 | stat.S_IFCHR, os.makedev(1, 3))
    (tree / "etc/mail/owned").write_text("x")
    os.chown(tree / "etc/mail/owned", 65534, 65534)  # nobody / nogroup
    os.chown(tree / "etc/mail/null", 4242, 4343)  # ids without names: null
    for name in ("null", "owned"):
        text = _quick(str(tree), f"/etc/mail/{name}")
        assert text is not None and text == _full(str(tree), f"/etc/mail/{name}")
    assert '"owner":null' in (_quick(str(tree), "/etc/mail/null") or "")


@ROOT_ONLY
def test_xattrs_acl_caps_and_flags_are_in_the_text(tree: Path) -> None:
    """xattrs, ACLs, capabilities and append/immutable flags are part of the compared text."""
    target = tree / "etc/mail/sendmail"
    target.write_bytes(b"\x7fELF binary")
    os.setxattr(target, "user.origin", b"\x00\x01mail")
    cases = [("xattr", "user.origin")]
    if _tool("setfacl", "-m", "u:65534:r", str(target)):
        cases.append(("acl", "system.posix_acl_access"))
    if _tool("setcap", "cap_net_bind_service+ep", str(target)):
        cases.append(("caps", "security.capability"))
    text = _quick(str(tree), "/etc/mail/sendmail")
    assert text is not None and text == _full(str(tree), "/etc/mail/sendmail")
    for _, key in cases:
        assert key in text
    flagged = tree / "etc/mail/aliases"
    flagged.write_text("root: admin\n")
    if not _tool("chattr", "+a", str(flagged)):
        pytest.skip("this filesystem has no chattr flags")
    try:
        text = _quick(str(tree), "/etc/mail/aliases")
        assert text is not None and '"flags":["append"]' in text
        assert text == _full(str(tree), "/etc/mail/aliases")
        assert _tool("chattr", "+i", str(flagged))
        text = _quick(str(tree), "/etc/mail/aliases")
        assert text is not None and '"flags":["append","immutable"]' in text
        assert text == _full(str(tree), "/etc/mail/aliases")
    finally:
        _tool("chattr", "-a", "-i", str(flagged))


def test_gone_and_unreadable_paths_leave_the_decision_to_the_collector(tree: Path) -> None:
    """Vanished or unreadable: no text, so the full collector reports it."""
    assert _quick(str(tree), "/etc/mail/missing") is None
    loop = tree / "etc/mail/loop"
    loop.symlink_to("loop")
    assert _quick(str(tree), "/etc/mail/loop") == _full(str(tree), "/etc/mail/loop")
    (tree / "etc/mail/secret").write_text("password")
    os.chmod(tree / "etc/mail/secret", 0)
    if os.geteuid() != 0:
        assert _quick(str(tree), "/etc/mail/secret") is None


def test_a_parent_symlink_out_of_the_root_is_not_read(tree: Path, tmp_path: Path) -> None:
    """A parent symlink leading out of --root is never followed by the fast path."""
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "aliases").write_text("root: evil\n")
    (tree / "etc/postfix").symlink_to(outside)
    assert _quick(str(tree), "/etc/postfix/aliases") is None


def _plan(tree: Path, names: list[str]) -> Plan:
    plan = Plan()
    for name in names:
        plan.targets[f"/etc/mail/{name}"] = Target(f"/etc/mail/{name}", None, Role.CONFIG)
    return plan


def _baseline(tree: Path, tmp_path: Path, names: list[str]) -> Store:
    idn = scanner.IdNames(str(tree))
    store = Store.open(str(tmp_path / "b.db"), create=True)
    recs = []
    for name in names:
        got = scanner.collect(str(tree), f"/etc/mail/{name}", names=idn)
        assert not isinstance(got, ScanWarning)
        recs.append(got.record)
    store.replace_baseline(recs, {r.path: "config" for r in recs})
    return store


@pytest.mark.parametrize("workers", [1, 2])
def test_stream_drift_finds_every_change_with_one_or_two_workers(
    tree: Path, tmp_path: Path, workers: int
) -> None:
    """Changed, removed and added paths are all found whichever process made the text."""
    names = [f"f{i:04d}" for i in range(700)]  # > 2 chunks each way: both processes work
    for name in names:
        (tree / "etc/mail" / name).write_text(f"line {name}\n")
    store = _baseline(tree, tmp_path, names)
    try:
        changed = {"f0003": "content", "f0070": "content", "f0131": "mode", "f0650": "content"}
        (tree / "etc/mail/f0003").write_text("other\n")
        (tree / "etc/mail/f0070").write_text("longer content than before\n")
        os.chmod(tree / "etc/mail/f0131", 0o666)
        (tree / "etc/mail/f0650").write_text("LINE f0650\n")  # same size
        os.unlink(tree / "etc/mail/f0400")
        (tree / "etc/mail/new").write_text("added\n")
        live = [n for n in names if n != "f0400"] + ["new"]
        drift = stream_drift(str(tree), _plan(tree, live), store.iter_baseline(), workers=workers)
    finally:
        store.close()
    assert set(drift.current) == {f"/etc/mail/{n}" for n in [*changed, "new"]}
    assert set(drift.baseline) == {f"/etc/mail/{n}" for n in [*changed, "f0400"]}
    assert drift.scanned == len(live)
    assert drift.current["/etc/mail/f0131"].mode == 0o666


def _files(tree: Path, count: int) -> list[str]:
    """``count`` small files in /etc/mail: enough for the helper to take a share."""
    names = [f"f{i:04d}" for i in range(count)]
    for name in names:
        (tree / "etc/mail" / name).write_text(name)
    return names


def test_a_helper_that_dies_leaves_its_chunks_to_the_parent(tree: Path) -> None:
    """A killed helper costs time, never a text: the parent makes the rest."""
    names = _files(tree, 6 * quick.CHUNK)
    items: list[tuple[str, bool] | None] = [(f"/etc/mail/{n}", True) for n in names]
    idn = quick.Names(scanner.IdNames(str(tree)))
    texts = quick.Texts(str(tree), items, idn, workers=2)
    assert texts._pid, "the helper was forked"
    os.kill(texts._pid, signal.SIGKILL)
    got = list(texts)
    assert got == [quick.record_text(str(tree), f"/etc/mail/{n}", idn, content=True) for n in names]
    assert all(g is not None for g in got)


def _mail_tree(tmp_path: Path, files: int = 20, queued: int = 0) -> tuple[Path, api.Options]:
    """A sendmail host with ``files`` m4 files and ``queued`` queue files, baselined."""
    root = tmp_path / "root"
    mail = root / "etc/mail"
    mail.mkdir(parents=True)
    (mail / "aliases").write_text("postmaster: root\n")
    for i in range(files):
        (mail / f"x{i:03d}.m4").write_text(f"dnl {i}\n")
    (mail / "sendmail.cf").write_text("O QueueDirectory=/var/spool/mqueue\n")
    queue = root / "var/spool/mqueue"
    queue.mkdir(parents=True, mode=0o700)
    for i in range(queued):
        (queue / f"qf{i:02d}").write_text("V8\n")
        os.chmod(queue / f"qf{i:02d}", 0o600)
    opts = api.Options(root=str(root), db=str(tmp_path / "b.db"), profiles=("sendmail-debian",))
    api.init(opts)
    return mail, opts


def test_verify_reports_the_same_with_one_or_two_workers(tmp_path: Path) -> None:
    """verify's findings (files and queue entries) do not depend on --workers."""
    mail, opts = _mail_tree(tmp_path, files=300, queued=50)
    queue = Path(opts.root) / "var/spool/mqueue"
    (mail / "x007.m4").write_text("changed\n")
    os.chmod(mail / "x250.m4", 0o4755)
    os.chmod(queue / "qf33", 0o644)  # mail at rest readable by all: the helper's part
    reports = [api.verify(opts, workers=w, record_run=False) for w in (1, 2)]
    one, two = ([(f.path, f.rule, f.attribute) for f in r.findings] for r in reports)
    assert one == two
    assert ("/etc/mail/x250.m4", "MI-SETID-ADDED", "mode") in {(p, r, a) for p, r, a in one}
    assert ("/var/spool/mqueue/qf33", "MI-QUEUE-FILE-EXPOSED", "mode") in set(two)
    assert reports[0].changed == reports[1].changed == 2


@ROOT_ONLY
def test_queue_entries_alike_are_judged_once_but_an_acl_or_capability_is_still_seen(
    tmp_path: Path,
) -> None:
    """The per-(mode, owner) shortcut never hides an ACL, a capability or a loose mode."""
    from integrity.snapshot import _check_children

    root = tmp_path / "root"
    queue = root / "var/spool/mqueue"
    queue.mkdir(parents=True)
    os.chmod(queue, 0o700)
    for i in range(40):
        (queue / f"qfA{i:03d}").write_text("H?P?Return-Path: <>\n")
        os.chmod(queue / f"qfA{i:03d}", 0o600)
    (queue / "sub").mkdir(mode=0o700)
    (queue / "sub" / "dfB001").write_text("body")
    os.chmod(queue / "sub" / "dfB001", 0o600)
    exposed = ["qfA005", "sub/dfB001"]
    assert _tool("setfacl", "-m", "u:65534:r", str(queue / "qfA005"))
    (queue / "sub" / "dfB001").chmod(0o644)
    capped = _tool("setcap", "cap_net_raw+ep", str(queue / "qfA017"))
    policy = api.resolve_policy(str(root), ["sendmail-debian"])
    rule = policy.rule_for("/var/spool/mqueue")
    assert rule is not None and rule.role == Role.QUEUE
    warnings: list[ScanWarning] = []
    found = _check_children(
        str(root), Target("/var/spool/mqueue", rule, rule.role),
        scanner.IdNames(str(root)), warnings, None,
    )  # fmt: skip
    paths = {(f.path, f.rule) for f in found}
    for name in exposed:
        assert (f"/var/spool/mqueue/{name}", "MI-QUEUE-FILE-EXPOSED") in paths
    if capped:
        assert ("/var/spool/mqueue/qfA017", "MI-QUEUE-FILE-CAPABILITY") in paths
    assert len({p for p, _ in paths}) == len(exposed) + capped
    assert warnings == []




def test_trust_ctime_is_ignored_until_a_verify_has_read_every_file(tmp_path: Path) -> None:
    """--trust-ctime needs a recent full read; the header says which one ran."""
    _, opts = _mail_tree(tmp_path)
    first = api.verify(opts, trust_ctime=True)
    assert first.header["content"] == "read"
    assert any("--trust-ctime ignored" in n for n in first.header["notes"])
    second = api.verify(opts, trust_ctime=True)
    assert second.header["content"] == "trusted-ctime"
    assert api.verify(opts).header["content"] == "read"


def test_trust_ctime_reuses_hashes_of_unmoved_files_and_reads_moved_ones(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """--trust-ctime reads only files whose ctime moved, and still reports their change."""
    mail, opts = _mail_tree(tmp_path)
    api.verify(opts)  # reads every file: --trust-ctime is honoured from now on
    target = mail / "x005.m4"
    before = target.stat()
    target.write_text("dnl 9\n")  # same size; the mtime is put back, the ctime cannot be
    os.utime(target, ns=(before.st_atime_ns, before.st_mtime_ns))
    opened: list[str] = []
    real = quick._regular

    def spy(full: str, st: os.stat_result, names: quick.Names) -> str | None:
        opened.append(full)
        return real(full, st, names)

    monkeypatch.setattr(quick, "_regular", spy)
    rep = api.verify(opts, trust_ctime=True)
    assert rep.header["content"] == "trusted-ctime"
    assert opened == [str(target)]  # only the file whose ctime moved was read
    assert {(f.path, f.attribute) for f in rep.findings} >= {("/etc/mail/x005.m4", "content")}


def test_expanding_analyzers_are_the_ones_with_references() -> None:
    """verify skips importing analyzers for unchanged files: the list must be right."""
    from integrity import analyzers

    with_refs = set()
    for name in analyzers.NAMES:
        found = analyzers.get(name)
        assert found is not None, name
        if found.references is not None:
            with_refs.add(name)
    assert with_refs == analyzers.EXPANDING


def test_without_facts_cuts_exactly_the_top_level_facts() -> None:
    """The stored facts are cut at the top-level member, whatever the facts hold."""
    from integrity.model import FileRecord, FileType
    from integrity.snapshot import _without_facts

    tricky = {"flags": ["x"], "a": {"b": ',"flags":[', "flags": [1]}, "warnings": []}
    rec = FileRecord("/etc/mail/aliases", FileType.FILE, 0o644, 0, 0, facts=tricky,
                     flags=frozenset({"append"}), link_target=',"flags":["')  # fmt: skip
    bare = record_json(FileRecord(**{**{s: getattr(rec, s) for s in rec.__slots__}, "facts": None}))
    assert _without_facts(record_json(rec)) == bare
    assert _without_facts(bare) is None  # no facts stored: the full path decides


def _reference_json(rec: FileRecord) -> str:
    row = rec.to_row()
    del row["path"]
    return json.dumps(row, sort_keys=True, separators=(",", ":"))


_text = st.text(st.characters(codec="utf-8") | st.sampled_from(["\udcff", "\x00", '"', "\\"]))


@settings(max_examples=400, deadline=None)
@given(
    owner=st.none() | _text,
    link=st.none() | _text,
    acl=st.none() | _text,
    facts=st.none()
    | st.dictionaries(_text, st.recursive(st.none() | st.integers() | _text | st.booleans(),
                                          lambda c: st.lists(c, max_size=3)
                                          | st.dictionaries(_text, c, max_size=3)), max_size=4),
    flags=st.frozensets(st.sampled_from(["append", "immutable"])),
    xattrs=st.lists(st.tuples(_text, st.text("0123456789abcdef")), max_size=3),
    numbers=st.tuples(*[st.integers(0, 2**63)] * 5),
)  # fmt: skip
def test_record_json_is_the_canonical_dump(
    owner: str | None,
    link: str | None,
    acl: str | None,
    facts: dict[str, object] | None,
    flags: frozenset[str],
    xattrs: list[tuple[str, str]],
    numbers: tuple[int, int, int, int, int],
) -> None:
    """store.record_json (written member by member) is json.dumps of the row, byte for byte."""
    size, mtime, ctime, inode, nlink = numbers
    rec = FileRecord("/etc/x", FileType.SYMLINK, 0o4755, 0, 8, owner=owner, group=owner,
                     size=size, mtime_ns=mtime, ctime_ns=ctime, inode=inode, nlink=nlink,
                     digest=None if owner is None else "blake3:00", link_target=link,
                     xattrs=tuple(xattrs), caps=acl, acl=acl, selinux=link, flags=flags,
                     facts=facts)  # fmt: skip
    assert record_json(rec) == _reference_json(rec)


def test_no_fork_means_one_process_not_a_failure(
    tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where fork is refused (RLIMIT_NPROC, a sandbox), every text is made here."""

    def refused() -> int:
        raise BlockingIOError(11, "Resource temporarily unavailable")

    monkeypatch.setattr(os, "fork", refused)
    names = _files(tree, 4 * quick.CHUNK)
    idn = quick.Names(scanner.IdNames(str(tree)))
    texts = quick.Texts(str(tree), [(f"/etc/mail/{n}", True) for n in names], idn, workers=2)
    assert not texts.forked
    assert all(t is not None for t in texts)


def test_the_helper_really_makes_the_second_half(tree: Path) -> None:
    """With two workers the parent reads only the first half of the files itself."""
    names = _files(tree, 4 * quick.CHUNK)
    idn = quick.Names(scanner.IdNames(str(tree)))
    made: list[str] = []
    real = quick.record_text

    def counting(root: str, path: str, names: quick.Names, **kw: bool) -> str | None:
        made.append(path)
        return real(root, path, names, content=kw["content"])

    texts = quick.Texts(str(tree), [(f"/etc/mail/{n}", True) for n in names], idn, workers=2)
    quick.record_text = counting  # type: ignore[assignment]  # after the fork: parent only
    try:
        got = list(texts)
    finally:
        quick.record_text = real  # type: ignore[assignment]
    wanted = [real(str(tree), f"/etc/mail/{n}", idn, content=True) for n in names]
    half = len(names) // 2
    assert got[:half] == wanted[:half]  # made here: the texts themselves
    assert all(isinstance(g, bytes) for g in got[half:])  # the helper's fingerprints
    assert all(quick.same_text(g, w) for g, w in zip(got, wanted, strict=True) if w)
    assert not quick.same_text(got[-1], wanted[-2] or "")
    assert made == [f"/etc/mail/{n}" for n in names[:half]]
