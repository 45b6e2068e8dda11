"""Time `mail-integrity init/verify` against AIDE 0.18 on the same generated trees.

Every run is a fresh subprocess measured for wall time (perf_counter) and max RSS
(`/usr/bin/time -f %M`, else getrusage(RUSAGE_CHILDREN) in a one-shot wrapper), with the
1-minute load average just before it. Per configuration: one warm-up, then ``--runs``
timed runs, and the tools take turns run by run (ours, AIDE -W 1, AIDE -W 2, the b3sum
floor): on a shared machine a load spike hits all of them, and each ratio is taken
within one round. Results go to bench/RESULTS.md. See bench/README.md.

Usage: python bench/run_bench.py --sizes 2000,20000,100000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import gen_tree

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
TIME = "/usr/bin/time"
OUR_ERROR = 16  # verify's exit codes below this are findings bitmasks, not failures
AIDE_ERROR = 14  # aide --check: 1..7 are added/removed/changed bits, 14+ are errors


@dataclass(frozen=True, slots=True)
class Sample:
    wall: float
    rss_mib: float
    rc: int
    load: float = 0.0  # 1-minute load average just before the run
    cpu: float = 0.0  # user + system seconds (all threads): less load-bound than wall


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

    def spread(self, phase: str) -> tuple[float, float] | None:
        samples = self.init if phase == "init" else self.verify
        walls = [s.wall for s in samples]
        return (min(walls), max(walls)) if walls else None

    def loads(self) -> tuple[float, float] | None:
        loads = [s.load for s in self.init + self.verify]
        return (min(loads), max(loads)) if loads else None

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
    floor: bool = False  # time the b3sum single-thread floor too


# --------------------------------------------------------------------------- measuring


def timed(argv: Sequence[str], *, capture: bool = False) -> tuple[Sample, str]:
    """Run argv once in a fresh process: wall seconds, max RSS in MiB, exit code, stdout.

    Ours runs from this checkout (cwd REPO) with byte-compiling allowed, as an installed
    package runs from its .pyc files (PYTHONDONTWRITEBYTECODE would recompile every module
    on every run).
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    with tempfile.NamedTemporaryFile("r", suffix=".rss") as out:
        if Path(TIME).exists():
            wrapped = [TIME, "-f", "%U %S\n%M", "-o", out.name, *argv]
        else:
            wrapped = [sys.executable, "-c", _RUSAGE_WRAPPER, out.name, *argv]
        load = os.getloadavg()[0]
        start = time.perf_counter()
        proc = subprocess.run(
            wrapped, stdout=subprocess.PIPE if capture else subprocess.DEVNULL, text=True,
            cwd=REPO, env=env,
        )  # fmt: skip
        wall = time.perf_counter() - start
        text = Path(out.name).read_text()
    return Sample(wall, parse_rss(text) / 1024, proc.returncode, load, parse_cpu(text)), (
        proc.stdout or ""
    )


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


def parse_cpu(text: str) -> float:
    """User + system seconds from the ``%U %S`` line of /usr/bin/time; 0.0 when absent."""
    for line in text.splitlines():
        m = re.fullmatch(r"\s*(\d+\.\d+) (\d+\.\d+)\s*", line)
        if m:
            return float(m.group(1)) + float(m.group(2))
    return 0.0


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


def our_command(script: bool = False, python: str | None = None) -> tuple[str, ...]:
    """``python -m integrity`` of this checkout (run with cwd REPO), or with ``script``
    the installed console script (not pyenv's shim: its bash start-up is not ours).

    ``python``: the interpreter to run it with, e.g. a plain venv's (the way the Debian
    package installs it), for an interpreter whose site-packages load no one else's
    ``.pth`` start-up code."""
    if not script:
        return (python or sys.executable, "-m", "integrity")
    beside = Path(sys.executable).parent / "mail-integrity"
    found = str(beside) if beside.exists() else shutil.which("mail-integrity")
    if found is None:
        raise SystemExit("mail-integrity is not installed: pip install -e .")
    return (found,)


