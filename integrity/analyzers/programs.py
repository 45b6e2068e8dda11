"""Which programs give whoever feeds them mail a general-purpose command runner.

One list for every place a mail path names a program: alias and .forward pipes, smrsh
entries, postfix pipe services, exim pipe transports. A shell, an interpreter, a network
relay (nc, socat) or a wrapper that runs its arguments (env, busybox) behind a mail
pipe runs whatever the message says. Pure.
"""

from __future__ import annotations

import re


def _words(text: str) -> frozenset[str]:
    return frozenset(text.split())


SHELLS = _words(
    "sh bash dash csh tcsh ksh ksh93 mksh pdksh zsh ash yash rbash fish busybox toybox pwsh"
)
INTERPRETER = re.compile(
    r"^(perl|python|pypy|ruby|php|php-cgi|awk|gawk|mawk|nawk|sed|tclsh|wish|expect|lua|luajit|"
    r"node|nodejs|guile|gdb|osascript|jjs|jrunscript|rscript)[0-9.]*$",
    re.IGNORECASE,
)
#: run their arguments or a network peer's commands
RUNNERS = _words(
    "env nc ncat netcat nc.openbsd nc.traditional socat xargs nice nohup timeout setsid "
    "stdbuf sudo su doas script chroot unshare nsenter ssh telnet ed vi vim ex find"
)


def program_class(name: str) -> str | None:
    """'shell', 'interpreter' or 'runner' for such a program's basename; None otherwise."""
    base = name.rsplit("/", 1)[-1]
    if base in SHELLS:
        return "shell"
    if INTERPRETER.match(base):
        return "interpreter"
    if base in RUNNERS:
        return "runner"
    return None


_WRAPPERS = frozenset({"env", "nice", "nohup", "exec", "setsid", "stdbuf", "timeout"})


def command_program(command: str) -> str:
    """The program a command line really runs: wrappers (env, nice...) and their options
    and ``VAR=value`` words skipped; quotes are not interpreted (a judge, not a shell)."""
    words = [w.strip("'\"") for w in command.split()]
    while words and (
        words[0].rsplit("/", 1)[-1] in _WRAPPERS or words[0].startswith("-") or "=" in words[0]
    ):
        if len(words) == 1:
            break
        words = words[1:]
    return words[0].rsplit("/", 1)[-1] if words else ""


def command_class(command: str) -> str | None:
    """program_class of what ``command`` runs (a wrapper alone is itself a runner)."""
    return program_class(command_program(command))
