"""The ``mail-integrity`` command: a thin click layer over ``integrity.api``.

Each command parses its options, calls one api function, renders through ``report`` and
returns an exit code. Errors are handled once, in ``main``: ``error: <message>`` on
stderr and the error's exit code (PRODUCT.md), never a traceback for a known problem.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import os
import sqlite3
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import click

from integrity import api, report
from integrity.config import DEFAULT_OUTBOX, Config, load_config
from integrity.errors import (
    BaselineCorruptError,
    BaselineTamperedError,
    MonitorError,
    UsageError,
)
from integrity.snapshot import Progress

F = TypeVar("F", bound=Callable[..., Any])


def common_options(func: F) -> F:
    """--root, --db, --config, --profile, --format, -q/-v: shared by every command."""
    options = [
        click.option(
            "--root",
            type=click.Path(file_okay=False),
            default=None,
            help="Treat DIR as / (chroots, containers, unpacked packages).",
        ),
        click.option("--db", default=None, help="Baseline database (default from config)."),
        click.option(
            "--config",
            "config_path",
            default=None,
            help="Config file (default /etc/mail-integrity/config.toml).",
        ),
        click.option(
            "--profile",
            "profiles",
            multiple=True,
            help="Profile name, repeatable; 'auto' detects the installed MTA.",
        ),
        click.option(
            "--profile-dir",
            "profile_dirs",
            multiple=True,
            help="Extra directory of local profiles (overrides shipped ones).",
        ),
        click.option(
            "--public-key",
            default=None,
            help="Ed25519 public key: the baseline must carry its valid signature.",
        ),
        click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text"),
        click.option("-v", "--verbose", count=True),
        click.option("-q", "--quiet", is_flag=True, help="Print nothing but errors."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def build(ctx_args: dict[str, Any]) -> tuple[api.Options, Config]:
    """Options from flags over config; logging to stderr at the asked verbosity; the
    outbox and ledger next to the database unless the config places them."""
    quiet = bool(ctx_args.get("quiet"))
    _LOGGING.update(verbosity=-1 if quiet else int(ctx_args.get("verbose") or 0), quiet=quiet)
    cfg = load_config(ctx_args.get("config_path"))
    db = ctx_args.get("db") or os.environ.get("MAIL_INTEGRITY_DB") or cfg.db
    outbox = cfg.syslog.outbox
    if outbox == DEFAULT_OUTBOX:  # not configured: it belongs with the database
        outbox = api.default_outbox(db)
    cfg = dataclasses.replace(cfg, syslog=dataclasses.replace(cfg.syslog, outbox=outbox))
    opts = api.Options(
        root=ctx_args.get("root") or cfg.root,
        db=db,
        profiles=tuple(ctx_args.get("profiles") or ()) or cfg.profiles,
        profile_dirs=tuple(ctx_args.get("profile_dirs") or ()) + cfg.profile_dirs,
        public_key=ctx_args.get("public_key") or cfg.public_key,
        pinned_fingerprint=cfg.pinned_fingerprint,
        ledger=cfg.ledger or api.default_ledger(db),
        packages=cfg.packages,
        state_dir=cfg.state_dir,
        outbox=outbox,
        waivers=cfg.waivers,
    )
    return opts, cfg


class _OnlyErrors:
    """``-q``: error lines only (a critical log line always comes with its ``error:``).

    A plain filter object (logging takes any object with ``filter``): ``logging`` is
    imported only when something logs, not by every ``verify``."""

    def filter(self, record: Any) -> bool:
        return bool(record.levelno == _ERROR)


_ERROR = 40  # logging.ERROR


#: the asked verbosity; logging is configured (structlog imported) only when something
#: that logs is about to run: a syslog sender, the daemon's alarm
_LOGGING: dict[str, Any] = {"verbosity": 0, "quiet": False}


def logging_on() -> None:
    configure_logging(int(_LOGGING["verbosity"]), quiet=bool(_LOGGING["quiet"]))


def configure_logging(verbosity: int, *, quiet: bool = False) -> None:
    """Log lines go to stderr, never stdout: stdout is for the report (one JSON document)."""
    import logging

    from integrity import emit

    emit.configure_logging(verbosity, json=False)
    for handler in logging.getLogger().handlers:
        for old in [f for f in handler.filters if isinstance(f, _OnlyErrors)]:
            handler.removeFilter(old)
        if quiet:
            handler.addFilter(_OnlyErrors())


def sign_options(func: F) -> F:
    """--sign-key and where its passphrase comes from (never a command-line argument)."""
    func = click.option(
        "--passphrase-file",
        type=click.Path(dir_okay=False),
        default=None,
        help="Read the key's passphrase from this file (else "
        "$MAIL_INTEGRITY_PASSPHRASE, else a prompt).",
    )(func)
    return click.option(
        "--sign-key",
        type=click.Path(dir_okay=False),
        default=None,
        help="Private Ed25519 key: sign the baseline (see `keygen`).",
    )(func)


def passphrase(path: str | None, *, confirm: bool = False) -> bytes:
    if path:
        try:
            with open(path, "rb") as fh:
                return fh.read().rstrip(b"\r\n")
        except OSError as exc:
            raise UsageError(f"{path}: cannot read the passphrase: {exc.strerror}") from exc
    env = os.environ.get("MAIL_INTEGRITY_PASSPHRASE")
    if env:
        return env.encode()
    if not sys.stdin.isatty():
        raise UsageError("no passphrase: use --passphrase-file or $MAIL_INTEGRITY_PASSPHRASE")
    text: str = click.prompt("passphrase", hide_input=True, confirmation_prompt=confirm)
    return text.encode()


def sign_key(kw: dict[str, Any]) -> api.SignKey | None:
    path = kw.pop("sign_key", None)
    pass_file = kw.pop("passphrase_file", None)
    if not path:
        return None
    return api.SignKey(path, passphrase(pass_file))


def announce(cfg: Config, opts: api.Options, command: str) -> None:
    """Tell the SIEM the new baseline's fingerprint and generation (it keeps the truth too)."""
    if not cfg.syslog.url:
        return
    logging_on()
    from integrity import emit
    from integrity.daemon import make_sender
    from integrity.store import Store

    store = Store.open(opts.db, state_dir=opts.state_dir)
    try:
        event = emit.baseline_event(
            command,
            generation=store.generation,
            digest=store.get_meta("rows_digest") or "",
            signer=store.get_meta("signer") or "",
            host=cfg.syslog.hostname or api.hostname(),
        )
    finally:
        store.close()
    sender = make_sender(cfg, None)
    if sender is not None:
        sender.start()
        sender.send(*event)
        sender.close(10.0)


