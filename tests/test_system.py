"""System test: the README quick start on a fresh Debian 12 root, then the service under a
real systemd (``systemd-nspawn -b``).

A debootstrapped bookworm root with python3, postfix and systemd (cached as a tarball
between runs) gets this checkout in /root/mail-integrity and runs the README's quick
start block verbatim in a chroot: it builds the .deb with the Debian toolchain, installs
it, runs init and verify. The same root is then booted: the packaged units are enabled
and checked (READY, watchdog, nothing about the tool itself, a set-uid change reaching a
syslog receiver on the host's loopback as critical, journal priorities, clean stop, the
verify timer's unit). Last, the docs/INSTALL.md venv install runs in the same root.

Minutes and network (Debian mirror, PyPI): runs in CI (CI=true) or with
MAIL_INTEGRITY_SYSTEM_TEST=1, as root, with debootstrap and systemd-nspawn installed.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import re
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
CACHE = Path(os.environ.get("MAIL_INTEGRITY_ROOTCACHE", "/var/cache/mail-integrity-tests/roots"))
TARBALL = CACHE / "bookworm-python3-postfix-systemd.tar"
INCLUDE = "python3,postfix,systemd,systemd-sysv,dbus"
PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
TIMINGS: dict[str, float] = {}
SELF_PREFIXES = (
    "/var/lib/mail-integrity",
    "/etc/mail-integrity",
    "/opt/venvs/mail-integrity",
    "/usr/bin/mail-integrity",
    "/usr/local/bin/mail-integrity",
    "/lib/systemd/system/mail-integrity",
    "/usr/lib/systemd/system/mail-integrity",
    "/etc/systemd/system/mail-integrity",
)


def _why_skip() -> str | None:
    if os.environ.get("CI") != "true" and os.environ.get("MAIL_INTEGRITY_SYSTEM_TEST") != "1":
        return "system test (minutes, network): set CI=true or MAIL_INTEGRITY_SYSTEM_TEST=1"
    if os.geteuid() != 0:
        return "needs root (debootstrap, chroot, systemd-nspawn)"
    for tool in ("debootstrap", "systemd-nspawn", "nsenter", "chroot"):
        if shutil.which(tool) is None:
            return f"needs {tool} (apt-get install debootstrap systemd-container)"
    return None


pytestmark = [
    pytest.mark.slow,
    pytest.mark.root,
    pytest.mark.skipif(_why_skip() is not None, reason=_why_skip() or ""),
]


def mirror() -> str:
    """The Debian mirror of this machine's apt sources (deb822 or one-line format)."""
    for path in sorted(glob.glob("/etc/apt/sources.list.d/*.sources")):
        for stanza in Path(path).read_text().split("\n\n"):
            uris = re.search(r"^URIs:\s*(\S+)", stanza, re.M)
            suites = re.search(r"^Suites:\s*(.+)$", stanza, re.M)
            if uris and suites and "bookworm" in suites.group(1).split():
                return uris.group(1)
    for path in ["/etc/apt/sources.list", *sorted(glob.glob("/etc/apt/sources.list.d/*.list"))]:
        with contextlib.suppress(OSError):
            for line in Path(path).read_text().splitlines():
                m = re.match(r"deb\s+(?:\[[^]]*\]\s+)?(\S+)\s+bookworm\s", line)
                if m:
                    return m.group(1)
    return "http://deb.debian.org/debian"


def timed(name: str, start: float) -> None:
    TIMINGS[name] = round(time.monotonic() - start, 1)
    CACHE.mkdir(parents=True, exist_ok=True)
    (CACHE / "system-test-timings.json").write_text(json.dumps(TIMINGS, indent=1))


def run(argv: list[str], timeout: float, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)
    if check and proc.returncode != 0:
        raise AssertionError(
            f"{argv[:6]}... exit {proc.returncode}\n{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
        )
    return proc


