"""redact: secrets written inline in mail configs never leave the analyzers in clear.

Unit cases per supported place, then one end-to-end run that plants canaries in every
analyzed file and looks for them in every output, the database, the outbox, the log and
what a real rsyslog receiver got.
"""

from __future__ import annotations

import getpass
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from integrity import analyzers, redact
from integrity.model import Finding, Severity
from tests import rsyslog_harness

CANARY = "Zq7CANARY"


@pytest.mark.parametrize(
    ("analyzer", "text"),
    [
        ("postfix-main", f"smtp_sasl_password_maps = static:relayuser:{CANARY}1\n"),
        ("postfix-main", f"smtp_sasl_password_maps = inline:{{ relay.example=u:{CANARY}2 }}\n"),
        ("postfix-main", f"ldapsource_bind_pw = {CANARY}3\n"),
        ("postfix-main", f"my_db_password = {CANARY}4\n"),
        ("postfix-main", f"local_secret = {CANARY}5\n"),
        ("postfix-main", f"relayhost = [smtp://u:{CANARY}6@relay.example]\n"),
        (
            "postfix-master",
            f"relay unix - - n - - smtp -o smtp_sasl_password_maps=static:u:{CANARY}\n",
        ),
        ("exim4-conf", f"LDAP_PASS = {CANARY}7\n"),
        (
            "exim4-conf",
            f"mysql_servers = localhost/mail/exim/{CANARY}8 : db2/mail/exim/{CANARY}9\n",
        ),
        (
            "exim4-conf",
            f'MAIN_X = ${{lookup ldap{{user="cn=admin" pass={CANARY} ldap:///dc=x}}}}\n',
        ),
        (
            "exim4-conf",
            f"begin authenticators\nplain:\n  driver = plaintext\n  client_send = ^u^{CANARY}\n",
        ),
        (
            "exim4-conf",
            "begin authenticators\nplain:\n  driver = plaintext\n"
            f"  server_condition = ${{if eq{{$auth3}}{{{CANARY}}}}}\n",
        ),
        ("dovecot", f"ssl_key_password = {CANARY}\n"),
        ("dovecot", f"passdb {{\n  driver = static\n  args = password={CANARY}\n}}\n"),
        ("dovecot", f"connect = host=db dbname=mail user=dovecot password={CANARY}\n"),
        ("aliases", f'fetch: "|/usr/bin/fetch --password={CANARY}"\n'),
        ("systemd-unit", f"[Service]\nEnvironment=DB_PASSWORD={CANARY} OTHER=x\n"),
        ("systemd-unit", f"[Service]\nExecStart=/usr/bin/relay --api-key {CANARY} -v\n"),
        ("pam", f"auth sufficient pam_ldap.so bindpw={CANARY}\n"),
        ("pam", f"auth required pam_mysql.so user=x passwd={CANARY}\n"),
    ],
)
def test_parse_never_lets_a_planted_secret_out(analyzer: str, text: str) -> None:
    """Each supported place: the canary is in no fact, and not in assess's findings."""
    an = analyzers.get(analyzer)
    assert an is not None
    facts = an.parse(text)
    assert CANARY not in json.dumps(facts)
    assert redact.REDACTED in json.dumps(facts) or "<set>" in json.dumps(facts)
    for f in an.assess("/etc/x", facts):
        assert CANARY not in json.dumps(f.to_json())


