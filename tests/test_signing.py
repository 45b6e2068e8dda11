"""Signed baselines: Ed25519 keys, canonical payload, signature checks, rollback ledger."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from hypothesis import given
from hypothesis import strategies as st

from integrity import signing
from integrity.errors import BaselineTamperedError, ConfigError, StoreError

PASS = b"correct horse battery staple"

FIELDS: dict[str, Any] = {
    "rows_digest": "blake3:" + "ab" * 32,
    "host": "mx1.example.org",
    "generation": 7,
    "signed_at": "2026-11-27T10:00:00+00:00",
    "root": "/",
    "profiles": ["common", "postfix"],
}


@dataclass(frozen=True)
class KeyPair:
    private: str
    public: str
    fingerprint: str


def _keypair(directory: Path, name: str = "key") -> KeyPair:
    priv, pub = str(directory / name), str(directory / f"{name}.pub")
    return KeyPair(priv, pub, signing.keygen(priv, pub, PASS))


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _keypair(tmp_path_factory.mktemp("keys"))


@pytest.fixture(scope="module")
def other_keys(tmp_path_factory: pytest.TempPathFactory) -> KeyPair:
    return _keypair(tmp_path_factory.mktemp("other"))


@pytest.fixture(params=[0o000, 0o077], ids=["umask000", "umask077"])
def umask(request: pytest.FixtureRequest) -> Iterator[None]:
    """A permissive and a strict umask: the modes tested are the ones the code sets."""
    old = os.umask(request.param)
    yield
    os.umask(old)


# --------------------------------------------------------------------------- keygen


def test_keygen_modes_and_formats(tmp_path: Path, umask: None) -> None:
    """keygen writes an encrypted PKCS#8 private key 0600 and an OpenSSH public line 0644."""
    pair = _keypair(tmp_path)
    assert stat.S_IMODE(os.stat(pair.private).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(pair.public).st_mode) == 0o644
    pem = Path(pair.private).read_text()
    assert pem.startswith("-----BEGIN ENCRYPTED PRIVATE KEY-----")
    line = Path(pair.public).read_text()
    assert re.fullmatch(r"ssh-ed25519 AAAA[A-Za-z0-9+/]+=* mail-integrity\n", line)
    assert re.fullmatch(r"SHA256:[A-Za-z0-9+/]{43}", pair.fingerprint)


@pytest.mark.parametrize("existing", ["key", "key.pub"])
def test_keygen_refuses_to_overwrite(tmp_path: Path, existing: str) -> None:
    """keygen refuses when either target exists and leaves that file untouched."""
    (tmp_path / existing).write_bytes(b"precious\n")
    with pytest.raises(ConfigError, match="already exists") as err:
        _keypair(tmp_path)
    assert err.value.exit_code == 17
    assert (tmp_path / existing).read_bytes() == b"precious\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == [existing]


def test_keygen_refuses_a_dangling_symlink(tmp_path: Path) -> None:
    """A symlink planted at the key path is not followed to create a file elsewhere."""
    (tmp_path / "key").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(ConfigError, match="already exists"):
        _keypair(tmp_path)
    assert not (tmp_path / "elsewhere").exists()


def test_keygen_refuses_empty_passphrase(tmp_path: Path) -> None:
    """An unencrypted private key is never written."""
    with pytest.raises(ConfigError, match="empty passphrase"):
        signing.keygen(str(tmp_path / "k"), str(tmp_path / "k.pub"), b"")
    assert list(tmp_path.iterdir()) == []


@pytest.mark.skipif(shutil.which("ssh-keygen") is None, reason="openssh-client not installed")
def test_fingerprint_matches_ssh_keygen(keys: KeyPair) -> None:
    """The fingerprint is the one `ssh-keygen -l` prints for the public key file."""
    out = subprocess.run(
        ["ssh-keygen", "-l", "-f", keys.public], capture_output=True, text=True, check=True
    ).stdout.split()
    assert out[0] == "256"
    assert out[1] == keys.fingerprint
    assert out[-1] == "(ED25519)"


def test_load_public_accepts_pem(keys: KeyPair, tmp_path: Path) -> None:
    """The same key as a PEM SubjectPublicKeyInfo loads and has the same fingerprint."""
    pub = signing.load_public(keys.public)
    pem = tmp_path / "key.pem"
    pem.write_bytes(
        pub.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    assert signing.fingerprint(signing.load_public(str(pem))) == keys.fingerprint


def _ec_public_line() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    return key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)


@pytest.mark.parametrize(
    "content",
    [b"", b"not a key\n", b"ssh-ed25519 AAAA!!!!\n", _ec_public_line() + b" other\n"],
    ids=["empty", "garbage", "bad-base64", "ecdsa"],
)
def test_load_public_rejects_non_ed25519(tmp_path: Path, content: bytes) -> None:
    """Anything but an Ed25519 public key is a config error, not a crash."""
    path = tmp_path / "bad.pub"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match="not an Ed25519 public key"):
        signing.load_public(str(path))


