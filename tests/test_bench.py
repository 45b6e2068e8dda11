"""The benchmark tools: tree generator layout and counts, runner measurement and report."""

from __future__ import annotations

import hashlib
import importlib
import os
import re
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))
gen_tree = importlib.import_module("gen_tree")
run_bench = importlib.import_module("run_bench")

as_root = pytest.mark.skipif(os.geteuid() != 0, reason="the tree has smmta/smmsp owners")


@pytest.fixture(scope="module")
def small_tree(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, gen_tree.Tally]:
    """A tree with 3 domains, 20 MTA and 4 MSP queue files (about 250 paths)."""
    if os.geteuid() != 0:
        pytest.skip("the tree has smmta/smmsp owners")
    root = tmp_path_factory.mktemp("bench") / "tree"
    return root, gen_tree.generate(root, gen_tree.Counts(domains=3, mqueue=20, client=4))


@given(st.integers(min_value=gen_tree.CORE_FILES, max_value=500_000))
def test_plan_counts_adds_up_to_the_total(total: int) -> None:
    """Core + domain files + both queues is exactly the requested file count."""
    c = gen_tree.plan_counts(total)
    assert gen_tree.CORE_FILES + c.domains * len(gen_tree.DOMAIN_FILES) + c.mqueue + c.client == (
        total
    )


@pytest.mark.parametrize(
    ("total", "domains", "mqueue", "client", "dirs"),
    [(2000, 112, 811, 89, 0), (20000, 1237, 8911, 989, 9), (100000, 6237, 44911, 4989, 45)],
)
def test_plan_counts_split(total: int, domains: int, mqueue: int, client: int, dirs: int) -> None:
    """Half the bulk is domain maps, 5% the MSP queue, the rest the MTA queue in <=1000s."""
    assert gen_tree.plan_counts(total) == gen_tree.Counts(domains, mqueue, client, dirs)


@pytest.mark.parametrize("dirs", [0, 300])
def test_plan_counts_backlog_is_queue_only(dirs: int) -> None:
    """The backlog case differs from the core tree only by its MTA queue."""
    assert gen_tree.plan_counts(99, backlog=30000, queue_dirs=dirs) == gen_tree.Counts(
        0, 30000, 0, dirs
    )


@pytest.mark.parametrize("count", [0, 1, 2, 7, 1000])
def test_queue_names_are_unique_qf_df_pairs(count: int) -> None:
    """Exactly ``count`` unique names; every df has the qf of the same 14-char queue id."""
    import random

    names = list(gen_tree.queue_names(random.Random(1), count))
    assert len(names) == len(set(names)) == count
    assert all(len(n) == 16 for n in names)
    assert {n[2:] for n in names if n.startswith("df")} <= {n[2:] for n in names if n[:2] == "qf"}


@as_root
def test_core_files_constant_matches_an_empty_tree(tmp_path: Path) -> None:
    """CORE_FILES is what a tree with no bulk really holds (files plus symlinks)."""
    tally = gen_tree.generate(tmp_path / "t", gen_tree.Counts(0, 0, 0))
    assert tally.files + tally.symlinks == gen_tree.CORE_FILES


def _walk_counts(root: Path) -> tuple[int, int, int]:
    files = links = dirs = 0
    for dirpath, dirnames, filenames in os.walk(root):
        dirs += len(dirnames)
        for name in filenames + dirnames:
            if os.path.islink(os.path.join(dirpath, name)):
                links += 1
        files += sum(not os.path.islink(os.path.join(dirpath, n)) for n in filenames)
        dirs -= sum(os.path.islink(os.path.join(dirpath, n)) for n in dirnames)
    return files, links, dirs


def test_tally_matches_the_disk(small_tree: tuple[Path, gen_tree.Tally]) -> None:
    """The tally the runner compares coverage against is what a walk of the tree finds."""
    root, tally = small_tree
    files, links, dirs = _walk_counts(root)
    assert (tally.files, tally.symlinks, tally.dirs) == (files, links, dirs)
    assert tally.queue_entries == 24


@pytest.mark.parametrize(
    ("path", "mode", "uid", "gid"),
    [
        ("etc/mail", 0o2755, gen_tree.SMMTA, gen_tree.SMMSP),
        ("etc/mail/sendmail.cf", 0o644, 0, gen_tree.SMMSP),
        ("etc/mail/access", 0o600, 0, 0),
        ("etc/mail/aliases.db", 0o640, gen_tree.SMMTA, gen_tree.SMMSP),
        ("usr/libexec/sendmail/sendmail", 0o2755, 0, gen_tree.SMMSP),
        ("usr/sbin/sensible-mda", 0o4755, 0, 0),
        ("var/spool/mqueue", 0o2750, gen_tree.SMMTA, gen_tree.SMMSP),
        ("var/spool/mqueue-client", 0o2770, gen_tree.SMMSP, gen_tree.SMMSP),
        ("var/mail", 0o3777, 0, gen_tree.MAIL),
    ],
)
def test_debian_owners_and_modes(
    small_tree: tuple[Path, gen_tree.Tally], path: str, mode: int, uid: int, gid: int
) -> None:
    """Owners and modes are Debian's after postinst (mta-facts §2.2), set-id bits included."""
    st_ = os.lstat(small_tree[0] / path)
    assert (stat.S_IMODE(st_.st_mode), st_.st_uid, st_.st_gid) == (mode, uid, gid)