class ProgressBar:
    """A progress bar on stderr: done/total, percent, rate and ETA, redrawn ten times a
    second at most. ``start(total)`` is called by the api once the plan is known."""

    WIDTH = 24

    def __init__(self, label: str, stream: Any = None) -> None:
        self.label = label
        self.stream = stream or sys.stderr
        self.total = 0
        self.done = 0
        self.began = time.monotonic()
        self.drawn = 0.0

    def start(self, total: int) -> None:
        self.total, self.began = max(0, total), time.monotonic()
        self.draw(force=True)

    def __call__(self, n: int) -> None:
        self.done += n
        self.draw()

    def line(self) -> str:
        elapsed = max(time.monotonic() - self.began, 1e-6)
        rate = self.done / elapsed
        total = max(self.total, self.done)
        frac = self.done / total if total else 0.0
        filled = int(frac * self.WIDTH)
        left = (total - self.done) / rate if rate > 0 else 0.0
        return (
            f"{self.label} [{'#' * filled}{'.' * (self.WIDTH - filled)}] "
            f"{self.done}/{total} {frac:4.0%} {rate:,.0f} paths/s ETA {_clock(left)}"
        )

    def draw(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self.drawn >= 0.1:
            self.drawn = now
            self.stream.write("\r" + self.line() + "\x1b[K")
            self.stream.flush()

    def finish(self) -> None:
        self.stream.write("\r\x1b[K")
        self.stream.flush()


def _clock(seconds: float) -> str:
    s = int(seconds + 0.5)
    return f"{s // 3600}:{s // 60 % 60:02d}:{s % 60:02d}"


@contextmanager
def progress_counter(enabled: bool, label: str = "scanning") -> Iterator[Progress | None]:
    """A progress bar on stderr, only when it is a terminal (none under systemd or pipes)."""
    if not enabled or not sys.stderr.isatty():
        yield None
        return
    bar = ProgressBar(label)
    try:
        yield bar
    finally:
        bar.finish()


def emit_report(rep: Any, fmt: str, quiet: bool, verbose: int) -> None:
    if fmt == "json":
        click.echo(report.render_json(rep))
    elif not quiet:
        click.echo(report.render_text(rep, verbose=verbose > 0))


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="mail-integrity")
def cli() -> None:
    """File-integrity monitor that knows mail servers (sendmail, postfix, exim4, dovecot).

    Example: mail-integrity init && mail-integrity verify
    """


