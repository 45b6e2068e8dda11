"""Trust in the baseline and in changes: signatures, rollback ledger, package triage.

The baseline is signed over a canonical digest of its rows (not the SQLite bytes); the
host keeps only the public key. Package databases explain upgrades and expose trojans.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING

from integrity.judge import Triage
from integrity.model import FileRecord, PackageVerdict

if TYPE_CHECKING:
    from integrity.packages import PackageBackend
from integrity.store import Store


@dataclass(frozen=True, slots=True)
class SignKey:
    """The private signing key (meant to live off the host) and its passphrase."""

    path: str
    passphrase: bytes


def signed_payload(store: Store) -> bytes:
    from integrity import signing

    profiles = [p for p in (store.get_meta("profiles", "") or "").split(",") if p]
    return signing.payload(
        rows_digest=store.current_digest(),
        host=store.get_meta("host", "") or "",
        generation=store.generation,
        signed_at=store.get_meta("signed_at", "") or "",
        root=store.get_meta("root", "/") or "/",
        profiles=profiles,
    )


def seal(store: Store, key: SignKey) -> str:
    """Sign the baseline's canonical digest (not the SQLite bytes); returns the signer."""
    from integrity import signing
    from integrity.store import now

    store.set_meta("signed_at", now())
    signature = signing.sign(key.path, key.passphrase, signed_payload(store))
    pub = signing.signer(key.path, key.passphrase)
    store.set_meta("signature", signature)
    store.set_meta("signer", pub)
    return pub


def prepare_payload(store: Store) -> bytes:
    """For signing off the host: stamp the time and return the exact bytes to sign."""
    from integrity.store import now

    store.set_meta("signed_at", now())
    store.set_meta("signature", "")  # the old signature no longer covers these rows
    return signed_payload(store)


def import_signature(store: Store, signature: str, public_key: str) -> str:
    """Store a signature made off the host, after checking it; returns the signer."""
    from integrity import signing

    signing.check(public_key, signed_payload(store), signature)
    fpr = signing.fingerprint(signing.load_public(public_key))
    store.set_meta("signature", signature.strip())
    store.set_meta("signer", fpr)
    return fpr


def check_signature(
    store: Store, public_key: str | None, *, pinned: str | None = None, ledger: str | None = None
) -> None:
    """With a public key configured: valid signature, and no rollback to an older generation."""
    if not public_key:
        return
    from integrity import signing

    signing.check(public_key, signed_payload(store), store.get_meta("signature"), pinned=pinned)
    seen = signing.Ledger(ledger) if ledger else signing.Ledger()
    fpr = signing.fingerprint(signing.load_public(public_key))
    key = signing.Ledger.key_for(fpr, os.path.abspath(store.path))
    seen.check(key, store.generation)
    seen.record(key, store.generation)


def package_triage(root: str, enabled: bool = True) -> Triage | None:
    """The package manager's verdict on changed files under root, when there is one."""
    if not enabled:
        return None
    found: list[PackageBackend | None] = []  # looked up on the first changed file only

    def triage(rec: FileRecord) -> PackageVerdict | None:
        from integrity import packages  # a verify with nothing changed never loads it

        if not found:
            found.append(packages.detect_backend(root))
        backend = found[0]
        if backend is None:
            return None
        return packages.verdict(root, backend, rec)

    return triage
