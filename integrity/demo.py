"""``mail-integrity demo``: a throwaway sandbox mail host, so a new user sees it work.

It builds a tiny sendmail-like tree owned by whoever runs it (no root needed), a
profile that expects that owner, takes a baseline, makes the classic attacks and
mistakes, and runs verify: every step is the real code path, on real files.
"""

from __future__ import annotations

import getpass
import os
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path

from integrity import api, report

CF = """\
# sendmail.cf (demo)
O AliasFile=/etc/mail/aliases
O PrivacyOptions=goaway,restrictmailq,restrictqrun
O DefaultUser=mail:mail
O QueueDirectory=/var/spool/mqueue
O TrustedUser=root
Mprog,		P=/usr/sbin/smrsh, F=lsDFMoqeu9, S=EnvFromL/HdrFromL, R=EnvToL/HdrToL, D=$z:/,
		T=X-Unix/X-Unix/X-Unix,
		A=smrsh -c $u
"""
ALIASES = """\
# /etc/mail/aliases (demo)
postmaster: root
MAILER-DAEMON: postmaster
abuse: root
sales: alice, bob
"""

PROFILE = """\
[profile]
name = "demo"
description = "mail-integrity demo sandbox"
mta = "sendmail"
detect = ["/usr/sbin/sendmail"]

[[file]]
path = "/usr/sbin/sendmail"
role = "binary"
owner = "{user}"
mode = "0755"

[[file]]
path = "/etc/mail"
role = "directory"
owner = "{user}"
mode = "0755"
recursive = true
entry_role = "config"

[[file]]
path = "/etc/mail/sendmail.cf"
role = "generated"
mode = ["0444", "0644"]
analyzer = "sendmail-cf"

[[file]]
path = "/etc/mail/aliases"
role = "aliases"
mode = ["0644", "0640"]
analyzer = "aliases"

[[file]]
path = "/etc/mail/authinfo"
role = "secret"
mode = "0600"

[[file]]
path = "/var/spool/mqueue"
role = "queue"
mode = "0700"

[file.children]
deny = "g+rwx,o+rwx"
"""


def build_sandbox(base: Path) -> tuple[Path, Path]:
    """The tree and the profile directory; returns (root, profile_dir)."""
    root = base / "root"
    for d in ("usr/sbin", "etc/mail", "var/spool/mqueue", "var/lib"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "var/spool/mqueue", 0o700)
    shutil.copyfile("/bin/true", root / "usr/sbin/sendmail")
    os.chmod(root / "usr/sbin/sendmail", 0o755)
    (root / "etc/mail/sendmail.cf").write_text(CF)
    os.chmod(root / "etc/mail/sendmail.cf", 0o444)
    (root / "etc/mail/aliases").write_text(ALIASES)
    os.chmod(root / "etc/mail/aliases", 0o644)
    (root / "etc/mail/authinfo").write_text('AuthInfo:relay.example.org "P:demo-secret"\n')
    os.chmod(root / "etc/mail/authinfo", 0o600)
    qf = root / "var/spool/mqueue/qfA1B2C3"
    qf.write_text("private mail\n")
    os.chmod(qf, 0o600)
    profiles = base / "profiles"
    profiles.mkdir()
    (profiles / "demo.toml").write_text(PROFILE.format(user=getpass.getuser()))
    return root, profiles


TAMPERS: list[tuple[str, Callable[[Path], None]]] = [
    (
        "a decode alias that pipes mail into uudecode",
        lambda r: _append(r / "etc/mail/aliases", 'decode: "|/usr/bin/uudecode"\n'),
    ),
    ("the aliases file made group-writable", lambda r: os.chmod(r / "etc/mail/aliases", 0o664)),
    (
        "set-group-ID bit on the sendmail binary",
        lambda r: os.chmod(r / "usr/sbin/sendmail", 0o2755),
    ),
    (
        "PrivacyOptions weakened to 'public' in sendmail.cf",
        lambda r: _rewrite(
            r / "etc/mail/sendmail.cf", "goaway,restrictmailq,restrictqrun", "public"
        ),
    ),
    (
        "the SMTP AUTH secret made world-readable",
        lambda r: os.chmod(r / "etc/mail/authinfo", 0o644),
    ),
    (
        "a queue file readable by everyone",
        lambda r: os.chmod(r / "var/spool/mqueue/qfA1B2C3", 0o644),
    ),
]


def _append(path: Path, text: str) -> None:
    with path.open("a") as fh:
        fh.write(text)


def _rewrite(path: Path, old: str, new: str) -> None:
    os.chmod(path, 0o644)
    path.write_text(path.read_text().replace(old, new))
    os.chmod(path, 0o444)


def run(*, keep: bool = False, echo: Callable[[str], None] = print) -> int:
    base = Path(tempfile.mkdtemp(prefix="mail-integrity-demo-"))
    try:
        root, profiles = build_sandbox(base)
        opts = api.Options(
            root=str(root),
            db=str(base / "baseline.db"),
            profiles=("demo",),
            profile_dirs=(str(profiles),),
        )
        echo(f"sandbox mail host: {root}")
        rep = api.init(opts)
        echo(f"1. init: baseline of {rep.scanned} paths, {len(rep.findings)} finding(s)")
        clean = api.verify(opts)
        echo(f"2. verify right away: exit {clean.exit_code()}, {len(clean.findings)} finding(s)")
        echo("3. tampering:")
        for what, apply in TAMPERS:
            apply(root)
            echo(f"   - {what}")
        rep = api.verify(opts)
        echo(f"4. verify: exit {rep.exit_code()} (+1 added, +2 removed, +4 changed, +8 high)\n")
        echo(report.render_text(rep))
        echo("\nAccept intended changes with `mail-integrity update --accept PATH --reason ...`.")
        if keep:
            echo(f"\nsandbox kept at {base}")
        return 0
    finally:
        if not keep:
            shutil.rmtree(base, ignore_errors=True)
