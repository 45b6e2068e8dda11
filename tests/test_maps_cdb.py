"""CDB maps (RHEL 10 builds sendmail without Berkeley DB; postfix cdb:), written by the
real tinycdb tool, read and compared with their source (issue 10 class 6)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from integrity import maps

CDB = shutil.which("cdb")
pytestmark = pytest.mark.skipif(CDB is None, reason="needs tinycdb's cdb (apt install tinycdb)")

ACCESS = "# stock\nConnect:localhost RELAY\nConnect:127.0.0.1\tRELAY\n"


def _cdb(root: Path, name: str, rows: str) -> None:
    """makemap's cdb output: keys folded to lower case, one `key value` row each."""
    src = root / "rows"
    src.write_text(rows)
    subprocess.run([CDB, "-c", "-m", str(root / name), str(src)], check=True)
    src.unlink()


def _rows(text: str) -> str:
    out = []
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            key, value = line.split(None, 1)
            out.append(f"{key.lower()} {value}")
    return "\n".join(out) + "\n"


def test_cdb_rebuilt_from_its_source_is_consistent(tmp_path: Path) -> None:
    """A real cdb built from the access source reads back as exactly that source."""
    (tmp_path / "etc/mail").mkdir(parents=True)
    (tmp_path / "etc/mail/access").write_text(ACCESS)
    _cdb(tmp_path, "etc/mail/access.cdb", _rows(ACCESS))
    facts = maps.map_facts(str(tmp_path), "/etc/mail/access.cdb", "/etc/mail/access")
    assert facts == {"map": "consistent", "entries": 2}


def test_cdb_from_another_input_names_the_key(tmp_path: Path) -> None:
    """A cdb written from a doctored copy differs from the source, by key."""
    (tmp_path / "etc/mail").mkdir(parents=True)
    (tmp_path / "etc/mail/access").write_text(ACCESS)
    os.utime(tmp_path / "etc/mail/access", (1_000_000, 1_000_000))  # the map is newer
    _cdb(tmp_path, "etc/mail/access.cdb", _rows(ACCESS + "To:com RELAY\n"))
    facts = maps.map_facts(str(tmp_path), "/etc/mail/access.cdb", "/etc/mail/access")
    assert facts["map"] == "differs" and facts["extra"] == ["to:com"]
    assert facts["stale"] is False  # newer than its source: edited, not pending a rebuild
    assert "RELAY" not in repr(facts)
