"""Who-data benchmark: does attribution slow set-id alerts, and what would queue rules cost?

1. Latency: the demo sandbox under `mail-integrity watch` (a child process, as in
   tests/test_daemon.py) sending to a private rsyslogd; ``--changes`` chmods of the
   sendmail binary alternating 0755 -> 4755 (MI-SETID-ADDED) -> 0755 (resolved), 150 ms
   apart; latency = first sight of the line in rsyslog's file - the chmod. Once with
   ``whodata = "off"`` and once with ``"auto"`` (rules added over netlink). Also counts
   findings that arrived attributed inline and the later attribution updates.
2. Audit volume of queue directories: a writer makes ``--queue-files`` postfix-style queue
   files (create 0600, write, fchmod 0700, unlink) in a fresh directory, with no rule,
   with a rule on the directory's own attributes (``-w DIR -p a``, what we ship), and with
   subtree rules ``-p a`` and ``-p wa``; counted: records of our key read from the
   multicast group, and the writer's time per file.

Needs root, the kernel audit subsystem, rsyslog. Usage (repository root):
    python bench/bench_whodata.py [--changes 100] [--queue-files 5000] [--out FILE]
The audit enabled flag and rules are put back as they were.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import platform
import socket
import subprocess
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from integrity import api, auditnl, auditrec  # noqa: E402
from integrity.demo import build_sandbox  # noqa: E402
from tests.rsyslog_harness import Rsyslog, parse_5424  # noqa: E402
from tests.test_daemon import Daemon  # noqa: E402

BINARY = "usr/sbin/sendmail"


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    k = (len(s) - 1) * q / 100
    lo = int(k)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (k - lo)


def latency_run(work: Path, mode: str, changes: int, acc: dict[str, list[float]]) -> None:
    """One daemon, ``changes`` set-id toggles; appends end-to-end and daemon-side latencies
    (ms) and counts to ``acc`` (keys prefixed by the mode)."""
    base = Path(tempfile.mkdtemp(prefix=f"host-{mode}-", dir=work))
    root, profiles = build_sandbox(base)
    api.init(api.Options(root=str(root), db=str(base / "baseline.db"), profiles=("demo",),
                         profile_dirs=(str(profiles),)))  # fmt: skip
    binary = root / BINARY
    with Rsyslog(base / "rsyslog") as rsyslog:
        daemon = Daemon(base, root, profiles, rsyslog.url("tcp"))
        daemon.config.write_text(
            daemon.config.read_text().replace("[watch]\n", f'[watch]\nwhodata = "{mode}"\n')
        )
        daemon.start()
        try:
            for i in range(changes):
                mode_bits, action = (0o4755, "finding") if i % 2 == 0 else (0o755, "resolved")
                t0 = time.time()
                os.chmod(binary, mode_bits)
                deadline = t0 + 10
                hit = None
                while time.time() < deadline:
                    msgs = [parse_5424(m) for m in rsyslog.messages()]
                    hits = [json.loads(m["msg"]) for m in msgs if m["msgid"] == "MI-SETID-ADDED"]
                    hits = [b for b in hits if b["event"]["action"] == action]
                    if len(hits) >= i // 2 + 1:  # the i-th toggle's line is there
                        hit = hits[i // 2]
                        break
                    time.sleep(0.001)
                if hit is None:
                    acc[f"{mode} lost"].append(1)
                    continue
                seen = time.time()
                stamp = datetime.fromisoformat(hit["@timestamp"].replace("Z", "+00:00"))
                if action == "finding":
                    acc[f"{mode} e2e"].append((seen - t0) * 1000)
                    acc[f"{mode} daemon"].append((stamp.timestamp() - t0) * 1000)
                    acc[f"{mode} inline"].append(1.0 if "user" in hit else 0.0)
                time.sleep(0.15)
            time.sleep(1.0)
            msgs = [parse_5424(m) for m in rsyslog.messages()]
        finally:
            daemon.stop()
    bodies = [json.loads(m["msg"]) for m in msgs if m["msgid"] == "MI-SETID-ADDED"]
    acc[f"{mode} updates"].append(sum(b["event"]["action"] == "attribution" for b in bodies))


def count_records(stop: threading.Event, out: list[int]) -> None:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, auditnl.NETLINK_AUDIT)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind((0, 1))
    sock.settimeout(0.2)
    asm = auditrec.Assembler()
    n = 0
    while not stop.is_set():
        try:
            data = sock.recv(1 << 16)
        except TimeoutError:
            continue
        except OSError:
            out.append(-1)  # ENOBUFS: we fell behind
            continue
        off = 0
        while off + 16 <= len(data):
            length, rtype = (
                int.from_bytes(data[off : off + 4], "little"),
                int.from_bytes(data[off + 4 : off + 6], "little"),
            )
            text = data[off + 16 : off + length].rstrip(b"\0").decode("utf-8", "replace")
            off += (length + 3) & ~3
            n += sum(1 for e in asm.add(rtype, text) if e.key == auditrec.KEY)
    out.append(n)
    sock.close()


def queue_storm(qdir: Path, files: int) -> float:
    t0 = time.perf_counter()
    for i in range(files):
        path = qdir / f"Q{i:08d}"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        os.write(fd, b"x" * 512)
        os.fchmod(fd, 0o700)  # postfix marks a finished queue file so
        os.close(fd)
        os.unlink(path)
    return (time.perf_counter() - t0) / files * 1e6


VARIANTS: list[tuple[str, str, bool]] = [
    ("no rule", "", False),
    ("-w DIR -p a (shipped: the directory's own attributes)", "a", False),
    ("subtree -p a (attribute changes of every entry)", "a", True),
    ("subtree -p wa (writes and attributes of every entry)", "wa", True),
]


def volume_run(work: Path, files: int) -> list[dict[str, object]]:
    rows: list[dict[str, object]] = []
    warm = work / "queue-warm-up"
    warm.mkdir()
    queue_storm(warm, files)  # the first storm pays for the file system's cold caches
    with auditnl.Netlink() as nl:
        for name, perms, tree in VARIANTS:
            qdir = work / f"queue-{len(rows)}"
            qdir.mkdir()
            rules = [auditnl.WatchRule(str(qdir), perms, tree=tree)] if perms else []
            for r in rules:
                nl.add(r)
            stop = threading.Event()
            out: list[int] = []
            reader = threading.Thread(target=count_records, args=(stop, out))
            reader.start()
            time.sleep(0.3)
            try:
                per_file = queue_storm(qdir, files)
                time.sleep(1.0)
            finally:
                stop.set()
                reader.join()
                for r in rules:
                    nl.delete(r)
            records = out[-1]
            rows.append({"variant": name, "events": records, "per_message": records / files,
                         "us_per_file": per_file, "lost": -1 in out})  # fmt: skip
    return rows


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--changes", type=int, default=100, help="per mode and round")
    ap.add_argument("--rounds", type=int, default=3, help="off/auto alternations (load drifts)")
    ap.add_argument("--queue-files", type=int, default=5000)
    ap.add_argument("--out", default="")
    args = ap.parse_args()
    with auditnl.Netlink() as nl:
        enabled = nl.status()["enabled"]
        before = [raw for *_, raw in nl.rules()]
    work = Path(tempfile.mkdtemp(prefix="mi_who_bench_"))
    try:
        acc: dict[str, list[float]] = collections.defaultdict(list)
        for _ in range(args.rounds):
            for mode in ("off", "auto"):
                latency_run(work, mode, args.changes, acc)
        with auditnl.Netlink() as nl:
            nl.set_enabled(1)
        vol = volume_run(work, args.queue_files)
    finally:
        with auditnl.Netlink() as nl:
            for *_, raw in nl.rules():
                if raw not in before:
                    nl.delete(raw)
            nl.set_enabled(enabled)
        subprocess.run(["rm", "-rf", str(work)], check=False)
    lines = [
        f"## who-data ({datetime.now(UTC):%Y-%m-%d %H:%M} UTC, {platform.node()}, "
        f"{os.cpu_count()} CPUs, kernel {platform.release()})",
        "",
        f"`python bench/bench_whodata.py --changes {args.changes} --rounds {args.rounds} "
        f"--queue-files {args.queue_files}` (load average at the end: "
        f"{os.getloadavg()[0]:.1f})",
        "",
        f"Set-id alert latency, ms, {args.rounds} rounds alternating off/auto: end to end "
        "(chmod -> line seen in rsyslog's file) and daemon (chmod -> the event's @timestamp, "
        "taken after attribution):",
        "",
        "| whodata | alerts | lost | e2e p50 | e2e p95 | e2e p99 | daemon p50 | daemon p95 | "
        "daemon p99 | attributed inline | attribution updates |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for mode in ("off", "auto"):
        e2e, dmn = acc[f"{mode} e2e"], acc[f"{mode} daemon"]
        lines.append(
            f"| {mode} | {len(e2e)} | {len(acc[f'{mode} lost'])} | {percentile(e2e, 50):.1f} | "
            f"{percentile(e2e, 95):.1f} | {percentile(e2e, 99):.1f} | {percentile(dmn, 50):.1f} | "
            f"{percentile(dmn, 95):.1f} | {percentile(dmn, 99):.1f} | "
            f"{int(sum(acc[f'{mode} inline']))}/{len(e2e)} | {int(sum(acc[f'{mode} updates']))} |"
        )
    lines += [
        "",
        f"Audit volume of a queue directory ({args.queue_files} postfix-style queue files: "
        "create, write, fchmod, unlink):",
        "",
        "| rule | audit events | events per message | writer us/file | reader lost records |",
        "|---|---|---|---|---|",
    ]
    for v in vol:
        lines.append(
            f"| {v['variant']} | {v['events']} | {v['per_message']:.2f} | "
            f"{v['us_per_file']:.1f} | {'yes' if v['lost'] else 'no'} |"
        )
    text = "\n".join(lines) + "\n"
    print(text)
    if args.out:
        with open(args.out, "a") as fh:
            fh.write("\n" + text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
