"""Real-time benchmark of `mail-integrity watch`: change -> line in a real rsyslogd.

Why: PRODUCT.md promises alerts at the syslog server "in well under a second" and bounded
memory "whatever the event rate"; only an end-to-end run shows whether that holds. The
daemon runs as a child process exactly as tests/test_daemon.py starts it (demo sandbox,
baseline, NOTIFY_SOCKET, READY=1) and sends to a private rsyslogd on loopback
(tests/rsyslog_harness.Rsyslog); we tail rsyslog's output file and timestamp first sight.

1. Latency: ``--changes`` chmods of /etc/mail/aliases alternating 0644 <-> 0664, spaced
   100-200 ms apart, once with the config's default debounce and once per ``--debounce``.
   Each chmod must produce the matching line (0664: a finding with after=0664; 0644: the
   "resolved" event). The RFC 5424 timestamp (taken when the daemon queues the message)
   splits the latency into daemon (inotify + debounce + verify) and delivery (outbox,
   sender, rsyslog, our 1 ms poll).
2. Storm: a writer process creates and unlinks ``--storm-rate`` queue files per second in
   /var/spool/mqueue for ``--storm-seconds``; at half time the binary gets the SUID bit.
   Reported: SUID alert latency, probe chmods of aliases every 3 s, VmRSS and CPU of the
   daemon every second, the writer's achieved rate, and the latency of one chmod made
   after the storm (does the daemon fall behind?). ``--py-spy`` samples the daemon with
   py-spy during the storm and lists the hot spots per thread. The storm runs once per
   ``--storm-in`` directory (default /dev/shm, then the work dir): on ext4 the writer's
   rate depends on how many inodes were deleted just before (ext4 skips recently freed
   inodes), tmpfs gives the asked rate.

Usage (from the repository root; about 2.5 minutes on 2 CPUs):
    python bench/bench_watch.py [--changes 200] [--storm-seconds 30] [--storm-rate 10000]
        [--debounce 0.01] [--storm-in DIR] [--transport tcp] [--py-spy] [--keep]
        [--out bench/RESULTS-watch.md]
Profile only: python bench/bench_watch.py --changes 0 --storm-in /dev/shm --py-spy --out /tmp/p.md
Needs the Debian packages rsyslog and rsyslog-gnutls; ``--py-spy`` needs `pip install py-spy`.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import random
import shutil
import signal
import socket
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

ALIASES = "/etc/mail/aliases"
BINARY = "/usr/sbin/sendmail"
QUEUE = "var/spool/mqueue"
POLL = 0.001  # how often we look at rsyslog's output file: the resolution of every figure
TIMEOUT = 10.0  # a change not seen within this is counted as lost
SD = "mi@32473"
TOGGLE = ((0o664, "finding"), (0o644, "resolved"))  # aliases: loosen, then put back

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
        return bool(json.loads(msg["msg"])["event"]["action"] == action)
    except (ValueError, KeyError, TypeError):
        return False


def by_thread(raw: str, n: int = 4) -> tuple[list[tuple[str, int, list[tuple[str, int]]]], int]:
    """py-spy ``-f raw --threads`` (collapsed stacks) -> per thread: samples, top self frames.

    Which thread is busy matters more than the flat top list: the daemon's threads share
    one GIL, so watchdog's threads and the verify worker compete for the same core.
    """
    count: collections.Counter[str] = collections.Counter()
    own: dict[str, collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for line in raw.splitlines():
        stack, _, num = line.rpartition(" ")
        if not stack or not num.isdigit():
            continue
        frames = stack.split(";")
        count[frames[0]] += int(num)
        own[frames[0]][frames[-1]] += int(num)
    rows = [(t, c, own[t].most_common(n)) for t, c in count.most_common()]
    return rows, sum(count.values())


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
    def make(cls, base: Path) -> Host:
        base.mkdir(parents=True)
        root, profiles = build_sandbox(base)
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

    def __init__(self, host: Host, url: str, debounce: float | None) -> None:
        self.host = host
        config = host.base / "config.toml"
        watch = "" if debounce is None else f"debounce = {debounce}\n"
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
        sock_path = self.host.base / f"notify-{time.monotonic_ns()}.sock"
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
        sock.bind(str(sock_path))
        sock.settimeout(timeout)
        env = {**os.environ, "NOTIFY_SOCKET": str(sock_path), "PYTHONPATH": str(REPO)}
        with (self.host.base / "daemon.log").open("ab") as log:
            self.proc = subprocess.Popen(
                self.argv, env=env, stdout=log, stderr=log, cwd=REPO, stdin=subprocess.DEVNULL
            )
        try:
            deadline = time.monotonic() + timeout
            while time.monotonic() < deadline:
                if "READY=1" in sock.recv(4096).decode().split("\n"):
                    return
            raise RuntimeError("daemon never sent READY=1")
        except TimeoutError as exc:
            raise RuntimeError(f"no READY=1; see {self.host.base}/daemon.log") from exc
        finally:
            sock.close()

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


# --- 2. storm ------------------------------------------------------------------------------


def writer_main(directory: str, rate: float, seconds: float) -> None:
    """The storm's writer (a separate process): paced create+write+close+unlink."""
    data = b"V8\nT1700000000\nK0\nN0\nP30000\nMDeferred\nSfoo@example.org\n"
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL
    done = 0
    start = time.monotonic()
    end = start + seconds
    while (now := time.monotonic()) < end:
        due = min(int((now - start) * rate), done + 200)
        if done >= due:
            time.sleep(0.0005)
            continue
        for n in range(done, due):
            path = f"{directory}/{'qf' if n % 2 else 'df'}4{n:08X}"
            fd = os.open(path, flags, 0o600)
            os.write(fd, data)
            os.close(fd)
            os.unlink(path)
        done = due
    elapsed = time.monotonic() - start
    print(json.dumps({"ops": done, "seconds": elapsed, "rate": done / elapsed}))