def floor_argv(tree: Path) -> list[str]:
    """The floor: a stat walk of every entry (find -printf) plus single-threaded b3sum of
    the files we hash (all regular files but the two queues, which are only stat'ed)."""
    t = shlex.quote(str(tree))
    queues = f"\\( -path {t}/var/spool/mqueue -o -path {t}/var/spool/mqueue-client \\)"
    script = (
        f"find {t} -printf '%i %m %U %G %s %T@ %C@\\n' >/dev/null && "
        f"find {t} {queues} -prune -o -type f -print0 | xargs -0 -r b3sum --num-threads 1 "
        ">/dev/null"
    )
    return ["sh", "-c", script]


def our_workers(cmd: Sequence[str]) -> tuple[int, ...]:
    """(1, 2) when `verify --help` offers --workers; () when it runs single-threaded."""
    helptext = subprocess.run(
        [*cmd, "verify", "--help"], capture_output=True, text=True, cwd=REPO
    ).stdout
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


def bench_tree(
    s: Settings, tree: Path, res: TreeResult, workers: Sequence[int], aide_runs: int
) -> None:
    """Ours, AIDE at each worker count and the floor, taking turns run by run.

    init: ours on a fresh db each time, AIDE writing aide.db.new; then verify of the
    unchanged tree and aide --check against the copied database. One warm-up each first.
    """
    db = s.work / f"{tree.name}.mi.db"
    auto = f"default ({min(2, os.cpu_count() or 1)})" if s.our_workers else "1 (no option)"
    ours = Row(res.name, "mail-integrity", auto)
    one = Row(res.name, "mail-integrity", "1 (--workers 1)") if s.our_workers else None
    init, verify = our_argv(s, "init", tree, db, None), our_argv(s, "verify", tree, db, None)
    verify_one = our_argv(s, "verify", tree, db, 1)
    dbdir = s.work / f"{tree.name}.aide"
    dbdir.mkdir(exist_ok=True)
    conf = dbdir / "aide.conf"
    conf.write_text(aide_conf(tree, dbdir, queue_hash=s.aide_queue_hash))
    base = ["aide", "-c", str(conf)]
    aide = {w: Row(res.name, "AIDE 0.18", str(w)) for w in workers}
    floor = Row(res.name, "b3sum floor", "1") if s.floor else None

    repeat(init, 1, OUR_ERROR, "mail-integrity init", db)
    warm, out = timed([*base, "--init", "-W", str(max(workers))], capture=True)
    check(warm, 1, "aide --init")
    res.aide_entries = aide_entries(out)
    for i in range(max(s.runs, aide_runs)):
        if i < s.runs:
            ours.init += repeat(init, 1, OUR_ERROR, "mail-integrity init", db)
        for w in workers if i < aide_runs else ():
            aide[w].init += repeat([*base, "--init", "-W", str(w)], 1, 1, "aide --init", None)
    shutil.copyfile(dbdir / "aide.db.new", dbdir / "aide.db")

    repeat(verify, 1, OUR_ERROR, "mail-integrity verify", None)
    if aide_runs > 1:
        repeat([*base, "--check", "-W", str(max(workers))], 1, AIDE_ERROR, "aide --check", None)
    for i in range(max(s.runs, aide_runs)):
        if i < s.runs:
            ours.verify += repeat(verify, 1, OUR_ERROR, "mail-integrity verify", None)
        if one is not None and i < s.runs:
            one.verify += repeat(verify_one, 1, OUR_ERROR, "mail-integrity verify -W1", None)
        for w in workers if i < aide_runs else ():
            aide[w].verify += repeat(
                [*base, "--check", "-W", str(w)], 1, AIDE_ERROR, "aide --check", None
            )
        if floor is not None and i < s.runs:
            floor.verify += repeat(floor_argv(tree), 1, 1, "b3sum floor", None)
    res.rows += [ours, *([one] if one else []), *aide.values(), *([floor] if floor else [])]
    res.ours_records = our_records(s, tree, db)


