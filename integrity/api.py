"""The library API: init, verify, update, audit. Wires collect -> record -> compare -> judge.

The CLI and the daemon call these and nothing below them. Each returns values (a Report,
records); none prints.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from integrity.compare import compare
from integrity.config import Waiver
from integrity.errors import ConfigError, IOFailure, UsageError
from integrity.judge import Triage, judge
from integrity.model import FileRecord, Finding, Report, Role, ScanWarning
from integrity.perms import host_fixes
from integrity.policy import Expect, Policy, Rule, detect, load
from integrity.policy import profile_dirs as default_profile_dirs
from integrity.selfstate import SERVICE_USER, SelfState
from integrity.selfstate import check as check_self
from integrity.snapshot import (
    Drift,
    Plan,
    Progress,
    Snapshot,
    StateScan,
    dedupe,
    make_plan,
    recheck_state,
    role_from,
    snapshot,
    state_findings,
    stream_drift,
    stream_snapshot,
)
from integrity.standing import is_standing, partition
from integrity.store import Store, finding_key, key_path, text_of
from integrity.trust import SignKey, check_signature, package_triage, seal

__all__ = ["Options", "SignKey", "audit", "diff_report", "init", "update", "verify"]


def hostname() -> str:
    return os.uname().nodename  # socket.gethostname(), without loading socket


# -- policy and plan ----------------------------------------------------------------------


def resolve_policy(root: str, profiles: Iterable[str], profile_dirs: Iterable[str] = ()) -> Policy:
    """Load the named profiles; ``auto`` (or nothing) means what is installed under root."""
    extra = [str(d) for d in profile_dirs]
    dirs = default_profile_dirs(extra) if extra else None
    names = [p for p in profiles if p and p != "auto"]
    if not names:
        names = detect(root, dirs=dirs)
        if not names:
            raise ConfigError(
                f"{root}: no sendmail, postfix, exim4 or dovecot installation found; "
                "name a profile with --profile (see `mail-integrity profiles`)"
            )
    policy = load(names, dirs=dirs)
    return with_self(policy, root)


def with_self(policy: Policy, root: str) -> Policy:
    """Put the monitor's own installed code in scope: tampering with it blinds us."""
    if os.path.realpath(root) != "/":
        return policy  # the code runs on this host, not inside the monitored root
    import integrity

    pkg = os.path.dirname(os.path.abspath(integrity.__file__))
    code = [f"{pkg}/*.py", f"{pkg}/analyzers/*.py"]
    import shutil

    script = shutil.which("mail-integrity")
    if script:
        code.append(os.path.abspath(script))
    extra = [
        Rule(path, Role.BINARY, "self", Expect(deny=0o022), optional=True,
             note="mail-integrity's own code")
        for path in code
    ]  # fmt: skip
    return Policy(policy.profiles, policy.rules + tuple(extra))


# -- commands -----------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Options:
    root: str = "/"
    db: str = "/var/lib/mail-integrity/baseline.db"
    profiles: tuple[str, ...] = ("auto",)
    profile_dirs: tuple[str, ...] = ()
    public_key: str | None = None  # when set, the baseline must carry a valid signature
    pinned_fingerprint: str | None = None
    ledger: str | None = None  # highest generation seen, kept outside the database
    packages: bool = True  # package-aware triage (dpkg md5sums, rpm) when available
    state_dir: str | None = None  # checksum key, and run records of a read-only baseline
    outbox: str | None = None  # the syslog outbox (state of ours, like the database)
    waivers: tuple[Waiver, ...] = ()  # [[waiver]]: site exceptions, listed as acknowledged

    def state_files(self) -> list[str | None]:
        """The database, outbox and ledger: the monitor's own state."""
        stem = os.path.splitext(os.path.basename(self.db))[0]
        folder = self.state_dir or os.path.dirname(os.path.abspath(self.db))
        return [
            self.db,
            self.outbox,
            self.ledger or default_ledger(self.db),
            key_path(self.db, self.state_dir),  # the checksum key
            os.path.join(folder, f"{stem}.state.db"),  # runs of a read-only baseline
        ]