def test_load_public_missing_file(tmp_path: Path) -> None:
    """A missing key file is a config error naming the file."""
    with pytest.raises(ConfigError, match="cannot read the public key"):
        signing.load_public(str(tmp_path / "nope.pub"))


# --------------------------------------------------------------------------- payload


def test_payload_is_canonical_json() -> None:
    """Sorted keys, no spaces, a version and a purpose field."""
    data = signing.payload(**FIELDS)
    doc = json.loads(data)
    assert doc == {**FIELDS, "v": 1, "purpose": "mail-integrity baseline"}
    assert data == json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()
    assert b" " not in data.replace(b"mail-integrity baseline", b"")


@given(
    host=st.text(),
    root=st.text(),
    generation=st.integers(min_value=0, max_value=2**63),
    profiles=st.lists(st.text(max_size=8), max_size=5),
)
def test_payload_deterministic_and_ascii(
    host: str, root: str, generation: int, profiles: list[str]
) -> None:
    """Any host/root text gives ASCII bytes that round-trip; profile order does not matter."""
    kw = {**FIELDS, "host": host, "root": root, "generation": generation}
    data = signing.payload(**{**kw, "profiles": profiles})
    assert data.isascii()
    assert data == signing.payload(**{**kw, "profiles": list(reversed(profiles))})
    doc = json.loads(data)
    assert (doc["host"], doc["root"], doc["generation"]) == (host, root, generation)


@pytest.mark.parametrize("bad", [-1, True, 1.0, "3"])
def test_payload_rejects_bad_generation(bad: object) -> None:
    """Only a non-negative int is a generation."""
    with pytest.raises(ValueError, match="generation"):
        signing.payload(**{**FIELDS, "generation": bad})


# --------------------------------------------------------------------------- sign / check


def test_round_trip(keys: KeyPair) -> None:
    """A payload signed with the private key checks with the public key."""
    data = signing.payload(**FIELDS)
    sig = signing.sign(keys.private, PASS, data)
    assert len(base64.b64decode(sig, validate=True)) == 64
    signing.check(keys.public, data, sig)


TAMPERS = {
    "rows_digest": "blake3:" + "cd" * 32,
    "host": "mx2.example.org",
    "generation": 6,
    "signed_at": "2026-11-27T10:00:01+00:00",
    "root": "/srv/chroot",
    "profiles": ["common"],
}


@pytest.mark.parametrize(("field", "value"), TAMPERS.items(), ids=list(TAMPERS))
def test_tampered_field_is_rejected(keys: KeyPair, field: str, value: object) -> None:
    """Changing any signed field after signing raises the exit-20 error."""
    sig = signing.sign(keys.private, PASS, signing.payload(**FIELDS))
    with pytest.raises(BaselineTamperedError, match="does not verify") as err:
        signing.check(keys.public, signing.payload(**{**FIELDS, field: value}), sig)
    assert err.value.exit_code == 20
    assert "\n" not in err.value.message


def test_signature_from_another_key(keys: KeyPair, other_keys: KeyPair) -> None:
    """A valid signature by a different key does not verify."""
    data = signing.payload(**FIELDS)
    sig = signing.sign(other_keys.private, PASS, data)
    with pytest.raises(BaselineTamperedError, match=re.escape(keys.fingerprint)):
        signing.check(keys.public, data, sig)


def _flip_last_byte(sig: str) -> str:
    raw = bytearray(base64.b64decode(sig))
    raw[-1] ^= 1
    return base64.b64encode(bytes(raw)).decode()


@pytest.mark.parametrize(
    ("mangle", "message"),
    [
        (lambda s: None, "not signed"),
        (lambda s: "", "not signed"),
        (lambda s: "not*base64!", "not valid base64"),
        (lambda s: s[:40], "not valid base64|bytes, not 64"),
        (lambda s: base64.b64encode(base64.b64decode(s)[:63]).decode(), "63 bytes, not 64"),
        (_flip_last_byte, "does not verify"),
    ],
    ids=["none", "empty", "garbage", "truncated-text", "short", "flipped-bit"],
)
def test_bad_signatures(keys: KeyPair, mangle: Any, message: str) -> None:
    """Missing, malformed or altered signatures each raise a one-line exit-20 error."""
    data = signing.payload(**FIELDS)
    sig = mangle(signing.sign(keys.private, PASS, data))
    with pytest.raises(BaselineTamperedError, match=message) as err:
        signing.check(keys.public, data, sig)
    assert err.value.exit_code == 20
    assert "\n" not in err.value.message


def test_pinned_fingerprint(keys: KeyPair, other_keys: KeyPair) -> None:
    """With a pinned fingerprint, a swapped public key is refused even if it verifies."""
    data = signing.payload(**FIELDS)
    signing.check(
        keys.public, data, signing.sign(keys.private, PASS, data), pinned=keys.fingerprint
    )
    forged = signing.sign(other_keys.private, PASS, data)
    with pytest.raises(BaselineTamperedError, match="not the pinned key"):
        signing.check(other_keys.public, data, forged, pinned=keys.fingerprint)