@dataclass(slots=True)
class Sample:
    t: float  # seconds since the storm began
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


class Sampler(threading.Thread):
    """Samples the daemon once a second until stopped."""

    def __init__(self, pid: int, t0: float) -> None:
        super().__init__(name="rss-sampler", daemon=True)
        self.pid, self.t0 = pid, t0
        self.samples: list[Sample] = []
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.is_set():
            s = proc_sample(self.pid, self.t0)
            if s is not None:
                self.samples.append(s)
            self.done.wait(1.0)


@dataclass(slots=True)
class StormResult:
    seconds: float
    rate: float
    writer: dict[str, float] = field(default_factory=dict)
    suid: Probe | None = None
    probes: list[Probe] = field(default_factory=list)
    after: list[Probe] = field(default_factory=list)
    samples: list[Sample] = field(default_factory=list)
    where: str = ""
    rss_before_kib: int = 0
    messages: int = 0
    profile: str = ""


@dataclass(slots=True)
class Probe:
    """One timed chmod during or after the storm."""

    t: float  # seconds since the storm began
    path: str
    action: str
    after: str
    since: int  # index in Tail.seen at the chmod
    mono: float
    latency: float | None = None
    late: bool = False  # not seen within TIMEOUT, but arrived before the run ended

    def show(self) -> str:
        if self.latency is None:
            return "never reported"
        return f">{TIMEOUT:.0f} s ({self.latency:.1f} s)" if self.late else fmt_ms(self.latency)


def timed_change(
    host: Host, tail: Tail, path: str, mode: int, action: str, after: str, t0: float
) -> Probe:
    """chmod, then wait up to TIMEOUT for the matching line in rsyslog's file."""
    tail.poll()
    mono, _ = host.chmod(path, mode)
    probe = Probe(mono - t0, path, action, after, len(tail.seen), mono)
    try:
        got = tail.wait(lambda m: matches(m, path, action, after), probe.since, TIMEOUT)
        probe.latency = got.at - mono
    except TimeoutError:
        pass
    return probe


