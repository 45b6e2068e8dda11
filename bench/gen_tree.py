"""Generate a synthetic Debian sendmail host tree for the benchmark against AIDE.

The layout follows mta-facts §2.2 (Debian's sendmail: /etc/mail smmta:smmsp 2755,
/usr/libexec/sendmail binaries, /var/spool/mqueue 2750 and mqueue-client 2770 with
0640/0660 queue files), so the sendmail-debian profile covers it as it would a real host.
The bulk of the files is what grows on a busy host: per-domain map files under /etc/mail
and queue files. Contents come from a seeded PRNG, so a size always gives the same tree
(binaries are random bytes of realistic sizes; text maps are plausible text).

Usage: python bench/gen_tree.py --files 20000 --out /tmp/mi-bench/tree-20000
       python bench/gen_tree.py --backlog 30000 --queue-dirs 300 --out /tmp/mi-bench/q300
"""

from __future__ import annotations

import argparse
import json
import os
import random
import shutil
import sys
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

SMMTA, SMMSP, MAIL, BIN = 110, 111, 8, 2  # ids inside the tree (its own etc/passwd)
REPO = Path(__file__).resolve().parent.parent
SAMPLES = REPO / "tests" / "data" / "sendmail"
DOMAIN_FILES = (
    ("access", 0o644, False),
    ("access.db", 0o640, True),
    ("virtusertable", 0o644, False),
    ("virtusertable.db", 0o640, True),
    ("genericstable", 0o644, False),
    ("genericstable.db", 0o640, True),
    ("mailertable", 0o644, False),
    ("local-host-names", 0o644, False),
)  # one directory per hosted domain under /etc/mail/domains: name, mode, is a .db map
BINARIES = (
    ("sendmail", 3_200_000, 0o2755, SMMSP),
    ("mailstats", 420_000, 0o2755, SMMSP),
    ("makemap", 380_000, 0o755, 0),
    ("editmap", 370_000, 0o755, 0),
    ("praliases", 360_000, 0o755, 0),
    ("smrsh", 140_000, 0o755, 0),
    ("mail.local", 150_000, 0o755, 0),
    ("vacation.sendmail", 160_000, 0o755, 0),
)  # /usr/libexec/sendmail: name, size, mode, group (Debian after dpkg-statoverride)
SHARE_SCRIPTS = ("sendmail", "update_sys", "update_conf", "update_db", "update_mc", "update_tls")
CF_DIRS = (("feature", 60), ("hack", 4), ("mailer", 16), ("ostype", 48), ("domain", 6), ("m4", 8))
SENDMAIL_LINKS = ("mailq", "newaliases", "hoststat", "purgestat", "smtpd")
ALIASES = 5000  # entries in /etc/aliases: a host with a few thousand users and lists
QUEUE_DIR_MAX = 1000  # size trees spread a bigger MTA queue over q001.. (sendmail QUEUE_DIR q*)
CORE_FILES = 204  # files + symlinks of a tree with no bulk (tests/test_bench_gen.py checks it)


@dataclass(frozen=True, slots=True)
class Counts:
    """How many of each bulk item a tree gets; the fixed core comes on top."""

    domains: int  # directories under /etc/mail/domains, len(DOMAIN_FILES) files each
    mqueue: int  # MTA queue files (qf/df pairs) in /var/spool/mqueue
    client: int  # MSP queue files in /var/spool/mqueue-client
    queue_dirs: int = 0  # 0: one flat queue dir; k: spread over /var/spool/mqueue/q001..k


@dataclass(slots=True)
class Tally:
    """What was written, so the runner can compare it with what each tool saw."""

    files: int = 0
    symlinks: int = 0
    dirs: int = 0
    queue_entries: int = 0  # files and dirs below the two queue dirs
    bytes: int = 0


