"""``/etc/mail-integrity/config.toml``: defaults that command-line flags override.

A missing default file is normal (no setup needed); a file given with --config must
exist. Unknown keys, wrong types, undecodable bytes and out-of-range numbers (``nan``,
a negative debounce) are errors naming the file, the key and what is allowed.
"""

from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from typing import Any

from integrity.errors import ConfigError

DEFAULT_CONFIG = "/etc/mail-integrity/config.toml"
DEFAULT_DB = "/var/lib/mail-integrity/baseline.db"
DEFAULT_OUTBOX = "/var/lib/mail-integrity/outbox.db"
_MAX_CONFIG = 1 << 20


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
    #: RFC 5424 HOSTNAME and ECS host.name; the FQDN is best (default: the kernel's name)
    hostname: str | None = None
    #: TCP/TLS framing: "octet-counting" (RFC 5425, default) or "newline" (Logstash, Fluent Bit)
    framing: str = "octet-counting"
    #: largest UDP datagram; longer messages are shrunk, their JSON stays whole (RFC 5426)
    udp_max_size: int = 2048
    #: the number in our SD-ID mi@<number>; docs/siem.md explains the 32473 default
    enterprise_number: str = "32473"


@dataclass(frozen=True, slots=True)
class WatchConfig:
    debounce: float = 0.02
    full_verify_interval: float = 3600.0
    realert_interval: float = 900.0
    whodata: str = "auto"  # attribution from kernel audit: auto (may add rules), read, off
    whodata_wait: float = 0.05  # longest a finding waits for its audit record, in seconds
    #: degraded (inotify watches refused): rescan and retry the watches this often
    rescan_interval: float = 60.0
    #: bytes hashed at most of a file a non-root user can grow (~/.forward); beyond: a finding
    user_max_hash: float = 16.0 * 2**20


@dataclass(frozen=True, slots=True)
class Waiver:
    """``[[waiver]]``: a site's standing exception: findings of ``rule`` (an fnmatch pattern
    such as ``MI-QUEUE-*``) on paths matching ``path`` (fnmatch; ``*`` crosses ``/``)."""

    rule: str
    path: str
    reason: str


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
    state_dir: str | None = None  # checksum key and read-only baselines' run records
    syslog: SyslogConfig = field(default_factory=SyslogConfig)
    watch: WatchConfig = field(default_factory=WatchConfig)
    waivers: tuple[Waiver, ...] = ()


#: allowed range of every numeric key, (section, key) -> (low, high), both inclusive;
#: a float key not listed must still be finite and >= 0 (nan passes no comparison)
RANGES: dict[tuple[str, str], tuple[float, float]] = {
    ("watch", "debounce"): (0.0, 60.0),
    ("watch", "full_verify_interval"): (1.0, 7 * 86400.0),
    ("watch", "realert_interval"): (1.0, 7 * 86400.0),
    ("watch", "rescan_interval"): (0.1, 86400.0),
    ("watch", "user_max_hash"): (4096.0, 1e15),  # 1e15 bytes: in effect no cap
    ("syslog", "heartbeat"): (1.0, 86400.0),
    ("syslog", "reconnect_max"): (0.1, 86400.0),
}
_DEFAULT_RANGE = (0.0, 1e9)
_TOP_STR = ("db", "root", "public_key", "pinned_fingerprint", "ledger", "state_dir")
_TOP_LISTS = ("profiles", "profile_dirs")


