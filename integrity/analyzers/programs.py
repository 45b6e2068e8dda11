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