@pytest.mark.parametrize("passphrase", [b"wrong", b""], ids=["wrong", "empty"])
def test_wrong_passphrase(keys: KeyPair, passphrase: bytes) -> None:
    """A wrong or missing passphrase is a config error that does not echo the passphrase."""
    with pytest.raises(ConfigError, match="wrong passphrase or not an Ed25519 key") as err:
        signing.sign(keys.private, passphrase, b"data")
    assert err.value.exit_code == 17
    assert PASS.decode() not in err.value.message


def test_sign_rejects_non_ed25519_private_key(tmp_path: Path) -> None:
    """An EC private key is refused with the same message."""
    path = tmp_path / "ec.pem"
    key = ec.generate_private_key(ec.SECP256R1())
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(PASS),
        )
    )
    with pytest.raises(ConfigError, match="not an Ed25519 key"):
        signing.sign(str(path), PASS, b"data")


# --------------------------------------------------------------------------- ledger

KEY = signing.Ledger.key_for("SHA256:abc", "/var/lib/mail-integrity/baseline.db")


def test_ledger_starts_at_zero(tmp_path: Path) -> None:
    """A missing ledger file means nothing was seen yet; it is not created by reading."""
    ledger = signing.Ledger(str(tmp_path / "gen.json"))
    assert ledger.seen(KEY) == 0
    ledger.check(KEY, 0)
    assert not (tmp_path / "gen.json").exists()


def test_ledger_detects_rollback(tmp_path: Path) -> None:
    """An older generation than one recorded is a rollback; equal and newer pass."""
    ledger = signing.Ledger(str(tmp_path / "gen.json"))
    ledger.record(KEY, 5)
    ledger.check(KEY, 5)
    ledger.check(KEY, 6)
    with pytest.raises(BaselineTamperedError) as err:
        ledger.check(KEY, 4)
    assert err.value.message == (
        "baseline generation 4 is older than generation 5 seen before: rollback"
    )
    assert err.value.exit_code == 20


def test_ledger_never_lowers_and_keys_are_independent(tmp_path: Path) -> None:
    """Recording a lower generation keeps the higher; another key or db has its own count."""
    ledger = signing.Ledger(str(tmp_path / "gen.json"))
    ledger.record(KEY, 9)
    ledger.record(KEY, 3)
    other = signing.Ledger.key_for("SHA256:abc", "/srv/other.db")
    ledger.record(other, 2)
    reopened = signing.Ledger(str(tmp_path / "gen.json"))
    assert (reopened.seen(KEY), reopened.seen(other)) == (9, 2)


def test_ledger_file_is_private_and_atomic(tmp_path: Path, umask: None) -> None:
    """The ledger is JSON, mode 0600, in a 0700 directory, with no temp file left behind."""
    path = tmp_path / "state" / "gen.json"
    ledger = signing.Ledger(str(path))
    for gen in (1, 2, 3):
        ledger.record(KEY, gen)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    assert json.loads(path.read_text()) == {"v": 1, "seen": {KEY: 3}}
    assert sorted(p.name for p in path.parent.iterdir()) == [".gen.json.lock", "gen.json"]


def test_ledger_replaces_rather_than_rewrites(tmp_path: Path) -> None:
    """Each record is a rename of a new file: a reader never sees a half-written ledger."""
    path = tmp_path / "gen.json"
    ledger = signing.Ledger(str(path))
    ledger.record(KEY, 1)
    before = path.stat().st_ino
    ledger.record(KEY, 2)
    assert path.stat().st_ino != before


def test_ledger_concurrent_records_keep_the_maximum(tmp_path: Path) -> None:
    """Writers racing on one ledger never lose the highest generation."""
    ledger = signing.Ledger(str(tmp_path / "gen.json"))
    threads = [threading.Thread(target=ledger.record, args=(KEY, g)) for g in range(1, 41)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert ledger.seen(KEY) == 40


@pytest.mark.parametrize(
    "content",
    [b"{not json", b"[]", b'{"seen": {"k": -1}}', b'{"seen": {"k": "3"}}', b'{"seen": []}'],
    ids=["syntax", "list", "negative", "string", "seen-list"],
)
def test_ledger_damaged_is_an_error(tmp_path: Path, content: bytes) -> None:
    """A damaged ledger is reported, never silently treated as empty (that would allow rollback)."""
    path = tmp_path / "gen.json"
    path.write_bytes(content)
    with pytest.raises(StoreError, match="generation ledger is damaged"):
        signing.Ledger(str(path)).seen(KEY)


def test_ledger_key_for_normalises_db_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A relative --db names the same ledger entry as its absolute path."""
    monkeypatch.chdir(tmp_path)
    assert signing.Ledger.key_for("SHA256:x", "b.db") == f"SHA256:x {tmp_path}/b.db"