def cached_tarball() -> Path:
    """debootstrap once (about two minutes), then reuse the tarball."""
    if TARBALL.exists():
        return TARBALL
    CACHE.mkdir(parents=True, exist_ok=True)
    work = CACHE / "debootstrap.tmp"
    shutil.rmtree(work, ignore_errors=True)
    start = time.monotonic()
    run(
        ["debootstrap", "--variant=minbase", f"--include={INCLUDE}", "bookworm", str(work),
         mirror()],
        timeout=900,
    )  # fmt: skip
    timed("debootstrap", start)
    tmp = TARBALL.with_suffix(".tmp")
    run(["tar", "-C", str(work), "-cf", str(tmp), "."], timeout=300)
    tmp.rename(TARBALL)
    shutil.rmtree(work)
    return TARBALL


def mounts_under(path: Path) -> list[str]:
    """Mount points at or below ``path``, deepest first."""
    found = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(path) or point.startswith(f"{path}/"):
            found.append(point)
    return sorted(found, key=len, reverse=True)


def unmount_all(path: Path) -> None:
    for point in mounts_under(path):
        subprocess.run(["umount", "-l", point], check=False)


@contextlib.contextmanager
def mounted(root: Path) -> Iterator[None]:
    """Fresh /proc, /sys and a private /dev for one chroot call: never the host's /dev
    bound in (a recursive delete of the root must not be able to reach host devices)."""
    try:
        run(["mount", "-t", "proc", "proc", str(root / "proc")], timeout=30)
        run(["mount", "-t", "sysfs", "sysfs", str(root / "sys")], timeout=30)
        dev = root / "dev"
        run(["mount", "-t", "tmpfs", "-o", "mode=0755,nosuid", "mi-pkg-dev", str(dev)], timeout=30)
        for name, minor in (("null", 3), ("zero", 5), ("full", 7), ("random", 8), ("urandom", 9)):
            os.mknod(dev / name, 0o666 | stat.S_IFCHR, os.makedev(1, minor))
            os.chmod(dev / name, 0o666)
        (dev / "fd").symlink_to("/proc/self/fd")
        for fd, name in enumerate(("stdin", "stdout", "stderr")):
            (dev / name).symlink_to(f"/proc/self/fd/{fd}")
        (dev / "pts").mkdir()
        (dev / "shm").mkdir(mode=0o1777)
        yield
    finally:
        unmount_all(root)


def remove_root(base: Path) -> None:
    """Delete a test root only when nothing is mounted below it, never across file systems."""
    unmount_all(base)
    left = mounts_under(base)
    assert not left, f"still mounted, {base} left in place: {left}"
    run(["rm", "-rf", "--one-file-system", str(base)], timeout=300)


