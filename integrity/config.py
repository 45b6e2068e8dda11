"""``/etc/mail-integrity/config.toml``: defaults that command-line flags override.

A missing default file is normal (no setup needed); a file given with --config must
exist. Unknown keys and wrong types are errors naming the file and the key.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from integrity.errors import ConfigError

DEFAULT_CONFIG = "/etc/mail-integrity/config.toml"
DEFAULT_DB = "/var/lib/mail-integrity/baseline.db"
DEFAULT_OUTBOX = "/var/lib/mail-integrity/outbox.db"


@dataclass(frozen=True, slots=True)
class SyslogConfig:
    url: str | None = None
    ca_file: str | None = None
    cert_file: str | None = None
    key_file: str | None = None
    verify_hostname: bool = True
    outbox: str = DEFAULT_OUTBOX
    facility: str = "authpriv"
    heartbeat: float = 60.0
    reconnect_max: float = 60.0


@dataclass(frozen=True, slots=True)
class WatchConfig:
    debounce: float = 0.02
    full_verify_interval: float = 3600.0
    realert_interval: float = 900.0
    whodata: str = "auto"  # attribution from kernel audit: auto (may add rules), read, off
    whodata_wait: float = 0.05  # longest a finding waits for its audit record, in seconds


@dataclass(frozen=True, slots=True)
class Config:
    db: str = DEFAULT_DB
    root: str = "/"
    profiles: tuple[str, ...] = ("auto",)
    profile_dirs: tuple[str, ...] = ()
    public_key: str | None = None
    pinned_fingerprint: str | None = None
    ledger: str | None = None
    packages: bool = True
    syslog: SyslogConfig = field(default_factory=SyslogConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)


def _section(path: str, name: str, data: object, cls: type) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [{name}] must be a table, not {data!r}")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            raise ConfigError(f"{path}: [{name}] unknown key {key!r}")
        expected = str(known[key].type).split(" | ")[0]
        want = {"str": (str,), "float": (int, float), "bool": (bool,)}.get(expected, (object,))
        if not isinstance(value, want) or (isinstance(value, bool) and expected == "float"):
            raise ConfigError(f"{path}: [{name}] {key} must be a {expected}, not {value!r}")
        values[key] = float(value) if expected == "float" else value  # type: ignore[arg-type]
    return cls(**values)


def load_config(path: str | None) -> Config:
    """Read the config file; ``None`` means the default path, silently absent if missing."""
    explicit = path is not None
    path = path or DEFAULT_CONFIG
    if not os.path.exists(path):
        if explicit:
            raise ConfigError(f"{path}: config file not found")
        return Config()
    try:
        with open(path, "rb") as fh:
            data = tomllib.load(fh)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    syslog = _section(path, "syslog", data.pop("syslog", {}), SyslogConfig)
    watch = _section(path, "watch", data.pop("watch", {}), WatchConfig)
    if watch.whodata not in ("auto", "read", "off"):
        raise ConfigError(
            f"{path}: [watch] whodata must be auto, read or off, not {watch.whodata!r}"
        )
    top: dict[str, Any] = {}
    for key, value in data.items():
        if (
            key in ("db", "root", "public_key", "pinned_fingerprint", "ledger")
            and isinstance(value, str)
        ) or (key == "packages" and isinstance(value, bool)):
            top[key] = value
        elif (
            key in ("profiles", "profile_dirs")
            and isinstance(value, list)
            and all(isinstance(v, str) for v in value)
        ):
            top[key] = tuple(value)
        else:
            raise ConfigError(f"{path}: unknown key or wrong type: {key} = {value!r}")
    return Config(syslog=syslog, watch=watch, **top)
