"""Bad input never gives a traceback: random page corruption, truncation and config bytes
thrown at the real CLI end in a known exit code and one ``error:`` line. Also a disk
that fills up: exit 18 "no space left on device", the old baseline intact, no alarm.

Bounded: a few dozen examples per property, so the file runs in CI (~15 s).
"""

from __future__ import annotations

import contextlib
import io
import math
import os
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from integrity.cli import main
from integrity.demo import build_sandbox

#: what a run may end with: a verify bitmask, or a documented error code
VERIFY_OK = set(range(16))
ERRORS = {17, 18, 19, 20}
FUZZ = settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
    derandomize=True,  # the same cases every CI run: a failure is reproducible
)


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        code = main(list(argv))
    return code, out.getvalue(), err.getvalue()


def assert_clean_failure(code: int, err: str, allowed: set[int]) -> None:
    assert code in allowed, (code, err)
    assert "Traceback" not in err and "internal error" not in err, err
    if code >= 16:
        lines = err.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error: "), err


class Host:
    """The demo sandbox with a good baseline kept aside as bytes."""

    def __init__(self, base: Path) -> None:
        self.root, profiles = build_sandbox(base)
        self.db = base / "state" / "b.db"
        self.config = base / "none.toml"
        self.config.write_text("")
        self.args = ["--root", str(self.root), "--db", str(self.db), "--profile", "demo",
                     "--profile-dir", str(profiles)]  # fmt: skip
        code, _, err = run("init", "-q", *self.args, "--config", str(self.config))
        assert code == 0, err
        self.good = self.db.read_bytes()

    def put(self, data: bytes) -> None:
        for suffix in ("-wal", "-shm"):
            Path(f"{self.db}{suffix}").unlink(missing_ok=True)
        self.db.write_bytes(data)


@pytest.fixture(scope="module")
def host(tmp_path_factory: pytest.TempPathFactory) -> Host:
    return Host(tmp_path_factory.mktemp("fuzz"))


@FUZZ
@given(
    edits=st.lists(
        st.tuples(st.integers(min_value=0, max_value=1 << 20), st.binary(min_size=1, max_size=64)),
        min_size=1,
        max_size=8,
    ),
    command=st.sampled_from(["verify", "history", "export"]),
)
def test_corrupt_pages_anywhere_give_a_known_exit_code(host: Host, edits, command) -> None:
    """Bytes overwritten anywhere in the database: 0-15 or 18/19/20, one line, no traceback."""
    data = bytearray(host.good)
    for offset, chunk in edits:
        at = offset % len(data)
        data[at : at + len(chunk)] = chunk
    host.put(bytes(data[: len(host.good)]))
    code, _, err = run(command, "-q", *host.args, "--config", str(host.config))
    assert_clean_failure(code, err, VERIFY_OK | ERRORS)


@FUZZ
@given(cut=st.integers(min_value=0, max_value=1 << 20))
def test_truncated_database_gives_a_known_exit_code(host: Host, cut: int) -> None:
    """A database cut short at any length: 0-15 or 18/19, never a traceback."""
    host.put(host.good[: cut % (len(host.good) + 1)])
    code, _, err = run("verify", "-q", *host.args, "--config", str(host.config))
    assert_clean_failure(code, err, VERIFY_OK | ERRORS)


@FUZZ
@given(data=st.binary(max_size=400))
def test_random_config_bytes_are_exit_17_or_work(host: Host, data: bytes) -> None:
    """Any bytes as the config file: it works (a valid, empty-ish file) or exit 17."""
    host.put(host.good)
    path = host.config.with_name("fuzz.toml")
    path.write_bytes(data)
    code, _, err = run("verify", "-q", *host.args, "--config", str(path))
    assert_clean_failure(code, err, VERIFY_OK | {17})


_VALUES = st.one_of(
    st.floats(allow_nan=True, allow_infinity=True),
    st.integers(min_value=-(10**12), max_value=10**12),
    st.booleans(),
    st.text(max_size=20),
    st.lists(st.text(max_size=5), max_size=3),
)
_KEYS = {
    "watch": ["debounce", "full_verify_interval", "realert_interval", "debounse"],
    "syslog": ["heartbeat", "reconnect_max", "facility", "verify_hostname", "url", "outbox"],
    "": ["packages", "profiles", "ledger", "state_dir", "pubic_key"],
}


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, int):
        return str(value)
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).encode("unicode_escape").decode().replace('"', '\\"') + '"'