def plan_counts(total: int, *, backlog: int = 0, queue_dirs: int = 0) -> Counts:
    """Split ``total`` files: half /etc/mail domain maps, 45% MTA queue, 5% MSP queue.

    An MTA queue above QUEUE_DIR_MAX files is spread over subdirectories, as a busy host
    is set up, so the size trees measure size and not one huge directory. With
    ``backlog`` the tree is the core plus exactly that many MTA queue files (the
    backlogged-server case), so flat and spread layouts differ only in the queue.
    """
    if backlog:
        return Counts(domains=0, mqueue=backlog, client=0, queue_dirs=queue_dirs)
    bulk = max(total - CORE_FILES, 0)
    domains = bulk // 2 // len(DOMAIN_FILES)
    client = bulk // 20
    mqueue = bulk - domains * len(DOMAIN_FILES) - client
    if not queue_dirs and mqueue > QUEUE_DIR_MAX:
        queue_dirs = -(-mqueue // QUEUE_DIR_MAX)
    return Counts(domains=domains, mqueue=mqueue, client=client, queue_dirs=queue_dirs)


def queue_id(rng: random.Random, n: int) -> str:
    """A sendmail 8.12+ queue id: date/time characters, sequence, then a pid-like tail."""
    alphabet = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwx"
    head = "".join(rng.choice(alphabet) for _ in range(6))
    return f"{head}{alphabet[n % 60]}{alphabet[n // 60 % 60]}{n:06d}"[:14]


def queue_names(rng: random.Random, count: int) -> Iterator[str]:
    """qf/df pairs (control file, data file) as a busy queue holds them."""
    for n in range((count + 1) // 2):
        qid = queue_id(rng, n)
        yield f"qf{qid}"
        if 2 * n + 1 < count:
            yield f"df{qid}"


def aliases_text(rng: random.Random, entries: int) -> str:
    """An /etc/aliases with Debian's standard head and ``entries`` user and list aliases."""
    head = [
        "# /etc/aliases",
        "mailer-daemon: postmaster",
        "postmaster: root",
        "nobody: root",
        "hostmaster: root",
        "webmaster: root",
        "abuse: root",
        "root: admin@example.org",
    ]
    body = []
    for n in range(entries):
        if n % 50 == 0:
            members = ", ".join(f"user{rng.randrange(entries)}" for _ in range(8))
            body.append(f"list{n}: {members}")
        else:
            body.append(f"user{n}: u{n}.{rng.randrange(10**6)}@mx{n % 7}.example.net")
    return "\n".join(head + body) + "\n"


def map_text(rng: random.Random, name: str, domain: str, lines: int) -> str:
    """Plausible text for a per-domain sendmail map source."""
    out = [f"# {name} for {domain}"]
    for n in range(lines):
        user = f"u{rng.randrange(10**5)}"
        if name == "access":
            out.append(f"Connect:10.{n % 256}.{rng.randrange(256)}.{rng.randrange(256)}\tRELAY")
        elif name == "mailertable":
            out.append(f".{domain}\tesmtp:[mx{n}.{domain}]")
        elif name == "local-host-names":
            out.append(f"mail{n}.{domain}")
        else:
            out.append(f"{user}@{domain}\t{user}@backend{n % 4}.example.net")
    return "\n".join(out) + "\n"


class Writer:
    """Writes files, links and dirs under one root, counting them as it goes."""

    def __init__(self, root: Path, seed: int) -> None:
        self.root = root
        self.rng = random.Random(seed)
        self.tally = Tally()

    def host(self, path: str) -> str:
        return os.path.join(self.root, path.lstrip("/"))

    def _count(self, path: str, kind: str) -> None:
        setattr(self.tally, kind, getattr(self.tally, kind) + 1)
        if path.startswith(("/var/spool/mqueue/", "/var/spool/mqueue-client/")):
            self.tally.queue_entries += 1

    def mkdir(self, path: str, mode: int, uid: int = 0, gid: int = 0) -> None:
        target = self.host(path)
        os.makedirs(target, exist_ok=True)
        os.chown(target, uid, gid)
        os.chmod(target, mode)  # after chown: chown clears set-id bits
        self._count(path, "dirs")

    def file(self, path: str, data: bytes | str, mode: int, uid: int = 0, gid: int = 0) -> None:
        raw = data.encode() if isinstance(data, str) else data
        fd = os.open(self.host(path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.write(fd, raw)
            os.fchown(fd, uid, gid)
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        self.tally.bytes += len(raw)
        self._count(path, "files")

    def link(self, path: str, target: str) -> None:
        os.symlink(target, self.host(path))
        self._count(path, "symlinks")

    def blob(self, size: int) -> bytes:
        return self.rng.randbytes(size)


def sample(name: str, fallback: str) -> str:
    """A real .cf/.mc from the test data when present (the analyzers then see real input)."""
    path = SAMPLES / name
    return path.read_text() if path.is_file() else fallback


def write_accounts(w: Writer) -> None:
    """The tree's own passwd/group, so owner names resolve the same on any host."""
    w.mkdir("/etc", 0o755)
    passwd = (
        "root:x:0:0:root:/root:/bin/bash\nbin:x:2:2:bin:/bin:/usr/sbin/nologin\n"
        f"mail:x:{MAIL}:{MAIL}:mail:/var/mail:/usr/sbin/nologin\n"
        f"smmta:x:{SMMTA}:{SMMTA}:Mail Transfer Agent,,,:/var/lib/sendmail:/usr/sbin/nologin\n"
        f"smmsp:x:{SMMSP}:{SMMSP}:Mail Submission Program,,,:/var/lib/sendmail:/usr/sbin/nologin\n"
    )
    group = f"root:x:0:\nbin:x:2:\nmail:x:{MAIL}:\nsmmta:x:{SMMTA}:\nsmmsp:x:{SMMSP}:smmta\n"
    w.file("/etc/passwd", passwd, 0o644)
    w.file("/etc/group", group, 0o644)


def write_binaries(w: Writer) -> None:
    """/usr/libexec/sendmail with random-byte binaries and Debian's symlinks."""
    for d in ("/usr", "/usr/sbin", "/usr/bin", "/usr/lib", "/usr/libexec"):
        w.mkdir(d, 0o755)
    w.mkdir("/usr/libexec/sendmail", 0o755)
    for name, size, mode, gid in BINARIES:
        w.file(f"/usr/libexec/sendmail/{name}", w.blob(size), mode, 0, gid)
    for name in SENDMAIL_LINKS:
        w.link(f"/usr/libexec/sendmail/{name}", "sendmail")
    w.file("/usr/sbin/sensible-mda", w.blob(60_000), 0o4755)
    for name in ("sendmail", "sendmail-mta", "sendmail-msp"):
        w.link(f"/usr/sbin/{name}", "../libexec/sendmail/sendmail")
    for name in ("makemap", "editmap", "praliases"):
        w.link(f"/usr/sbin/{name}", f"../libexec/sendmail/{name}")
    w.link("/usr/lib/sendmail", "../sbin/sendmail")
    w.file("/usr/sbin/sendmailconfig", "#!/bin/sh\n" + "# sendmailconfig\n" * 400, 0o755)


def write_share(w: Writer) -> None:
    """/usr/share/sendmail: the root-run helper scripts and sendmail-cf's m4 sources."""
    w.mkdir("/usr/share", 0o755)
    w.mkdir("/usr/share/sendmail", 0o755)
    for name in SHARE_SCRIPTS:
        w.file(f"/usr/share/sendmail/{name}", "#!/bin/sh\n" + f"# {name}\n" * 300, 0o755)
    w.mkdir("/usr/share/sendmail/cf", 0o755)
    for sub, count in CF_DIRS:
        w.mkdir(f"/usr/share/sendmail/cf/{sub}", 0o755)
        for n in range(count):
            body = f"divert(-1)\n# {sub} {n}\n" + "dnl\n" * w.rng.randrange(20, 400)
            w.file(f"/usr/share/sendmail/cf/{sub}/{sub}{n:02d}.m4", body, 0o644)


def write_etc_mail(w: Writer) -> None:
    """The fixed part of /etc/mail (mta-facts §2.2 owners and modes)."""
    w.mkdir("/etc/mail", 0o2755, SMMTA, SMMSP)
    for d in ("m4", "smrsh"):
        w.mkdir(f"/etc/mail/{d}", 0o2755, SMMTA, SMMSP)
    for d in ("tls", "sasl"):
        w.mkdir(f"/etc/mail/{d}", 0o755, SMMTA, SMMSP)
    w.mkdir("/etc/mail/peers", 0o755)
    configs = {
        "sendmail.cf": sample("sendmail.cf", "# sendmail.cf\n"),
        "submit.cf": sample("submit.cf", "# submit.cf\n"),
        "sendmail.mc": sample("sendmail.mc", "dnl sendmail.mc\n"),
        "submit.mc": sample("submit.mc", "dnl submit.mc\n"),
        "local-host-names": "localhost\nmail.example.org\n",
        "trusted-users": "# trusted users\n",
        "databases": "# databases\n",
    }
    for name, text in configs.items():
        w.file(f"/etc/mail/{name}", text, 0o644, 0, SMMSP)
    w.file("/etc/mail/Makefile", "all:\n\t@true\n", 0o754, 0, SMMSP)
    w.file("/etc/mail/sendmail.conf", 'DAEMON_MODE="Daemon";\n', 0o644)
    w.file("/etc/mail/helpfile", "cpyr\tsendmail help\n" * 60, 0o644)
    w.file("/etc/mail/service.switch", "hosts\tdns files\naliases\tfiles\n", 0o644)
    w.file("/etc/mail/service.switch-nodns", "hosts\tfiles\naliases\tfiles\n", 0o644)
    w.file("/etc/mail/address.resolve", "# address.resolve\n" * 40, 0o644)
    w.file("/etc/mail/access", map_text(w.rng, "access", "example.org", 40), 0o600)
    w.file("/etc/mail/access.db", w.blob(12_288), 0o640, SMMTA, SMMSP)
    w.file("/etc/mail/m4/dialup.m4", "", 0o640, 0, SMMSP)
    w.file("/etc/mail/m4/provider.m4", "", 0o640, 0, SMMSP)
    w.link("/etc/mail/smrsh/mail.local", "/usr/libexec/sendmail/mail.local")
    w.file("/etc/mail/peers/provider", "# provider\n", 0o644)
    w.file("/etc/mail/sasl/Sendmail.conf.2", "pwcheck_method: saslauthd\n", 0o640, SMMTA, SMMSP)
    for name, mode, size in (
        ("sendmail-common.key", 0o640, 1704),
        ("sendmail-common.prm", 0o640, 424),
    ):
        w.file(f"/etc/mail/tls/{name}", w.blob(size), mode, 0, SMMSP)
    for name in ("sendmail-server.crt", "sendmail-client.crt"):
        w.file(f"/etc/mail/tls/{name}", w.blob(1200), 0o644, 0, SMMSP)


def write_aliases(w: Writer) -> None:
    """/etc/aliases (the source), the /etc/mail/aliases link and the hash map."""
    w.file("/etc/aliases", aliases_text(w.rng, ALIASES), 0o644)
    w.link("/etc/mail/aliases", "../aliases")
    w.file("/etc/mail/aliases.db", w.blob(64 * ALIASES), 0o640, SMMTA, SMMSP)


def write_domains(w: Writer, count: int) -> None:
    """/etc/mail/domains/<domain>/: the per-domain maps of a hosting MX."""
    if not count:
        return
    w.mkdir("/etc/mail/domains", 0o2755, SMMTA, SMMSP)
    for n in range(count):
        domain = f"d{n:05d}.example.com"
        base = f"/etc/mail/domains/{domain}"
        w.mkdir(base, 0o2755, SMMTA, SMMSP)
        for name, mode, is_db in DOMAIN_FILES:
            if is_db:
                data: bytes | str = w.blob(w.rng.choice((12_288, 16_384, 24_576)))
                w.file(f"{base}/{name}", data, mode, SMMTA, SMMSP)
            else:
                text = map_text(w.rng, name, domain, w.rng.randrange(5, 60))
                w.file(f"{base}/{name}", text, mode, 0, SMMSP)


def write_queue(w: Writer, top: str, count: int, dirs: int, owner: tuple[int, int, int]) -> None:
    """Queue files in ``top`` itself or spread over ``dirs`` subdirectories q001..."""
    uid, gid, mode = owner
    names = list(queue_names(w.rng, count))
    buckets = [top] if not dirs else [f"{top}/q{k + 1:03d}" for k in range(dirs)]
    for bucket in buckets if dirs else ():
        w.mkdir(bucket, 0o2750, uid, gid)  # update_sys: subdirectories g+rxs-w,o-rwx
    for n, name in enumerate(names):
        bucket = buckets[n // 2 % len(buckets)]  # a qf and its df share a directory
        size = (
            w.rng.randrange(500, 1500) if name.startswith("qf") else w.rng.randrange(1, 16) * 1024
        )
        w.file(f"{bucket}/{name}", w.blob(size), mode, uid, gid)


def write_var(w: Writer, counts: Counts) -> None:
    """Queues (mta-facts §2.2) and /var/lib/sendmail state."""
    for d in ("/var", "/var/spool", "/var/lib", "/run"):
        w.mkdir(d, 0o755)
    w.mkdir("/var/spool/mqueue", 0o2750, SMMTA, SMMSP)
    w.mkdir("/var/spool/mqueue-client", 0o2770, SMMSP, SMMSP)
    write_queue(w, "/var/spool/mqueue", counts.mqueue, counts.queue_dirs, (SMMTA, SMMSP, 0o640))
    write_queue(w, "/var/spool/mqueue-client", counts.client, 0, (SMMSP, SMMSP, 0o660))
    w.mkdir("/var/lib/sendmail", 0o2751, SMMTA, SMMSP)
    w.file("/var/lib/sendmail/sendmail.st", w.blob(2048), 0o640, 0, SMMSP)
    w.file("/var/lib/sendmail/sm-client.st", w.blob(2048), 0o660, SMMSP, SMMSP)
    w.file("/var/lib/sendmail/dead.letter", "", 0o660, 0, SMMSP)
    w.mkdir("/var/lib/sendmail/host_status", 0o2775, 0, SMMSP)
    w.mkdir("/var/mail", 0o3777, 0, MAIL)
    w.mkdir("/run/sendmail", 0o2755, 0, SMMTA)
    w.mkdir("/run/sendmail/mta", 0o2755, SMMTA, SMMSP)
    w.mkdir("/run/sendmail/msp", 0o2775, SMMSP, SMMSP)
    w.mkdir("/run/sendmail/stampdir", 0o2775, 0, SMMSP)
    w.file("/run/sendmail/mta/sendmail.pid", "4242\n/usr/sbin/sendmail-mta -bd -q10m\n", 0o600)


def generate(root: Path, counts: Counts, *, seed: int = 1) -> Tally:
    """Write a fresh tree at ``root`` (removed first) and return what it holds."""
    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    os.chmod(root, 0o755)
    w = Writer(root, seed)
    write_accounts(w)
    write_binaries(w)
    write_etc_mail(w)
    write_share(w)
    write_aliases(w)
    w.mkdir("/etc/cron.d", 0o755)
    w.file("/etc/cron.d/sendmail", "*/20 * * * * smmsp test -x /etc/init.d/sendmail\n", 0o644)
    write_domains(w, counts.domains)
    write_var(w, counts)
    return w.tally


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", required=True, type=Path, help="tree root (replaced if present)")
    p.add_argument("--files", type=int, default=2000, help="approximate total file count")
    p.add_argument("--backlog", type=int, default=0, help="core + this many MTA queue files")
    p.add_argument("--queue-dirs", type=int, default=0, help="spread the MTA queue over k dirs")
    p.add_argument("--seed", type=int, default=1)
    args = p.parse_args(argv)
    counts = plan_counts(args.files, backlog=args.backlog, queue_dirs=args.queue_dirs)
    tally = generate(args.out, counts, seed=args.seed)
    print(json.dumps({"root": str(args.out), "counts": asdict(counts), **asdict(tally)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
