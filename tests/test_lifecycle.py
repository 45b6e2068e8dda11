"""Standing findings, acknowledgements, waivers, the tool's own state, init over a baseline.

Real files in the demo sandbox (real modes), the real CLI in-process (``main``).
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from integrity.cli import main
from integrity.demo import build_sandbox
from tests.sandbox import cli_host

DECODER = 'decode: "|/usr/bin/uudecode"\n'


def _with_decoder(root: Path) -> Path:
    """Append the decoder alias (a program run by mail) to the sandbox's aliases."""
    aliases = root / "etc/mail/aliases"
    with aliases.open("a") as fh:
        fh.write(DECODER)
    return aliases


@pytest.fixture
def host(tmp_path: Path) -> tuple[Path, list[str], Path]:
    """The demo sandbox, common arguments, and the config file they name."""
    return cli_host(tmp_path)


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def verify_json(capsys: pytest.CaptureFixture[str], args: list[str]) -> tuple[int, dict]:
    code, out, _ = run(capsys, "verify", *args, "--format", "json")
    return code, json.loads(out)


def rules(doc: dict, key: str = "findings") -> set[tuple[str, str]]:
    return {(f["path"], f["rule"]) for f in doc[key]}


# -- standing findings (item 3) -------------------------------------------------------------


def test_condition_present_at_init_keeps_exit_bit_8_until_acknowledged(host, capsys):
    """A decoder alias at init: every verify reports it (8); after --accept, 0 and listed."""
    root, args, _ = host
    _with_decoder(root)
    code, out, _ = run(capsys, "init", *args)
    assert code == 0
    assert "NOT accepted into the baseline" in out and "update --accept PATH" in out
    assert "/etc/mail/aliases" in out.split("NOT accepted", 1)[1]
    for _ in range(2):
        code, doc = verify_json(capsys, args)
        assert code == 8 and ("/etc/mail/aliases", "MI-ALIAS-DECODE") in rules(doc)
    code, out, _ = run(capsys, "update", *args, "--accept", "/etc/mail/aliases",
                       "--reason", "legacy decoder, ticket 42")
    assert code == 0
    code, doc = verify_json(capsys, args)
    assert code == 0 and doc["findings"] == []
    assert doc["summary"]["acknowledged"] == 1
    (ack,) = doc["acknowledged"]
    assert ack["rule"] == "MI-ALIAS-DECODE" and ack["acknowledged"]["reason"] == (
        "legacy decoder, ticket 42")
    assert ack["acknowledged"]["by"] and ack["acknowledged"]["at"]
    code, out, _ = run(capsys, "verify", *args)
    assert code == 0 and "ACKNOWLEDGED (1)" in out and "legacy decoder, ticket 42" in out
    code, out, _ = run(capsys, "history", *args)
    assert "acknowledged critical [MI-ALIAS-DECODE]" in out


def test_new_risk_on_an_acknowledged_file_is_reported_again(host, capsys):
    """After acknowledging one decoder alias, a second one (and a changed target) alert."""
    root, args, _ = host
    aliases = _with_decoder(root)
    run(capsys, "init", *args)
    run(capsys, "update", *args, "--accept", "/etc/mail/aliases", "--reason", "known")
    with aliases.open("a") as fh:
        fh.write('decode2: "|/usr/bin/uudecode"\n')
    code, doc = verify_json(capsys, args)
    assert code & 8
    assert any(f["attribute"] == "alias:decode2" for f in doc["findings"])
    assert [a["attribute"] for a in doc["acknowledged"]] == ["alias:decode"]
    text = aliases.read_text()
    aliases.write_text(text.replace('"|/usr/bin/uudecode"\ndecode2', '"|/bin/sh"\nx'))
    code, doc = verify_json(capsys, args)
    assert code & 8 and any(f["attribute"] == "alias:decode" for f in doc["findings"])
    assert doc["acknowledged"] == []


def test_condition_fixed_is_resolved_and_returning_alerts_again(host, capsys):
    """Standing finding gone -> resolved in history; back (file as baselined) -> reported."""
    root, args, _ = host
    aliases = _with_decoder(root)
    run(capsys, "init", *args)
    text = aliases.read_text()
    aliases.write_text(text.replace(DECODER, ""))
    code, doc = verify_json(capsys, args)
    assert ("/etc/mail/aliases", "MI-ALIAS-DECODE") not in rules(doc)
    code, out, _ = run(capsys, "history", *args, "--format", "json")
    rows = [f for f in json.loads(out)["findings"] if f["rule"] == "MI-ALIAS-DECODE"]
    assert [r["status"] for r in rows] == ["resolved"]
    aliases.write_text(text)  # exactly the baselined content again (a new mtime: +4)
    code, doc = verify_json(capsys, args)
    assert code & 8 and ("/etc/mail/aliases", "MI-ALIAS-DECODE") in rules(doc)