def default_ledger(db: str) -> str:
    """The rollback ledger lives with the database it guards (never in a fixed place)."""
    return os.path.join(os.path.dirname(os.path.abspath(db)), "generations.json")


def default_outbox(db: str) -> str:
    return os.path.join(os.path.dirname(os.path.abspath(db)), "outbox.db")


def _check_root(root: str) -> str:
    if not os.path.isdir(root):
        raise UsageError(f"{root}: --root must be an existing directory")
    return os.path.abspath(root)


def init(
    opts: Options,
    *,
    progress: Progress | None = None,
    sign: SignKey | None = None,
    force: bool = False,
) -> Report:
    """Build a new baseline; the report lists what the live state already violates.

    High and critical conditions are not accepted by init: they stay standing findings
    (``report.header["standing"]``) until fixed or acknowledged with ``update --accept``.
    """
    root = _check_root(opts.root)
    policy = resolve_policy(root, opts.profiles, opts.profile_dirs)
    if not force:
        _refuse_overwrite(opts.db, opts.state_dir)
    own = SelfState.locate(root, opts.state_files())
    skip = own.excluded() - set(policy.parents())
    store = Store.open(opts.db, create=True, state_dir=opts.state_dir)
    try:
        scan = StateScan()  # records stream into the store; findings gather in scan
        records = stream_snapshot(root, policy, scan, progress=progress)
        store.write_baseline((rec, role) for rec, role in records if rec.path not in skip)
        store.set_meta("root", root)
        store.set_meta("profiles", ",".join(policy.profiles))
        store.set_meta("host", hostname())
        if sign is not None:
            seal(store, sign)
        findings = [f for f in host_fixes(scan.findings, root) if f.path not in skip]
        candidates = {f.path for f in findings if is_standing(f)}
        baselined = store.has_paths(candidates)  # not queue entries: they are checked live
        store.replace_standing(f for f in findings if is_standing(f) and f.path in baselined)
        report = Report(findings=findings, warnings=scan.warnings, scanned=scan.scanned)
        report.findings.extend(self_findings(own, root, Plan(parents=set(policy.parents()))))
        run = store.begin_run("init", root, policy.profiles, hostname())
        settle(store, report, opts.waivers, run=run, only_standing=True)
        store.keep_acks(finding_key(a.finding) for a in report.acknowledged)
        report.header = _header(store, root, policy, "init")
        report.header["standing"] = [
            {"path": f.path, "rule": f.rule, "severity": str(f.severity)}
            for f in report.findings
            if is_standing(f)
        ]
        store.finish_run(run, _summary(report), 0)
    finally:
        store.close()
    return report


def _refuse_overwrite(db: str, state_dir: str | None) -> None:
    """init over a baseline replaces it: only with --force, and say which one."""
    if db == ":memory:" or not os.path.exists(db):
        return
    check_access(db)
    store = Store.open(db, state_dir=state_dir)
    try:
        if not store.has_baseline():
            return
        gen, sealed = store.generation, store.get_meta("sealed_at") or "?"
        root = store.get_meta("root") or "/"
    finally:
        store.close()
    raise UsageError(
        f"{db} already holds a baseline (generation {gen}, sealed {sealed}, root {root}); "
        "`init --force` replaces it, `update --accept PATH --reason ...` accepts changes"
    )


def check_access(path: str) -> None:
    """A database we may not read is "permission denied", never "no baseline"."""
    try:
        os.stat(path)
    except PermissionError as exc:
        raise IOFailure(f"{path}: permission denied (run as root or as the service user)") from exc
    except OSError:
        return  # missing: the store says "no baseline, run init"
    if not os.access(path, os.R_OK):
        raise IOFailure(f"{path}: permission denied (run as root or as the service user)")


