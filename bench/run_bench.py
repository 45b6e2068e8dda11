"""Time `mail-integrity init/verify` against AIDE 0.18 on the same generated trees.

Every run is a fresh subprocess measured for wall time (perf_counter) and max RSS
(`/usr/bin/time -f %M`, else getrusage(RUSAGE_CHILDREN) in a one-shot wrapper). Per
configuration: one warm-up, then the median of ``--runs``. AIDE runs at 1 and 2 workers
(`-W`); ours at every worker count it offers (none yet: it is single-threaded).
Results go to bench/RESULTS.md. See bench/README.md.

Usage: python bench/run_bench.py --sizes 2000,20000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import gen_tree

HERE = Path(__file__).resolve().parent
TIME = "/usr/bin/time"
OUR_ERROR = 16  # verify's exit codes below this are findings bitmasks, not failures
AIDE_ERROR = 14  # aide --check: 1..7 are added/removed/changed bits, 14+ are errors


@dataclass(frozen=True, slots=True)
class Sample:
    wall: float
    rss_mib: float
    rc: int


@dataclass(slots=True)
class Row:
    """One line of the results table: a tool at a worker count on one tree."""

    tree: str
    tool: str
    workers: str
    init: list[Sample] = field(default_factory=list)
    verify: list[Sample] = field(default_factory=list)

    def median(self, phase: str) -> float | None:
        samples = self.init if phase == "init" else self.verify
        return statistics.median(s.wall for s in samples) if samples else None

    def rss(self, phase: str | None = None) -> float:
        """Max RSS of one phase ("init" or "verify"), or of both."""
        samples = {"init": self.init, "verify": self.verify}.get(phase or "")
        return max((s.rss_mib for s in samples or self.init + self.verify), default=0.0)


@dataclass(slots=True)
class TreeResult:
    name: str
    tree: Path
    tally: dict[str, int]
    ours_records: int = 0
    aide_entries: int = 0
    rows: list[Row] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class Settings:
    work: Path
    runs: int
    backlog_runs: int
    profile: str
    profile_dirs: tuple[str, ...]
    aide_queue_hash: bool
    our_cmd: tuple[str, ...]
    our_workers: tuple[int, ...]


# --------------------------------------------------------------------------- measuring


def timed(argv: Sequence[str], *, capture: bool = False) -> tuple[Sample, str]:
    """Run argv once in a fresh process: wall seconds, max RSS in MiB, exit code, stdout."""
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        if Path(TIME).exists():
            wrapped = [TIME, "-f", "%M", "-o", out.name, *argv]
        else:
            wrapped = [sys.executable, "-c", _RUSAGE_WRAPPER, out.name, *argv]
        start = time.perf_counter()
        proc = subprocess.run(
            wrapped, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, text=True
        )
        wall = time.perf_counter() - start
        kib = parse_rss(Path(out.name).read_text())
    return Sample(wall, kib / 1024, proc.returncode), proc.stdout or ""


_RUSAGE_WRAPPER = (
    "import resource,subprocess,sys\n"
    "rc = subprocess.call(sys.argv[2:])\n"
    "open(sys.argv[1], 'w').write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))\n"
    "sys.exit(rc)\n"
)


def parse_rss(text: str) -> int:
    """KiB from /usr/bin/time's output file (last line; a signal note may precede it)."""
    lines = [ln for ln in text.strip().splitlines() if ln.strip().isdigit()]
    return int(lines[-1]) if lines else 0


def check(sample: Sample, limit: int, what: str) -> Sample:
    """Exit codes below ``limit`` are findings (timed like a clean run); above, abort."""
    if sample.rc < 0 or sample.rc >= limit:
        raise SystemExit(f"{what} failed with exit code {sample.rc}")
    return sample


def repeat(
    argv: Sequence[str], runs: int, limit: int, what: str, prep: Path | None
) -> list[Sample]:
    """``runs`` timed runs; ``prep`` (an old baseline) is removed before each one."""
    out = []
    for _ in range(runs):
        if prep is not None:
            prep.unlink(missing_ok=True)
        out.append(check(timed(argv)[0], limit, what))
    return out


# --------------------------------------------------------------------------- commands