def test_queue_entry_condition_has_the_same_semantics(host, capsys):
    """A world-readable queue file: reported each verify until acknowledged; new value alerts."""
    root, args, _ = host
    qf = root / "var/spool/mqueue/qfA1B2C3"
    os.chmod(qf, 0o644)
    run(capsys, "init", *args)
    for _ in range(2):
        code, doc = verify_json(capsys, args)
        assert code == 8 and any(f["path"] == "/var/spool/mqueue/qfA1B2C3" for f in doc["findings"])
    code, _, err = run(capsys, "update", *args, "--accept", "/var/spool/mqueue/qfA1B2C3",
                       "--reason", "held for the legal team")
    assert code == 0, err
    code, doc = verify_json(capsys, args)
    assert code == 0 and [a["path"] for a in doc["acknowledged"]] == ["/var/spool/mqueue/qfA1B2C3"]
    os.chmod(qf, 0o666)  # a new risk: now writable by everyone too
    code, doc = verify_json(capsys, args)
    assert code == 8


def test_init_lists_standing_findings_in_json(host, capsys):
    """init --format json: one JSON document whose header names the standing findings."""
    root, args, _ = host
    os.chmod(root / "etc/mail/authinfo", 0o644)
    code, out, _ = run(capsys, "init", *args, "--format", "json")
    doc = json.loads(out)
    assert code == 0
    want = {"path": "/etc/mail/authinfo", "rule": "MI-EXPECT-SECRET-READABLE", "severity": "high"}
    assert want in doc["header"]["standing"]


def test_lower_findings_at_init_are_accepted(host, capsys):
    """A medium/low condition at init is not standing: the next verify is clean."""
    root, args, _ = host
    os.chmod(root / "etc/mail/aliases", 0o640)  # tighter than expected: low at most
    run(capsys, "init", *args)
    code, doc = verify_json(capsys, args)
    assert code == 0 and doc["findings"] == []


# -- waivers ----------------------------------------------------------------------------------


def test_waiver_in_config_quiets_a_matching_finding(host, capsys):
    """[[waiver]] rule + path glob: listed as acknowledged by the waiver, exit 0."""
    root, args, config = host
    os.chmod(root / "var/spool/mqueue/qfA1B2C3", 0o644)
    config.write_text('[[waiver]]\nrule = "MI-QUEUE-*"\npath = "/var/spool/mqueue/*"\n'
                      'reason = "archive queue, readable by design"\n')
    run(capsys, "init", *args)
    code, doc = verify_json(capsys, args)
    assert code == 0 and doc["findings"] == []
    (ack,) = doc["acknowledged"]
    assert ack["acknowledged"] == {"by": "waiver", "at": None,
                                   "reason": "archive queue, readable by design"}


@pytest.mark.parametrize("body, word", [
    ('[[waiver]]\nrule = "MI-X"\npath = "/x"\n', "reason"),
    ('[[waiver]]\nrule = "MI-X"\npath = "/x"\nreason = "r"\ncolour = 1\n', "colour"),
    ('[[waiver]]\nrule = "X"\npath = "/x"\nreason = "r"\n', "rule"),
    ('[[waiver]]\nrule = "MI-X"\npath = "x"\nreason = "r"\n', "path"),
    ('waiver = 3\n', "waiver"),
])
def test_bad_waiver_is_a_config_error_naming_file_and_key(host, capsys, body, word):
    """A malformed [[waiver]]: exit 17, one line naming the file and the key."""
    _, args, config = host
    config.write_text(body)
    code, _, err = run(capsys, "verify", *args)
    assert code == 17 and str(config) in err and word in err and err.count("\n") == 1


# -- init over a baseline (item 4) ------------------------------------------------------------


def test_init_over_a_baseline_refuses_without_force(host, capsys):
    """A second init exits 16 naming the generation; --force replaces it (generation 2)."""
    _, args, _ = host
    assert run(capsys, "init", *args, "-q")[0] == 0
    code, out, err = run(capsys, "init", *args, "--format", "json")
    assert code == 16 and out == "" and "generation 1" in err and "--force" in err
    code, out, _ = run(capsys, "init", *args, "--force", "--format", "json")
    assert code == 0 and json.loads(out)["header"]["generation"] == 2


# -- the tool's own state (item 2) ------------------------------------------------------------


