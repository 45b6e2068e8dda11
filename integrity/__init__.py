"""mail-integrity: a file-integrity monitor that knows mail servers."""

from __future__ import annotations

from integrity.model import (
    Change,
    ChangeKind,
    FileRecord,
    FileType,
    Finding,
    Report,
    Role,
    ScanWarning,
    Severity,
)

__all__ = [
    "Change",
    "ChangeKind",
    "FileRecord",
    "FileType",
    "Finding",
    "Report",
    "Role",
    "ScanWarning",
    "Severity",
]