def our_command() -> tuple[str, ...]:
    """The installed console script, not pyenv's shim (its bash start-up is not ours)."""
    beside = Path(sys.executable).parent / "mail-integrity"
    found = str(beside) if beside.exists() else shutil.which("mail-integrity")
    if found is None:
        raise SystemExit("mail-integrity is not installed: pip install -e .")
    return (found,)


def our_workers(cmd: Sequence[str]) -> tuple[int, ...]:
    """(1, 2) when `verify --help` offers --workers; () when it runs single-threaded."""
    helptext = subprocess.run([*cmd, "verify", "--help"], capture_output=True, text=True).stdout
    return (1, 2) if "--workers" in helptext else ()


def our_argv(s: Settings, phase: str, tree: Path, db: Path, workers: int | None) -> list[str]:
    argv = [*s.our_cmd, phase, "--root", str(tree), "--db", str(db), "--profile", s.profile]
    for d in s.profile_dirs:
        argv += ["--profile-dir", d]
    if workers is not None:
        argv += ["--workers", str(workers)]
    return [*argv, "-q"]


def aide_conf(tree: Path, dbdir: Path, *, queue_hash: bool) -> str:
    """bench/aide.conf.in with the tree, the database dir and the queue attributes."""
    template = (HERE / "aide.conf.in").read_text()
    queue = "p+i+n+u+g+s+m+c" + ("+sha256" if queue_hash else "")
    return (
        template.replace("@ROOT@", str(tree))
        .replace("@DB@", str(dbdir))
        .replace("@QUEUE_ATTRS@", queue)
    )


def aide_entries(output: str) -> int:
    """'Number of entries:\t21275' from `aide --init`'s summary; 0 when absent."""
    m = re.search(r"Number of entries:\s*(\d+)", output)
    return int(m.group(1)) if m else 0


# --------------------------------------------------------------------------- one tree


def bench_ours(s: Settings, tree: Path, res: TreeResult, runs: int) -> None:
    """Warm-up, then init (fresh db each time) and verify of an unchanged tree."""
    db = s.work / f"{tree.name}.mi.db"
    for workers in s.our_workers or (None,):
        row = Row(res.name, "mail-integrity", str(workers or "1 (no option)"))
        init, verify = (
            our_argv(s, "init", tree, db, workers),
            our_argv(s, "verify", tree, db, workers),
        )
        repeat(init, 1, OUR_ERROR, "mail-integrity init", db)
        row.init = repeat(init, runs, OUR_ERROR, "mail-integrity init", db)
        repeat(verify, 1, OUR_ERROR, "mail-integrity verify", None)
        row.verify = repeat(verify, runs, OUR_ERROR, "mail-integrity verify", None)
        res.rows.append(row)
    res.ours_records = our_records(s, tree, db)


def our_records(s: Settings, tree: Path, db: Path) -> int:
    """Paths with a baseline record, from `verify --format json` (queue files come on top)."""
    argv = [a for a in our_argv(s, "verify", tree, db, None) if a != "-q"]
    out = subprocess.run([*argv, "--format", "json"], capture_output=True, text=True).stdout
    return int(json.loads(out)["summary"]["scanned"])


def bench_aide(s: Settings, tree: Path, res: TreeResult, workers: Sequence[int], runs: int) -> None:
    """aide --init (then db.new -> db) and aide --check at each worker count."""
    dbdir = s.work / f"{tree.name}.aide"
    dbdir.mkdir(exist_ok=True)
    conf = dbdir / "aide.conf"
    conf.write_text(aide_conf(tree, dbdir, queue_hash=s.aide_queue_hash))
    base = ["aide", "-c", str(conf)]
    warm, out = timed([*base, "--init", "-W", str(max(workers))], capture=True)
    check(warm, 1, "aide --init")
    res.aide_entries = aide_entries(out)
    rows = {w: Row(res.name, "AIDE 0.18", str(w)) for w in workers}
    for w in workers:
        rows[w].init = repeat([*base, "--init", "-W", str(w)], runs, 1, "aide --init", None)
    shutil.copyfile(dbdir / "aide.db.new", dbdir / "aide.db")
    if runs > 1:
        repeat([*base, "--check", "-W", str(max(workers))], 1, AIDE_ERROR, "aide --check", None)
    for w in workers:
        rows[w].verify = repeat([*base, "--check", "-W", str(w)], runs, AIDE_ERROR, "aide", None)
    res.rows.extend(rows.values())


