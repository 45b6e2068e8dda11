"""Exception tree. Each class carries the exit code PRODUCT.md promises to scripts.

Per-file problems are not exceptions: they are ``ScanWarning`` values in the report.
"""

from __future__ import annotations


class MonitorError(Exception):
    """Base of every error the CLI turns into ``error: <message>`` and an exit code."""

    exit_code = 18

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UsageError(MonitorError):
    exit_code = 16


class ConfigError(MonitorError):
    """Bad profile, config file or option value: the message names file, key and line."""

    exit_code = 17


class IOFailure(MonitorError):
    exit_code = 18


class StoreError(MonitorError):
    exit_code = 19


class BaselineIOError(StoreError):
    """The database could not be read or written (disk full, I/O error, read-only media).

    Never reported as corrupt: the baseline itself may be fine, and the SIEM must not get
    a false "baseline corrupt" alarm because a disk filled up.
    """

    exit_code = 18


class BaselineBusyError(BaselineIOError):
    """Another writer held the baseline for longer than we were willing to wait."""


class BaselineMissingError(StoreError):
    exit_code = 19


class BaselineCorruptError(StoreError):
    """The rows no longer match their recorded checksum, or the schema is unreadable."""

    exit_code = 19


class BaselineTamperedError(StoreError):
    """Signature invalid, missing when required, or a rollback to an older generation."""

    exit_code = 20