@cli.command()
@common_options
@sign_options
@click.option("--force", is_flag=True, help="Replace an existing baseline (its history stays).")
def init(force: bool, **kw: Any) -> int:
    """Build the baseline from the detected (or named) profiles.

    Also lists what the live state already violates: baselining a bad state must not
    hide it. High and critical findings are not accepted: verify and watch keep reporting
    them until fixed or acknowledged with `update --accept PATH --reason TEXT`. Refuses to
    replace an existing baseline without --force (exit 16).

    Example: mail-integrity init --root /srv/mx-chroot --db /tmp/mx.db
    """
    key = sign_key(kw)
    opts, cfg = build(kw)
    with progress_counter(not kw["quiet"], "init") as tick:
        rep = api.init(opts, progress=tick, sign=key, force=force)
    announce(cfg, opts, "init")
    emit_report(rep, kw["fmt"], kw["quiet"], kw["verbose"])
    if kw["fmt"] == "text" and not kw["quiet"]:
        click.echo(f"\nbaseline written to {opts.db} ({rep.scanned} paths)")
        standing = report.render_standing(rep)
        if standing:
            click.echo("\n" + standing)
    return 0


@cli.command()
@common_options
@click.option(
    "--enforce",
    is_flag=True,
    help="Restore loosened modes and changed owners to the baseline (never content).",
)
@click.option(
    "--workers",
    type=click.IntRange(1, 2),
    default=None,
    help="Processes reading and hashing files (default: 2 on a machine with 2 or more CPUs).",
)
@click.option(
    "--trust-ctime",
    is_flag=True,
    help="Do not re-read files whose size, mtime, ctime and inode are unchanged (faster; "
    "a root attacker can forge a ctime). Ignored unless a verify read every file in the "
    "last 7 days.",
)
def verify(enforce: bool, workers: int | None, trust_ctime: bool, **kw: Any) -> int:
    """Compare the live system with the baseline; exit code is a bitmask.

    0 no differences, +1 added, +2 removed, +4 changed, +8 high or critical finding
    (acknowledged and waived findings are listed apart and do not count). With a syslog
    url in the config, findings also go to the SIEM, as watch sends them.

    Example: mail-integrity verify --format json | jq .summary
    """
    opts, cfg = build(kw)
    tracked = api.Tracked()
    try:
        with progress_counter(not kw["quiet"], "verify") as tick:
            rep = api.verify(
                opts,
                progress=tick,
                enforce=enforce,
                tracked=tracked,
                workers=workers,
                trust_ctime=trust_ctime,
            )
    except (BaselineCorruptError, BaselineTamperedError) as exc:
        if cfg.syslog.url:  # the SIEM must hear it even from a cron verify
            logging_on()
            from integrity.daemon import alarm, make_sender

            alarm(make_sender(cfg, None), opts.db, exc)
        raise
    emit_report(rep, kw["fmt"], kw["quiet"], kw["verbose"])
    if cfg.syslog.url:  # after the report: an outbox problem must not swallow it
        forward(cfg, opts, rep, tracked)
    return rep.exit_code()


