"""Output hygiene: stdout is the report (one JSON document or nothing), logs go to stderr,
-q leaves errors only, a progress bar only on a terminal, permission problems named.

Real child processes (``python3 -m integrity``), a real pty, a real unprivileged user.
"""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from integrity.demo import build_sandbox
from tests.sandbox import cli_host

HERE = Path(__file__).resolve().parent.parent


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """The demo sandbox, the common arguments, and their (empty) config file."""
    return cli_host(tmp_path)


def mi(*argv: str, **kw: object) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "integrity", *argv], capture_output=True,
                          text=True, cwd=HERE, timeout=120, **kw)  # type: ignore[call-overload]


def test_json_stdout_is_one_document_while_logs_go_to_stderr(host):
    """init/update/verify --format json with a syslog url and -v: stdout parses as one
    JSON document, the log lines are on stderr."""
    root, args, config = host
    config.write_text('[syslog]\nurl = "udp://127.0.0.1:9"\n')
    proc = mi("init", *args, "--format", "json", "-v")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    assert "[integrity.syslog]" in proc.stderr  # a structlog line (the link), on stderr
    proc = mi("verify", *args, "--format", "json", "-v")
    assert proc.returncode == 0, proc.stderr
    json.loads(proc.stdout)
    os.chmod(root / "etc/mail/aliases", 0o640)
    proc = mi("update", *args, "--accept", "/etc/mail/aliases", "--reason", "r", "--format",
              "json", "-v")
    assert proc.returncode == 0 and json.loads(proc.stdout)["accepted"] == 1


def test_json_stdout_is_empty_on_error(host):
    """A failing --format json command prints nothing on stdout; the error is on stderr."""
    _, args, _ = host
    proc = mi("verify", *args, "--format", "json")
    assert proc.returncode == 19 and proc.stdout == "" and proc.stderr.startswith("error: ")


def test_quiet_leaves_only_errors(host, tmp_path):
    """-q on a tampered signed baseline with a syslog url: stderr holds just `error:`."""
    from integrity import signing
    from integrity.store import Store

    _, args, config = host
    signing.keygen(str(tmp_path / "k.key"), str(tmp_path / "k.pub"), b"pw-for-the-test")
    (tmp_path / "pass").write_text("pw-for-the-test\n")
    assert mi("init", *args, "--sign-key", str(tmp_path / "k.key"), "--passphrase-file",
              str(tmp_path / "pass"), "-q").returncode == 0
    store = Store.open(str(tmp_path / "b.db"))
    store.db.execute("update files set mode = 1 where rowid = 1")
    store.db.execute("update files set record = replace(record, '\"uid\":', '\"uid\":9') "
                     "where rowid = 1")
    store.set_meta("rows_digest", store.current_digest())
    store.close()
    config.write_text(f'public_key = "{tmp_path}/k.pub"\n[syslog]\nurl = "udp://127.0.0.1:9"\n')
    loud = mi("verify", *args)
    assert loud.returncode == 20 and "[critical" in loud.stderr  # the log line is there...
    proc = mi("verify", *args, "-q")
    assert proc.returncode == 20 and proc.stdout == ""
    assert [ln for ln in proc.stderr.splitlines() if ln] == [
        ln for ln in proc.stderr.splitlines() if ln.startswith("error: ")] != []  # ...not here


def _run_on_pty(argv: list[str]) -> tuple[int, str]:
    """Run with stderr on a pty (stdout a pipe); return (exit code, what the pty showed)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=slave, cwd=HERE)
    os.close(slave)
    chunks: list[bytes] = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 0.2)
        if ready:
            try:
                data = os.read(master, 65536)
            except OSError:
                break
            if not data:
                break
            chunks.append(data)
        elif proc.poll() is not None:
            break
    os.close(master)
    return proc.wait(30), b"".join(chunks).decode(errors="replace")


@pytest.mark.slow
def test_progress_bar_on_a_terminal_only(tmp_path):
    """A 3000-file tree: on a pty, verify draws total, percent, rate and ETA; in a pipe,
    nothing but the report."""
    root, profiles = build_sandbox(tmp_path)
    spool = root / "etc/mail/lists"
    spool.mkdir()
    for i in range(3000):
        (spool / f"list{i:04d}").write_text(f"member{i}@example.org\n")
    config = tmp_path / "c.toml"
    config.write_text("")
    args = ["--root", str(root), "--db", str(tmp_path / "b.db"), "--profile", "demo",
            "--profile-dir", str(profiles), "--config", str(config)]
    assert mi("init", *args, "-q").returncode == 0
    code, shown = _run_on_pty([sys.executable, "-m", "integrity", "verify", *args])
    assert code == 0
    assert "paths/s" in shown and "ETA" in shown and "verify [" in shown
    assert any(f"/{n} " in shown for n in range(3000, 3100))  # the total is known
    piped = mi("verify", *args)
    assert piped.returncode == 0 and piped.stderr == "" and "paths/s" not in piped.stdout


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0 or not shutil.which("setpriv"),
                    reason="needs root and setpriv to drop every capability")
def test_unreadable_database_says_permission_denied(tmp_path):
    """A verify that may not read the baseline (root with no capabilities, the database
    owned by another user): permission denied with the path, exit 18, not "run init"."""
    root, profiles = build_sandbox(tmp_path)
    state = tmp_path / "state"
    state.mkdir(mode=0o700)
    db = state / "b.db"
    config = tmp_path / "c.toml"
    config.write_text("")
    args = ["--root", str(root), "--db", str(db), "--profile", "demo",
            "--profile-dir", str(profiles), "--config", str(config)]
    assert mi("init", *args, "-q").returncode == 0
    for path in state.iterdir():
        os.chown(path, 65534, 65534)
    os.chown(state, 65534, 65534)
    powerless = ["setpriv", "--bounding-set=-all", "--inh-caps=-all"]
    commands = (["verify"], ["history"], ["update", "--all", "--reason", "r"])
    for mode in (0o700, 0o755):  # a closed directory, then an unreadable file in an open one
        os.chmod(state, mode)
        for command in commands:
            proc = subprocess.run([*powerless, sys.executable, "-m", "integrity", *command,
                                   *args], capture_output=True, text=True, cwd=HERE, timeout=60)
            assert proc.returncode == 18, (command, proc.stderr)
            assert "permission denied" in proc.stderr and str(db) in proc.stderr
            assert "run `mail-integrity init`" not in proc.stderr