def plan_for(root: str, policy: Policy, own: SelfState, *, lean: bool = False) -> Plan:
    """The plan without the monitor's own state: it is judged by expectation instead."""
    plan = make_plan(root, policy, lean=lean)
    skip = own.excluded() - plan.parents  # an ancestor of mail files stays a parent
    for path in skip:
        plan.targets.pop(path, None)
    plan.child_dirs = [t for t in plan.child_dirs if t.path not in skip]
    return plan


def _expect(progress: Progress | None, plan: Plan) -> None:
    """Tell a progress bar how many paths to expect (queue entries come on top)."""
    start = getattr(progress, "start", None)
    if callable(start):
        start(len(plan.targets))


def self_findings(own: SelfState, root: str, plan: Plan) -> list[Finding]:
    """Our own state against its expectations; a directory shared with the mail files
    (an ancestor the policy checks as a parent) is judged as a parent, not as ours."""
    from integrity.scanner import IdNames

    uid = IdNames(root).uid_of(SERVICE_USER)
    return check_self(own, service_uid=uid, shared=plan.parents)


def settle(
    store: Store,
    report: Report,
    waivers: tuple[Waiver, ...],
    *,
    run: int | None,
    scope: list[str] | None = None,
    recheck: tuple[str, Policy] | None = None,
    only_standing: bool = False,
) -> tuple[list[Finding], list[dict[str, object]]]:
    """Standing conditions back into the report, acknowledged ones apart, then the life
    cycle in the database: returns (new findings, rows just resolved).

    ``recheck`` (root, policy): judge the baseline's standing conditions (in ``scope``) as
    they are now. ``only_standing`` (init): lower findings are accepted, not tracked.
    """
    if recheck is not None and not store.has_standing():
        # a baseline from before standing findings: what stands now is what it had
        every = recheck_state(*recheck, store.baseline_paths())
        store.replace_standing(f for f in every if is_standing(f))
    if recheck is not None:
        wanted = store.standing(scope)
        if wanted:
            keys = set().union(*wanted.values())
            again = recheck_state(*recheck, wanted)
            again = [f for f in again if finding_key(f) in keys]
            report.findings = dedupe([*report.findings, *again])
    acks = store.acknowledged(finding_key(f) for f in report.findings)
    report.findings, report.acknowledged = partition(
        report.findings, acks, waivers, key=finding_key, text=text_of
    )
    if run is None:
        return [], []
    tracked = [f for f in report.findings if is_standing(f)] if only_standing else report.findings
    quiet = [finding_key(a.finding) for a in report.acknowledged]
    new, resolved = store.track_findings(run, tracked, scope=scope, acknowledged=quiet)
    return new, list(resolved)


def _header(
    store: Store, root: str, policy: Policy, command: str, notes: Iterable[str] = ()
) -> dict[str, object]:
    return {
        "command": command,
        "root": root,
        "profiles": list(policy.profiles),
        "db": store.path,
        "generation": store.generation,
        "baseline": store.get_meta("rows_digest"),
        "signed": bool(store.get_meta("signature")),
        "signer": store.get_meta("signer"),
        "host": hostname(),
        "notes": [*store.notes(), *notes],
    }


def _summary(report: Report) -> dict[str, object]:
    return {
        "added": report.added,
        "removed": report.removed,
        "changed": report.changed,
        "by_severity": report.by_severity(),
        "scanned": report.scanned,
    }


def open_store(opts: Options, *, writer: bool = False) -> tuple[Store, str, Policy]:
    """The store (signature checked), and the root and policy its baseline was built with.

    Everything is read from one snapshot (a concurrent update is seen whole or not at
    all); ``writer`` queues behind any other init/update first.
    """
    check_access(opts.db)
    store = Store.open(opts.db, writer=writer, state_dir=opts.state_dir)
    try:
        store.begin_read()
        ledger = opts.ledger or default_ledger(opts.db)
        check_signature(
            store, opts.public_key, pinned=opts.pinned_fingerprint, ledger=ledger
        )  # first: with a key, an edited row is a forgery (20)
        root = _check_root(opts.root if opts.root != "/" else store.get_meta("root", "/") or "/")
        names = (
            list(opts.profiles)
            if opts.profiles != ("auto",)
            else (store.get_meta("profiles", "") or "").split(",")
        )
        policy = resolve_policy(root, [n for n in names if n], opts.profile_dirs)
    except BaseException:
        store.close()
        raise
    return store, root, policy