def our_records(s: Settings, tree: Path, db: Path) -> int:
    """Paths with a baseline record, from `verify --format json` (queue files come on top)."""
    argv = [a for a in our_argv(s, "verify", tree, db, None) if a != "-q"]
    out = subprocess.run(
        [*argv, "--format", "json"], capture_output=True, text=True, cwd=REPO
    ).stdout
    return int(json.loads(out)["summary"]["scanned"])


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
    bench_tree(s, tree, res, (1, 2), s.runs)
    log(f"{size}: done")
    return res


def bench_backlog(s: Settings, files: int, dirs: int) -> TreeResult:
    """The backlogged queue: ``files`` MTA queue files flat (dirs=0) or over ``dirs`` dirs."""
    label = f"queue {files} in {dirs or 1} dir" + ("s" if dirs else "")
    counts = gen_tree.plan_counts(0, backlog=files, queue_dirs=dirs)
    tree, tally = make_tree(s, f"backlog-{files}-{dirs}", counts)
    res = TreeResult(label, tree, tally)
    bench_tree(replace(s, floor=False), tree, res, (2,), s.backlog_runs)
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


def cell(r: Row, phase: str) -> str:
    """Median with the spread of the runs: ``1.23 (1.20-1.31)``."""
    spread = r.spread(phase)
    if spread is None:
        return "-"
    if len(r.init if phase == "init" else r.verify) == 1:
        return fmt(r.median(phase))
    return f"{fmt(r.median(phase))} ({spread[0]:.2f}-{spread[1]:.2f})"


def cpu(r: Row) -> str:
    """Median user + system seconds of the verify/check runs."""
    spent = [s.cpu for s in r.verify if s.cpu > 0]
    return f"{statistics.median(spent):.2f}" if spent else "-"


