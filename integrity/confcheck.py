"""``mail-integrity config check``: the config file and every profile it loads, validated.

Like ``aide --config-check``: the same loaders the other commands use (``load_config``,
``api.resolve_policy``), plus the values that are otherwise read only when the daemon
connects (syslog URL, facility, public key), so a typo shows up before 3 a.m. Errors
name the file and the line (ConfigError, exit 17).
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable
from dataclasses import dataclass

from integrity.config import DEFAULT_CONFIG, Config, load_config
from integrity.errors import ConfigError

#: "[section] key ..." (section keys) or "...: key = value" (top-level keys) in a message
_SECTION_KEY = re.compile(r"\[(\w+)\] (?:unknown key )?'?([A-Za-z_]\w*)'?")
_TOP_KEY = re.compile(r"(?:wrong type|unknown key or wrong type): ([A-Za-z_]\w*) =")
_TOML_LINE = re.compile(r"\(at line (\d+), column \d+\)")
_TABLE = re.compile(r"^\s*\[\s*([A-Za-z_][\w.-]*)\s*\]\s*(?:#.*)?$")


@dataclass(frozen=True, slots=True)
class CheckResult:
    """What a clean check saw: enough for a one-line summary."""

    config: str
    config_found: bool
    profiles: tuple[str, ...]
    rules: int
    syslog: str | None
    signed: bool

    def summary(self) -> str:
        source = self.config if self.config_found else f"{self.config} absent, defaults"
        siem = self.syslog or "journal only"
        signed = "baseline signature required" if self.signed else "unsigned baselines"
        return (
            f"OK {source}: profiles {', '.join(self.profiles)} ({self.rules} rules); "
            f"syslog {siem}; {signed}"
        )


def key_line(text: str, section: str | None, key: str) -> int | None:
    """Line (1-based) where ``key`` is set in ``[section]`` (None: top level) of TOML text."""
    current: str | None = None
    assign = re.compile(rf"^\s*(?:{re.escape(key)}|\"{re.escape(key)}\")\s*=")
    for number, line in enumerate(text.splitlines(), 1):
        table = _TABLE.match(line)
        if table:
            current = table.group(1)
            if current == section and key == section:
                return number
            continue
        if current == section and assign.match(line):
            return number
    return None


def locate(path: str, message: str) -> str:
    """The message with ``path:LINE:`` in front when the line of the problem can be found."""
    prefix = f"{path}: "
    if not message.startswith(prefix):
        return message
    rest = message[len(prefix) :]
    toml = _TOML_LINE.search(rest)
    if toml:
        return f"{path}:{toml.group(1)}: {rest}"
    try:
        with open(path, encoding="utf-8", errors="replace") as fh:
            text = fh.read(1 << 20)
    except OSError:
        return message
    top = _TOP_KEY.search(rest)
    sect = None if top else _SECTION_KEY.match(rest)
    line = None
    if top:
        line = key_line(text, None, top.group(1))
    elif sect:
        line = key_line(text, sect.group(1), sect.group(2)) or key_line(
            text, sect.group(1), sect.group(1)
        )
    return f"{path}:{line}: {rest}" if line else message


def _value_check(path: str, section: str | None, key: str, check: Callable[[], object]) -> None:
    """Run a loader that knows nothing of the file; its error then names file and line."""
    try:
        check()
    except ConfigError as exc:
        where = f"[{section}] {key}" if section else key
        located = f"{path}: {where}: {exc.message}"
        try:
            with open(path, encoding="utf-8", errors="replace") as fh:
                line = key_line(fh.read(1 << 20), section, key)
        except OSError:
            line = None
        if line:
            located = f"{path}:{line}: {where}: {exc.message}"
        raise ConfigError(located) from None


def load(config_path: str | None) -> tuple[Config, str, bool]:
    """``load_config`` with the line of the problem in its error."""
    path = config_path or DEFAULT_CONFIG
    try:
        cfg = load_config(config_path)
    except ConfigError as exc:
        raise ConfigError(locate(path, exc.message)) from None
    return cfg, path, os.path.exists(path)


def check_values(cfg: Config, path: str) -> None:
    """Values the loader takes as plain strings: syslog URL, facility, key and its pin."""
    from integrity import signing, syslog

    if cfg.syslog.url:
        url = cfg.syslog.url
        _value_check(path, "syslog", "url", lambda: syslog.parse_url(url))
    _value_check(path, "syslog", "facility", lambda: syslog.facility_code(cfg.syslog.facility))
    if cfg.public_key:
        public_key = cfg.public_key
        _value_check(path, None, "public_key", lambda: signing.load_public(public_key))
        pin = cfg.pinned_fingerprint
        if pin:
            got = signing.fingerprint(signing.load_public(public_key))
            if got != pin:
                _value_check(path, None, "pinned_fingerprint", _mismatch(public_key, got))


def _mismatch(key: str, got: str) -> Callable[[], object]:
    def fail() -> object:
        raise ConfigError(f"does not match {key} (its fingerprint is {got})")

    return fail
