"""Symlink chains: the real file behind a monitored link is monitored, a mask is not."""

from __future__ import annotations

import os
from pathlib import Path

from integrity import links


def test_chain_follows_alternatives_to_the_real_file(tmp_path: Path):
    """/usr/sbin/sendmail -> /etc/alternatives/mta -> /usr/sbin/sendmail.sendmail."""
    (tmp_path / "usr/sbin").mkdir(parents=True)
    (tmp_path / "etc/alternatives").mkdir(parents=True)
    (tmp_path / "usr/sbin/sendmail.sendmail").write_text("bin")
    os.symlink("/usr/sbin/sendmail.sendmail", tmp_path / "etc/alternatives/mta")
    os.symlink("/etc/alternatives/mta", tmp_path / "usr/sbin/sendmail")
    assert links.chain(str(tmp_path), "/usr/sbin/sendmail") == [
        "/etc/alternatives/mta",
        "/usr/sbin/sendmail.sendmail",
    ]


def test_masked_unit_is_not_followed_into_dev(tmp_path: Path):
    """``systemctl mask`` links a unit to /dev/null: a mask, not a file to baseline."""
    (tmp_path / "etc/systemd/system").mkdir(parents=True)
    (tmp_path / "dev").mkdir()
    (tmp_path / "dev/null").write_text("")
    os.symlink("/dev/null", tmp_path / "etc/systemd/system/postfix.service")
    assert links.chain(str(tmp_path), "/etc/systemd/system/postfix.service") == []
