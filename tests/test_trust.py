"""Signed baselines end to end through the CLI, and package-aware triage on a real .deb."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest

from integrity import api
from integrity.cli import main
from integrity.demo import build_sandbox


@pytest.fixture
def signed(tmp_path: Path, capsys):
    """A demo host with a baseline signed by a fresh key; returns (root, args, key args)."""
    root, profiles = build_sandbox(tmp_path)
    (tmp_path / "pass").write_text("correct horse battery staple\n")
    (tmp_path / "config.toml").write_text(f'ledger = "{tmp_path}/generations.json"\n')
    key = ["--sign-key", str(tmp_path / "k.key"), "--passphrase-file", str(tmp_path / "pass")]
    assert main(["keygen", "--private", str(tmp_path / "k.key"), "--public",
                 str(tmp_path / "k.pub"), "--passphrase-file", str(tmp_path / "pass")]) == 0
    args = ["--root", str(root), "--db", str(tmp_path / "b.db"), "--profile", "demo",
            "--profile-dir", str(profiles), "--config", str(tmp_path / "config.toml"),
            "--public-key", str(tmp_path / "k.pub")]
    assert main(["init", *args, *key, "-q"]) == 0
    capsys.readouterr()
    return root, args, key, tmp_path


def verify(args: list[str], capsys) -> tuple[int, str]:
    code = main(["verify", *args, "-q"])
    return code, capsys.readouterr().err


def test_signed_baseline_verifies_clean(signed, capsys):
    """A signed, untouched baseline verifies with exit 0 and says it is signed."""
    _, args, _, _ = signed
    assert verify(args, capsys)[0] == 0
    assert main(["verify", *args]) == 0
    assert "(signed)" in capsys.readouterr().out


@pytest.mark.parametrize("sql", [
    "update files set record = replace(record, '\"mode\":', '\"mode\":1') where rowid = 1",
    "delete from files where rowid = 2",
    "update meta set value = 'AAAA' || substr(value, 5) where key = 'signature'",
    "update meta set value = 'other-host' where key = 'host'",
])
def test_tampered_signed_baseline_exits_20(signed, capsys, sql):
    """Any edit of rows, signature or signed metadata: exit 20, even with the checksum fixed."""
    _, args, _, tmp = signed
    db = sqlite3.connect(tmp / "b.db")
    db.execute(sql)
    db.commit()
    db.close()
    from integrity.store import Store

    store = Store.open(str(tmp / "b.db"))  # an attacker recomputes the plain checksum too
    store.set_meta("rows_digest", store.current_digest())
    store.close()
    code, err = verify(args, capsys)
    assert code == 20 and err.startswith("error: ") and "signature" in err


def test_rollback_to_older_signed_generation_exits_20(signed, capsys):
    """An old, validly signed database put back after an update is refused as a rollback."""
    root, args, key, tmp = signed
    shutil.copy(tmp / "b.db", tmp / "old.db")
    os.chmod(root / "etc/mail/aliases", 0o640)
    assert main(["update", *args, *key, "--accept", "/etc/mail/aliases", "--reason", "x"]) == 0
    assert verify(args, capsys)[0] == 0  # the ledger now holds generation 2
    shutil.copy(tmp / "old.db", tmp / "b.db")
    for suffix in ("-wal", "-shm"):
        Path(f"{tmp}/b.db{suffix}").unlink(missing_ok=True)
    code, err = verify(args, capsys)
    assert code == 20 and "rollback" in err


def test_unsigned_baseline_refused_when_a_key_is_configured(tmp_path, signed, capsys):
    """With public_key set, a baseline without signature is refused (exit 20)."""
    _, args, _, tmp = signed
    db = sqlite3.connect(tmp / "b.db")
    db.execute("delete from meta where key = 'signature'")
    db.commit()
    db.close()
    code, err = verify(args, capsys)
    assert code == 20 and "not signed" in err


def test_update_of_signed_baseline_needs_the_key(signed, capsys):
    """Accepting changes into a signed baseline without the key is refused (exit 16)."""
    root, args, _, _ = signed
    os.chmod(root / "etc/mail/aliases", 0o640)
    code = main(["update", *args, "--accept", "/etc/mail/aliases", "--reason", "x"])
    assert code == 16 and "signing key" in capsys.readouterr().err


def test_wrong_passphrase_is_a_config_error(signed, capsys):
    """A wrong passphrase: exit 17, and the passphrase is not echoed."""
    _, args, _, tmp = signed
    (tmp / "bad").write_text("wrong-passphrase-xyz\n")
    code = main(["init", *args, "--force", "--sign-key", str(tmp / "k.key"),
                 "--passphrase-file", str(tmp / "bad")])
    err = capsys.readouterr().err
    assert code == 17 and "wrong-passphrase-xyz" not in err


# -- package-aware triage on a real Debian package --------------------------------------

pytestmark_root = pytest.mark.skipif(os.geteuid() != 0, reason="real package tree needs root")


@pytest.mark.slow
@pytestmark_root
def test_package_bytes_are_triaged_and_hand_written_bytes_escalated(tmp_path):
    """Binary back to its package's bytes: info; other bytes: critical, 'differs from package'."""
    from tests import mtatrees

    mtatrees.ensure_accounts()
    root = mtatrees.build_tree("sendmail", tmp_path / "root")
    mtatrees.write_dpkg_db("sendmail", root)
    binary = root / "usr/libexec/sendmail/mail.local"
    package_bytes = binary.read_bytes()
    binary.write_bytes(package_bytes + b"\0older build")  # the baseline holds other bytes
    opts = api.Options(root=str(root), db=str(tmp_path / "b.db"))
    api.init(opts)
    binary.write_bytes(package_bytes)  # "upgrade" to the package's own content
    rep = api.verify(opts, record_run=False)
    mine = [f for f in rep.findings if f.path == "/usr/libexec/sendmail/mail.local"]
    assert [(f.rule, str(f.severity)) for f in mine] == [("MI-PACKAGE-UPGRADE", "info")]
    assert "sendmail-bin" in mine[0].message
    binary.write_bytes(b"\x7fELF trojan")
    rep = api.verify(opts, record_run=False)
    mine = [f for f in rep.findings if f.path == "/usr/libexec/sendmail/mail.local"]
    assert [str(f.severity) for f in mine] == ["critical"]
    assert "differs from package sendmail-bin" in mine[0].message


def test_offline_signing_flow(signed, capsys):
    """update --defer-signature, payload, sign elsewhere, import-signature: verified again."""
    root, args, key, tmp = signed
    os.chmod(root / "etc/mail/aliases", 0o640)
    assert main(["update", *args, "--accept", "/etc/mail/aliases", "--reason", "x",
                 "--defer-signature"]) == 0
    assert verify(args, capsys)[0] == 20  # unsigned until the signature comes back
    assert main(["payload", *args]) == 0
    (tmp / "p.bin").write_bytes(capsys.readouterr().out.encode())
    assert main(["sign", *key, str(tmp / "p.bin")]) == 0
    (tmp / "p.sig").write_text(capsys.readouterr().out)
    assert main(["import-signature", *args, str(tmp / "p.sig")]) == 0
    capsys.readouterr()
    assert verify(args, capsys)[0] == 0
    sig = (tmp / "p.sig").read_text()
    (tmp / "bad.sig").write_text(("B" if sig[0] != "B" else "C") + sig[1:])
    assert main(["import-signature", *args, str(tmp / "bad.sig")]) == 20