def test_queue_files_have_queue_modes(small_tree: tuple[Path, gen_tree.Tally]) -> None:
    """MTA queue files are smmta:smmsp 0640, MSP ones smmsp:smmsp 0660, all regular."""
    for top, want in (
        ("mqueue", (0o640, gen_tree.SMMTA)),
        ("mqueue-client", (0o660, gen_tree.SMMSP)),
    ):
        entries = list((small_tree[0] / "var/spool" / top).iterdir())
        assert entries
        for e in entries:
            st_ = e.lstat()
            assert stat.S_ISREG(st_.st_mode)
            assert (stat.S_IMODE(st_.st_mode), st_.st_uid) == want


def test_binaries_are_megabytes_and_links_point_at_them(
    small_tree: tuple[Path, gen_tree.Tally],
) -> None:
    """The sendmail binary is MB-sized; mailq is a relative symlink to it, as on Debian."""
    root = small_tree[0]
    assert (root / "usr/libexec/sendmail/sendmail").lstat().st_size >= 2**20
    assert os.readlink(root / "usr/libexec/sendmail/mailq") == "sendmail"
    assert os.readlink(root / "etc/mail/aliases") == "../aliases"


def test_aliases_has_thousands_of_entries(small_tree: tuple[Path, gen_tree.Tally]) -> None:
    """/etc/aliases holds ALIASES entries besides the standard head."""
    lines = (small_tree[0] / "etc/aliases").read_text().splitlines()
    assert sum(":" in ln and not ln.startswith("#") for ln in lines) >= gen_tree.ALIASES


@as_root
@pytest.mark.parametrize(("dirs", "subdirs"), [(0, 0), (5, 5)])
def test_backlog_layout_flat_or_spread(tmp_path: Path, dirs: int, subdirs: int) -> None:
    """Flat: every queue file directly in mqueue; spread: q001..qNNN, qf beside its df."""
    gen_tree.generate(tmp_path / "t", gen_tree.plan_counts(0, backlog=40, queue_dirs=dirs))
    mq = tmp_path / "t/var/spool/mqueue"
    found = sorted(p for p in mq.rglob("*") if p.is_file())
    assert len(found) == 40
    assert len([p for p in mq.iterdir() if p.is_dir()]) == subdirs
    for qf in (p for p in found if p.name.startswith("qf")):
        assert (qf.parent / ("df" + qf.name[2:])).exists()


@as_root
def test_same_seed_same_tree(tmp_path: Path) -> None:
    """A size always gives byte-identical content (runs on different days compare)."""

    def digest(root: Path) -> str:
        h = hashlib.sha256()
        for p in sorted(root.rglob("*")):
            h.update(str(p.relative_to(root)).encode())
            if p.is_file() and not p.is_symlink():
                h.update(p.read_bytes())
        return h.hexdigest()

    counts = gen_tree.Counts(2, 6, 2)
    gen_tree.generate(tmp_path / "a", counts)
    gen_tree.generate(tmp_path / "b", counts)
    assert digest(tmp_path / "a") == digest(tmp_path / "b")


# --------------------------------------------------------------------------- runner


@pytest.mark.parametrize(
    ("text", "kib"),
    [("1234\n", 1234), ("Command exited with non-zero status 4\n5678\n", 5678), ("", 0)],
)
def test_parse_rss(text: str, kib: int) -> None:
    """The max-RSS figure is the last numeric line of /usr/bin/time's output file."""
    assert run_bench.parse_rss(text) == kib


@pytest.mark.parametrize(
    ("text", "cpu"), [("0.50 0.25\n1234\n", 0.75), ("1234\n", 0.0), ("", 0.0)]
)
def test_parse_cpu(text: str, cpu: float) -> None:
    """CPU seconds are the user + system line of /usr/bin/time's output file."""
    assert run_bench.parse_cpu(text) == cpu


@pytest.mark.parametrize(
    ("output", "entries"),
    [("Root prefix: /x\n\nNumber of entries:\t21275\n", 21275), ("nothing", 0)],
)
def test_aide_entries(output: str, entries: int) -> None:
    """AIDE's entry count is read from its init summary."""
    assert run_bench.aide_entries(output) == entries


