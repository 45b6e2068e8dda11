"""Packaging and admin-facing docs: units, debian/, example config, man page, completion,
``config check``, and the journal priority prefix the service relies on."""

from __future__ import annotations

import dataclasses
import io
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
import structlog

from integrity import emit
from integrity.cli import main
from integrity.config import Config, SyslogConfig, WatchConfig, load_config

REPO = Path(__file__).resolve().parent.parent
VENV_EXE = "/opt/venvs/mail-integrity/bin/mail-integrity"
UNITS = ("mail-integrity.service", "mail-integrity-verify.service")
EXAMPLE = REPO / "docs/config.toml.example"
SETTING = re.compile(r"^# ([a-z_]+) = (.*)$")


def unit_text(name: str) -> str:
    return (REPO / "systemd" / name).read_text()


def directives(name: str, key: str) -> list[str]:
    return re.findall(rf"^{key}=(.*)$", unit_text(name), re.M)


# -- units, sysusers, tmpfiles, debian/ ---------------------------------------------------


@pytest.mark.parametrize("unit", UNITS)
def test_units_exec_the_venv_prefix(unit: str) -> None:
    """Both units run the venv's script at the fixed prefix the .deb and INSTALL.md use."""
    (start,) = directives(unit, "ExecStart")
    assert start.split()[0] == VENV_EXE
    rules = (REPO / "debian/rules").read_text()
    assert re.search(r"^VENV := /opt/venvs/mail-integrity$", rules, re.M)
    links = (REPO / "debian/mail-integrity.links").read_text().split()
    assert links == [VENV_EXE.lstrip("/"), "usr/bin/mail-integrity"]
    assert (
        f"-m venv {os.path.dirname(os.path.dirname(VENV_EXE))}"
        in (REPO / "docs/INSTALL.md").read_text()
    )


def test_user_and_state_dir_agree_everywhere() -> None:
    """sysusers, tmpfiles and both units name one user and one 0700 state directory."""
    sysusers = (REPO / "systemd/mail-integrity.sysusers.conf").read_text()
    user = re.search(r"^u (\S+) ", sysusers, re.M).group(1)  # type: ignore[union-attr]
    tmpfiles = (REPO / "systemd/mail-integrity.tmpfiles.conf").read_text()
    assert f"d /var/lib/mail-integrity 0700 {user} {user} -" in tmpfiles
    assert f"Z /var/lib/mail-integrity - {user} {user} -" in tmpfiles
    for unit in UNITS:
        assert directives(unit, "User") == [user] and directives(unit, "Group") == [user]
        assert directives(unit, "StateDirectory") == ["mail-integrity"]
        assert directives(unit, "StateDirectoryMode") == ["0700"]
        pre = directives(unit, "ExecStartPre")
        assert pre == ["+/usr/bin/systemd-tmpfiles --create mail-integrity.conf"], unit
    assert (REPO / "debian/mail-integrity.sysusers").resolve() == (
        REPO / "systemd/mail-integrity.sysusers.conf"
    )
    assert (REPO / "debian/mail-integrity.tmpfiles").resolve() == (
        REPO / "systemd/mail-integrity.tmpfiles.conf"
    )


def test_verify_unit_may_reach_the_siem() -> None:
    """The daily verify's sandbox allows IP sockets (no PrivateNetwork) for [syslog] url."""
    unit = "mail-integrity-verify.service"
    assert not directives(unit, "PrivateNetwork")
    families = " ".join(directives(unit, "RestrictAddressFamilies")).split()
    assert {"AF_UNIX", "AF_INET", "AF_INET6"} <= set(families)


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="needs systemd-analyze")
@pytest.mark.parametrize("unit", UNITS)
def test_units_exposure_at_most_2(unit: str) -> None:
    """`systemd-analyze security --offline=true` rates each unit 2.0 or lower."""
    argv = ["systemd-analyze", "security", "--offline=true", "--no-pager"]
    proc = subprocess.run(
        [*argv, str(REPO / "systemd" / unit)], capture_output=True, text=True, check=False
    )
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    assert m, proc.stdout[-500:] + proc.stderr[-500:]
    assert float(m.group(1)) <= 2.0