@pytest.fixture
def inside(tmp_path: Path) -> tuple[Path, list[str]]:
    """The sandbox with the database inside the monitored root, as on a real host."""
    root, profiles = build_sandbox(tmp_path)
    profile = profiles / "demo.toml"
    profile.write_text(profile.read_text() + '\n[[file]]\npath = "/var/lib/mail-integrity"\n'
                       'role = "directory"\noptional = true\n')
    config = tmp_path / "config.toml"
    config.write_text("")
    db = root / "var/lib/mail-integrity/baseline.db"
    return root, ["--root", str(root), "--db", str(db), "--profile", "demo",
                  "--profile-dir", str(profiles), "--config", str(config)]


def test_first_run_is_quiet_about_the_tools_own_state(inside, capsys):
    """init creates the state dir, db, WAL and ledger: verify says nothing about them."""
    root, args = inside
    assert run(capsys, "init", *args, "-q")[0] == 0
    state = root / "var/lib/mail-integrity"
    assert (state / "baseline.db").exists()
    for _ in range(2):
        code, doc = verify_json(capsys, args)
        assert code == 0 and doc["findings"] == [], doc["findings"]


def test_systemd_state_directory_changes_are_normal(inside, capsys):
    """StateDirectoryMode (0755 -> 0700) and a chown to the service user: no finding."""
    root, args = inside
    state = root / "var/lib/mail-integrity"
    state.mkdir(parents=True)
    os.chmod(state, 0o755)
    run(capsys, "init", *args, "-q")
    os.chmod(state, 0o700)
    code, doc = verify_json(capsys, args)
    assert code == 0 and doc["findings"] == []


@pytest.mark.parametrize("tamper, rule", [
    (lambda s: os.chmod(s, 0o777), "MI-SELF-STATE-WRITABLE"),
    (lambda s: (shutil.copy("/bin/true", s / "helper"), os.chmod(s / "helper", 0o755)),
     "MI-SELF-STATE-PLANTED"),
    (lambda s: os.mkfifo(s / "pipe"), "MI-SELF-STATE-PLANTED"),
    (lambda s: ((s / "outbox.db").write_bytes(b""), os.chmod(s / "outbox.db", 0o666)),
     "MI-SELF-STATE-WRITABLE"),  # (a loose database mode is repaired when it is opened)
    (lambda s: os.chmod(s / "baseline.db", 0o4700), "MI-SELF-STATE-EXECUTABLE"),
])
def test_tampering_with_the_state_is_critical(inside, capsys, tamper, rule):
    """World-writable state dir or db, a planted executable or FIFO: critical, exit 8."""
    root, args = inside
    run(capsys, "init", *args, "-q")
    state = root / "var/lib/mail-integrity"
    tamper(state)
    code, doc = verify_json(capsys, args)
    assert code & 8
    assert any(f["rule"] == rule and f["severity"] == "critical" for f in doc["findings"])


@pytest.mark.root
@pytest.mark.skipif(os.geteuid() != 0, reason="chown to another user needs root")
def test_database_owned_by_someone_else_is_critical(inside, capsys):
    """The db replaced by a file owned by nobody: MI-SELF-STATE-OWNER, critical."""
    root, args = inside
    run(capsys, "init", *args, "-q")
    os.chown(root / "var/lib/mail-integrity/baseline.db", 65534, 65534)
    code, doc = verify_json(capsys, args)
    assert code & 8
    assert ("/var/lib/mail-integrity/baseline.db", "MI-SELF-STATE-OWNER") in rules(doc)


def test_database_symlinked_away_is_critical(inside, capsys, tmp_path):
    """The db replaced by a symlink: MI-SELF-STATE-TYPE."""
    root, args = inside
    run(capsys, "init", *args, "-q")
    db = root / "var/lib/mail-integrity/baseline.db"
    os.rename(db, tmp_path / "real.db")
    os.symlink(tmp_path / "real.db", db)
    code, doc = verify_json(capsys, args)
    assert code & 8
    assert ("/var/lib/mail-integrity/baseline.db", "MI-SELF-STATE-TYPE") in rules(doc)


def test_outbox_and_ledger_live_next_to_the_database(host, capsys, tmp_path):
    """With --db elsewhere, the ledger (and outbox) are created beside it, not in /var/lib."""
    from integrity import signing

    _, args, config = host
    signing.keygen(str(tmp_path / "k.key"), str(tmp_path / "k.pub"), b"pw-for-the-test")
    (tmp_path / "pass").write_text("pw-for-the-test\n")
    config.write_text(f'public_key = "{tmp_path}/k.pub"\n')
    assert run(capsys, "init", *args, "--sign-key", str(tmp_path / "k.key"),
               "--passphrase-file", str(tmp_path / "pass"), "-q")[0] == 0
    assert run(capsys, "verify", *args, "-q")[0] == 0
    assert (tmp_path / "generations.json").exists()
    from integrity.cli import build

    opts, cfg = build({"db": str(tmp_path / "b.db"), "config_path": str(config)})
    assert cfg.syslog.outbox == str(tmp_path / "outbox.db") == opts.outbox


