"""Signed baselines: Ed25519 over a canonical payload, and a rollback ledger.

The private key lives off the host (an HMAC key on the host would let root forge), so the
host keeps only the public key. What is signed is ``payload()``: the rows digest plus host,
generation, time, root and profiles, never the SQLite bytes (WAL and VACUUM change them).
A valid signature on an *older* baseline is still a valid signature, hence the ``Ledger``:
the highest generation seen per (key, database), kept outside the database it protects.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import errno
import fcntl
import hashlib
import json
import os
from collections.abc import Iterator
from pathlib import Path

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from integrity.errors import BaselineIOError, BaselineTamperedError, ConfigError, StoreError

PURPOSE = "mail-integrity baseline"
PAYLOAD_VERSION = 1
KEY_COMMENT = "mail-integrity"
DEFAULT_LEDGER = "/var/lib/mail-integrity/generations.json"
_SIG_LEN = 64
_KEY_FILE_MAX = 64 * 1024


# --------------------------------------------------------------------------- keys


def keygen(private_path: str, public_path: str, passphrase: bytes) -> str:
    """Write a new key pair and return its fingerprint; never overwrite either file.

    The private key is always encrypted: it is meant to live off the host, and an
    unprotected copy left on a laptop or a backup is a liability.
    """
    if not passphrase:
        raise ConfigError(
            "keygen: an empty passphrase is not allowed; the private key is kept encrypted"
        )
    for path in (private_path, public_path):
        if os.path.lexists(path):
            raise ConfigError(f"{path} already exists; refusing to overwrite a key")
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(passphrase),
    )
    pub = key.public_key()
    line = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    _write_new(private_path, pem, 0o600)
    try:
        _write_new(public_path, line + f" {KEY_COMMENT}\n".encode(), 0o644)
    except ConfigError:
        os.unlink(private_path)
        raise
    return fingerprint(pub)


def _write_new(path: str, data: bytes, mode: int) -> None:
    """Create ``path`` exclusively with exactly ``mode`` (whatever the umask), synced."""
    try:
        fd = os.open(
            path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, mode
        )
    except FileExistsError as exc:
        raise ConfigError(f"{path} already exists; refusing to overwrite a key") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot create: {exc.strerror}") from exc
    try:
        os.fchmod(fd, mode)
        _write_all(fd, data)
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def fingerprint(pub: Ed25519PublicKey) -> str:
    """``SHA256:<base64>`` exactly as ``ssh-keygen -l`` prints it.

    OpenSSH hashes the key's wire blob (``string "ssh-ed25519" || string key``), not the
    bare 32 bytes, and drops the base64 padding; doing the same lets an operator compare
    the fingerprint in an alert with the one of the key on their workstation.
    """
    raw = pub.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    blob = _ssh_string(b"ssh-ed25519") + _ssh_string(raw)
    digest = hashlib.sha256(blob).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _ssh_string(data: bytes) -> bytes:
    return len(data).to_bytes(4, "big") + data


def _read_key_file(path: str, what: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            data = fh.read(_KEY_FILE_MAX + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the {what}: {exc.strerror}") from exc
    if len(data) > _KEY_FILE_MAX:
        raise ConfigError(f"{path}: too large to be an Ed25519 {what}")
    return data


def load_public(path: str) -> Ed25519PublicKey:
    """The public key from an OpenSSH ``ssh-ed25519 AAAA... comment`` line or a PEM file."""
    data = _read_key_file(path, "public key").strip()
    try:
        if data.startswith(b"-----BEGIN"):
            key: object = serialization.load_pem_public_key(data)
        else:
            key = serialization.load_ssh_public_key(b" ".join(data.split()[:2]))
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path}: not an Ed25519 public key (OpenSSH line or PEM)") from exc
    if not isinstance(key, Ed25519PublicKey):
        raise ConfigError(f"{path}: not an Ed25519 public key (OpenSSH line or PEM)")
    return key


def _load_private(path: str, passphrase: bytes) -> Ed25519PrivateKey:
    data = _read_key_file(path, "private key")
    try:
        key: object = serialization.load_pem_private_key(data, password=passphrase or None)
    except (ValueError, TypeError, UnsupportedAlgorithm) as exc:
        raise ConfigError(f"{path}: wrong passphrase or not an Ed25519 key") from exc
    if not isinstance(key, Ed25519PrivateKey):
        raise ConfigError(f"{path}: wrong passphrase or not an Ed25519 key")
    return key


# --------------------------------------------------------------------------- sign / check


def payload(
    *,
    rows_digest: str,
    host: str,
    generation: int,
    signed_at: str,
    root: str,
    profiles: list[str],
) -> bytes:
    """The canonical bytes a signature covers: sorted keys, no spaces, ASCII only.

    ``profiles`` is sorted so that detection order cannot break a valid signature;
    ``purpose`` and ``v`` keep a signature made for something else from verifying here.
    """
    if isinstance(generation, bool) or not isinstance(generation, int) or generation < 0:
        raise ValueError(f"generation must be a non-negative int, not {generation!r}")
    doc = {
        "v": PAYLOAD_VERSION,
        "purpose": PURPOSE,
        "rows_digest": rows_digest,
        "host": host,
        "generation": generation,
        "signed_at": signed_at,
        "root": root,
        "profiles": sorted(profiles),
    }
    return json.dumps(doc, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def sign(private_path: str, passphrase: bytes, data: bytes) -> str:
    """Base64 Ed25519 signature of ``data`` (run off the host, where the key lives)."""
    key = _load_private(private_path, passphrase)
    return base64.b64encode(key.sign(data)).decode()


def signer(private_path: str, passphrase: bytes) -> str:
    """Fingerprint of the public half of a private key (recorded next to the signature)."""
    return fingerprint(_load_private(private_path, passphrase).public_key())


def check(
    public_path: str, data: bytes, signature: str | None, *, pinned: str | None = None
) -> None:
    """Raise ``BaselineTamperedError`` unless ``signature`` is valid for ``data``.

    ``pinned`` (a fingerprint from the config or the SIEM) also refuses a public key that
    was swapped on the host: whoever can replace the key can sign anything.
    """
    pub = load_public(public_path)
    fpr = fingerprint(pub)
    if pinned is not None and pinned != fpr:
        raise BaselineTamperedError(
            f"{public_path}: public key {fpr} is not the pinned key {pinned}"
        )
    if not signature:
        raise BaselineTamperedError("baseline is not signed: no signature recorded")
    try:
        raw = base64.b64decode(signature.strip(), validate=True)
    except (binascii.Error, ValueError) as exc:
        raise BaselineTamperedError("baseline signature is not valid base64") from exc
    if len(raw) != _SIG_LEN:
        raise BaselineTamperedError(f"baseline signature is {len(raw)} bytes, not {_SIG_LEN}")
    try:
        pub.verify(raw, data)
    except InvalidSignature as exc:
        raise BaselineTamperedError(
            f"baseline signature does not verify with key {fpr}: "
            "the baseline changed after it was signed"
        ) from exc


# --------------------------------------------------------------------------- ledger


class Ledger:
    """Highest baseline generation seen per (key fingerprint, database), on disk.

    It lives outside the baseline database, so restoring an old (validly signed) database
    does not restore the old ledger with it. Writes are atomic (tmp, fsync, rename) and
    serialised by an flock, so a daemon and a cron verify cannot lose each other's update.
    """

    def __init__(self, path: str = DEFAULT_LEDGER) -> None:
        self.path = path

    @staticmethod
    def key_for(fingerprint: str, db_path: str) -> str:
        """The ledger key of one database signed by one key."""
        return f"{fingerprint} {os.path.abspath(db_path)}"

    def seen(self, key: str) -> int:
        """The highest generation recorded for ``key``; 0 when never seen."""
        return self._load().get(key, 0)

    def check(self, key: str, generation: int) -> None:
        """Refuse a generation older than one already seen: a rollback."""
        before = self.seen(key)
        if generation < before:
            raise BaselineTamperedError(
                f"baseline generation {generation} is older than generation {before} "
                "seen before: rollback"
            )

    def record(self, key: str, generation: int) -> None:
        """Remember ``generation`` for ``key``; never lowers what was recorded."""
        directory = os.path.dirname(os.path.abspath(self.path))
        try:
            Path(directory).mkdir(parents=True, exist_ok=True, mode=0o700)
            with self._locked(directory):
                entries = self._load()
                if generation <= entries.get(key, -1):
                    return
                entries[key] = generation
                self._write(directory, entries)
        except OSError as exc:  # disk full, read-only: I/O (18), not a damaged ledger (19)
            raise BaselineIOError(
                f"{self.path}: cannot write the generation ledger: {exc.strerror}"
            ) from exc

    @contextlib.contextmanager
    def _locked(self, directory: str) -> Iterator[None]:
        fd = os.open(
            os.path.join(directory, "." + os.path.basename(self.path) + ".lock"),
            os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
            0o600,
        )
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)

    def _load(self) -> dict[str, int]:
        try:
            with open(self.path, "rb") as fh:
                text = fh.read()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise BaselineIOError(
                f"{self.path}: cannot read the generation ledger: {exc.strerror}"
            ) from exc
        return _parse_ledger(self.path, text)

    def _write(self, directory: str, entries: dict[str, int]) -> None:
        data = json.dumps({"v": 1, "seen": entries}, sort_keys=True, indent=1).encode() + b"\n"
        tmp = os.path.join(directory, f".{os.path.basename(self.path)}.{os.getpid()}.tmp")
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        fd = os.open(
            tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600
        )
        try:
            _write_all(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, self.path)
        _fsync_dir(directory)


def _parse_ledger(path: str, text: bytes) -> dict[str, int]:
    """The ``seen`` map; a damaged ledger is an error, never silently an empty one."""
    fix = "restore it, or delete it to restart rollback protection at the current generation"
    try:
        doc = json.loads(text)
        seen = doc["seen"]
        if not isinstance(seen, dict):
            raise TypeError("seen is not an object")
        return {str(k): _generation(v) for k, v in seen.items()}
    except (ValueError, TypeError, KeyError) as exc:
        raise StoreError(f"{path}: generation ledger is damaged ({exc}); {fix}") from exc


def _generation(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise TypeError(f"generation {value!r} is not a non-negative integer")
    return value


def _fsync_dir(directory: str) -> None:
    """Make the rename durable; some filesystems refuse fsync on a directory (EINVAL)."""
    fd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        os.fsync(fd)
    except OSError as exc:
        if exc.errno != errno.EINVAL:
            raise
    finally:
        os.close(fd)