def open_baseline(
    opts: Options, *, writer: bool = False
) -> tuple[Store, str, Policy, dict[str, FileRecord], dict[str, Role]]:
    """``open_store`` plus the whole baseline in memory (records and roles)."""
    store, root, policy = open_store(opts, writer=writer)
    try:
        baseline, raw_roles = store.load_baseline()
    except BaseException:
        store.close()
        raise
    roles = {p: role_from(r) for p, r in raw_roles.items()}
    return store, root, policy, baseline, roles


@dataclass(slots=True)
class Tracked:
    """What a verify changed in the findings' life cycle (for the SIEM)."""

    new: list[Finding] = field(default_factory=list)
    resolved: list[dict[str, object]] = field(default_factory=list)
    unsent: set[str] = field(default_factory=set)  # keys never sent to the SIEM yet


def verify(
    opts: Options,
    *,
    only: Iterable[str] | None = None,
    progress: Progress | None = None,
    triage: Triage | None = None,
    record_run: bool = True,
    enforce: bool = False,
    tracked: Tracked | None = None,
    workers: int | None = None,
    trust_ctime: bool = False,
) -> Report:
    """Compare the live system with the baseline and judge every difference.

    Standing conditions (high or critical since init) are reported again while they
    last; acknowledged and waived findings are listed apart. ``enforce`` puts loosened
    modes and changed owners back to the baseline (never content). ``workers``: processes
    reading files (None: 2 when the machine has 2 CPUs or more). ``trust_ctime``: reuse
    the stored digest of files whose size, mtime, ctime and inode did not move, unless
    the last verify that read every file is older than ``FULL_REHASH_DAYS``.
    """
    store, root, policy = open_store(opts)
    try:
        own = SelfState.locate(root, opts.state_files())
        skip = own.excluded() - set(policy.parents())
        scope = None if only is None else sorted(set(only) - skip)
        triage = triage or package_triage(root, opts.packages)
        trusted = trust_ctime and scope is None and _read_all_lately(store)
        if scope is None:  # the whole tree: streamed, memory bounded by what changed
            rows = (r for r in store.iter_baseline() if r[0] not in skip)
            plan = plan_for(root, policy, own, lean=True)
            _expect(progress, plan)
            if workers is None:
                workers = min(2, os.cpu_count() or 1)
            drift = stream_drift(
                root, plan, rows, progress=progress, workers=workers, trust_ctime=trusted
            )
            report = drift_report(drift, policy, triage=triage)
            baseline, current = drift.baseline, drift.current
            report.findings.extend(self_findings(own, root, plan))
        else:
            baseline, raw_roles = store.load_baseline()
            roles = {p: role_from(r) for p, r in raw_roles.items()}
            snap = snapshot(root, policy, only=scope, progress=progress)
            report = diff_report(baseline, roles, snap, policy, scope=scope, triage=triage)
            current = snap.records
        report.findings = host_fixes(report.findings, root)
        if enforce:
            _enforce(root, report, baseline, current)
        note = (
            "--trust-ctime: files whose size, mtime, ctime and inode did not change were "
            "not read again (their stored hash was reused)"
            if trusted
            else f"--trust-ctime ignored: no verify read every file in the last "
            f"{FULL_REHASH_DAYS} days, so this one did"
        )
        report.header = _header(store, root, policy, "verify", [note] if trust_ctime else [])
        report.header["content"] = "trusted-ctime" if trusted else "read"
        _who_changed(report, root, store.get_meta("sealed_at"))
        run = store.begin_run("verify", root, policy.profiles, hostname()) if record_run else None
        new, resolved = settle(
            store, report, opts.waivers, run=run, scope=scope, recheck=(root, policy)
        )
        if tracked is not None:
            tracked.new, tracked.resolved = new, resolved
            tracked.unsent = store.unsent(finding_key(f) for f in report.findings)
        if run is not None:
            summary = {**_summary(report), "content": report.header["content"]}
            store.finish_run(run, summary, report.exit_code())
    finally:
        store.close()
    return report