def test_update_all_acknowledges_standing_findings_too(host, capsys):
    """update --all --reason accepts every difference and acknowledges what stands."""
    root, args, _ = host
    os.chmod(root / "etc/mail/authinfo", 0o644)
    run(capsys, "init", *args, "-q")
    os.chmod(root / "etc/mail/aliases", 0o640)
    assert run(capsys, "verify", *args, "-q")[0] == 12
    assert run(capsys, "update", *args, "--all", "--reason", "audit sign-off")[0] == 0
    code, doc = verify_json(capsys, args)
    assert code == 0 and [a["path"] for a in doc["acknowledged"]] == ["/etc/mail/authinfo"]


def test_unknown_path_with_no_finding_is_still_refused(host, capsys):
    """update --accept of a path that is neither monitored nor has a finding: exit 16."""
    _, args, _ = host
    run(capsys, "init", *args, "-q")
    code, _, err = run(capsys, "update", *args, "--accept", "/nowhere", "--reason", "x")
    assert code == 16 and "/nowhere" in err


def test_database_in_a_shared_parent_directory_is_not_judged_as_ours(tmp_path, capsys):
    """--db in /var (an ancestor of mail files): /var stays a checked parent, its other
    entries are none of our business, and runs leave no finding."""
    root, profiles = build_sandbox(tmp_path)
    config = tmp_path / "c.toml"
    config.write_text("")
    args = ["--root", str(root), "--db", str(root / "var/b.db"), "--profile", "demo",
            "--profile-dir", str(profiles), "--config", str(config)]
    run(capsys, "init", *args, "-q")
    shutil.copy("/bin/true", root / "var/tool")
    os.chmod(root / "var/tool", 0o755)
    for _ in range(2):
        code, doc = verify_json(capsys, args)
        assert code == 0 and doc["findings"] == [], doc["findings"]
    os.chmod(root / "var", 0o777)  # still judged as a parent of the mail files
    code, doc = verify_json(capsys, args)
    assert code & 8 and any(f["path"] == "/var" for f in doc["findings"])


def test_baseline_from_before_standing_findings_gets_them_on_first_verify(host, capsys, tmp_path):
    """A 0.1 baseline (no standing table rows, no marker): the first verify finds what
    stands now and keeps reporting it."""
    import sqlite3

    root, args, _ = host
    _with_decoder(root)
    run(capsys, "init", *args, "-q")
    db = sqlite3.connect(tmp_path / "b.db")
    db.execute("delete from standing")
    db.execute("delete from meta where key = 'standing'")
    db.execute("update findings set status = 'resolved'")
    db.commit()
    db.close()
    for _ in range(2):
        code, doc = verify_json(capsys, args)
        assert code == 8 and ("/etc/mail/aliases", "MI-ALIAS-DECODE") in rules(doc)


def test_risk_removed_then_accepted_alerts_when_it_returns(host, capsys):
    """Acknowledge a decoder alias, accept its removal, add it back: reported again."""
    root, args, _ = host
    aliases = _with_decoder(root)
    run(capsys, "init", *args, "-q")
    run(capsys, "update", *args, "--accept", "/etc/mail/aliases", "--reason", "known")
    text = aliases.read_text()
    aliases.write_text(text.replace(DECODER, ""))
    run(capsys, "update", *args, "--accept", "/etc/mail/aliases", "--reason", "decoder gone")
    assert verify_json(capsys, args)[0] == 0
    aliases.write_text(text)
    code, doc = verify_json(capsys, args)
    assert code & 8 and ("/etc/mail/aliases", "MI-ALIAS-DECODE") in rules(doc)
    assert doc["acknowledged"] == []


def test_reinit_keeps_only_acknowledgements_of_conditions_still_there(host, capsys):
    """init --force after the acknowledged risk was removed: when it returns, it alerts."""
    root, args, _ = host
    aliases = _with_decoder(root)
    run(capsys, "init", *args, "-q")
    run(capsys, "update", *args, "--accept", "/etc/mail/aliases", "--reason", "known")
    run(capsys, "init", *args, "--force", "-q")  # still there: still acknowledged
    code, doc = verify_json(capsys, args)
    assert code == 0 and len(doc["acknowledged"]) == 1
    text = aliases.read_text()
    aliases.write_text(text.replace(DECODER, ""))
    run(capsys, "init", *args, "--force", "-q")
    aliases.write_text(text)
    code, doc = verify_json(capsys, args)
    assert code & 8 and doc["acknowledged"] == []