def resolve_late(tail: Tail, probes: list[Probe]) -> None:
    """For probes that timed out: did their line come later after all?"""
    tail.poll()
    for p in probes:
        if p.latency is not None:
            continue
        hit = next(
            (x for x in tail.seen[p.since :] if matches(x.msg, p.path, p.action, p.after)), None
        )
        if hit is not None:
            p.latency, p.late = hit.at - p.mono, True


def start_writer(host: Host, rate: float, seconds: float) -> subprocess.Popen[bytes]:
    argv = [sys.executable, __file__, "--writer", str(host.root / QUEUE)]
    argv += ["--storm-rate", str(rate), "--storm-seconds", str(seconds)]
    return subprocess.Popen(argv, stdout=subprocess.PIPE)


def storm_events(host: Host, tail: Tail, seconds: float, res: StormResult, t0: float) -> None:
    """During the storm: aliases probes every 3 s and the SUID bit at half time.

    Each probe waits for its line (up to TIMEOUT) before the next change, so a slow
    daemon gets fewer probes; the revert of a lost 0664 is still timed as a probe.
    """
    due, i = 3.0, 0
    while (t := time.monotonic() - t0) < seconds:
        if res.suid is None and t >= seconds / 2:
            res.suid = timed_change(host, tail, BINARY, 0o4755, "finding", "4755", t0)
        elif t >= due:
            mode, action = TOGGLE[i % 2]
            res.probes.append(timed_change(host, tail, ALIASES, mode, action, "0664", t0))
            due, i = due + 3.0, i + 1
        else:
            time.sleep(0.05)
    if i % 2:  # put aliases back to 0644 for the after-storm check
        res.probes.append(timed_change(host, tail, ALIASES, 0o644, "resolved", "0664", t0))


def run_storm(host: Host, tail: Tail, daemon: Daemon, args: argparse.Namespace) -> StormResult:
    res = StormResult(args.storm_seconds, args.storm_rate)
    first = proc_sample(daemon.pid, 0.0)
    res.rss_before_kib = first.rss_kib if first else 0
    tail.poll()
    before = len(tail.seen)
    t0 = time.monotonic()
    sampler = Sampler(daemon.pid, t0)
    sampler.start()
    writer = start_writer(host, args.storm_rate, args.storm_seconds)
    spy = start_py_spy(daemon.pid, args) if args.py_spy else None
    storm_events(host, tail, args.storm_seconds, res, t0)
    out, _ = writer.communicate(timeout=args.storm_seconds + 60)
    res.writer = json.loads(out)
    res.after = after_storm(host, tail, t0)
    resolve_late(tail, [*res.probes, *res.after, *([res.suid] if res.suid else [])])
    sampler.done.set()
    sampler.join()
    res.samples = sampler.samples
    res.messages = len(tail.seen) - before
    if spy is not None:
        res.profile = finish_py_spy(spy)
    return res


def after_storm(host: Host, tail: Tail, t0: float) -> list[Probe]:
    """Right after the storm: a chmod of aliases and its revert, each timed."""
    first = timed_change(host, tail, ALIASES, 0o664, "finding", "0664", t0)
    second = timed_change(host, tail, ALIASES, 0o644, "resolved", "0664", t0)
    return [first, second]


def start_py_spy(pid: int, args: argparse.Namespace) -> tuple[subprocess.Popen[bytes], Path]:
    out = Path(args.work) / f"py-spy-{pid}.txt"
    duration = max(1, int(args.storm_seconds) - 2)
    argv = ["py-spy", "record", "-p", str(pid), "-d", str(duration), "-f", "raw", "-o", str(out)]
    argv += ["--threads", "--nonblocking"]
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), out


def finish_py_spy(spy: tuple[subprocess.Popen[bytes], Path]) -> str:
    proc, out = spy
    proc.wait(60)
    return out.read_text() if out.exists() else ""