#: ``--trust-ctime`` is honoured only when a verify read every file this recently
FULL_REHASH_DAYS = 7


def _read_all_lately(store: Store) -> bool:
    """Did a whole-tree verify read every file (no ``--trust-ctime``) in the last
    ``FULL_REHASH_DAYS``? Runs of this baseline generation only."""
    import datetime as dt

    last = store.last_full_read()
    try:
        when = dt.datetime.fromisoformat(last) if last else None
    except ValueError:
        return False
    limit = dt.datetime.now(dt.UTC) - dt.timedelta(days=FULL_REHASH_DAYS)
    return when is not None and when >= limit


def _who_changed(report: Report, root: str, sealed_at: str | None) -> None:
    """Who-data offline (issue 13): actors from auditd's log since the baseline was sealed."""
    if not report.findings:
        return
    from integrity import whojoin

    report.findings, problem = whojoin.offline(report.findings, root, whojoin.since_time(sealed_at))
    if problem:
        report.warnings.append(ScanWarning(whojoin.log_dir(), problem))


def drift_report(drift: Drift, policy: Policy, *, triage: Triage | None = None) -> Report:
    """Pure part of a streamed verify: the kept differences -> Report."""
    changes = compare(drift.baseline, drift.current, drift.roles)
    findings = judge(changes, drift.baseline, drift.current, policy, drift.roles, triage=triage)
    findings.extend(drift.child_findings)
    kinds: dict[str, set[str]] = {"added": set(), "removed": set(), "changed": set()}
    for ch in changes:
        kinds[str(ch.kind)].add(ch.path)
    return Report(
        findings=dedupe(findings),
        warnings=[w for w in drift.warnings if w.path not in kinds["removed"]],
        added=len(kinds["added"]),
        removed=len(kinds["removed"]),
        changed=len(kinds["changed"]),
        scanned=drift.scanned,
    )


def _enforce(
    root: str,
    report: Report,
    baseline: Mapping[str, FileRecord],
    current: Mapping[str, FileRecord],
) -> None:
    from integrity.enforce import enforce

    done, warnings = enforce(root, report.findings, baseline, current)
    report.findings.extend(done)
    report.warnings.extend(warnings)


def diff_report(
    baseline: Mapping[str, FileRecord],
    roles: Mapping[str, Role],
    snap: Snapshot,
    policy: Policy,
    *,
    scope: Iterable[str] | None = None,
    triage: Triage | None = None,
) -> Report:
    """Pure part of an in-memory verify (scoped, or the daemon's): baseline vs snapshot."""
    keep = None if scope is None else set(scope)
    drift = Drift(
        baseline={p: r for p, r in baseline.items() if keep is None or p in keep},
        current=snap.records,
        roles={**snap.roles, **roles},
        child_findings=snap.child_findings,
        warnings=snap.warnings,
        scanned=len(snap.records),
    )
    return drift_report(drift, policy, triage=triage)