@pytest.mark.parametrize(
    ("queue_hash", "attrs"),
    [(False, "MIQ = p+i+n+u+g+s+m+c\n"), (True, "MIQ = p+i+n+u+g+s+m+c+sha256\n")],
)
def test_aide_conf_fills_every_placeholder(queue_hash: bool, attrs: str) -> None:
    """The generated aide.conf names the tree and db dir and has no @...@ left."""
    conf = run_bench.aide_conf(Path("/t/tree"), Path("/t/db"), queue_hash=queue_hash)
    assert re.search(r"@[A-Z_]+@", conf) is None
    assert "root_prefix=/t/tree\n" in conf and "database_in=file:/t/db/aide.db\n" in conf
    assert attrs in conf


def test_timed_measures_rss_and_exit_code() -> None:
    """A child that holds 64 MiB shows at least that max RSS; its exit code comes back."""
    code = "b = bytearray(64 * 2**20); b[::4096] = b'x' * len(b[::4096]); raise SystemExit(3)"
    sample, _ = run_bench.timed([sys.executable, "-c", code])
    assert sample.rc == 3
    assert sample.rss_mib >= 64
    assert sample.wall > 0
    assert sample.cpu > 0


@pytest.mark.parametrize(
    ("ours", "aide", "ours_rss", "speed", "mem"),
    [(1.0, 4.0, 10.0, "met", "met"), (0.6, 2.0, 10.0, "MISSED by 20%", "met"),
     (0.5, 2.0, 25.0, "met", "MISSED by 5 MiB")],
)  # fmt: skip
def test_verdicts(ours: float, aide: float, ours_rss: float, speed: str, mem: str) -> None:
    """20k: verify <= 0.25x AIDE's 2-worker check, run by run; memory: verify RSS <= check's."""
    s = run_bench.Sample
    rows = [
        run_bench.Row("20000", "mail-integrity", "1", [s(1, 500, 0)], [s(ours, ours_rss, 0)]),
        run_bench.Row("20000", "AIDE 0.18", "2", [s(1, 20, 0)], [s(aide, 20, 0)]),
    ]
    lines = run_bench.verdicts([run_bench.TreeResult("20000", Path("/t"), {}, rows=rows)])
    runs = f"(runs {ours / aide:.2f}-{ours / aide:.2f})"
    assert f"AIDE -W 2 check {runs}: target <= 0.25x {speed}" in lines[0]
    assert f"memory target {mem}" in lines[1]


def test_ratios_pair_runs_of_the_same_round() -> None:
    """Ratios are taken run by run (the tools took turns), then the median of those."""
    s = run_bench.Sample
    ours = [s(1.0, 1, 0), s(3.0, 1, 0), s(2.0, 1, 0)]
    aide = [s(4.0, 1, 0), s(6.0, 1, 0), s(10.0, 1, 0)]
    assert run_bench.ratios(ours, aide) == (0.25, 0.2, 0.5)


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("aide") is None, reason="AIDE is not installed")
def test_aide_and_ours_see_the_same_files(
    small_tree: tuple[Path, gen_tree.Tally], tmp_path: Path
) -> None:
    """On a generated tree, AIDE's entries and our records + queue entries match the tree."""
    root, tally = small_tree
    written = tally.files + tally.symlinks + tally.dirs
    (tmp_path / "aide.conf").write_text(run_bench.aide_conf(root, tmp_path, queue_hash=False))
    out = subprocess.run(
        ["aide", "-c", str(tmp_path / "aide.conf"), "--init"], capture_output=True, text=True
    )
    assert run_bench.aide_entries(out.stdout) == written + 1  # + the root itself
    s = run_bench.Settings(tmp_path, 1, 1, "sendmail-debian", (), False,
                           (sys.executable, "-m", "integrity"), ())  # fmt: skip
    db = tmp_path / "mi.db"
    assert subprocess.run(run_bench.our_argv(s, "init", root, db, None)).returncode == 0
    ours = run_bench.our_records(s, root, db) + tally.queue_entries
    assert written - 2 <= ours <= written + 1


def test_watch_bench_matches_the_events_the_daemon_really_sends() -> None:
    """bench_watch recognises a new finding and its resolution as emit writes them today."""
    import json

    from integrity import emit
    from integrity.model import Finding, Severity

    bench_watch = importlib.import_module("bench_watch")
    f = Finding("/etc/mail/aliases", "MI-PERM-GROUP-WRITABLE", Severity.HIGH, "g+w added",
                "mode", "0644", "0664")  # fmt: skip

    def parsed(action: str) -> dict[str, object]:
        _, _, sd, body = emit.finding_event(f, host="mx", action=action)
        return {"sd": {bench_watch.SD: sd}, "msg": json.dumps(body)}

    path = "/etc/mail/aliases"
    assert bench_watch.matches(parsed("finding"), path, "finding", "0664")
    assert not bench_watch.matches(parsed("realert"), path, "finding", "0664")
    assert not bench_watch.matches(parsed("resolved"), path, "finding", "0664")
    assert bench_watch.matches(parsed("resolved"), path, "resolved", "0664")
    assert not bench_watch.matches(parsed("finding"), path, "resolved", "0664")
    assert not bench_watch.matches(parsed("finding"), "/etc/other", "finding", "0664")
