"""fix: lines name the real file (issue 10 class 8): quoted for the shell, escaped names
included, and under --root the path on this host."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest

from integrity.model import Finding, Severity
from integrity.perms import fix_cmd, host_fixes, shell_path

BASH = shutil.which("bash")
NAMES = [
    "/etc/mail/access",
    "/etc/mail/a b",
    "/etc/mail/it's",
    "/etc/mail/new\nline",
    os.fsdecode(b"/etc/mail/caf\xe9"),
    "/etc/mail/$(reboot)",
    "/etc/mail/back\\slash",
]


@pytest.mark.skipif(BASH is None, reason="needs bash")
@pytest.mark.parametrize("path", NAMES)
def test_shell_path_is_one_word_naming_the_real_bytes(path: str) -> None:
    """bash reads the quoted word back as exactly the file's bytes, and nothing runs."""
    word = shell_path(path)
    assert word.isascii() and word.isprintable()
    out = subprocess.run([BASH, "-c", f"printf %s {word}"], capture_output=True, check=True).stdout
    assert out == os.fsencode(path)


def test_host_fixes_name_the_file_under_the_root(tmp_path) -> None:
    """Under --root, chmod/chown fixes name root + path; descriptive fixes are left alone."""
    f1 = Finding(
        "/etc/mail/a b", "MI-X", Severity.HIGH, "m", fix=fix_cmd("chmod 0644", "/etc/mail/a b")
    )
    f2 = Finding("/etc/mail/x", "MI-Y", Severity.HIGH, "m", fix="rebuild the map from /etc/mail/x")
    out = host_fixes([f1, f2], str(tmp_path))
    assert out[0].fix == f"chmod 0644 {shell_path(str(tmp_path) + '/etc/mail/a b')}"
    assert out[1].fix == f2.fix
    assert host_fixes([f1], "/")[0].fix == f1.fix


@pytest.mark.skipif(BASH is None or os.geteuid() != 0, reason="needs bash and root")
def test_pasting_the_audit_fix_repairs_the_escaped_file(tmp_path) -> None:
    """audit under --root on a world-writable file with a newline and a non-UTF-8 byte in
    its name: running the printed fix command repairs exactly that file."""
    from integrity import api

    root = tmp_path / "root"
    (root / "etc/postfix").mkdir(parents=True)
    (root / "etc/postfix/main.cf").write_text("mynetworks = 127.0.0.0/8\n")
    (root / "usr/sbin").mkdir(parents=True)
    (root / "usr/sbin/postfix").write_bytes(b"")
    bad = root / os.fsdecode(b"etc/postfix/odd\nname\xe9")
    bad.write_text("x\n")
    os.chmod(bad, 0o666)
    rep = api.audit(api.Options(root=str(root), profiles=("postfix",)))
    fixes = [f.fix for f in rep.findings if f.path.endswith(os.fsdecode(b"name\xe9")) and f.fix]
    chmods = [x for x in fixes if x.startswith("chmod ")]
    assert chmods, rep.findings
    subprocess.run([BASH, "-c", chmods[0]], check=True)
    assert os.stat(bad).st_mode & 0o002 == 0
