"""Real-time benchmark of `mail-integrity watch`: change -> line in a real rsyslogd.

Why: an alert is worth what it costs an attacker to delay or drown it. The daemon runs as
a child process exactly as tests/test_daemon.py starts it (demo sandbox, baseline,
NOTIFY_SOCKET, READY=1) and sends to a private rsyslogd on loopback
(tests/rsyslog_harness.Rsyslog); we tail rsyslog's output file and timestamp first sight.

1. Latency: ``--changes`` chmods of /etc/mail/aliases alternating 0644 <-> 0664, spaced
   100-200 ms apart. Each must bring its line (0664: the finding; 0644: "resolved").
2. Storms (issue 12 item 4): writer processes keep a window of well-formed queue files
   (0600, a few hundred alive at a time, each lives ~0.1 s) in /var/spool/mqueue at
   ``--storm-rate`` files/s (one line per rate) for ``--storm-seconds``; meanwhile root
   sets the set-uid bit on /usr/sbin/sendmail, waits for the alert, clears it, waits for
   "resolved", again and again. Reported: set-uid alert and resolved latencies
   (p50/p90/p99/max, lost), daemon VmRSS before / max / 5 s after, CPU, high or critical
   messages about queue files (must be 0: they are well-formed), MI-WATCH-OVERFLOW count.
3. Hostile user (issue 11 item 5): a real unprivileged user (useradd, removed after)
   grows his ``~/.forward`` to 20 GB (sparse) and back, over and over, while root does the
   same set-uid cycles. Once with the default hash cap for user files, once with the cap
   off (the content lane then hashes 20 GB again and again: the attribute lane must not
   care).
4. Overflow (``--overflows`` rounds): the daemon is stopped (SIGSTOP), more attribute
   events than the kernel queue holds are made in /etc/mail, the set-uid bit is set,
   the daemon resumed: time from SIGCONT to the alert (the re-check after IN_Q_OVERFLOW).

Usage (from the repository root, as root; about 4 minutes on 2 CPUs):
    python bench/bench_watch.py [--changes 200] [--storm-seconds 20]
        [--storm-rate 10000 --storm-rate 40000] [--forward-seconds 20] [--transport tcp]
        [--work DIR] [--keep] [--out bench/RESULTS-watch.md]
Needs the Debian packages rsyslog and rsyslog-gnutls, and root (useradd, runuser).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import random
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from integrity import api  # noqa: E402
from integrity.config import WatchConfig  # noqa: E402
from integrity.demo import build_sandbox  # noqa: E402
from tests import rsyslog_harness  # noqa: E402
from tests.rsyslog_harness import Rsyslog, parse_5424  # noqa: E402
from tests.sandbox import NotReady, start_notified  # noqa: E402

ALIASES = "/etc/mail/aliases"
BINARY = "/usr/sbin/sendmail"
QUEUE = "var/spool/mqueue"
POLL = 0.001  # how often we look at rsyslog's output file: the resolution of every figure
TIMEOUT = 10.0  # a change not seen within this is counted as lost (and looked for later)
SD = "mi@32473"
TOGGLE = ((0o664, "finding"), (0o644, "resolved"))  # aliases: loosen, then put back
USER = "mi_watch_bench"
FORWARD_RULE = """
[[file]]
path = "/home/*/.forward"
role = "aliases"
analyzer = "forward"
optional = true
"""

# --- pure helpers ------------------------------------------------------------------------


def percentile(values: list[float], q: float) -> float:
    """Linear-interpolated percentile (q in 0..100), as numpy's default; NaN when empty."""
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100.0
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def summary(values: list[float]) -> dict[str, float]:
    """p50/p90/p99/max in milliseconds (input in seconds)."""
    return {
        "p50": percentile(values, 50) * 1000,
        "p90": percentile(values, 90) * 1000,
        "p99": percentile(values, 99) * 1000,
        "max": max(values, default=float("nan")) * 1000,
    }


def syslog_epoch(timestamp: str) -> float:
    """RFC 5424 ``2025-01-02T03:04:05.123456Z`` -> seconds since the epoch."""
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00")).timestamp()