def make_tree(s: Settings, name: str, counts: gen_tree.Counts) -> tuple[Path, dict[str, int]]:
    tree = s.work / name
    t0 = time.perf_counter()
    tally = gen_tree.generate(tree, counts)
    os.sync()  # flush the new tree's dirty pages now, not during the first timed runs
    log(f"{name}: generated {tally.files} files in {time.perf_counter() - t0:.1f} s")
    return tree, {k: v for k, v in asdict(tally).items() if isinstance(v, int)}


def bench_size(s: Settings, size: int) -> TreeResult:
    tree, tally = make_tree(s, f"tree-{size}", gen_tree.plan_counts(size))
    res = TreeResult(f"{size}", tree, tally)
    bench_ours(s, tree, res, s.runs)
    bench_aide(s, tree, res, (1, 2), s.runs)
    log(f"{size}: done")
    return res


def bench_backlog(s: Settings, files: int, dirs: int) -> TreeResult:
    """The backlogged queue: ``files`` MTA queue files flat (dirs=0) or over ``dirs`` dirs."""
    label = f"queue {files} in {dirs or 1} dir" + ("s" if dirs else "")
    counts = gen_tree.plan_counts(0, backlog=files, queue_dirs=dirs)
    tree, tally = make_tree(s, f"backlog-{files}-{dirs}", counts)
    res = TreeResult(label, tree, tally)
    bench_ours(s, tree, res, s.runs)
    bench_aide(s, tree, res, (2,), s.backlog_runs)
    log(f"{label}: done")
    return res


def save(s: Settings, results: Sequence[TreeResult]) -> None:
    """Raw samples after every tree, so a crash later keeps what was measured."""
    raw = json.dumps([asdict(r) for r in results], indent=1, default=str)
    (s.work / "results.json").write_text(raw)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- report


def machine() -> dict[str, str]:
    cpu = next(
        (ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines()
         if ln.startswith("model name")),
        platform.processor(),
    )  # fmt: skip
    aide = subprocess.run(["aide", "--version"], capture_output=True, text=True)
    return {
        "date": subprocess.run(["date", "-u"], capture_output=True, text=True).stdout.strip(),
        "nproc": str(os.cpu_count()),
        "cpu": cpu,
        "python": platform.python_version(),
        "aide": (aide.stdout or aide.stderr).splitlines()[0],
        "kernel": platform.release(),
    }


def fmt(v: float | None) -> str:
    return "-" if v is None else f"{v:.2f}"


def table(results: Sequence[TreeResult]) -> list[str]:
    out = [
        "| tree | tool | workers | init s | verify/check s | init max RSS MiB "
        "| verify/check max RSS MiB |",
        "|---|---|---|---:|---:|---:|---:|",
    ]
    for res in results:
        for r in res.rows:
            out.append(
                f"| {res.name} | {r.tool} | {r.workers} | {fmt(r.median('init'))} | "
                f"{fmt(r.median('verify'))} | {r.rss('init'):.0f} | {r.rss('verify'):.0f} |"
            )
    return out


def coverage(results: Sequence[TreeResult]) -> list[str]:
    out = [
        "| tree | files + links + dirs written | ours: records + queue entries | AIDE entries |",
        "|---|---:|---:|---:|",
    ]
    for r in results:
        t = r.tally
        written = t["files"] + t["symlinks"] + t["dirs"]
        ours = f"{r.ours_records} + {t['queue_entries']} = {r.ours_records + t['queue_entries']}"
        out.append(f"| {r.name} | {written} | {ours} | {r.aide_entries} |")
    return out


