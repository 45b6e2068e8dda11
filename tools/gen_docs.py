"""Generate mail-integrity(1) and the bash/zsh completion scripts from the click commands.

Run at package build time (debian/rules) or by hand for a venv install (docs/INSTALL.md):

    python3 tools/gen_docs.py --out /usr/share     # man/man1, bash-completion, zsh

The man page is built from the same help texts `mail-integrity COMMAND --help` prints, so
it cannot drift from the code; nothing generated is committed.
"""

from __future__ import annotations

import argparse
import datetime
import os
import sys
from importlib.metadata import PackageNotFoundError, version

import click
from click.shell_completion import BashComplete, ZshComplete

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from integrity.cli import cli  # after the path set-up, for a bare checkout

PROG = "mail-integrity"
COMPLETE_VAR = "_MAIL_INTEGRITY_COMPLETE"

FILES = """.SH FILES
.TP
.I /etc/mail-integrity/config.toml
Configuration (optional; every key and its default:
.IR /usr/share/doc/mail-integrity/examples/config.toml ).
.TP
.I /etc/mail-integrity/profiles.d/
Local profiles, searched before the shipped ones.
.TP
.I /var/lib/mail-integrity/
State directory, owned by the service user, mode 0700: baseline.db, outbox.db,
generations.json.
.TP
.I /lib/systemd/system/mail-integrity.service
The real-time daemon
.RB ( watch ,
Type=notify, watchdog).
.TP
.I /lib/systemd/system/mail-integrity-verify.timer
The daily full verify.
.SH ENVIRONMENT
.TP
.B MAIL_INTEGRITY_DB
Baseline database, overriding the config file (not --db).
.TP
.B MAIL_INTEGRITY_PASSPHRASE
Passphrase of a signing key (else --passphrase-file, else a prompt).
"""

EXIT = """.SH EXIT STATUS
.B verify
returns a bitmask: 0 no differences; +1 files added; +2 removed; +4 changed;
+8 at least one high or critical finding.
.B audit
returns 0 or 8.
Errors: 16 usage, 17 config or profile invalid (also
.BR "config check" ),
18 I/O error, 19 baseline missing or corrupt, 20 baseline signature invalid.
"""


def esc(text: str) -> str:
    """Escape roff: backslashes, and a leading dot or quote that would start a request."""
    text = text.replace("\\", "\\e").replace("-", "\\-")
    return "\n".join(("\\&" + ln) if ln[:1] in ".'" else ln for ln in text.splitlines())


def paragraphs(text: str) -> str:
    return "\n.PP\n".join(esc(" ".join(p.split())) for p in text.split("\n\n") if p.strip())


Leaf = tuple[str, click.Command, click.Context]


def commands(group: click.Group, ctx: click.Context, prefix: str = "") -> list[Leaf]:
    """Every leaf command with its full name ("config check"), in help order."""
    out: list[Leaf] = []
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        if cmd is None or cmd.hidden:
            continue
        sub = click.Context(cmd, info_name=name, parent=ctx)
        if isinstance(cmd, click.Group):
            out += commands(cmd, sub, f"{prefix}{name} ")
        else:
            out.append((prefix + name, cmd, sub))
    return out


def options(cmd: click.Command, ctx: click.Context) -> str:
    lines = []
    for param in cmd.get_params(ctx):
        record = param.get_help_record(ctx)
        if record is None:
            continue
        spec, help_text = record
        lines.append(f".TP\n.B {esc(spec)}\n{esc(help_text) or '.'}")
    return "\n".join(lines)


def manpage(pkg_version: str, date: str) -> str:
    ctx = click.Context(cli, info_name=PROG)
    head = [
        f'.TH MAIL\\-INTEGRITY 1 "{date}" "mail-integrity {pkg_version}" "System Administration"',
        ".SH NAME",
        "mail\\-integrity \\- file\\-integrity monitor that knows mail servers",
        ".SH SYNOPSIS",
        ".B mail\\-integrity",
        ".I COMMAND",
        "[\\fIOPTIONS\\fR]",
        ".SH DESCRIPTION",
        paragraphs(cli.help or ""),
        ".PP",
        "Shell completion: bash and zsh load it from the package; by hand,",
        '.B eval "$(_MAIL_INTEGRITY_COMPLETE=bash_source mail\\-integrity)"',
        "(zsh:",
        ".BR zsh_source ).",
        ".SH COMMANDS",
    ]
    body = []
    for name, cmd, sub in commands(cli, ctx):
        body.append(f".SS {esc(PROG + ' ' + name)} {esc(' '.join(cmd.collect_usage_pieces(sub)))}")
        body.append(paragraphs(cmd.help or ""))
        opts = options(cmd, sub)
        if opts:
            body.append(".PP\nOptions:\n.RS\n" + opts + "\n.RE")
    tail = [EXIT, FILES, ".SH SEE ALSO", ".BR systemd-analyze (1),", ".BR aide (1)"]
    return "\n".join(head + body + tail) + "\n"


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="prefix, e.g. /usr/share")
    parser.add_argument(
        "--zsh-dir",
        default="zsh/vendor-completions",
        help="zsh completion dir under --out (Debian: zsh/vendor-completions; "
        "elsewhere zsh/site-functions)",
    )
    args = parser.parse_args()
    try:
        pkg_version = version("mail-integrity")
    except PackageNotFoundError:
        pkg_version = "0"
    epoch = int(os.environ.get("SOURCE_DATE_EPOCH", "0"))  # reproducible builds set it
    when = (
        datetime.datetime.fromtimestamp(epoch, datetime.UTC)
        if epoch
        else datetime.datetime.now(datetime.UTC)
    )
    targets = {
        "man/man1/mail-integrity.1": manpage(pkg_version, when.strftime("%Y-%m-%d")),
        "bash-completion/completions/mail-integrity": BashComplete(
            cli, {}, PROG, COMPLETE_VAR
        ).source(),
        f"{args.zsh_dir}/_mail-integrity": ZshComplete(cli, {}, PROG, COMPLETE_VAR).source(),
    }
    for rel, text in targets.items():
        path = os.path.join(args.out, rel)
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as fh:
            fh.write(text)
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