def forward(cfg: Config, opts: api.Options, rep: Any, tracked: api.Tracked) -> None:
    """The verify's findings to the SIEM through the outbox; then mark them sent."""
    logging_on()
    from integrity import forward as fwd
    from integrity.daemon import make_sender
    from integrity.store import Store

    sender = make_sender(cfg, None)
    if sender is None:
        return
    keys = fwd.send(sender, rep, tracked, host=api.hostname())
    try:  # bookkeeping only (a finding not marked goes out as new once more): never fatal
        store = Store.open(opts.db, state_dir=opts.state_dir)
        try:
            store.mark_sent(keys)
        finally:
            store.close()
    except MonitorError as exc:
        if not _LOGGING["quiet"]:
            click.echo(f"warning: findings sent, not marked as sent: {exc.message}", err=True)


@cli.command()
@common_options
@click.option(
    "--accept",
    "accept",
    multiple=True,
    metavar="PATH",
    help="Path to accept (repeatable), absolute inside the root.",
)
@click.option("--all", "accept_all", is_flag=True, help="Accept every current difference.")
@click.option("--reason", required=True, help="Why the change is accepted (kept in history).")
@click.option(
    "--defer-signature",
    is_flag=True,
    help="Signed baseline, key off the host: accept now, sign with `payload` later.",
)
@sign_options
def update(
    accept: tuple[str, ...], accept_all: bool, reason: str, defer_signature: bool, **kw: Any
) -> int:
    """Accept changes into the baseline, keeping who, when and why.

    Example: mail-integrity update --accept /etc/aliases --reason "new list for sales"
    """
    if bool(accept) == accept_all:
        raise UsageError("update needs either --accept PATH... or --all")
    key = sign_key(kw)
    opts, cfg = build(kw)
    count = api.update(
        opts,
        paths=None if accept_all else list(accept),
        reason=reason,
        sign=key,
        defer_signature=defer_signature,
    )
    announce(cfg, opts, "update")
    if kw["fmt"] == "json":
        click.echo(json.dumps({"accepted": count, "reason": reason}))
    elif not kw["quiet"]:
        click.echo(
            f"accepted {count} change(s) into {opts.db} (changed paths, and findings "
            "acknowledged as they are)"
        )
    return 0


@cli.command()
@common_options
def audit(**kw: Any) -> int:
    """Judge the live host against the profiles and the mail rules; no baseline needed.

    Exit 0 when clean, 8 when any finding is high or critical.

    Example: mail-integrity audit --root / --format json
    """
    opts, _ = build(kw)
    with progress_counter(not kw["quiet"], "audit") as tick:
        rep = api.audit(opts, progress=tick)
    emit_report(rep, kw["fmt"], kw["quiet"], kw["verbose"])
    return rep.exit_code() & 8


