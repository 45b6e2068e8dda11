"""Standing findings: which findings still count, and which are acknowledged. Pure.

A high or critical condition stays reported until it is gone or acknowledged (PRODUCT.md
"Standing findings"). An acknowledgement (``update --accept``) holds for the value it saw:
when that value changes, the finding is a new risk and is reported again. A waiver from
the config (rule + path glob + reason) holds for as long as it is configured.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from integrity.config import Waiver
from integrity.model import Acknowledged, Finding, Severity

__all__ = ["STANDING_RANK", "is_standing", "partition", "waiver_for"]

STANDING_RANK = Severity.HIGH.rank


def is_standing(f: Finding) -> bool:
    """High and critical conditions are not accepted by ``init``."""
    return f.severity.rank >= STANDING_RANK


def waiver_for(f: Finding, waivers: Iterable[Waiver]) -> Waiver | None:
    for w in waivers:
        if fnmatch.fnmatchcase(f.rule, w.rule) and fnmatch.fnmatchcase(f.path, w.path):
            return w
    return None


def partition(
    findings: Iterable[Finding],
    acks: Mapping[str, Mapping[str, Any]],
    waivers: Iterable[Waiver],
    *,
    key: Callable[[Finding], str],
    text: Callable[[Any], str | None],
) -> tuple[list[Finding], list[Acknowledged]]:
    """(findings that count, acknowledged ones). ``acks`` by finding key; ``key`` and
    ``text`` are the store's identity and value-encoding functions."""
    waivers = tuple(waivers)
    counted: list[Finding] = []
    quiet: list[Acknowledged] = []
    for f in findings:
        waiver = waiver_for(f, waivers)
        if waiver is not None:
            quiet.append(Acknowledged(f, "waiver", None, waiver.reason))
            continue
        ack = acks.get(key(f))
        if ack is not None and ack.get("ack_after") == text(f.after):
            quiet.append(
                Acknowledged(f, str(ack["ack_who"]), ack.get("ack_at"), str(ack["ack_reason"]))
            )
            continue
        counted.append(f)
    return counted, quiet