def chroot(root: Path, script: str, timeout: float) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with sh as root in a clean environment, cwd the checkout."""
    env = ["env", "-i", f"PATH={PATH}", "HOME=/root", "LANG=C.UTF-8",
           "DEBIAN_FRONTEND=noninteractive"]  # fmt: skip
    with mounted(root):
        return run(
            ["chroot", str(root), *env, "sh", "-c", f"cd /root/mail-integrity && {script}"],
            timeout=timeout,
            check=False,
        )


def readme_quickstart() -> str:
    """The first ```sh block under '## Quick start' in README.md, verbatim."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## Quick start") :]
    m = re.search(r"```sh\n(.*?)```", section, re.S)
    assert m, "README: no sh block under ## Quick start"
    return m.group(1)


def install_md_venv_block() -> str:
    """The venv install block of docs/INSTALL.md (the one that runs `$PYTHON -m venv`)."""
    blocks = re.findall(r"```sh\n(.*?)```", (REPO / "docs/INSTALL.md").read_text(), re.S)
    venv = [b for b in blocks if "-m venv /opt/venvs/mail-integrity" in b]
    assert venv, "docs/INSTALL.md: no venv install block"
    return venv[0]


def copy_checkout(dest: Path) -> None:
    """The files git tracks (a CI clone has nothing else worth copying)."""
    listed = subprocess.run(
        ["git", "-C", str(REPO), "ls-files", "-z"], capture_output=True, check=False
    )
    names = [n for n in listed.stdout.decode().split("\0") if n] if listed.returncode == 0 else []
    if not names:
        shutil.copytree(REPO, dest, symlinks=True, ignore=shutil.ignore_patterns(".git", "*cache*"))
        return
    for name in names:
        src, dst = REPO / name, dest / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_symlink():
            dst.symlink_to(os.readlink(src))
        elif src.is_file():
            shutil.copy2(src, dst)


def prepare_root(base: Path) -> Path:
    start = time.monotonic()
    root = base / "root"
    root.mkdir()
    # A mkdtemp directory is 0700: as the container's "/" it stops every unprivileged
    # service at chdir("/") with status=200/CHDIR. A real host's / is 0755.
    os.chmod(base, 0o755)
    os.chmod(root, 0o755)
    run(["tar", "-C", str(root), "-xf", str(cached_tarball())], timeout=300)
    # the machine's CA bundle, so apt and pip in the root trust what this machine trusts
    bundle = Path("/etc/ssl/certs/ca-certificates.crt")
    if bundle.exists():
        for dst in ("usr/local/share/ca-certificates/mi-ci-host.crt",
                    "etc/ssl/certs/ca-certificates.crt"):  # fmt: skip
            (root / dst).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy(bundle, root / dst)
    shutil.copy("/etc/resolv.conf", root / "etc/resolv.conf")
    # postfix would bind port 25 on the host's network (shared with the container)
    for unit in ("postfix.service", "postfix@-.service"):
        link = root / "etc/systemd/system" / unit
        link.unlink(missing_ok=True)
        link.symlink_to("/dev/null")
    copy_checkout(root / "root/mail-integrity")
    timed("root prepared (untar, copy)", start)
    return root


@pytest.fixture(scope="module")
def debian_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    base = tmp_path_factory.mktemp("mi_pkg_root")
    try:
        yield prepare_root(base)
    finally:
        remove_root(base)


@pytest.fixture(scope="module")
def quickstart(debian_root: Path) -> subprocess.CompletedProcess[str]:
    block = readme_quickstart()
    (debian_root / "root/quickstart.sh").write_text(block)
    start = time.monotonic()
    proc = chroot(debian_root, "sh -e /root/quickstart.sh", timeout=900)
    timed("README quick start (apt build-dep, deb build, install, init, verify)", start)
    return proc


def unit_exec(root: Path, unit: str) -> str:
    for d in ("etc/systemd/system", "lib/systemd/system", "usr/lib/systemd/system"):
        path = root / d / unit
        if path.exists():
            m = re.search(r"^ExecStart=(\S+)", path.read_text(), re.M)
            assert m, f"{path}: no ExecStart"
            return m.group(1)
    raise AssertionError(f"{unit} not installed")


def exists_in(root: Path, path: str) -> bool:
    """``path`` exists inside ``root``, following symlinks as the container would."""
    proc = subprocess.run(["chroot", str(root), "test", "-x", path], check=False)
    return proc.returncode == 0


def test_readme_quickstart_verbatim(quickstart: subprocess.CompletedProcess[str]) -> None:
    """The README quick start, verbatim as root on a fresh Debian 12 + postfix: exit 0."""
    assert quickstart.returncode == 0, quickstart.stdout[-4000:] + quickstart.stderr[-4000:]
    tail = quickstart.stdout[quickstart.stdout.rindex("mail-integrity init:") :]
    assert "baseline written to /var/lib/mail-integrity/baseline.db" in tail
    assert "CRITICAL" not in tail and "critical" not in tail, tail


def test_second_verify_is_clean(debian_root: Path, quickstart: object) -> None:
    """A second verify after the quick start exits 0 with no critical finding."""
    proc = chroot(debian_root, "mail-integrity verify --format json", timeout=120)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    report = json.loads(proc.stdout)
    assert report["summary"]["by_severity"].get("critical", 0) == 0


def test_units_exec_start_exists(debian_root: Path, quickstart: object) -> None:
    """Both installed units name an ExecStart that exists in the installed root."""
    for unit in ("mail-integrity.service", "mail-integrity-verify.service"):
        exe = unit_exec(debian_root, unit)
        assert exists_in(debian_root, exe), f"{unit}: ExecStart {exe} missing"


def test_package_ships_docs_completion_config(debian_root: Path, quickstart: object) -> None:
    """The .deb carries the man page, bash/zsh completion, example config, sysusers, tmpfiles."""
    debs = sorted((debian_root / "root").glob("mail-integrity_0.2.0_*.deb"))
    assert debs, "no .deb next to the checkout"
    listing = run(["dpkg-deb", "-c", str(debs[-1])], timeout=60).stdout
    for want in (
        "./usr/share/man/man1/mail-integrity.1.gz",
        "./usr/share/bash-completion/completions/mail-integrity",
        "./usr/share/zsh/vendor-completions/_mail-integrity",
        "./usr/share/doc/mail-integrity/examples/config.toml",
        "./usr/lib/sysusers.d/mail-integrity.conf",
        "./usr/lib/tmpfiles.d/mail-integrity.conf",
        "./lib/systemd/system/mail-integrity.service",
        "./lib/systemd/system/mail-integrity-verify.timer",
        "./usr/bin/mail-integrity -> /opt/venvs/mail-integrity/bin/mail-integrity",
    ):
        assert want in listing, want
    man = chroot(debian_root, "man -P cat mail-integrity 2>/dev/null", timeout=60)
    assert "config check" in man.stdout and "EXIT STATUS" in man.stdout
    comp = chroot(
        debian_root,
        "COMP_WORDS='mail-integrity con' COMP_CWORD=1 _MAIL_INTEGRITY_COMPLETE=bash_complete "
        "mail-integrity",
        timeout=60,
    )
    assert "plain,config" in comp.stdout, comp.stdout + comp.stderr


def test_state_dir_owned_by_service_user(debian_root: Path, quickstart: object) -> None:
    """/var/lib/mail-integrity is the service user's, 0700, even after a root-run init."""
    proc = chroot(debian_root, "stat -c '%U %a' /var/lib/mail-integrity", timeout=30)
    assert proc.stdout.split() == ["mail-integrity", "700"]


def test_config_check_in_root(debian_root: Path, quickstart: object) -> None:
    """config check passes on the installed host, also with the example config in place."""
    ok = chroot(debian_root, "mail-integrity config check", timeout=60)
    assert ok.returncode == 0 and ok.stdout.startswith("OK "), ok.stdout + ok.stderr
    example = "/usr/share/doc/mail-integrity/examples/config.toml"
    ok = chroot(debian_root, f"mail-integrity config check --config {example}", timeout=60)
    assert ok.returncode == 0, ok.stdout + ok.stderr


# -- the same root, booted ----------------------------------------------------------------


class Receiver:
    """A syslog receiver on the host's loopback (the container shares the host network)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.messages: list[str] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.thread.start()

    def _loop(self) -> None:
        while not self.stop.is_set():
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            self.messages.append(data.decode("utf-8", "replace"))

    def wait_for(self, needle: str, timeout: float) -> str | None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for m in list(self.messages):
                if needle in m:
                    return m
            time.sleep(0.2)
        return None

    def close(self) -> None:
        self.stop.set()
        self.thread.join(5)
        self.sock.close()


class Booted:
    def __init__(self, root: Path, log: Path) -> None:
        self.root = root
        self.logfile = log.open("w")
        self.proc = subprocess.Popen(
            ["systemd-nspawn", "-q", "-b", "-D", str(root), "--register=no", "--keep-unit",
             "--console=read-only"],
            stdin=subprocess.DEVNULL, stdout=self.logfile, stderr=subprocess.STDOUT,
        )  # fmt: skip
        self.leader = 0
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not self.leader:
            kids = subprocess.run(
                ["pgrep", "-P", str(self.proc.pid)], capture_output=True, text=True, check=False
            ).stdout.split()
            self.leader = int(kids[0]) if kids else 0
            time.sleep(0.2)
        assert self.leader, "systemd-nspawn started no container"

    def sh(self, script: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        argv = ["nsenter", "-t", str(self.leader), "-m", "-u", "-i", "-n", "-p", "-r", "-w",
                "env", "-i", f"PATH={PATH}", "LANG=C.UTF-8", "sh", "-c", script]  # fmt: skip
        return run(argv, timeout=timeout, check=False)

    def show(self, unit: str, *props: str) -> dict[str, str]:
        out = self.sh(f"systemctl show {unit} -p {','.join(props)}").stdout
        return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)

    def wait_running(self, timeout: float) -> str:
        """Poll until systemd says running or degraded (its bus comes up after a moment)."""
        deadline = time.monotonic() + timeout
        state = ""
        while time.monotonic() < deadline:
            state = self.sh("systemctl is-system-running", timeout=30).stdout.strip()
            if state in ("running", "degraded"):
                break
            time.sleep(0.5)
        return state

    def poweroff(self) -> None:
        """SIGRTMIN+4 asks the container's systemd for a clean poweroff."""
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.leader, signal.SIGRTMIN + 4)
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
        self.logfile.close()


@pytest.fixture(scope="module")
def booted(
    debian_root: Path,
    quickstart: subprocess.CompletedProcess[str],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[tuple[Booted, Receiver]]:
    assert quickstart.returncode == 0, "quick start failed: nothing to boot"
    receiver = Receiver()
    # The admin's step (README "Running it as a service"): point it at the SIEM, check
    # the config, and accept the new config file into the baseline.
    conf = debian_root / "etc/mail-integrity/config.toml"
    conf.write_text(f'[syslog]\nurl = "udp://127.0.0.1:{receiver.port}"\n')
    os.chmod(conf, 0o644)
    proc = chroot(
        debian_root,
        "mail-integrity config check && mail-integrity update --accept "
        "/etc/mail-integrity/config.toml --reason 'syslog to the SIEM'",
        timeout=120,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert not mounts_under(debian_root), "nspawn mounts its own /proc, /sys, /dev"
    start = time.monotonic()
    box = Booted(debian_root, tmp_path_factory.mktemp("mi_pkg_boot") / "console.log")
    try:
        state = box.wait_running(90)
        assert state in ("running", "degraded"), state
        # test only: a short watchdog, in /run (not a monitored drop-in directory)
        box.sh(
            "mkdir -p /run/systemd/system/mail-integrity.service.d && printf "
            "'[Service]\\nWatchdogSec=5s\\n' > "
            "/run/systemd/system/mail-integrity.service.d/mi-pkg-test.conf && "
            "systemctl daemon-reload"
        )
        timed("boot to running", start)
        yield box, receiver
    finally:
        box.poweroff()
        receiver.close()


def findings_in_journal(box: Booted, unit: str) -> list[dict[str, object]]:
    out = box.sh(f"journalctl -u {unit} -o cat --no-pager").stdout
    events = []
    for line in out.splitlines():
        line = re.sub(r"^<\d>", "", line)
        with contextlib.suppress(ValueError):
            event = json.loads(line)
            if isinstance(event, dict) and event.get("event") == "finding":
                events.append(event)
    return events


def about_self(event: dict[str, object]) -> bool:
    path = str(event.get("path", ""))
    return str(event.get("rule", "")).startswith("MI-SELF") or path.startswith(SELF_PREFIXES)


def test_service_ready_watchdog_setuid_stop(booted: tuple[Booted, Receiver]) -> None:
    """Under systemd: READY, watchdog holds, nothing about itself, set-uid -> critical, stop."""
    box, receiver = booted
    start = time.monotonic()
    enabled = box.sh("systemctl enable --now mail-integrity.service", timeout=300)
    assert enabled.returncode == 0, (
        enabled.stdout
        + enabled.stderr
        + box.sh("journalctl -u mail-integrity --no-pager | tail -30").stdout
    )
    timed("service start to READY", start)
    first = box.show("mail-integrity.service", "ActiveState", "SubState", "MainPID", "WatchdogUSec")
    assert first["ActiveState"] == "active" and first["SubState"] == "running", first
    assert first["WatchdogUSec"] == "5s", first
    time.sleep(12)  # more than two watchdog periods
    later = box.show("mail-integrity.service", "ActiveState", "MainPID", "NRestarts")
    assert later["ActiveState"] == "active", later
    assert later["MainPID"] == first["MainPID"] and later["NRestarts"] == "0", later

    own = [e for e in findings_in_journal(box, "mail-integrity.service") if about_self(e)]
    assert own == [], f"findings about the tool itself: {own}"
    own_siem = [m for m in receiver.messages if "MI-SELF" in m]
    assert own_siem == [], own_siem

    start = time.monotonic()
    box.sh("chmod u+s /usr/sbin/sendmail")
    msg = receiver.wait_for("/usr/sbin/sendmail", timeout=15)
    timed("set-uid change to syslog receiver", start)
    assert msg is not None, receiver.messages[-5:]
    pri = int(re.match(r"<(\d+)>", msg).group(1))  # type: ignore[union-attr]
    assert pri % 8 == 2, f"not critical: {msg[:200]}"
    crit = box.sh("journalctl -u mail-integrity.service -p crit -o cat --no-pager").stdout
    assert "/usr/sbin/sendmail" in crit, crit[-2000:]
    box.sh("chmod u-s /usr/sbin/sendmail")  # put it back: the root is used again below

    stopped = box.sh("systemctl stop mail-integrity.service", timeout=60)
    assert stopped.returncode == 0
    after = box.show("mail-integrity.service", "ActiveState", "Result", "ExecMainStatus")
    assert after["ActiveState"] == "inactive" and after["Result"] == "success", after


def test_verify_timer_unit_runs(booted: tuple[Booted, Receiver]) -> None:
    """The timer's verify unit runs once successfully in its sandbox (IP sockets allowed)."""
    box, _ = booted
    timer = box.sh("systemctl enable --now mail-integrity-verify.timer")
    assert timer.returncode == 0, timer.stderr
    props = box.show("mail-integrity-verify.service", "PrivateNetwork", "RestrictAddressFamilies")
    assert props["PrivateNetwork"] == "no"
    assert "AF_INET" in props["RestrictAddressFamilies"], props
    start = time.monotonic()
    ran = box.sh("systemctl start mail-integrity-verify.service", timeout=300)
    timed("verify unit", start)
    res = box.show("mail-integrity-verify.service", "Result", "ExecMainStatus")
    assert ran.returncode == 0 and res["Result"] == "success", (res, ran.stderr)
    journal = box.sh("journalctl -u mail-integrity-verify.service -o cat --no-pager").stdout
    assert "paths checked" in journal, journal[-2000:]


def test_install_md_venv_install(debian_root: Path, booted: object) -> None:
    """docs/INSTALL.md's venv install (RHEL/Ubuntu way) works on the same root: init, verify."""
    start = time.monotonic()
    proc = chroot(
        debian_root,
        "apt-get purge -y -q mail-integrity >/dev/null && rm -rf /var/lib/mail-integrity "
        "/etc/mail-integrity && " + install_md_venv_block(),
        timeout=600,
    )
    timed("INSTALL.md venv install + init + verify", start)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "critical" not in proc.stdout[proc.stdout.rindex("mail-integrity init:") :]
    exe = unit_exec(debian_root, "mail-integrity.service")
    assert exe == "/opt/venvs/mail-integrity/bin/mail-integrity" and exists_in(debian_root, exe)
    again = chroot(debian_root, "mail-integrity verify -q", timeout=120)
    assert again.returncode == 0, again.stdout + again.stderr