# --- report --------------------------------------------------------------------------------


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

    return {
        "date": datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
        "cpu": f"{os.cpu_count()} x {cpu}",
        "kernel": platform.release(),
        "python": platform.python_version(),
        "rsyslogd": rsyslog[0].split(" compiled")[0].strip() if rsyslog else "?",
        "watchdog": version("watchdog"),
        "max_queued_events": Path("/proc/sys/fs/inotify/max_queued_events").read_text().strip(),
    }


def fmt_ms(value: float | None) -> str:
    return "lost" if value is None else f"{value * 1000:.0f} ms"


def latency_lines(runs: list[LatencyRun]) -> Iterator[str]:
    yield "| debounce | changes seen | lost | p50 | p90 | p99 | max | daemon-side p50 / p99 |"
    yield "|---|---|---|---|---|---|---|---|"
    for r in runs:
        t, d = summary(r.total), summary(r.daemon)
        yield (
            f"| {r.label} | {len(r.total)} | {r.lost} | {t['p50']:.1f} ms | {t['p90']:.1f} ms "
            f"| {t['p99']:.1f} ms | {t['max']:.1f} ms | {d['p50']:.1f} / {d['p99']:.1f} ms |"
        )


def storm_lines(s: StormResult) -> Iterator[str]:
    w = s.writer
    yield (
        f"- writer: asked {s.rate:.0f}/s for {s.seconds:.0f} s; achieved **{w['rate']:.0f}/s** "
        f"({w['ops']:.0f} create+unlink in {w['seconds']:.1f} s)"
    )
    suid = s.suid.show() if s.suid else "not done"
    yield f"- SUID bit on {BINARY} at t={s.seconds / 2:.0f} s: **{suid}**"
    yield "- aliases probes during the storm (t: latency): " + ", ".join(
        f"{p.t:.1f} s: {p.show()}" for p in s.probes
    )
    yield f"- after the storm, chmod 0664 then 0644: {', '.join(p.show() for p in s.after)}"
    if s.samples:
        rss = [x.rss_kib / 1024 for x in s.samples]
        cpu = s.samples[-1].cpu_s - s.samples[0].cpu_s
        span = max(1e-9, s.samples[-1].t - s.samples[0].t)
        yield (
            f"- daemon VmRSS: {s.rss_before_kib / 1024:.1f} MiB before, max **{max(rss):.1f} "
            f"MiB**, last {rss[-1]:.1f} MiB; CPU {cpu:.1f} s over {span:.0f} s "
            f"({100 * cpu / span:.0f}% of one core)"
        )
        yield "- VmRSS per second (MiB): " + " ".join(f"{x:.0f}" for x in rss)
    yield f"- messages rsyslog received during the storm: {s.messages}"


def profile_lines(raw: str) -> Iterator[str]:
    rows, total = by_thread(raw)
    if not total:
        return
    yield f"py-spy record --threads --nonblocking, {total} samples (idle waits can be included):"
    yield ""
    yield "| thread | share | top frames by own samples (% of all) |"
    yield "|---|---|---|"
    for thread, n, frames in rows:
        top = "<br>".join(f"{100 * c / total:.1f} `{f}`" for f, c in frames)
        yield f"| {thread} | {100 * n / total:.0f}% | {top} |"


def render(
    info: dict[str, str], argv: list[str], runs: list[LatencyRun], storms: list[StormResult]
) -> str:
    out = ["# `mail-integrity watch`: real-time benchmark", ""]
    out += [f"- {k}: {v}" for k, v in info.items()]
    out += ["- command: `" + " ".join(argv) + "`"]
    if runs:
        out += ["", "## Latency (chmod -> rsyslog line)", "", *latency_lines(runs)]
    for storm in storms:
        out += ["", f"## Storm, sandbox in {storm.where}", "", *storm_lines(storm)]
        if storm.profile:
            out += ["", "### py-spy profile of the daemon during this storm", ""]
            out += list(profile_lines(storm.profile))
    return "\n".join(out) + "\n"