def update(
    opts: Options,
    *,
    paths: Iterable[str] | None,
    reason: str,
    who: str | None = None,
    sign: SignKey | None = None,
    defer_signature: bool = False,
) -> int:
    """Accept the live state of ``paths`` (all when None) into the baseline; returns count."""
    if not reason.strip():
        raise UsageError("update needs --reason: say why the change is accepted")
    store, root, policy, baseline, roles = open_baseline(opts, writer=True)
    try:
        if store.get_meta("signature") and sign is None and not defer_signature:
            raise UsageError(
                f"{opts.db} is signed: accepting changes needs the signing key (--sign-key), "
                "or --defer-signature and then `payload` / `import-signature`"
            )
        scope = None if paths is None else sorted({_norm(p) for p in paths})
        if scope is None:
            own = SelfState.locate(root, opts.state_files())
            snap = snapshot(root, policy, plan=plan_for(root, policy, own))
        else:
            snap = snapshot(root, policy, only=scope)
        open_rows = [f for f in store.open_findings_as() if scope is None or f.path in scope]
        if scope is not None:
            known = {f.path for f in open_rows}
            unknown = [p for p in scope if p not in baseline and p not in snap.records]
            unknown = [p for p in unknown if p not in known]
            if unknown:
                raise UsageError(f"{unknown[0]}: not monitored, not in the baseline, no finding")
        base = baseline if scope is None else {p: baseline[p] for p in scope if p in baseline}
        changed = {ch.path for ch in compare(base, snap.records, {**snap.roles, **roles})}
        upserts = [snap.records[p] for p in sorted(changed) if p in snap.records]
        deletes = [p for p in sorted(changed) if p not in snap.records]
        all_roles = {p: str(r) for p, r in {**roles, **snap.roles}.items()}
        conditions = [f for f in state_findings(snap) if f.path in changed and is_standing(f)]
        standing: dict[str, list[Finding]] = {p.path: [] for p in upserts}
        for f in conditions:
            standing.setdefault(f.path, []).append(f)
        count = store.apply_changes(
            upserts,
            deletes,
            all_roles,
            who=who or _who(),
            reason=reason,
            before={p: baseline.get(p) for p in changed},
            standing=standing,
            acknowledge=[*conditions, *open_rows],
        )
        if sign is not None:
            seal(store, sign)
        elif defer_signature:
            store.set_meta("signature", "")  # unsigned until `import-signature`
        run = store.begin_run("update", root, policy.profiles, hostname())
        store.finish_run(run, {"accepted": count, "reason": reason}, 0)
    finally:
        store.close()
    return count


def _norm(path: str) -> str:
    path = os.path.normpath(path)
    if not path.startswith("/"):
        raise UsageError(f"{path}: give paths as absolute paths inside the monitored root")
    return path


def _who() -> str:
    import pwd

    user = os.environ.get("SUDO_USER") or os.environ.get("USER")
    if not user:
        try:
            user = pwd.getpwuid(os.getuid()).pw_name
        except KeyError:
            user = str(os.getuid())
    return f"{user}@{hostname()}"


def audit(opts: Options, *, progress: Progress | None = None) -> Report:
    """Judge the live host against the profiles and the mail rules, with no baseline."""
    root = _check_root(opts.root)
    policy = resolve_policy(root, opts.profiles, opts.profile_dirs)
    own = SelfState.locate(root, opts.state_files())
    plan = plan_for(root, policy, own)
    _expect(progress, plan)
    snap = snapshot(root, policy, progress=progress, plan=plan)
    findings = host_fixes(state_findings(snap) + self_findings(own, root, plan), root)
    report = Report(findings=dedupe(findings), warnings=snap.warnings, scanned=len(snap.records))
    report.findings, report.acknowledged = partition(
        report.findings, {}, opts.waivers, key=finding_key, text=text_of
    )
    report.header = {
        "command": "audit",
        "root": root,
        "profiles": list(policy.profiles),
        "host": hostname(),
    }
    return report


def signing_payload(opts: Options) -> bytes:
    """The bytes to sign off the host (`payload`); clears the old signature."""
    from integrity.trust import prepare_payload

    check_access(opts.db)
    store = Store.open(opts.db, writer=True, state_dir=opts.state_dir)
    try:
        store.load_baseline()
        return prepare_payload(store)
    finally:
        store.close()


def add_signature(opts: Options, signature: str) -> str:
    """Store a signature made off the host (`import-signature`); needs the public key."""
    from integrity.trust import import_signature

    if not opts.public_key:
        raise UsageError("import-signature needs the public key (--public-key or public_key)")
    check_access(opts.db)
    store = Store.open(opts.db, writer=True, state_dir=opts.state_dir)
    try:
        store.load_baseline()
        return import_signature(store, signature, opts.public_key)
    finally:
        store.close()