@FUZZ
@given(
    entries=st.lists(
        st.tuples(st.sampled_from(sorted(_KEYS)), st.data()), min_size=1, max_size=4
    )
)
def test_valid_toml_with_random_values_is_range_checked(host: Host, entries) -> None:
    """Known and misspelt keys with any value (nan, -1, huge, wrong type): works or 17."""
    host.put(host.good)
    sections: dict[str, dict[str, object]] = {}
    for section, data in entries:
        key = data.draw(st.sampled_from(_KEYS[section]))
        sections.setdefault(section, {})[key] = data.draw(_VALUES)
    text = "".join(f"{k} = {_toml(v)}\n" for k, v in sections.pop("", {}).items())
    for section, values in sections.items():
        text += f"[{section}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
    path = host.config.with_name("fuzz.toml")
    path.write_text(text)
    code, _, err = run("verify", "-q", *host.args, "--config", str(path))
    assert_clean_failure(code, err, VERIFY_OK | {17, 18, 20})


@pytest.mark.parametrize(
    ("text", "words"),
    [
        ("[watch]\ndebounce = -1\n", ["debounce", "-1", "allowed 0 to 60"]),
        ("[watch]\ndebounce = nan\n", ["debounce", "nan", "allowed"]),
        ("[watch]\nfull_verify_interval = 0\n", ["full_verify_interval", "allowed"]),
        ("[syslog]\nheartbeat = inf\n", ["heartbeat", "inf"]),
        ("[watch]\ndebounse = 0.1\n", ["debounse", "did you mean 'debounce'"]),
        ("pubic_key = '/x'\n", ["pubic_key", "did you mean 'public_key'"]),
    ],
)
def test_impossible_values_name_file_key_and_range(tmp_path: Path, text: str, words) -> None:
    """nan, negative and zero intervals, typos: exit 17 naming file, key and the range."""
    path = tmp_path / "c.toml"
    path.write_text(text)
    code, _, err = run("verify", "--config", str(path), "--db", str(tmp_path / "none.db"))
    assert code == 17 and err.startswith(f"error: {path}:"), err
    for word in words:
        assert word in err


def test_non_utf8_config_is_17_not_a_traceback(tmp_path: Path) -> None:
    """A config saved in Latin-1: exit 17, the file and the byte named."""
    path = tmp_path / "c.toml"
    path.write_bytes(b'root = "/srv/caf\xe9"\n')
    code, _, err = run("verify", "--config", str(path))
    assert code == 17 and str(path) in err and "UTF-8" in err


# --------------------------------------------------------------------------- disk full


@pytest.fixture
def small_disk(tmp_path: Path) -> Iterator[Path]:
    """A real 1 MiB tmpfs, unmounted afterwards."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("needs root to mount a tmpfs")
    mnt = tmp_path / "small"
    mnt.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m,mode=0700", "mi_harden_enospc",
                    str(mnt)], check=True)  # fmt: skip
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def _fill(directory: Path) -> Path:
    filler = directory / "filler"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        with contextlib.suppress(OSError):
            while True:
                os.write(fd, b"\0" * 4096)
    finally:
        os.close(fd)
    return filler


def test_disk_full_is_18_never_corrupt_and_the_baseline_survives(
    tmp_path: Path, small_disk: Path
) -> None:
    """update and a second init on a full disk: exit 18 "no space left on device", no
    corrupt alarm in the outbox, and the old baseline still loads with its generation."""
    root, profiles = build_sandbox(tmp_path)
    db = small_disk / "b.db"
    config = tmp_path / "c.toml"  # a syslog URL nobody listens on: alarms wait in the outbox
    config.write_text(f'[syslog]\nurl = "tcp://127.0.0.1:9"\noutbox = "{tmp_path}/ob.db"\n')
    args = ["--root", str(root), "--db", str(db), "--profile", "demo", "--profile-dir",
            str(profiles), "--config", str(config)]  # fmt: skip
    quiet = tmp_path / "quiet.toml"  # no syslog for the good init (its announcement
    quiet.write_text("")  # would wait for a receiver that is not there)
    assert run("init", "-q", *args, "--config", str(quiet))[0] == 0
    for i in range(400):  # new files: the next update must write more than fits
        (root / "etc/mail" / f"list-{i:03}").write_text("x" * 200)
    filler = _fill(small_disk)
    for argv in (["update", "--all", "--reason", "more lists"], ["init"]):
        code, _, err = run(*argv, "-q", *args)
        assert code == 18 and "no space left on device" in err, err
        assert_clean_failure(code, err, {18})
    code, _, err = run("verify", "-q", *args)
    assert_clean_failure(code, err, VERIFY_OK | {18})
    if (tmp_path / "ob.db").exists():  # created only when something was sent
        outbox = sqlite3.connect(tmp_path / "ob.db")
        sent = b"".join(bytes(r[0]) for r in outbox.execute("select data from outbox"))
        outbox.close()
        assert b"MI-BASELINE-CORRUPT" not in sent
    filler.unlink()
    code, out, err = run("verify", "--format", "json", *args)
    assert code & 1 and code < 16, err  # the new files are "added": the old rows are intact
    assert '"generation": 1' in out