def test_versions_agree() -> None:
    """pyproject and debian/changelog carry the same version."""
    with open(REPO / "pyproject.toml", "rb") as fh:
        version = tomllib.load(fh)["project"]["version"]
    first = (REPO / "debian/changelog").read_text().splitlines()[0]
    assert first.startswith(f"mail-integrity ({version})")
    assert version == "0.2.0"


def test_readme_quickstart_builds_and_installs_the_deb() -> None:
    """The quick start block uses the Debian toolchain, no bare pip, and ends with init+verify."""
    text = (REPO / "README.md").read_text()
    block = re.search(r"```sh\n(.*?)```", text[text.index("## Quick start") :], re.S)
    assert block
    code = block.group(1)
    assert "pip" not in code
    assert "apt-get build-dep" in code and "dpkg-buildpackage" in code
    assert "apt-get install -y ../mail-integrity_0.2.0_" in code
    assert code.rstrip().endswith("mail-integrity init && mail-integrity verify")


# -- example config ------------------------------------------------------------------------


def example_settings() -> dict[str | None, dict[str, str]]:
    """``# key = value`` lines of the example, per section (None: top level)."""
    found: dict[str | None, dict[str, str]] = {None: {}}
    section: str | None = None
    for line in EXAMPLE.read_text().splitlines():
        table = re.match(r"^(?:# )?\[(\[?\w+\]?)\]$", line)
        if table:
            section = table.group(1)
            found.setdefault(section, {})
        m = SETTING.match(line)
        if m:
            found[section][m.group(1)] = m.group(2)
    return found


def test_example_config_names_every_key() -> None:
    """The example config has every key the code reads, no more (new keys need a line)."""
    got = example_settings()
    got.pop("[waiver]", None)  # [[waiver]] tables: an example, checked below
    want = {
        None: {f.name for f in dataclasses.fields(Config)} - {"syslog", "watch", "waivers"},
        "syslog": {f.name for f in dataclasses.fields(SyslogConfig)},
        "watch": {f.name for f in dataclasses.fields(WatchConfig)},
    }
    assert {k: set(v) for k, v in got.items()} == want
    if "waivers" in {f.name for f in dataclasses.fields(Config)}:
        assert "\n# [[waiver]]\n" in EXAMPLE.read_text()


def test_example_config_values_are_the_defaults(tmp_path: Path) -> None:
    """Every key with a default shows that default; uncommented, the file loads cleanly."""
    lines = []
    for line in EXAMPLE.read_text().splitlines():
        m = SETTING.match(line)  # "#   rule = ..." of the [[waiver]] example stays commented
        lines.append(f"{m.group(1)} = {m.group(2)}" if m else line)
    path = tmp_path / "config.toml"
    path.write_text("\n".join(lines) + "\n")
    cfg = load_config(str(path))
    default = Config()
    for section, obj, ref in (
        (None, cfg, default),
        ("syslog", cfg.syslog, default.syslog),
        ("watch", cfg.watch, default.watch),
    ):
        for f in dataclasses.fields(obj):
            if f.name in ("syslog", "watch") and section is None:
                continue
            if getattr(ref, f.name) is not None:
                assert getattr(obj, f.name) == getattr(ref, f.name), (section, f.name)
    assert load_config(str(EXAMPLE)) == Config()  # as shipped: all commented out


# -- config check ---------------------------------------------------------------------------