def table(results: Sequence[TreeResult]) -> list[str]:
    out = [
        "| tree | tool | workers | init s | verify/check s | verify/check CPU s "
        "| init max RSS MiB | verify/check max RSS MiB | load 1m |",
        "|---|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for res in results:
        for r in res.rows:
            loads = r.loads()
            load = "-" if loads is None else f"{loads[0]:.1f}-{loads[1]:.1f}"
            out.append(
                f"| {res.name} | {r.tool} | {r.workers} | {cell(r, 'init')} | "
                f"{cell(r, 'verify')} | {cpu(r)} | {r.rss('init'):.0f} | {r.rss('verify'):.0f} "
                f"| {load} |"
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


#: issue 12 item 1: (verify vs AIDE -W 2 check, verify vs the b3sum floor, init vs AIDE)
TARGETS = {"20000": (0.25, 2.5, None), "100000": (0.15, None, 0.5)}


def ratios(ours: Sequence[Sample], theirs: Sequence[Sample]) -> tuple[float, float, float]:
    """Run-by-run ratios (the tools took turns): (median, min, max)."""
    pairs = [a.wall / b.wall for a, b in zip(ours, theirs, strict=False) if b.wall > 0]
    if not pairs:
        return 0.0, 0.0, 0.0
    return statistics.median(pairs), min(pairs), max(pairs)


def _verdict(ratio: float, limit: float) -> str:
    return "met" if ratio <= limit else f"MISSED by {ratio / limit - 1:.0%}"


def verdicts(results: Sequence[TreeResult]) -> list[str]:
    """Issue 12 targets, from same-run ratios; RSS: ours <= AIDE's on the same tree."""
    out = []
    for res in results:
        ours = next((r for r in res.rows if r.tool == "mail-integrity"), None)  # the default
        aide2 = next((r for r in res.rows if r.tool.startswith("AIDE") and r.workers == "2"), None)
        floor = next((r for r in res.rows if r.tool == "b3sum floor"), None)
        if ours is None or aide2 is None:
            continue
        check_limit, floor_limit, init_limit = TARGETS.get(res.name, (None, None, None))
        med, lo, hi = ratios(ours.verify, aide2.verify)
        line = f"- {res.name}: verify = {med:.2f}x AIDE -W 2 check (runs {lo:.2f}-{hi:.2f})"
        if check_limit is not None:
            line += f": target <= {check_limit}x {_verdict(med, check_limit)}"
        out.append(line)
        cpu_ours, cpu_aide = cpu(ours), cpu(aide2)
        if cpu_ours != "-" and cpu_aide != "-":
            out.append(
                f"- {res.name}: verify CPU {cpu_ours} s = "
                f"{float(cpu_ours) / float(cpu_aide):.2f}x AIDE -W 2 check CPU {cpu_aide} s "
                "(user + system, medians; less bound to the load than wall time)"
            )
        if floor is not None and floor.verify:
            fmed, flo, fhi = ratios(ours.verify, floor.verify)
            line = f"- {res.name}: verify = {fmed:.2f}x the b3sum floor (runs {flo:.2f}-{fhi:.2f})"
            if floor_limit is not None:
                line += f": target <= {floor_limit}x {_verdict(fmed, floor_limit)}"
            out.append(line)
        ours_rss, aide_rss = ours.rss("verify"), aide2.rss("verify")
        mem = "met" if ours_rss <= aide_rss else f"MISSED by {ours_rss - aide_rss:.0f} MiB"
        out.append(
            f"- {res.name}: verify RSS {ours_rss:.0f} MiB vs AIDE check {aide_rss:.0f} MiB: "
            f"memory target {mem}"
        )
        aide_init = min(
            (r for r in res.rows if r.tool.startswith("AIDE") and r.init),
            key=lambda r: r.median("init") or 0.0,
        )
        imed, ilo, ihi = ratios(ours.init, aide_init.init)
        line = (
            f"- {res.name}: init = {imed:.2f}x AIDE -W {aide_init.workers} init (runs "
            f"{ilo:.2f}-{ihi:.2f}); init RSS {ours.rss('init'):.0f} vs "
            f"{aide_init.rss('init'):.0f} MiB"
        )
        if init_limit is not None:
            rss_ok = ours.rss("init") <= aide_init.rss("init")
            line += (
                f": time target <= {init_limit}x {_verdict(imed, init_limit)}, "
                f"memory target {'met' if rss_ok else 'MISSED'}"
            )
        out.append(line)
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
        f"Runs: one warm-up, then median of {s.runs} (min-max in brackets), the tools taking "
        f"turns run by run (backlog trees: AIDE {s.backlog_runs} run(s) after its own init); "
        "wall seconds; max RSS over all runs of that row; load 1m: the 1-minute load "
        "average before each run (min-max): the machine is shared.  ",
        f"AIDE queue files: {'sha256 + metadata' if s.aide_queue_hash else 'metadata only'}.",
        "",
        "Commands (TREE under " + str(s.work) + "; conf from bench/aide.conf.in):",
        "",
        *commands(s),
        "",
        "Floor (b3sum 1.2, one thread): `" + " ".join(floor_argv(Path("TREE"))[2:]) + "`",
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
        *verdicts(sizes),
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
    p.add_argument("--script", action="store_true",
                   help="time the installed console script, not this checkout")  # fmt: skip
    p.add_argument("--python", default=None,
                   help="interpreter for `-m integrity` (e.g. a venv's bin/python3)")  # fmt: skip
    return p.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    cmd = our_command(args.script, args.python)
    s = Settings(
        args.work, args.runs, args.backlog_runs, args.profile, tuple(args.profile_dir),
        args.aide_queue_hash, cmd, our_workers(cmd), floor=shutil.which("b3sum") is not None,
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