@cli.command()
@common_options
@click.option("--limit", default=20, show_default=True, help="Rows per section.")
def history(limit: int, **kw: Any) -> int:
    """Past runs, acceptances and findings from the baseline database.

    Example: mail-integrity history --limit 5
    """
    from integrity import whojoin
    from integrity.store import Store

    opts, _ = build(kw)
    api.check_access(opts.db)
    store = Store.open(opts.db, state_dir=opts.state_dir)
    try:
        data = store.history(limit)
        since = whojoin.since_time(store.get_meta("sealed_at"))
    finally:
        store.close()
    data["findings"], actors = whojoin.offline_rows(data["findings"], opts.root, since)
    if kw["fmt"] == "json":
        click.echo(json.dumps(data, indent=2, default=str))
        return 0
    click.echo("RUNS")
    for r in data["runs"]:
        click.echo(
            f"  #{r['id']} {r['started']} {r['command']:<7} exit={r['exit_code']} "
            f"{r['summary'] or ''}"
        )
    click.echo("ACCEPTANCES")
    for a in data["acceptances"]:
        click.echo(
            f"  {a['at']} {report.safe(a['path'])} by {a['who']} "
            f"(generation {a['generation']}): {a['reason']}"
        )
        for what in a.get("acknowledged") or []:
            click.echo(
                f"      acknowledged {what['severity']} [{what['rule']}]: "
                f"{report.safe(what['message'])}"
            )
    click.echo("FINDINGS")
    for f, actor in zip(data["findings"], actors, strict=True):
        click.echo(
            f"  {f['last_seen']} {f['status']:<8} {f['severity']:<8} "
            f"{report.safe(f['path'])}: {f['message']} [{f['rule']}]"
            + (f" (acknowledged by {f['ack_who']}: {f['ack_reason']})" if f.get("ack_who") else "")
        )
        if actor is not None:  # who changed it, from auditd's log
            click.echo(f"      by: {report.actor_text(actor)}")
    return 0


@cli.command()
@common_options
@click.argument("name", required=False)
def profiles(name: str | None, **kw: Any) -> int:
    """List the shipped and local profiles and what is detected; NAME shows one.

    Example: mail-integrity profiles sendmail-debian
    """
    from integrity import policy

    opts, _ = build(kw)
    dirs = policy.profile_dirs(list(opts.profile_dirs))
    found = policy.available(dirs)
    detected = set(policy.detect(os.path.abspath(opts.root), dirs=dirs))
    if name:
        if name not in found:
            raise UsageError(f"no profile named {name!r}; known: {', '.join(sorted(found))}")
        pol = policy.load([name], dirs=dirs)
        for rule in pol.rules:
            exp = rule.expect
            click.echo(
                f"{rule.pattern:<48} {rule.role:<9} "
                f"{'/'.join(exp.owner) or '*'}:{'/'.join(exp.group) or '*'} "
                f"{'/'.join(policy.format_mode(m) for m in exp.mode) or '*'}"
                f"{' [' + rule.analyzer + ']' if rule.analyzer else ''}"
            )
        return 0
    for pname, path in sorted(found.items()):
        mark = "detected" if pname in detected else ""
        click.echo(f"{pname:<18} {mark:<9} {path}")
    return 0


@cli.command()
@click.option(
    "--private",
    "private_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the passphrase-protected private key (keep it off the host).",
)
@click.option(
    "--public",
    "public_path",
    required=True,
    type=click.Path(dir_okay=False),
    help="Where to write the public key (goes on the host, public_key in config).",
)
@click.option("--passphrase-file", type=click.Path(dir_okay=False), default=None)
def keygen(private_path: str, public_path: str, passphrase_file: str | None) -> int:
    """Make an Ed25519 key pair for signing baselines; prints the fingerprint.

    Example: mail-integrity keygen --private ~/mx1-baseline.key --public mx1-baseline.pub
    """
    from integrity import signing

    fpr = signing.keygen(private_path, public_path, passphrase(passphrase_file, confirm=True))
    click.echo(f"wrote {private_path} (private, keep it off the host) and {public_path}")
    click.echo(f"fingerprint {fpr} (pin it: pinned_fingerprint in config.toml)")
    return 0


@cli.command()
@common_options
def payload(**kw: Any) -> int:
    """Print the bytes to sign for this baseline (signing with the key off the host).

    Example: mail-integrity payload > mx1.payload   # then, on the workstation: sign
    """
    opts, _ = build(kw)
    sys.stdout.buffer.write(api.signing_payload(opts))
    return 0


