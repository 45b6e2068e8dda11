"""The command line: exit codes, JSON shape, errors as one line, every command documented."""

from __future__ import annotations

import json
import os
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

from integrity.cli import cli, main
from integrity.demo import build_sandbox
from tests.sandbox import cli_host


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, list[str]]:
    """The demo sandbox and the common arguments that point at it."""
    root, args, _ = cli_host(tmp_path)
    return root, args


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("command", sorted(cli.commands))
def test_every_command_has_help_with_an_example(command, capsys):
    """`mail-integrity CMD --help` exits 0 and its docstring ends with an example."""
    code, out, _ = run(capsys, command, "--help")
    assert code == 0
    assert "Example:" in out


def test_clean_verify_after_init_exits_zero(host, capsys):
    """init then verify on an unchanged tree: exit 0 and no findings."""
    _, args = host
    assert run(capsys, "init", *args)[0] == 0
    code, out, _ = run(capsys, "verify", *args, "--format", "json")
    assert code == 0
    doc = json.loads(out)
    assert doc["findings"] == [] and doc["summary"]["changed"] == 0


def test_json_shape_and_exit_bits(host, capsys):
    """Changed + added + removed + critical -> 4|1|2|8 = 15 and the PRODUCT.md JSON keys."""
    root, args = host
    run(capsys, "init", *args)
    os.chmod(root / "usr/sbin/sendmail", 0o4755)  # changed, critical
    (root / "etc/mail/new.cf").write_text("x\n")  # added
    (root / "etc/mail/authinfo").unlink()  # removed
    code, out, _ = run(capsys, "verify", *args, "--format", "json")
    assert code == 15
    doc = json.loads(out)
    assert set(doc["summary"]) >= {"added", "removed", "changed", "by_severity"}
    assert doc["summary"]["added"] == 1 and doc["summary"]["removed"] == 1
    for f in doc["findings"]:
        assert set(f) >= {"path", "rule", "severity", "attribute", "before", "after", "message"}
        assert f["severity"] in {"info", "low", "medium", "high", "critical"}
    assert any(f["rule"] == "MI-SETID-ADDED" and f["severity"] == "critical"
               for f in doc["findings"])


def test_update_accepts_and_history_keeps_the_reason(host, capsys):
    """update --accept makes the next verify clean and history shows who and why."""
    root, args = host
    run(capsys, "init", *args)
    os.chmod(root / "etc/mail/aliases", 0o640)
    assert run(capsys, "verify", *args, "-q")[0] == 4
    code, out, _ = run(capsys, "update", *args, "--accept", "/etc/mail/aliases",
                       "--reason", "lock-DoS hardening")
    assert code == 0 and "accepted 1" in out
    assert run(capsys, "verify", *args, "-q")[0] == 0
    code, out, _ = run(capsys, "history", *args)
    assert "lock-DoS hardening" in out and "/etc/mail/aliases" in out


def test_update_without_paths_or_all_is_a_usage_error(host, capsys):
    """update with neither --accept nor --all: exit 16 and a one-line error."""
    _, args = host
    run(capsys, "init", *args)
    code, _, err = run(capsys, "update", *args, "--reason", "x")
    assert code == 16 and err.startswith("error: ") and err.count("\n") == 1


def test_unknown_option_is_usage_error_16(capsys):
    """A typo in an option exits 16, not click's 2."""
    code, _, err = run(capsys, "verify", "--no-such-option")
    assert code == 16 and "error:" in err


def test_missing_baseline_exits_19(host, capsys, tmp_path):
    """verify with no database: exit 19 and says to run init."""
    _, args = host
    code, _, err = run(capsys, "verify", *args)
    assert code == 19 and "mail-integrity init" in err and "Traceback" not in err


def test_edited_baseline_row_exits_19(host, capsys, tmp_path):
    """A row edited behind the tool's back is refused: exit 19, nothing silently trusted."""
    _, args = host
    run(capsys, "init", *args)
    db = sqlite3.connect(tmp_path / "b.db")
    (rec,) = db.execute("select record from files where rowid = 1").fetchone()
    db.execute("update files set record = ? where rowid = 1", (rec.replace('"mode":', '"mode":1'),))
    db.commit()
    db.close()
    code, _, err = run(capsys, "verify", *args)
    assert code == 19 and "checksum" in err


def test_broken_profile_exits_17_naming_file_and_key(host, capsys, tmp_path):
    """A profile with an unknown key: exit 17, one line with the file name and the key."""
    _, args = host
    prof = tmp_path / "profiles" / "demo.toml"
    prof.write_text(prof.read_text().replace('role = "binary"', 'role = "binary"\nmoed = "0755"'))
    code, _, err = run(capsys, "init", *args)
    assert code == 17 and "demo.toml" in err and "moed" in err
    assert err.count("\n") == 1


