"""config: defaults when absent, and a ConfigError (exit 17) naming file and key otherwise."""

from __future__ import annotations

from pathlib import Path

import pytest

from integrity import config
from integrity.config import Config, SyslogConfig, WatchConfig, load_config
from integrity.errors import ConfigError


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "config.toml"
    path.write_text(text)
    return str(path)


def test_absent_default_file_means_defaults(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """No /etc/mail-integrity/config.toml is normal: every value is the default."""
    monkeypatch.setattr(config, "DEFAULT_CONFIG", str(tmp_path / "absent.toml"))
    cfg = load_config(None)
    assert cfg == Config()
    assert (cfg.db, cfg.root, cfg.profiles) == (
        "/var/lib/mail-integrity/baseline.db",
        "/",
        ("auto",),
    )
    assert cfg.syslog.url is None and cfg.syslog.verify_hostname is True


def test_present_default_file_is_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The default path is used when --config is not given."""
    monkeypatch.setattr(config, "DEFAULT_CONFIG", write(tmp_path, 'root = "/srv/jail"\n'))
    assert load_config(None).root == "/srv/jail"


def test_explicit_missing_file_is_a_config_error(tmp_path: Path) -> None:
    """--config naming a file that does not exist: exit 17 and the path in the message."""
    missing = str(tmp_path / "nope.toml")
    with pytest.raises(ConfigError) as info:
        load_config(missing)
    assert info.value.exit_code == 17
    assert missing in info.value.message


def test_full_file_is_read_into_typed_values(tmp_path: Path) -> None:
    """Every section and key lands in the dataclasses; ints become floats where floats."""
    path = write(
        tmp_path,
        """
db = "/tmp/b.db"
root = "/srv/root"
profiles = ["sendmail", "common"]
profile_dirs = ["/etc/mi/profiles.d"]
public_key = "/etc/mi/pub.pem"

[syslog]
url = "tls://siem.example:6514"
ca_file = "/etc/ssl/ca.pem"
verify_hostname = false
facility = "local3"
heartbeat = 30

[watch]
debounce = 0.2
full_verify_interval = 600
""",
    )
    assert load_config(path) == Config(
        db="/tmp/b.db",
        root="/srv/root",
        profiles=("sendmail", "common"),
        profile_dirs=("/etc/mi/profiles.d",),
        public_key="/etc/mi/pub.pem",
        syslog=SyslogConfig(
            url="tls://siem.example:6514",
            ca_file="/etc/ssl/ca.pem",
            verify_hostname=False,
            facility="local3",
            heartbeat=30.0,
        ),
        watch=WatchConfig(debounce=0.2, full_verify_interval=600.0),
    )
    assert isinstance(load_config(path).syslog.heartbeat, float)


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ('dbb = "/x"\n', ["dbb"]),
        ("db = 5\n", ["db"]),
        ('profiles = "sendmail"\n', ["profiles"]),
        ("profiles = [1, 2]\n", ["profiles"]),
        ('[syslog]\nurl = "udp://h:514"\nport = 514\n', ["[syslog]", "port"]),
        ("[syslog]\nverify_hostname = 1\n", ["[syslog]", "verify_hostname", "bool"]),
        ("[syslog]\nurl = 514\n", ["[syslog]", "url", "str"]),
        ('[watch]\ndebounce = "fast"\n', ["[watch]", "debounce", "float"]),
        ("[watch]\ndebounce = true\n", ["[watch]", "debounce", "float"]),
        ("[watch]\nrealert = 5\n", ["[watch]", "realert"]),
        ("[daemon]\nx = 1\n", ["daemon"]),
    ],
)
def test_unknown_key_or_wrong_type_names_file_and_key(
    tmp_path: Path, text: str, names: list[str]
) -> None:
    """A typo or a wrong type is exit 17 with the file and the offending key named."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == 17
    assert info.value.message.startswith(f"{path}:")
    for name in names:
        assert name in info.value.message


@pytest.mark.parametrize("text", ['syslog = "udp://h:514"\n', "watch = 5\n"])
def test_section_that_is_not_a_table_is_a_config_error(tmp_path: Path, text: str) -> None:
    """`syslog = "..."` instead of a [syslog] table is a ConfigError naming the key."""
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert text.split(" ")[0] in info.value.message


def test_invalid_toml_is_a_config_error_with_the_file(tmp_path: Path) -> None:
    """Broken TOML syntax: exit 17, the file and the parser's line in the message."""
    path = write(tmp_path, 'db = "/x"\nroot = \n')
    with pytest.raises(ConfigError) as info:
        load_config(path)
    assert info.value.exit_code == 17
    assert info.value.message.startswith(f"{path}:") and "line 2" in info.value.message


def test_unreadable_config_is_a_config_error(tmp_path: Path) -> None:
    """A --config that is a directory cannot be read: ConfigError, not a traceback."""
    with pytest.raises(ConfigError) as info:
        load_config(str(tmp_path))
    assert "cannot read" in info.value.message