@cli.command()
@click.option("--sign-key", required=True, type=click.Path(dir_okay=False))
@click.option("--passphrase-file", type=click.Path(dir_okay=False), default=None)
@click.argument("payload_file", type=click.Path(exists=True, dir_okay=False))
def sign(sign_key: str, passphrase_file: str | None, payload_file: str) -> int:
    """Sign a payload written by `payload` (run where the private key lives).

    Example: mail-integrity sign --sign-key ~/keys/mx1.key mx1.payload > mx1.sig
    """
    from integrity import signing

    with open(payload_file, "rb") as fh:
        data = fh.read()
    click.echo(signing.sign(sign_key, passphrase(passphrase_file), data))
    return 0


@cli.command("import-signature")
@common_options
@click.argument("signature_file", type=click.Path(exists=True, dir_okay=False))
def import_signature(signature_file: str, **kw: Any) -> int:
    """Store a signature made by `sign` after checking it with the public key.

    Example: mail-integrity import-signature mx1.sig
    """
    opts, _ = build(kw)
    with open(signature_file, encoding="ascii", errors="replace") as fh:
        signer = api.add_signature(opts, fh.read())
    if not kw["quiet"]:
        click.echo(f"baseline {opts.db} signed by {signer}")
    return 0


@cli.command("compare")
@click.argument("reference", type=click.Path(exists=True, dir_okay=False))
@click.argument("other", type=click.Path(exists=True, dir_okay=False))
@click.option("--profile-dir", "profile_dirs", multiple=True)
@click.option("--format", "fmt", type=click.Choice(["text", "json"]), default="text")
def compare_cmd(reference: str, other: str, profile_dirs: tuple[str, ...], fmt: str) -> int:
    """Fleet drift: how OTHER's baseline differs from REFERENCE's (same role, two hosts).

    Each may be a baseline database or a JSON file written by `export`.

    Owners are compared by name; inode, times and link counts are ignored. Exit codes as
    verify.

    Example: mail-integrity compare mx1-baseline.db mx2-baseline.db
    """
    from integrity import fleet

    rep = fleet.compare_baselines(reference, other, profile_dirs=profile_dirs)
    emit_report(rep, fmt, False, 0)
    return rep.exit_code()


@cli.command()
@common_options
@click.option(
    "-o",
    "--output",
    type=click.Path(dir_okay=False),
    default=None,
    help="Write to this file, created 0600 (the baseline maps the host's weak spots).",
)
def export(output: str | None, **kw: Any) -> int:
    """Write the baseline as JSON (checksum included), e.g. to compare hosts elsewhere.

    Example: mail-integrity export -o mx1-baseline.json
    """
    opts, _ = build(kw)
    from integrity import fleet

    api.check_access(opts.db)
    doc = fleet.export_baseline(opts.db, state_dir=opts.state_dir)
    text = json.dumps(doc, indent=1, sort_keys=True) + "\n"
    if output is None:
        click.echo(text, nl=False)
        return 0
    write_private(output, text.encode())
    return 0


def write_private(path: str, data: bytes) -> None:
    """Write ``path`` 0600 from its first byte (O_CREAT mode, never through a symlink)."""
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC
    old = os.umask(0o077)
    try:
        fd = os.open(path, flags, 0o600)
    finally:
        os.umask(old)
    try:
        os.fchmod(fd, 0o600)  # an existing file keeps its mode on O_TRUNC
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
    finally:
        os.close(fd)


@cli.command()
@click.option("--keep", is_flag=True, help="Keep the sandbox directory afterwards.")
def demo(keep: bool) -> int:
    """A throwaway sandbox mail host: init, tamper, verify, explain. No root needed.

    Example: mail-integrity demo
    """
    from integrity import demo as demo_mod

    return demo_mod.run(keep=keep, echo=click.echo)