def check(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(["config", "check", "--profile", "postfix", *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_config_check_ok_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A valid config: exit 0 and one line naming the file, the profiles and the SIEM."""
    conf = tmp_path / "config.toml"
    conf.write_text('[syslog]\nurl = "tls://siem.example.org:6514"\n')
    code, out, err = check(capsys, "--config", str(conf))
    assert code == 0 and err == ""
    assert out.count("\n") == 1 and out.startswith(f"OK {conf}: profiles ")
    assert "postfix" in out and "tls://siem.example.org:6514" in out


@pytest.mark.parametrize(
    ("text", "line", "what"),
    [
        ("[watch]\ndebounce = 1\n\ndebonce = 2\n", 4, "unknown key 'debonce'"),
        ('db = "x"\nprofiles = 3\n', 2, "profiles = 3"),
        ('db = "x"\n[syslog]\nfacility = "lokal4"\n', 3, "facility"),
        ('\n[syslog]\nurl = "http://siem:514"\n', 3, "scheme must be"),
        ('db = "unterminated\n', 1, ""),
    ],
)
def test_config_check_error_names_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], text: str, line: int, what: str
) -> None:
    """A bad config: exit 17 and one line `error: FILE:LINE: problem`."""
    conf = tmp_path / "config.toml"
    conf.write_text(text)
    code, out, err = check(capsys, "--config", str(conf))
    assert code == 17 and out == ""
    assert err.startswith(f"error: {conf}:{line}: ") and what in err
    assert err.count("\n") == 1


def test_config_check_bad_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A broken local profile it would load: exit 17 naming the profile file and line."""
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "postfix.toml").write_text('[profile]\nname = "postfix"\n[[file]]\npath = 3\n')
    conf = tmp_path / "config.toml"
    conf.write_text(f'profile_dirs = ["{prof}"]\n')
    code, _, err = check(capsys, "--config", str(conf))
    assert code == 17 and "postfix.toml:" in err


def test_config_check_missing_explicit_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--config naming a missing file is an error (17), not a silent default."""
    code, _, err = check(capsys, "--config", str(tmp_path / "nope.toml"))
    assert code == 17 and "nope.toml" in err


# -- man page and completion ------------------------------------------------------------------


def test_gen_docs_man_page_and_completion(tmp_path: Path) -> None:
    """tools/gen_docs.py writes mail-integrity(1) with every command, and bash/zsh completion."""
    proc = subprocess.run(
        [sys.executable, str(REPO / "tools/gen_docs.py"), "--out", str(tmp_path)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    man = (tmp_path / "man/man1/mail-integrity.1").read_text()
    for cmd in ("init", "verify", "update", "watch", "audit", "history", "config check"):
        assert f".SS mail\\-integrity {cmd.replace('-', chr(92) + '-')}" in man, cmd
    assert "\\-\\-format" in man and ".SH EXIT STATUS" in man and ".SH FILES" in man
    bash = (tmp_path / "bash-completion/completions/mail-integrity").read_text()
    assert "_MAIL_INTEGRITY_COMPLETE=bash_complete" in bash
    zsh = (tmp_path / "zsh/vendor-completions/_mail-integrity").read_text()
    assert zsh.startswith("#compdef mail-integrity")
    if shutil.which("groff"):
        warn = subprocess.run(
            ["groff", "-man", "-Tutf8", "-ww", "-z", str(tmp_path / "man/man1/mail-integrity.1")],
            capture_output=True, text=True, check=False,
        )  # fmt: skip
        assert warn.stderr == "", warn.stderr


# -- journal priorities -------------------------------------------------------------------------


def test_journal_priority_follows_finding_severity() -> None:
    """A finding's line is filed at its severity's syslog level; other lines at their level."""

    def record(level: int, msg: object) -> logging.LogRecord:
        return logging.LogRecord("x", level, "f", 1, msg, None, None)

    assert emit.journal_priority(record(logging.WARNING, {"severity": "critical"})) == 2
    assert emit.journal_priority(record(logging.WARNING, {"severity": "high"})) == 3
    assert emit.journal_priority(record(logging.WARNING, {"severity": "low"})) == 5
    assert emit.journal_priority(record(logging.ERROR, {"event": "x"})) == 3
    assert emit.journal_priority(record(logging.WARNING, "plain")) == 4


def test_journal_prefix_only_when_stderr_is_the_journal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With $JOURNAL_STREAM naming stderr, lines carry `<N>`; otherwise they do not."""
    target = tmp_path / "stderr"
    with open(target, "w+") as fh:
        st = os.fstat(fh.fileno())
        monkeypatch.setattr(sys, "stderr", fh)
        monkeypatch.delenv("JOURNAL_STREAM", raising=False)
        assert not emit.stderr_is_journal()
        monkeypatch.setenv("JOURNAL_STREAM", f"{st.st_dev}:{st.st_ino}")
        assert emit.stderr_is_journal()
        emit.configure_logging(0, json=True)
        try:
            structlog.get_logger("t").warning("finding", severity="critical", path="/x")
        finally:
            monkeypatch.delenv("JOURNAL_STREAM")
            emit.configure_logging(0, json=True)
        fh.flush()
    line = target.read_text().splitlines()[0]
    assert line.startswith("<2>{") and json.loads(line[3:])["severity"] == "critical"
    monkeypatch.setattr(sys, "stderr", io.StringIO())