def verdicts(results: Sequence[TreeResult]) -> list[str]:
    """Targets: verify <= 0.5x AIDE's 2-worker check on 20k and 100k; RSS <= AIDE's."""
    out = []
    for res in results:
        ours = [r for r in res.rows if r.tool == "mail-integrity"]
        aide2 = next((r for r in res.rows if r.tool != "mail-integrity" and r.workers == "2"), None)
        if not ours or aide2 is None:
            continue
        best = min(ours, key=lambda r: r.median("verify") or 0.0)
        mine, theirs = best.median("verify") or 0.0, aide2.median("verify") or 1.0
        ratio = mine / theirs
        speed = "met" if ratio <= 0.5 else "MISSED"
        ours_rss, aide_rss = best.rss("verify"), aide2.rss("verify")
        mem = "met" if ours_rss <= aide_rss else "MISSED"
        out.append(
            f"- {res.name}: verify {mine:.2f} s = {ratio:.2f}x AIDE -W 2 check ({theirs:.2f} s): "
            f"speed target (<= 0.5x) {speed}; verify RSS {ours_rss:.0f} vs check RSS "
            f"{aide_rss:.0f} MiB: memory target {mem}"
        )
    return out


def commands(s: Settings) -> list[str]:
    tree, db = Path("TREE"), Path("DB")
    return [
        "```",
        " ".join(our_argv(s, "init", tree, db, None)),
        " ".join(our_argv(s, "verify", tree, db, None)),
        "aide --init -c AIDEDIR/aide.conf -W N    # then cp aide.db.new aide.db",
        "aide --check -c AIDEDIR/aide.conf -W N",
        "```",
    ]


def render(s: Settings, info: dict[str, str], sizes: Sequence[TreeResult],
           backlog: Sequence[TreeResult]) -> str:  # fmt: skip
    lines = [
        "# Benchmark: mail-integrity vs AIDE",
        "",
        f"Date: {info['date']}  ",
        f"Machine: {info['nproc']} CPUs, {info['cpu']}, kernel {info['kernel']}, "
        f"Python {info['python']}, {info['aide']}  ",
        f"Runs: one warm-up, then median of {s.runs} (backlog trees: AIDE {s.backlog_runs} "
        "run(s) after its own init); wall seconds; max RSS over all runs of that row.  ",
        f"AIDE queue files: {'sha256 + metadata' if s.aide_queue_hash else 'metadata only'}.",
        "",
        "Commands (TREE under " + str(s.work) + "; conf from bench/aide.conf.in):",
        "",
        *commands(s),
        "",
        "## Mail trees",
        "",
        *table(sizes),
        "",
        "## Backlogged queue: one directory vs spread over many",
        "",
        *table(backlog),
        "",
        "## Same file set",
        "",
        *coverage([*sizes, *backlog]),
        "",
        "## Targets",
        "",
        *verdicts([r for r in sizes if r.name in ("20000", "100000")]),
        "",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- main


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--sizes", default="2000,20000,100000", help="comma-separated file counts")
    p.add_argument("--backlog", type=int, default=30000, help="queue files; 0 skips the case")
    p.add_argument("--queue-dirs", type=int, default=300, help="dirs of the spread backlog")
    p.add_argument("--runs", type=int, default=3, help="timed runs per configuration")
    p.add_argument("--backlog-runs", type=int, default=1, help="AIDE runs on backlog trees")
    p.add_argument("--work", type=Path, default=Path("/tmp/mi-bench"), help="trees and dbs")
    p.add_argument("--profile", default="sendmail-debian")
    p.add_argument("--profile-dir", action="append", default=[], help="extra profile dir")
    p.add_argument("--aide-queue-hash", action="store_true", help="AIDE hashes queue files")
    p.add_argument("--out", type=Path, default=HERE / "RESULTS.md")
    p.add_argument("--keep", action="store_true", help="keep the trees afterwards")
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cmd = our_command()
    s = Settings(
        args.work, args.runs, args.backlog_runs, args.profile, tuple(args.profile_dir),
        args.aide_queue_hash, cmd, our_workers(cmd),
    )  # fmt: skip
    s.work.mkdir(parents=True, exist_ok=True)
    info = machine()
    sizes: list[TreeResult] = []
    backlog: list[TreeResult] = []
    for n in (int(n) for n in args.sizes.split(",") if n.strip()):
        sizes.append(bench_size(s, n))
        save(s, [*sizes, *backlog])
    for dirs in (0, args.queue_dirs) if args.backlog else ():
        backlog.append(bench_backlog(s, args.backlog, dirs))
        save(s, [*sizes, *backlog])
    args.out.write_text(render(s, info, sizes, backlog))
    log(f"wrote {args.out}")
    if not args.keep:
        for res in [*sizes, *backlog]:
            shutil.rmtree(res.tree, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