@pytest.mark.parametrize(
    "text",
    [
        f'AuthInfo:relay.example "U:smmsp" "P:{CANARY}" "M:PLAIN"',
        f'AuthInfo: "U:root" "P={CANARY}"',
        f"-----BEGIN PRIVATE KEY-----\nMIIE{CANARY}\n-----END PRIVATE KEY-----",
        f"ldap://admin:{CANARY}@ldap.example/",
        f"ldapdb_pw: {CANARY}",  # Cyrus SASL smtpd.conf
        f"sql_passwd: {CANARY}",
    ],
)
def test_free_text_forms_are_redacted(text: str) -> None:
    """sendmail AuthInfo P:/P=, PEM private keys and URL credentials in any string."""
    assert CANARY not in redact.text(text)


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("smtp_sasl_password_maps", "hash:/etc/postfix/sasl_passwd"),
        ("lmtp_sasl_password_maps", "proxy:mysql:/etc/postfix/mysql-sasl.cf"),
        ("transport_maps", "static:smtp:[relay.example]:25"),
        ("relayhost", "[relay.example]:587"),
        ("pass_router", "remote_smtp"),
        ("passdb/driver", "pam"),
        ("ssl_key", "</etc/ssl/private/dovecot.pem"),
        ("sendmail_path", "/usr/sbin/sendmail"),
    ],
)
def test_where_a_secret_lives_is_kept(key: str, value: str) -> None:
    """Table files, paths and ordinary values stay readable: only the secret goes."""
    assert redact.value(key, value) == value


def test_diff_of_a_baseline_holding_clear_secrets_redacts_both_sides() -> None:
    """An old baseline (facts stored before this layer) cannot leak through a diff."""
    an = analyzers.get("postfix-main")
    assert an is not None
    old = {"params": {"relayhost": f"[smtp://u:{CANARY}@a]", "ldap_bind_pw": CANARY}}
    new = an.parse("relayhost = [b]\nldap_bind_pw = other\n")
    for f in an.diff("/etc/postfix/main.cf", old, new):
        assert CANARY not in json.dumps(f.to_json())


def test_finding_values_are_redacted() -> None:
    """A finding built with a secret in message, before and after comes out clean."""
    f = Finding("/x", "MI-X", Severity.HIGH, f"bind_pw={CANARY} set", "ldap_bind_pw",
                CANARY, {"password": CANARY})  # fmt: skip
    assert CANARY not in json.dumps(redact.finding(f).to_json())


# --------------------------------------------------------------------------- end to end

PROFILE = """\
[profile]
name = "canary"
description = "every analyzer that can meet an inline secret"
mta = "postfix"
detect = ["/etc/postfix/main.cf"]

[[file]]
path = "/etc/postfix/main.cf"
role = "config"
owner = "{user}"
analyzer = "postfix-main"

[[file]]
path = "/etc/postfix/master.cf"
role = "config"
owner = "{user}"
analyzer = "postfix-master"

[[file]]
path = "/etc/exim4/exim4.conf.template"
role = "config"
owner = "{user}"
analyzer = "exim4-conf"

[[file]]
path = "/etc/dovecot/dovecot.conf"
role = "config"
owner = "{user}"
analyzer = "dovecot"

[[file]]
path = "/etc/aliases"
role = "aliases"
owner = "{user}"
analyzer = "aliases"

[[file]]
path = "/etc/mail/authinfo"
role = "secret"
owner = "{user}"
mode = "0600"
"""


def _files(tag: str) -> dict[str, str]:
    c = f"{CANARY}{tag}"
    return {
        "etc/postfix/main.cf": (
            f"relayhost = [relay-{tag}.example]:587\n"
            f"smtp_sasl_password_maps = static:relayuser:{c}a\n"
            f"ldapsource_bind_pw = {c}b\nlocal_db_password = {c}c\n"
        ),
        "etc/postfix/master.cf": (
            "smtp inet n - y - - smtpd\n"
            f"relay unix - - n - - smtp -o smtp_sasl_password_maps=static:u:{c}d\n"
        ),
        "etc/exim4/exim4.conf.template": (
            f"LDAP_PASS = {c}e\nmysql_servers = localhost/mail/exim/{c}f\n"
            f"begin authenticators\nplain:\n  driver = plaintext\n  client_send = ^u^{c}g\n"
        ),
        "etc/dovecot/dovecot.conf": (
            f"ssl_key_password = {c}h\npassdb {{\n  driver = static\n  args = password={c}i\n}}\n"
        ),
        "etc/aliases": f'postmaster: root\nfetch-{tag}: "|/usr/bin/fetch --password={c}j"\n',
        "etc/mail/authinfo": f'AuthInfo:relay.example "U:smmsp" "P:{c}k"\n',
    }