def _did_you_mean(word: str, choices: list[str]) -> str:
    import difflib  # only to suggest a name for a typo

    close = difflib.get_close_matches(word, choices, n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _number(path: str, name: str, key: str, value: float) -> float:
    low, high = RANGES.get((name, key), _DEFAULT_RANGE)
    if not (math.isfinite(value) and low <= value <= high):
        raise ConfigError(
            f"{path}: [{name}] {key} = {value!r} is out of range: allowed {low:g} to {high:g}"
        )
    return float(value)


def _section(path: str, name: str, data: object, cls: type) -> Any:
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: [{name}] must be a table, not {data!r}")
    known = {f.name: f for f in fields(cls)}
    values: dict[str, Any] = {}
    for key, value in data.items():
        if key not in known:
            hint = _did_you_mean(key, list(known))
            raise ConfigError(f"{path}: [{name}] unknown key {key!r}{hint}")
        expected = str(known[key].type).split(" | ")[0]
        want = {"str": (str,), "float": (int, float), "bool": (bool,), "int": (int,)}.get(
            expected, (object,)
        )
        if key == "enterprise_number" and isinstance(value, int) and not isinstance(value, bool):
            value = str(value)  # written either way: 32473 or "32473.1"
        if not isinstance(value, want) or (
            isinstance(value, bool) and expected in ("float", "int")
        ):
            raise ConfigError(f"{path}: [{name}] {key} must be a {expected}, not {value!r}")
        if expected in ("float", "int"):
            number = _number(path, name, key, float(value))  # type: ignore[arg-type]
            value = number if expected == "float" else int(number)
        values[key] = value
    return cls(**values)


def _check_syslog(path: str, s: SyslogConfig) -> None:
    """The [syslog] wire settings (issue 9): one line naming the file, key and value."""
    if s.framing not in ("octet-counting", "newline"):
        raise ConfigError(
            f"{path}: [syslog] framing must be octet-counting or newline, not {s.framing!r}"
        )
    if not 480 <= s.udp_max_size <= 65507:
        raise ConfigError(
            f"{path}: [syslog] udp_max_size must be 480..65507 bytes, not {s.udp_max_size}"
        )
    parts = s.enterprise_number.split(".")
    if not all(p.isascii() and p.isdigit() for p in parts):
        raise ConfigError(
            f"{path}: [syslog] enterprise_number must be digits such as 32473, "
            f"not {s.enterprise_number!r}"
        )


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
            raw = fh.read(_MAX_CONFIG + 1)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror}") from exc
    if len(raw) > _MAX_CONFIG:
        raise ConfigError(f"{path}: larger than {_MAX_CONFIG} bytes: not a config file")
    try:
        data = tomllib.loads(raw.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ConfigError(
            f"{path}: not UTF-8 text (byte {exc.start}: {raw[exc.start:exc.start + 1]!r}); "
            "TOML files must be UTF-8"
        ) from exc
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    except RecursionError as exc:
        raise ConfigError(f"{path}: nested too deeply to be a config file") from exc
    syslog = _section(path, "syslog", data.pop("syslog", {}), SyslogConfig)
    _check_syslog(path, syslog)
    watch = _section(path, "watch", data.pop("watch", {}), WatchConfig)
    if watch.whodata not in ("auto", "read", "off"):
        raise ConfigError(
            f"{path}: [watch] whodata must be auto, read or off, not {watch.whodata!r}"
        )
    waivers = _waivers(path, data.pop("waiver", []))
    top: dict[str, Any] = {}
    for key, value in data.items():
        if (key in _TOP_STR and isinstance(value, str)) or (
            key == "packages" and isinstance(value, bool)
        ):
            top[key] = value
        elif (
            key in _TOP_LISTS
            and isinstance(value, list)
            and all(isinstance(v, str) for v in value)
        ):
            top[key] = tuple(value)
        elif key in (*_TOP_STR, *_TOP_LISTS, "packages"):
            raise ConfigError(f"{path}: wrong type: {key} = {value!r}")
        else:
            names = [*_TOP_STR, *_TOP_LISTS, "packages", "syslog", "watch", "waiver"]
            raise ConfigError(
                f"{path}: unknown key or wrong type: {key} = {value!r}{_did_you_mean(key, names)}"
            )
    return Config(syslog=syslog, watch=watch, waivers=waivers, **top)


def _waivers(path: str, data: object) -> tuple[Waiver, ...]:
    """``[[waiver]]`` tables: rule, path and reason, all non-empty strings."""
    if not isinstance(data, list):
        raise ConfigError(f"{path}: waiver must be an array of tables ([[waiver]]), not {data!r}")
    out = []
    for i, item in enumerate(data, 1):
        where = f"{path}: [[waiver]] #{i}"
        if not isinstance(item, dict):
            raise ConfigError(f"{where} must be a table, not {item!r}")
        unknown = sorted(set(item) - {"rule", "path", "reason"})
        if unknown:
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}")
        for key in ("rule", "path", "reason"):
            value = item.get(key)
            if not isinstance(value, str) or not value.strip():
                raise ConfigError(f"{where}: {key} must be a non-empty string, not {value!r}")
        if not item["rule"].startswith("MI-"):
            raise ConfigError(f"{where}: rule must be a rule id such as MI-QUEUE-FILE-EXPOSED")
        if not item["path"].startswith("/"):
            raise ConfigError(f"{where}: path must be an absolute path or glob")
        out.append(Waiver(item["rule"], item["path"], item["reason"]))
    return tuple(out)