def test_bad_root_is_usage_error(capsys, tmp_path):
    """--root pointing at nothing: a clear error, non-zero exit, no traceback."""
    code, _, err = run(capsys, "audit", "--root", str(tmp_path / "nope"), "--profile", "common",
                       "--config", str(tmp_path / "x.toml"))
    assert code >= 16 and "Traceback" not in err


def test_audit_reports_and_exits_8_on_high(host, capsys):
    """audit needs no baseline; a world-readable secret makes it exit 8."""
    root, args = host
    assert run(capsys, "audit", *args)[0] == 0
    os.chmod(root / "etc/mail/authinfo", 0o644)
    code, out, _ = run(capsys, "audit", *args, "--format", "json")
    assert code == 8
    doc = json.loads(out)
    assert any(f["path"] == "/etc/mail/authinfo" and f["severity"] == "high"
               for f in doc["findings"])


def test_secret_content_never_printed(host, capsys):
    """A changed secret is reported without its content, in text and JSON."""
    root, args = host
    run(capsys, "init", *args)
    (root / "etc/mail/authinfo").write_text('AuthInfo:x "P:hunter2-new"\n')
    for fmt in ("text", "json"):
        _, out, err = run(capsys, "verify", *args, "--format", fmt)
        assert "hunter2" not in out + err and "demo-secret" not in out + err
        assert "authinfo" in out


def test_non_utf8_file_name_is_reported(host, capsys):
    """A new file with a non-UTF-8 name is reported (escaped), not skipped or crashed on."""
    root, args = host
    run(capsys, "init", *args)
    with open(os.path.join(os.fsencode(root), b"etc/mail/\xff\xfe.cf"), "w") as fh:
        fh.write("x")
    code, out, _ = run(capsys, "verify", *args)
    assert code & 1 and "MI-FILE-ADDED" in out


def test_demo_runs_and_shows_criticals(capsys):
    """`demo` builds, tampers and verifies a sandbox, showing critical findings."""
    code, out, _ = run(capsys, "demo")
    assert code == 0
    assert "CRITICAL" in out and "MI-SETID-ADDED" in out


def test_compare_two_hosts_reports_exactly_the_drift(tmp_path, capsys):
    """Two hosts of one role differing in one mode and one option: exactly those two."""
    dbs = []
    for name in ("mx1", "mx2"):
        base = tmp_path / name
        base.mkdir()
        root, profiles = build_sandbox(base)
        if name == "mx2":
            os.chmod(root / "etc/mail/aliases", 0o664)
            cf = root / "etc/mail/sendmail.cf"
            os.chmod(cf, 0o644)
            cf.write_text(cf.read_text().replace("DefaultUser=mail:mail", "DefaultUser=root"))
            os.chmod(cf, 0o444)
        (base / "none.toml").write_text("")
        args = ["--root", str(root), "--db", str(base / "b.db"), "--profile", "demo",
                "--profile-dir", str(profiles), "--config", str(base / "none.toml")]
        assert run(capsys, "init", *args)[0] == 0
        dbs.append(str(base / "b.db"))
    code, out, _ = run(capsys, "compare", *dbs, "--profile-dir", str(tmp_path / "mx1/profiles"),
                       "--format", "json")
    doc = json.loads(out)
    paths = {f["path"] for f in doc["findings"]}
    assert paths == {"/etc/mail/aliases", "/etc/mail/sendmail.cf"}
    assert doc["summary"]["changed"] == 2 and doc["summary"]["added"] == 0
    assert any(f["attribute"] == "mode" for f in doc["findings"])
    assert any("DefaultUser" in f["attribute"] for f in doc["findings"])
    assert code & 8


def test_enforce_restores_mode_and_owner_but_not_content(host, capsys):
    """verify --enforce puts the baseline mode back and reports it; content stays as is."""
    root, args = host
    run(capsys, "init", *args)
    aliases = root / "etc/mail/aliases"
    os.chmod(aliases, 0o666)
    with aliases.open("a") as fh:
        fh.write("extra: root\n")
    _, out, _ = run(capsys, "verify", *args, "--enforce", "--format", "json")
    doc = json.loads(out)
    assert any(f["rule"] == "MI-ENFORCED" and f["path"] == "/etc/mail/aliases"
               for f in doc["findings"])
    assert (aliases.stat().st_mode & 0o7777) == 0o644
    assert "extra: root" in aliases.read_text()
    _, out, _ = run(capsys, "verify", *args, "--format", "json")
    assert all(f["attribute"] != "mode" for f in json.loads(out)["findings"])


