"""Validate an event body against our ECS field table (tests/data/ecs_fields.tsv).

Every leaf of the nested body must be a field of the table with a value of its ECS type;
``labels.*`` are keyword values; fields under ``mail_integrity.*`` must be rows of the
table too (our documented custom namespace), and so must the few Auditbeat names who-data
uses where ECS has none (``user.audit.*``, ``auditd.*``), so nothing unknown slips through.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

TABLE = Path(__file__).parent / "data" / "ecs_fields.tsv"
CUSTOM = "mail_integrity"


@dataclass(frozen=True)
class Field:
    name: str
    type: str
    array: bool
    allowed: tuple[str, ...]

    @property
    def custom(self) -> bool:
        return self.type.startswith("custom:")

    @property
    def auditbeat(self) -> bool:
        """Not ECS: Auditbeat's name for what ECS lacks (who-data: login uid, session)."""
        return self.type.startswith("auditbeat:")

    @property
    def base_type(self) -> str:
        return self.type.rpartition(":")[2]


def load_table(path: Path = TABLE) -> tuple[dict[str, Field], dict[str, tuple[str, ...]]]:
    """(fields by name, expected event.type values per event.category)."""
    fields: dict[str, Field] = {}
    expected: dict[str, tuple[str, ...]] = {}
    lines = [ln for ln in path.read_text().splitlines() if ln and not ln.startswith("#")]
    header, *rows = lines
    assert header.split("\t") == ["field", "type", "array", "allowed"], header
    for row in rows:
        name, type_, array, allowed = row.split("\t")
        values = tuple(v for v in allowed.split(",") if v)
        if name.startswith("event.category="):
            expected[name.split("=", 1)[1]] = values
        else:
            fields[name] = Field(name, type_, array == "yes", values)
    return fields, expected


def flatten(body: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested objects -> dotted names (lists are values, as in ECS)."""
    out: dict[str, Any] = {}
    for key, value in body.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict) and name != "labels":
            out.update(flatten(value, name + "."))
        else:
            out[name] = value
    return out


def _type_ok(type_: str, value: Any) -> bool:
    if type_ in ("keyword", "match_only_text", "text", "constant_keyword", "wildcard"):
        return isinstance(value, str)
    if type_ == "long":
        return isinstance(value, int) and not isinstance(value, bool)
    if type_ == "boolean":
        return isinstance(value, bool)
    if type_ == "date":
        if not isinstance(value, str):
            return False
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return False
        return True
    if type_ == "ip":
        try:
            ipaddress.ip_address(value)
        except ValueError:
            return False
        return True
    if type_ == "object":  # labels: keyword values under simple names
        return isinstance(value, dict) and all(
            isinstance(k, str) and "." not in k and isinstance(v, str) for k, v in value.items()
        )
    return False


def problems(body: dict[str, Any]) -> list[str]:
    """Everything in ``body`` that does not match the table; empty when it is valid ECS."""
    fields, expected = load_table()
    out: list[str] = []
    flat = flatten(body)
    for name, value in flat.items():
        spec = fields.get(name)
        if spec is None:
            where = "custom field not in the table" if name.startswith(CUSTOM + ".") else "not ECS"
            out.append(f"{name}: {where}")
            continue
        values = value if spec.array and isinstance(value, list) else [value]
        if spec.array and not isinstance(value, list):
            out.append(f"{name}: ECS wants an array")
        for v in values:
            if not _type_ok(spec.base_type, v):
                out.append(f"{name}: {v!r} is not a {spec.base_type}")
            elif spec.allowed and v not in spec.allowed:
                out.append(f"{name}: {v!r} not among {spec.allowed}")
    for category in flat.get("event.category", []):
        for kind in flat.get("event.type", []):
            if category in expected and kind not in expected[category]:
                out.append(f"event.type {kind!r} is not expected with category {category!r}")
    return out
