"""Symlink chains: the real file behind a monitored link is monitored too.

On RHEL ``/usr/sbin/sendmail`` -> ``/etc/alternatives/mta`` -> ``/usr/sbin/sendmail.sendmail``;
on Debian the same through ``/etc/alternatives/sendmail``; ``/var/mail`` -> ``spool/mail``.
A set-uid bit on the real binary is what matters, and the profile names only the link:
so every hop of the chain (inside the monitored root, never out of it) becomes a target
with the link's role and expectations, unless a profile names it itself.
"""

from __future__ import annotations

import os
import posixpath
import stat
from collections.abc import Iterable

from integrity.policy import Policy, Rule, behind_link
from integrity.scanner import host_path

MAX_HOPS = 16
#: pseudo file systems: a link into them is a mask (``systemctl mask`` links a unit to
#: /dev/null) or a device, never a file with a baseline
PSEUDO = ("/dev/", "/proc/", "/sys/")


def chain(root: str, path: str) -> list[str]:
    """The paths a symlink at ``path`` leads to, in order, resolved inside ``root``.

    Stops at the first hop that is not a symlink (the real file), at a loop, at a
    dangling link, at /dev, /proc or /sys (a masked unit is a link to /dev/null), and
    after MAX_HOPS. Empty when ``path`` is not a symlink.
    """
    hops: list[str] = []
    current = path
    for _ in range(MAX_HOPS):
        host = host_path(root, current)
        try:
            if not stat.S_ISLNK(os.lstat(host).st_mode):
                break
            target = os.fsdecode(os.readlink(host))
        except OSError:
            break
        base = "/" if target.startswith("/") else posixpath.dirname(current)
        nxt = posixpath.normpath(posixpath.join(base, target))
        if nxt == path or nxt in hops or (nxt + "/").startswith(PSEUDO):
            break
        if not os.path.lexists(host_path(root, nxt)):
            break
        hops.append(nxt)
        current = nxt
    return hops


def chain_targets(
    root: str, policy: Policy, targets: Iterable[tuple[str, Rule]]
) -> list[tuple[str, Rule, str]]:
    """(hop, rule, link) for every hop behind the given (path, rule) targets that has no
    rule of its own; a hop the profile names keeps its own rule and is planned anyway."""
    out: list[tuple[str, Rule, str]] = []
    seen: set[str] = set()
    for path, rule in targets:
        for hop in chain(root, path):
            if hop in seen:
                continue
            seen.add(hop)
            own = policy.rule_for(hop)
            out.append((hop, own if own is not None else behind_link(rule, hop, path), path))
    return out