@pytest.mark.skipif(not shutil.which("setfacl"), reason="acl package not installed")
def test_queue_file_exposed_by_acl_is_reported(host, capsys):
    """A queue file with mode 0600 but an ACL granting a user read access is exposed."""
    root, args = host
    run(capsys, "init", *args)
    qf = root / "var/spool/mqueue/qfA1B2C3"
    subprocess.run(["setfacl", "-m", "u:nobody:r", str(qf)], check=True)
    code, out, _ = run(capsys, "verify", *args, "--format", "json")
    found = [f for f in json.loads(out)["findings"] if f["path"] == "/var/spool/mqueue/qfA1B2C3"]
    assert {(f["rule"], f["attribute"]) for f in found} >= {("MI-QUEUE-FILE-EXPOSED", "acl")}
    assert code & 8


def test_export_then_compare_json_baselines(host, capsys, tmp_path):
    """An exported JSON baseline compares like the database; an edited export is refused."""
    root, args = host
    run(capsys, "init", *args)
    code, out, _ = run(capsys, "export", *args)
    assert code == 0
    (tmp_path / "a.json").write_text(out)
    os.chmod(root / "etc/mail/aliases", 0o600)
    run(capsys, "update", *args, "--all", "--reason", "tighten")
    _, out, _ = run(capsys, "export", *args)
    (tmp_path / "b.json").write_text(out)
    code, out, _ = run(capsys, "compare", str(tmp_path / "a.json"), str(tmp_path / "b.json"),
                       "--profile-dir", str(tmp_path / "profiles"), "--format", "json")
    doc = json.loads(out)
    assert [f["path"] for f in doc["findings"]] == ["/etc/mail/aliases"]
    edited = (tmp_path / "b.json").read_text().replace('\\"mode\\":384', '\\"mode\\":420')
    assert edited != (tmp_path / "b.json").read_text()
    (tmp_path / "c.json").write_text(edited)
    code, _, err = run(capsys, "compare", str(tmp_path / "a.json"), str(tmp_path / "c.json"),
                       "--profile-dir", str(tmp_path / "profiles"))
    assert code == 19 and "checksum" in err


def test_streamed_verify_merges_odd_names_in_byte_order(host, capsys):
    """Names that sort differently as text and as bytes still pair with their baseline rows."""
    root, args = host
    mail = os.path.join(os.fsencode(root), b"etc/mail")
    names = [b"a-b.cf", b"a.cf", b"a/", b"\xff.cf", b"\xc3\xa9.cf", b"Z.cf", b"a_b.cf"]
    for name in names:
        if name.endswith(b"/"):
            os.mkdir(os.path.join(mail, name))
            with open(os.path.join(mail, name, b"x.cf"), "w") as fh:
                fh.write("x")
        else:
            with open(os.path.join(mail, name), "w") as fh:
                fh.write("x")
    run(capsys, "init", *args)
    code, out, _ = run(capsys, "verify", *args, "--format", "json")
    assert code == 0, out
    with open(os.path.join(mail, b"\xff.cf"), "a") as fh:
        fh.write("y")
    code, out, _ = run(capsys, "verify", *args, "--format", "json")
    doc = json.loads(out)
    assert doc["summary"] == {**doc["summary"], "added": 0, "removed": 0, "changed": 1}
    assert {f["path"] for f in doc["findings"]} == {os.fsdecode(b"/etc/mail/\xff.cf")}


def test_entries_inside_an_ignored_subdirectory_are_not_monitored(tmp_path, capsys):
    """`ignore` on a recursive directory covers everything below an ignored name."""
    root = tmp_path / "root"
    (root / "etc/app/cache").mkdir(parents=True)
    (root / "etc/app/app.conf").write_text("x\n")
    (root / "etc/app/cache/blob").write_text("1\n")
    prof = tmp_path / "profiles"
    prof.mkdir()
    (prof / "app.toml").write_text(
        '[profile]\nname = "app"\n\n[[file]]\npath = "/etc/app"\nrole = "directory"\n'
        'recursive = true\nignore = ["cache"]\n'
    )
    (tmp_path / "none.toml").write_text("")
    args = ["--root", str(root), "--db", str(tmp_path / "b.db"), "--profile", "app",
            "--profile-dir", str(prof), "--config", str(tmp_path / "none.toml")]
    run(capsys, "init", *args)
    (root / "etc/app/cache/blob").write_text("2\n")
    (root / "etc/app/cache/new").write_text("3\n")
    (root / "etc/app/app.conf").write_text("y\n")
    _, out, _ = run(capsys, "verify", *args, "--format", "json")
    assert {f["path"] for f in json.loads(out)["findings"]} == {"/etc/app/app.conf"}