@cli.command()
@common_options
@click.option(
    "--syslog",
    "syslog_url",
    default=None,
    help="udp://H:P, tcp://H:P or tls://H:P (default from config).",
)
@click.option("--once", is_flag=True, hidden=True, help="Start, verify, and stop (tests).")
@click.option(
    "--enforce",
    is_flag=True,
    help="Restore loosened modes and changed owners to the baseline (never content).",
)
@click.option(
    "--audit-rules",
    is_flag=True,
    help="Print the who-data audit rules for auditd's rules.d (auditctl syntax) and exit.",
)
def watch(syslog_url: str | None, once: bool, enforce: bool, audit_rules: bool, **kw: Any) -> int:
    """Real-time monitoring daemon: inotify events -> findings -> remote syslog.

    Example: mail-integrity watch --syslog tls://siem.example.org:6514
    """
    from integrity import daemon

    opts, cfg = build(kw)
    if audit_rules:  # who-data with auditd: > /etc/audit/rules.d/mail-integrity.rules
        click.echo(daemon.print_audit_rules(opts), nl=False)
        return 0
    return daemon.run(
        opts, cfg, syslog_url=syslog_url, once=once, verbose=kw["verbose"], enforce=enforce
    )


@cli.group("config")
def config_group() -> None:
    """The configuration: `config check` validates it before a service trips over it.

    Example: mail-integrity config check
    """


@config_group.command("check")
@common_options
def config_check(**kw: Any) -> int:
    """Validate the config file and every profile it would load (like aide --config-check).

    Exit 0 with a one-line summary, or 17 with the file and line of the first error.

    Example: mail-integrity config check --config /etc/mail-integrity/config.toml
    """
    from integrity import confcheck

    cfg, path, found = confcheck.load(kw.get("config_path"))
    confcheck.check_values(cfg, path)
    opts, _ = build(kw)
    policy = api.resolve_policy(_root(opts.root), opts.profiles, opts.profile_dirs)
    result = confcheck.CheckResult(
        config=path,
        config_found=found,
        profiles=policy.profiles,
        rules=len(policy.rules),
        syslog=cfg.syslog.url,
        signed=bool(opts.public_key),
    )
    if kw["fmt"] == "json":
        click.echo(json.dumps({"ok": True, "summary": result.summary()}))
    elif not kw["quiet"]:
        click.echo(result.summary())
    return 0


def _root(root: str) -> str:
    if not os.path.isdir(root):
        raise UsageError(f"{root}: --root must be an existing directory")
    return os.path.abspath(root)


def main(argv: list[str] | None = None) -> int:
    """Entry point: maps errors to exit codes (16 usage, 17 config, 18 I/O, 19/20 baseline).

    Every failure is one line on stderr; a bug (an exception nobody expected) is one line
    too, exit 70, with the traceback only when MAIL_INTEGRITY_DEBUG is set.
    """
    try:
        rv = cli.main(args=argv, prog_name="mail-integrity", standalone_mode=False)
    except click.exceptions.Abort:
        click.echo("error: aborted", err=True)
        return 16
    except click.ClickException as exc:
        click.echo(f"error: {exc.format_message()}", err=True)
        return 16
    except MonitorError as exc:
        click.echo(f"error: {report.safe(exc.message)}", err=True)  # one line, always
        return exc.exit_code
    except sqlite3.Error as exc:  # a store path that did not classify its own error
        from integrity.store import classify, last_opened

        err = classify(exc, last_opened())
        click.echo(f"error: {report.safe(err.message)}", err=True)
        return err.exit_code
    except OSError as exc:
        where = f"{exc.filename}: " if exc.filename else ""
        cause = exc.strerror or str(exc)
        if exc.errno == errno.ENOSPC:
            cause = "no space left on device"
        click.echo(f"error: {report.safe(where + cause)}", err=True)
        return 18
    except KeyboardInterrupt:
        return 130
    except Exception as exc:
        if os.environ.get("MAIL_INTEGRITY_DEBUG"):
            raise
        click.echo(
            f"error: internal error: {type(exc).__name__}: {report.safe(exc)} "
            "(a bug: please report it; MAIL_INTEGRITY_DEBUG=1 shows the traceback)",
            err=True,
        )
        return 70
    return rv if isinstance(rv, int) else 0