def matches(msg: dict[str, Any], path: str, action: str, after: str) -> bool:
    """Whether a parsed message is the one a change must produce.

    A chmod to 0664 must bring a ``finding`` with after=0664; the chmod back to 0644 the
    ``resolved`` event of that same finding (whose after is still 0664). Other lines for
    the path (the ctime-only MI-METADATA-CHANGED that comes and goes with each toggle)
    never match, so a late line from one change is never taken for the next one's.
    """
    sd = msg["sd"].get(SD, {})
    if sd.get("path") != path or sd.get("after") != after:
        return False
    try:
        body = json.loads(msg["msg"])
        event, state = body["event"], body.get("mail_integrity", {}).get("alert_state")
    except (ValueError, KeyError, TypeError, AttributeError):
        return False
    if action == "resolved":
        return bool(event.get("action") == "resolved")
    # a new finding: ECS kind "alert" (its action says what happened to the file,
    # attributes_modified...), and not a re-alert of an older one
    return bool(event.get("kind") == "alert" and state == "new")


# --- rsyslog output ------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Seen:
    """One message as rsyslog wrote it and when we first saw it."""

    at: float  # time.monotonic()
    msg: dict[str, Any]


class Tail:
    """Incremental reader of rsyslog's output file (re-reading it all would skew timings)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.offset = 0
        self.partial = b""
        self.seen: list[Seen] = []

    @classmethod
    def at_end(cls, path: Path) -> Tail:
        """A tail that ignores what is already in the file (an earlier daemon's lines)."""
        tail = cls(path)
        tail.offset = path.stat().st_size if path.exists() else 0
        return tail

    def poll(self) -> None:
        try:
            with self.path.open("rb") as fh:
                fh.seek(self.offset)
                data = fh.read()
        except FileNotFoundError:
            return
        if not data:
            return
        now = time.monotonic()
        self.offset += len(data)
        *lines, self.partial = (self.partial + data).split(b"\n")
        for line in lines:
            self.seen.append(Seen(now, parse_5424(line.decode("utf-8"))))

    def wait(self, pred: Callable[[dict[str, Any]], bool], since: int, timeout: float) -> Seen:
        """First message at index >= ``since`` for which ``pred`` holds; TimeoutError if none."""
        deadline = time.monotonic() + timeout
        i = since
        while True:
            self.poll()
            for j in range(i, len(self.seen)):
                if pred(self.seen[j].msg):
                    return self.seen[j]
            i = len(self.seen)
            if time.monotonic() > deadline:
                raise TimeoutError(f"not seen within {timeout} s")
            time.sleep(POLL)


# --- the daemon ----------------------------------------------------------------------------


@dataclass(slots=True)
class Host:
    """A demo sandbox with a fresh baseline."""

    base: Path
    root: Path
    profiles: Path

    @classmethod
    def make(
        cls, base: Path, extra_rules: str = "", setup: Callable[[Path], None] | None = None
    ) -> Host:
        base.mkdir(parents=True)
        root, profiles = build_sandbox(base)
        if extra_rules:
            demo = profiles / "demo.toml"
            demo.write_text(demo.read_text() + extra_rules)
        if setup is not None:
            setup(root)
        opts = api.Options(
            root=str(root),
            db=str(base / "baseline.db"),
            profiles=("demo",),
            profile_dirs=(str(profiles),),
        )
        api.init(opts)
        return cls(base, root, profiles)

    def chmod(self, path: str, mode: int) -> tuple[float, float]:
        """chmod a model path; returns (monotonic, wall) taken just before the call."""
        host = self.root / path.lstrip("/")
        mono, wall = time.monotonic(), time.time()
        os.chmod(host, mode)
        return mono, wall


class Daemon:
    """One `mail-integrity watch` child, started like tests/test_daemon.py does."""

    def __init__(self, host: Host, url: str, debounce: float | None, extra: str = "") -> None:
        self.host = host
        config = host.base / "config.toml"
        watch = ("" if debounce is None else f"debounce = {debounce}\n") + extra
        config.write_text(
            f"[watch]\n{watch}full_verify_interval = 3600.0\nrealert_interval = 3600.0\n"
            f'[syslog]\noutbox = "{host.base}/outbox.db"\nheartbeat = 3600.0\n'
            "reconnect_max = 0.5\n"
        )
        self.argv = [
            sys.executable, "-m", "integrity", "watch", "--root", str(host.root),
            "--db", str(host.base / "baseline.db"), "--profile", "demo",
            "--profile-dir", str(host.profiles), "--config", str(config), "--syslog", url,
        ]  # fmt: skip
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def start(self, timeout: float = 30.0) -> None:
        try:
            self.proc = start_notified(
                self.argv, self.host.base / "daemon.log", timeout=timeout, cwd=REPO,
                env={"PYTHONPATH": str(REPO)},
            )  # fmt: skip
        except NotReady as exc:
            raise RuntimeError(str(exc)) from exc

    def stop(self) -> int:
        if self.proc is None:
            return 0
        proc, self.proc = self.proc, None
        proc.send_signal(signal.SIGTERM)
        try:
            return proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            return proc.wait()


# --- 1. latency ----------------------------------------------------------------------------


@dataclass(slots=True)
class LatencyRun:
    label: str
    total: list[float] = field(default_factory=list)  # chmod -> line in rsyslog, seconds
    daemon: list[float] = field(default_factory=list)  # chmod -> message queued by the daemon
    lost: int = 0


def one_change(host: Host, tail: Tail, i: int) -> tuple[float, float] | None:
    """Toggle aliases once; (total, daemon-side) latency, or None if never reported."""
    mode, action = TOGGLE[i % 2]
    tail.poll()
    since = len(tail.seen)
    mono, wall = host.chmod(ALIASES, mode)
    try:
        got = tail.wait(lambda m: matches(m, ALIASES, action, "0664"), since, TIMEOUT)
    except TimeoutError:
        return None
    return got.at - mono, syslog_epoch(got.msg["timestamp"]) - wall


def run_latency(host: Host, tail: Tail, changes: int, label: str, rng: random.Random) -> LatencyRun:
    """``changes`` toggles spaced 100-200 ms apart (from chmod to chmod)."""
    result = LatencyRun(label)
    i = 0
    while i < changes:
        start = time.monotonic()
        got = one_change(host, tail, i)
        if got is None:
            result.lost += 1
            if i % 2 == 0:  # no finding, so nothing to resolve: put the mode back, skip that
                host.chmod(ALIASES, 0o644)
                time.sleep(1.0)
                i += 1
        else:
            result.total.append(got[0])
            result.daemon.append(got[1])
        time.sleep(max(0.0, start + rng.uniform(0.1, 0.2) - time.monotonic()))
        i += 1
    return result


# --- 2. set-uid cycles, storms, the hostile user ---------------------------------------------


@dataclass(slots=True)
class Cycles:
    """Set-uid on, alert; off, resolved: latencies in seconds (None: not seen in time)."""

    sets: list[float | None] = field(default_factory=list)
    clears: list[float | None] = field(default_factory=list)
    daemon: list[float | None] = field(default_factory=list)  # set-uid: chmod -> queued

    def seen(self, which: list[float | None]) -> list[float]:
        return [x for x in which if x is not None]


def setuid_cycles(host: Host, tail: Tail, until: float, rng: random.Random) -> Cycles:
    """Until ``until`` (monotonic): set the bit, wait for the alert, clear, wait for resolved."""
    out = Cycles()
    while time.monotonic() < until:
        for mode, action, which in ((0o4755, "finding", out.sets), (0o755, "resolved", out.clears)):
            tail.poll()
            since = len(tail.seen)
            mono, wall = host.chmod(BINARY, mode)
            try:
                got = tail.wait(lambda m, a=action: matches(m, BINARY, a, "4755"), since, TIMEOUT)
                which.append(got.at - mono)
                if action == "finding":
                    out.daemon.append(syslog_epoch(got.msg["timestamp"]) - wall)
            except TimeoutError:
                which.append(None)
            time.sleep(rng.uniform(0.15, 0.3))
    return out


def writer_main(directory: str, rate: float, seconds: float, prefix: str) -> None:
    """One storm writer (its own process): keeps a window of well-formed queue files."""
    data = b"V8\nT1700000000\nK0\nN0\nP30000\nMDeferred\nSfoo@example.org\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    window = max(1, int(rate / 10))  # each file lives about 0.1 s, as a queue file may
    done = 0
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        due = min(int((now - start) * rate), done + 200)
        if done >= due:
            time.sleep(0.0005)
            continue
        for n in range(done, due):
            fd = os.open(f"{directory}/{prefix}{n:08X}", flags, 0o600)
            os.write(fd, data)
            os.close(fd)
            if n >= window:
                os.unlink(f"{directory}/{prefix}{n - window:08X}")
        done = due
    elapsed = time.monotonic() - start
    for n in range(max(0, done - window), done):
        with contextlib.suppress(FileNotFoundError):
            os.unlink(f"{directory}/{prefix}{n:08X}")
    print(json.dumps({"ops": done, "seconds": elapsed, "rate": done / elapsed}))


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the run began
    rss_kib: int
    cpu_s: float  # user + system CPU of the daemon so far


def proc_sample(pid: int, t0: float) -> Sample | None:
    """VmRSS and CPU time of a process from /proc; None once it is gone."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rss = next(int(x.split()[1]) for x in status.splitlines() if x.startswith("VmRSS:"))
    fields = stat.rpartition(")")[2].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return Sample(time.monotonic() - t0, rss, cpu)


@dataclass(slots=True)
class Run:
    """One storm or one hostile-user run."""

    label: str
    cycles: Cycles = field(default_factory=Cycles)
    writer: dict[str, float] = field(default_factory=dict)
    rss_before: int = 0
    rss_max: int = 0
    rss_after: int = 0
    cpu: float = 0.0
    seconds: float = 0.0
    false_high: int = 0
    overflows: int = 0
    oversized: int = 0
    messages: int = 0
    load: str = ""


def sample_max(pid: int, stop: threading.Event, box: list[int]) -> None:
    while not stop.is_set():
        s = proc_sample(pid, 0.0)
        if s is not None:
            box[0] = max(box[0], s.rss_kib)
        stop.wait(0.5)


def count_messages(run: Run, tail: Tail, since: int) -> None:
    tail.poll()
    msgs = [x.msg for x in tail.seen[since:]]
    run.messages = len(msgs)
    for m in msgs:
        sd = m["sd"].get(SD, {})
        path = sd.get("path", "")
        if m["msgid"] == "MI-WATCH-OVERFLOW":
            run.overflows += 1
        if m["msgid"] == "MI-FILE-OVERSIZED":
            run.oversized += 1
        if path.startswith(f"/{QUEUE}/") and sd.get("severity") in ("high", "critical"):
            run.false_high += 1


def measured(label: str, host: Host, tail: Tail, daemon: Daemon, seconds: float,
             load: Callable[[], list[subprocess.Popen[bytes]]]) -> Run:  # fmt: skip
    """Start the load processes, run set-uid cycles for ``seconds``, stop, measure RSS."""
    run = Run(label, load=uptime())
    first = proc_sample(daemon.pid, 0.0)
    run.rss_before = first.rss_kib if first else 0
    tail.poll()
    since = len(tail.seen)
    stop, box = threading.Event(), [run.rss_before]
    sampler = threading.Thread(target=sample_max, args=(daemon.pid, stop, box), daemon=True)
    sampler.start()
    t0 = time.monotonic()
    procs = load()
    time.sleep(1.0)
    run.cycles = setuid_cycles(host, tail, t0 + seconds, random.Random(11))
    for proc in procs:
        try:
            out, _ = proc.communicate(timeout=seconds + 60)
        except subprocess.TimeoutExpired:
            proc.kill()
            out, _ = proc.communicate()
        if out:
            w = json.loads(out)
            for k in ("ops", "rate"):
                run.writer[k] = run.writer.get(k, 0.0) + w[k]
            run.writer["seconds"] = max(run.writer.get("seconds", 0.0), w["seconds"])
    run.seconds = time.monotonic() - t0
    time.sleep(5.0)  # let the lanes drain, then see whether memory came back
    stop.set()
    sampler.join()
    last = proc_sample(daemon.pid, 0.0)
    run.rss_max, run.rss_after = box[0], last.rss_kib if last else 0
    run.cpu = (last.cpu_s - first.cpu_s) if last and first else 0.0
    count_messages(run, tail, since)
    return run


def storm(args: argparse.Namespace, rsyslog: Rsyslog, rate: float) -> Run:
    base = Path(tempfile.mkdtemp(prefix="mi-storm-", dir=args.storm_in))
    host = Host.make(base / "host")
    daemon = Daemon(host, daemon_url(rsyslog, args, host), None)
    tail = Tail.at_end(rsyslog.out)
    daemon.start()
    writers = max(1, round(rate / 5_000))  # one writer process manages about 7k/s here

    def load() -> list[subprocess.Popen[bytes]]:
        procs = []
        for i in range(writers):
            argv = [sys.executable, __file__, "--writer", str(host.root / QUEUE),
                    "--storm-rate", str(rate / writers), "--storm-seconds",
                    str(args.storm_seconds), "--prefix", f"qf{i}"]  # fmt: skip
            procs.append(subprocess.Popen(argv, stdout=subprocess.PIPE))
        return procs

    try:
        run = measured(f"storm {rate:.0f} files/s", host, tail, daemon, args.storm_seconds, load)
    finally:
        daemon.stop()
        shutil.rmtree(base, ignore_errors=True)
    print(f"{run.label}: {summary(run.cycles.seen(run.cycles.sets))}", flush=True)
    return run


def make_user() -> int:
    subprocess.run(["userdel", USER], capture_output=True, check=False)
    subprocess.run(["useradd", "-M", "-d", "/nonexistent", "-s", "/usr/sbin/nologin", USER],
                   check=True, capture_output=True)  # fmt: skip
    return int(subprocess.run(["id", "-u", USER], capture_output=True, text=True,
                              check=True).stdout)  # fmt: skip


GROWER = """
end=$(( $(date +%s) + $2 )); n=0
while [ "$(date +%s)" -lt "$end" ]; do
  truncate -s 20G "$1"; sleep 0.3
  truncate -s 0 "$1"; echo me@example.org >> "$1"; sleep 0.1
  n=$((n + 1))
done
echo "{\\"ops\\": $n, \\"rate\\": $((n / $2)), \\"seconds\\": $2}"
"""


def hostile_user(args: argparse.Namespace, rsyslog: Rsyslog, cap: bool) -> Run:
    """A real user grows his .forward to 20 GB and back while root flips set-uid."""
    uid = make_user()
    base = Path(tempfile.mkdtemp(prefix="mi-forward-", dir=args.work))
    os.chmod(base, 0o755)
    forward = base / "host/root/home" / USER / ".forward"

    def setup(root: Path) -> None:
        forward.parent.mkdir(parents=True)
        forward.write_text("me@example.org\n")
        for p in (forward.parent, forward):
            os.chown(p, uid, uid)
        for d in (base / "host", root, root / "home"):
            os.chmod(d, 0o755)

    try:
        host = Host.make(base / "host", FORWARD_RULE, setup)
        extra = "" if cap else "user_max_hash = 1e15\n"
        daemon = Daemon(host, daemon_url(rsyslog, args, host), None, extra)
        tail = Tail.at_end(rsyslog.out)
        daemon.start()

        def load() -> list[subprocess.Popen[bytes]]:
            argv = ["runuser", "-u", USER, "--", "sh", "-c", GROWER, "grow", str(forward),
                    str(int(args.forward_seconds))]  # fmt: skip
            return [subprocess.Popen(argv, stdout=subprocess.PIPE)]

        label = "user .forward 20 GB, " + ("default cap" if cap else "cap off (hashed in full)")
        try:
            run = measured(label, host, tail, daemon, args.forward_seconds, load)
        finally:
            daemon.stop()
    finally:
        shutil.rmtree(base, ignore_errors=True)
        subprocess.run(["userdel", USER], capture_output=True, check=False)
    print(f"{run.label}: {summary(run.cycles.seen(run.cycles.sets))}", flush=True)
    return run


def overflow_runs(args: argparse.Namespace, rsyslog: Rsyslog) -> tuple[list[float | None], int]:
    """Kernel queue overflow on the binaries/configs descriptor, then set-uid: latency from
    the daemon's resumption to the alert (attributes are re-checked first)."""
    host = Host.make(Path(args.work) / "overflow")
    daemon = Daemon(host, daemon_url(rsyslog, args, host), None)
    tail = Tail.at_end(rsyslog.out)
    daemon.start()
    mail = host.root / "etc/mail"
    n = int(Path("/proc/sys/fs/inotify/max_queued_events").read_text()) + 2000
    out: list[float | None] = []
    try:
        for _ in range(args.overflows):
            os.kill(daemon.pid, signal.SIGSTOP)
            for _ in range(n // 2 + 1):  # distinct consecutive events: no merging
                os.chmod(mail / "sendmail.cf", 0o444)
                os.chmod(mail / "aliases", 0o644)
            host.chmod(BINARY, 0o4755)
            tail.poll()
            since = len(tail.seen)
            resumed = time.monotonic()
            os.kill(daemon.pid, signal.SIGCONT)
            try:
                got = tail.wait(lambda m: matches(m, BINARY, "finding", "4755"), since, TIMEOUT)
                out.append(got.at - resumed)
            except TimeoutError:
                out.append(None)
            host.chmod(BINARY, 0o755)
            tail.wait(lambda m: matches(m, BINARY, "resolved", "4755"), since, TIMEOUT)
            time.sleep(1.0)
        tail.poll()
        reports = sum(1 for x in tail.seen if x.msg["msgid"] == "MI-WATCH-OVERFLOW")
    finally:
        daemon.stop()
    print(f"overflow: {out}", flush=True)
    return out, reports


# --- report --------------------------------------------------------------------------------


def uptime() -> str:
    return subprocess.run(["uptime"], capture_output=True, text=True, check=False).stdout.strip()


def machine() -> dict[str, str]:
    """What the figures were measured on."""
    cpu = next(
        (
            x.split(":", 1)[1].strip()
            for x in Path("/proc/cpuinfo").read_text().splitlines()
            if x.startswith("model name")
        ),
        "?",
    )
    rsyslog = subprocess.run(
        [rsyslog_harness.RSYSLOGD, "-v"], capture_output=True, text=True, check=False
    ).stdout.splitlines()
    from importlib.metadata import version

    commit = subprocess.run(["git", "-C", str(REPO), "log", "-1", "--format=%h %s"],
                            capture_output=True, text=True, check=False).stdout.strip()  # fmt: skip
    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "commit": commit,
        "cpu": f"{os.cpu_count()} x {cpu}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rsyslogd": rsyslog[0].split(" compiled")[0].strip() if rsyslog else "?",
        "watchdog": version("watchdog"),
        "max_queued_events": Path("/proc/sys/fs/inotify/max_queued_events").read_text().strip(),
        "load at start": uptime(),
    }


def fmt_ms(value: float | None) -> str:
    return "lost" if value is None else f"{value * 1000:.0f} ms"


def stats_cells(values: list[float | None]) -> str:
    seen = [v for v in values if v is not None]
    if not seen:
        return f"| {len(values)} | {len(values)} | - | - | - | - | - |"
    s = summary(seen)
    spread = statistics.pstdev(seen) * 1000 if len(seen) > 1 else 0.0
    return (
        f"| {len(seen)} | {len(values) - len(seen)} | {s['p50']:.1f} ms | {s['p90']:.1f} ms "
        f"| **{s['p99']:.1f} ms** | {s['max']:.1f} ms | {min(seen) * 1000:.1f} ms / "
        f"{spread:.1f} ms |"
    )


HEAD = (
    "| what | seen | lost | p50 | p90 | p99 | max | min / stdev |\n"
    "|---|---|---|---|---|---|---|---|"
)


def latency_lines(runs: list[LatencyRun]) -> Iterator[str]:
    yield HEAD
    for r in runs:
        yield f"| aliases chmod, debounce {r.label} " + stats_cells(list(r.total))
        yield "| (daemon side: chmod -> message queued) " + stats_cells(list(r.daemon))


def run_lines(runs: list[Run]) -> Iterator[str]:
    yield HEAD
    for r in runs:
        yield f"| {r.label}: set-uid alert " + stats_cells(r.cycles.sets)
        yield f"| {r.label}: set-uid cleared (resolved) " + stats_cells(r.cycles.clears)
        yield "| (set-uid alert, daemon side: chmod -> queued) " + stats_cells(r.cycles.daemon)
    yield ""
    yield (
        "| run | load (uptime at start) | writer achieved | daemon VmRSS before / max / 5 s "
        "after | CPU | high+ on queue files | MI-WATCH-OVERFLOW | MI-FILE-OVERSIZED | "
        "messages |"
    )
    yield "|---|---|---|---|---|---|---|---|---|"
    for r in runs:
        w = r.writer
        writer = f"{w.get('rate', 0):.0f}/s ({w.get('ops', 0):.0f} in {w.get('seconds', 0):.1f} s)"
        delta = (r.rss_after - r.rss_before) / 1024
        yield (
            f"| {r.label} | {r.load.split('load average:')[-1].strip()} | {writer} | "
            f"{r.rss_before / 1024:.1f} / {r.rss_max / 1024:.1f} / {r.rss_after / 1024:.1f} MiB "
            f"({delta:+.1f}) | {r.cpu:.1f} s in {r.seconds:.0f} s | {r.false_high} | "
            f"{r.overflows} | {r.oversized} | {r.messages} |"
        )


def render(
    info: dict[str, str],
    argv: list[str],
    lat: list[LatencyRun],
    runs: list[Run],
    ovf: tuple[list[float | None], int] | None = None,
) -> str:
    out = ["# `mail-integrity watch`: real-time benchmark", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    queued = Path("/proc/sys/fs/inotify/max_queued_events").read_text().strip()
    out += ["- command: `" + " ".join(argv) + "`", "- load at end: " + uptime()]
    out += [f"- max_queued_events at end: {queued} (a global sysctl other runs may lower)"]
    if lat:
        out += ["", "## Latency without load (chmod -> rsyslog line)", "", *latency_lines(lat)]
    if runs:
        out += ["", "## Set-uid cycles under a queue storm and under a hostile user", ""]
        out += list(run_lines(runs))
    if ovf is not None and ovf[0]:
        out += ["", "## Kernel queue overflow (binaries/configs descriptor), then set-uid", ""]
        out += [HEAD, "| SIGCONT after the overflow -> set-uid alert " + stats_cells(ovf[0])]
        out += ["", f"MI-WATCH-OVERFLOW messages received: {ovf[1]} (one per 10 s at most)"]
    return "\n".join(out) + "\n"


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--storm-seconds", type=float, default=20.0)
    p.add_argument(
        "--storm-rate",
        type=float,
        action="append",
        default=None,
        help="queue files per second; repeatable (default: 10000 and 40000)",
    )
    p.add_argument(
        "--storm-in",
        default="/dev/shm",
        help="where the storm's sandbox lives (tmpfs: ext4 caps the writer)",
    )
    p.add_argument("--forward-seconds", type=float, default=20.0)
    p.add_argument("--overflows", type=int, default=10, help="overflow-then-set-uid rounds")
    p.add_argument("--transport", choices=("tcp", "udp", "tls"), default="tcp")
    p.add_argument("--work", default=None, help="scratch directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--out", default=str(REPO / "bench" / "RESULTS-watch.md"))
    p.add_argument("--writer", metavar="DIR", help=argparse.SUPPRESS)
    p.add_argument("--prefix", default="qf", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure_latency(args: argparse.Namespace, rsyslog: Rsyslog) -> list[LatencyRun]:
    if args.changes <= 0:
        return []
    label = f"{WatchConfig().debounce} s (default)"
    host = Host.make(Path(args.work) / "latency")
    daemon = Daemon(host, daemon_url(rsyslog, args, host), None)
    tail = Tail.at_end(rsyslog.out)
    daemon.start()
    try:
        run = run_latency(host, tail, args.changes, label, random.Random(7))
    finally:
        daemon.stop()
    print(f"latency {label}: {summary(run.total)} lost={run.lost}", flush=True)
    return [run]


def daemon_url(rsyslog: Rsyslog, args: argparse.Namespace, host: Host) -> str:
    if args.transport == "tls":
        cfg = host.base / "config.toml"
        cfg.write_text(
            cfg.read_text().replace("[syslog]\n", f'[syslog]\nca_file = "{rsyslog.pki.ca}"\n')
        )
    return rsyslog.url(args.transport)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.writer:
        writer_main(args.writer, args.storm_rate[0], args.storm_seconds, args.prefix)
        return 0
    if not rsyslog_harness.available():
        print("needs rsyslogd and rsyslog-gnutls (apt-get install rsyslog rsyslog-gnutls)")
        return 2
    if os.geteuid() != 0:
        print("needs root (useradd, runuser, chown)")
        return 2
    args.work = args.work or tempfile.mkdtemp(prefix="mi-bench-watch-")
    os.chmod(args.work, 0o755)
    info = machine()
    try:
        with Rsyslog(Path(args.work) / "rsyslog") as server:
            lat = measure_latency(args, server)
            runs = []
            if args.storm_seconds > 0:
                runs += [storm(args, server, r) for r in args.storm_rate or [10_000, 40_000]]
            if args.forward_seconds > 0:
                runs += [hostile_user(args, server, cap) for cap in (True, False)]
            ovf = overflow_runs(args, server) if args.overflows > 0 else None
        text = render(info, ["python", "bench/bench_watch.py", *sys.argv[1:]], lat, runs, ovf)
        Path(args.out).write_text(text)
        print(text)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
