"""Content analyzers: they read what a mail file *means*, so a change can be judged.

Every analyzer module exposes three pure functions (text in, values out, no I/O):

* ``parse(text: str) -> Facts``: normalised, JSON-able facts. Problems found while
  parsing go in ``facts["warnings"]`` as ``[line_number, message]`` pairs; parse never
  raises on any input.
* ``diff(path: str, before: Facts, after: Facts) -> list[Finding]``: what the change
  between two snapshots means (a new ``|program`` alias, PrivacyOptions lost noexpn...).
* ``assess(path: str, facts: Facts) -> list[Finding]``: risky state with no baseline
  (used by ``audit`` and by ``init`` to show what is already wrong).

Secrets never reach an analyzer: the caller does not read their content. Secrets written
inline in a config (a password in main.cf, an exim macro) are cut out of everything an
analyzer returns by ``integrity.redact``, applied here once for all of them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass

from integrity import redact
from integrity.model import Facts, Finding


@dataclass(frozen=True, slots=True)
class Analyzer:
    name: str
    parse: Callable[[str], Facts]
    diff: Callable[[str, Facts, Facts], list[Finding]]
    assess: Callable[[str, Facts], list[Finding]]
    #: the file is shared with the rest of the system (/etc/group): a content change that
    #: leaves the facts alone is low, not medium (module attribute ``FACTS_ONLY = True``)
    facts_only: bool = False
    #: files the facts name and that are part of their meaning (postfix mynetworks =
    #: /etc/postfix/network_table): the collector reads them (``references``) and hands
    #: their text to ``expand``, which folds it into the facts; optional
    references: Callable[[Facts], list[str]] | None = None
    expand: Callable[[Facts, dict[str, str | None]], Facts] | None = None


#: analyzer name (as written in profiles) -> (module under integrity.analyzers, suffix).
#: A module serving several analyzers names its functions ``parse_<suffix>`` etc.;
#: with an empty suffix the functions are plain ``parse``, ``diff``, ``assess``.
_MODULES: dict[str, tuple[str, str]] = {
    "sendmail-cf": ("sendmail", "cf"),
    "sendmail-mc": ("sendmail", "mc"),
    "sendmail-access": ("access", "access"),
    "sendmail-relay-domains": ("access", "relay_domains"),
    "aliases": ("aliases", ""),
    "forward": ("aliases", "forward"),
    "postfix-main": ("postfix", "main"),
    "postfix-master": ("postfix", "master"),
    "exim4-debconf": ("exim", "debconf"),
    "exim4-conf": ("exim", "conf"),
    "dovecot": ("dovecot", ""),
    "groups": ("groups", ""),
    "systemd-unit": ("units", ""),
    "pam": ("pam", ""),
    "ld-preload": ("loader", "preload"),
    "ld-conf": ("loader", "conf"),
}

NAMES = frozenset(_MODULES)
#: analyzers whose facts also hold other files' text (they have ``references``): the
#: only ones whose facts can change while the file's own bytes do not (a test keeps this
#: in step with the modules, so verify knows it without importing them)
EXPANDING = frozenset({"postfix-main"})


def _expanding(
    fn: Callable[[Facts, dict[str, str | None]], Facts] | None,
) -> Callable[[Facts, dict[str, str | None]], Facts] | None:
    """``expand`` folds other files' text into the facts: redacted like ``parse``."""
    if fn is None:
        return None

    def wrapped(data: Facts, texts: dict[str, str | None]) -> Facts:
        out: Facts = redact.facts(fn(data, texts))
        return out

    return wrapped


def get(name: str) -> Analyzer | None:
    """The analyzer called ``name``, or None when it is unknown or not built yet."""
    if name not in _MODULES:
        return None
    module_name, suffix = _MODULES[name]
    try:
        mod = importlib.import_module(f"integrity.analyzers.{module_name}")
    except ModuleNotFoundError:
        return None
    tail = f"_{suffix}" if suffix else ""
    try:
        return Analyzer(  # every value that leaves an analyzer passes the redaction layer
            name,
            redact.parse(getattr(mod, f"parse{tail}")),
            redact.judged(getattr(mod, f"diff{tail}")),
            redact.judged(getattr(mod, f"assess{tail}")),
            bool(getattr(mod, "FACTS_ONLY", False)),
            getattr(mod, f"references{tail}", None),
            _expanding(getattr(mod, f"expand{tail}", None)),
        )
    except AttributeError:
        return None