def _write(root: Path, tag: str) -> None:
    for rel, text in _files(tag).items():
        path = root / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        os.chmod(path, 0o600 if "authinfo" in rel else 0o644)


def _cli(*argv: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "integrity", *argv], capture_output=True, text=True,
        timeout=120, env=env,
    )  # fmt: skip


@pytest.mark.slow
@pytest.mark.skipif(not rsyslog_harness.available(), reason="rsyslog/rsyslog-gnutls missing")
def test_planted_canaries_appear_nowhere(tmp_path: Path) -> None:
    """init, change, watch -> real rsyslog, verify, history, export: no canary anywhere."""
    root, profiles = tmp_path / "root", tmp_path / "profiles"
    profiles.mkdir()
    (profiles / "canary.toml").write_text(PROFILE.format(user=getpass.getuser()))
    _write(root, "one")
    db = tmp_path / "state" / "b.db"
    outputs: list[str] = []
    with rsyslog_harness.Rsyslog(tmp_path / "rsyslog") as server:
        config = tmp_path / "config.toml"
        config.write_text(
            f'[syslog]\nurl = "{server.url("tcp")}"\noutbox = "{tmp_path}/outbox.db"\n'
            "heartbeat = 3600.0\n"
        )
        args = ["--root", str(root), "--db", str(db), "--profile", "canary",
                "--profile-dir", str(profiles), "--config", str(config)]  # fmt: skip
        init = _cli("init", *args)
        assert init.returncode == 0, init.stderr
        _write(root, "two")  # every secret changes, and with it relayhost and an alias
        watch = _cli("watch", *args, "--once", "-v")
        assert watch.returncode == 0, watch.stderr
        received = server.wait_for(lambda lines: any("relay-two" in line for line in lines), 15)
        verify_text = _cli("verify", *args, "-v")
        verify_json = _cli("verify", *args, "--format", "json")
        assert verify_text.returncode & 4 and verify_json.returncode & 4, verify_text.stderr
        assert "relay-two" in verify_text.stdout  # the meaning is still shown
        history = _cli("history", *args, "--format", "json")
        history_text = _cli("history", *args)
        export = _cli("export", *args)
        for proc in (init, watch, verify_text, verify_json, history, history_text, export):
            outputs += [proc.stdout, proc.stderr]
        outputs += received
    outputs.append(verify_json.stdout)
    blobs = [p.read_bytes() for p in tmp_path.rglob("*.db*") if p.is_file()]
    blobs += [p.read_bytes() for p in (tmp_path / "rsyslog").rglob("*") if p.is_file()]
    assert blobs and len(outputs) > 10
    for text in outputs:
        assert CANARY not in text
    for blob in blobs:
        assert CANARY.encode() not in blob
    assert shutil.which(sys.executable)


def test_the_quick_gate_never_skips_a_string_the_substitutions_would_change() -> None:
    """``text`` skips strings without any trigger literal: the full chain agrees on all."""
    import random

    from integrity.redact import _substitute

    fragments = [
        "password=hunter2", "PASS: x", "pwd=1", "bind_pw = s", "dnpass=q", "--api-key K",
        "-token T", " --pw X", "ldap://u:pw@host", "smtp://user:p@h", '"P:secret"',
        '"P=x"', "servers = h/db/u/pw", "mysql_servers", "${if eq{$auth3}{lit}}",
        "-----BEGIN RSA PRIVATE KEY-----\nabc\n-----END RSA PRIVATE KEY-----",
        "static:user:pw", "inline:{a=b}", "root", "|/usr/bin/procmail", ":include:/x",
        "mail@example.com", "a:b@c", "Pass", "SeCrEt=1", "x", " ", "=", ":", "@", "/",
    ]  # fmt: skip
    rng = random.Random(12)
    for _ in range(5000):
        sample = "".join(rng.choice(fragments) + rng.choice(["", " ", ",", ";", "\n"])
                         for _ in range(rng.randint(1, 4)))  # fmt: skip
        assert redact.text(sample) == _substitute(sample), sample