def fs_type(path: str, mounts: str | None = None) -> str:
    """Filesystem type of the longest mount point containing ``path`` (from /proc/mounts)."""
    if mounts is None:
        mounts = Path("/proc/mounts").read_text()
    real = os.path.realpath(path)
    best, kind = "", "?"
    for line in mounts.splitlines():
        parts = line.split()
        if len(parts) < 3:
            continue
        point = parts[1]
        inside = real == point or real.startswith(point.rstrip("/") + "/")
        if inside and len(point) > len(best):
            best, kind = point, parts[2]
    return kind


# --- main ----------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--changes", type=int, default=200)
    p.add_argument("--debounce", type=float, action="append", default=None,
                   help="extra debounce values to measure (default: 0.01)")  # fmt: skip
    p.add_argument("--storm-seconds", type=float, default=30.0)
    p.add_argument("--storm-rate", type=float, default=10_000.0)
    p.add_argument("--transport", choices=("tcp", "udp", "tls"), default="tcp")
    p.add_argument("--storm-in", action="append", metavar="DIR",
                   help="where to build the storm's sandbox; repeatable "
                   "(default: /dev/shm, then the work dir)")  # fmt: skip
    p.add_argument("--py-spy", action="store_true", help="profile the daemon during the storm")
    p.add_argument("--work", default=None, help="scratch directory (default: a new temp dir)")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    p.add_argument("--out", default=str(REPO / "bench" / "RESULTS-watch.md"))
    p.add_argument("--writer", metavar="DIR", help=argparse.SUPPRESS)
    return p.parse_args(argv)


def measure_latency(args: argparse.Namespace, rsyslog: Rsyslog) -> list[LatencyRun]:
    runs: list[LatencyRun] = []
    if args.changes <= 0:
        return runs
    rng = random.Random(7)
    for i, debounce in enumerate([None, *(args.debounce or [0.01])]):
        label = f"default ({WatchConfig().debounce} s)" if debounce is None else f"{debounce} s"
        host = Host.make(Path(args.work) / f"latency-{i}")
        daemon = Daemon(host, daemon_url(rsyslog, args, host), debounce)
        tail = Tail.at_end(rsyslog.out)
        daemon.start()
        try:
            runs.append(run_latency(host, tail, args.changes, label, rng))
        finally:
            daemon.stop()
        print(f"latency {label}: {summary(runs[-1].total)} lost={runs[-1].lost}", flush=True)
    return runs


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
        writer_main(args.writer, args.storm_rate, args.storm_seconds)
        return 0
    if not rsyslog_harness.available():
        print("needs rsyslogd and rsyslog-gnutls (apt-get install rsyslog rsyslog-gnutls)")
        return 2
    args.work = args.work or tempfile.mkdtemp(prefix="mi-bench-watch-")
    try:
        with Rsyslog(Path(args.work) / "rsyslog") as server:
            runs = measure_latency(args, server)
            wheres = args.storm_in or ["/dev/shm", args.work]
            storms = [measure_storm(args, server, w) for w in wheres if args.storm_seconds > 0]
        text = render(machine(), ["python", "bench/bench_watch.py", *sys.argv[1:]], runs, storms)
        Path(args.out).write_text(text)
        print(text)
    finally:
        if not args.keep:
            shutil.rmtree(args.work, ignore_errors=True)
    return 0


def measure_storm(args: argparse.Namespace, rsyslog: Rsyslog, where: str) -> StormResult:
    """One storm on a fresh sandbox under ``where`` (its filesystem is part of the result)."""
    base = Path(tempfile.mkdtemp(prefix="mi-storm-", dir=where))
    try:
        host = Host.make(base / "host")
        daemon = Daemon(host, daemon_url(rsyslog, args, host), None)
        tail = Tail.at_end(rsyslog.out)
        daemon.start()
        try:
            res = run_storm(host, tail, daemon, args)
        finally:
            daemon.stop()
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    res.where = f"{where} ({fs_type(where)})"
    suid = res.suid.show() if res.suid else "-"
    print(f"storm {res.where}: writer {res.writer}, SUID {suid}", flush=True)
    return res


if __name__ == "__main__":
    sys.exit(main())
