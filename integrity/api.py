"""The library API: init, verify, update, audit. Wires collect -> record -> compare -> judge.

The CLI and the daemon call these and nothing below them. Each returns values (a Report,
records); none prints.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import zlib
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace

from integrity import analyzers, scanner
from integrity.compare import NO_CONTENT, compare
from integrity.errors import ConfigError, UsageError
from integrity.judge import Triage, assess_facts, check_child, check_parent, check_state, judge
from integrity.model import FileRecord, FileType, Finding, Report, Role, ScanWarning, Severity
from integrity.policy import Expect, Policy, Rule, detect, load
from integrity.policy import profile_dirs as default_profile_dirs
from integrity.store import Store

Progress = Callable[[int], None]
#: roles whose directory entries are checked one by one but never recorded
CHILD_ROLES = frozenset({Role.QUEUE, Role.SPOOL})
MAX_TEXT = 16 * 2**20


@dataclass(frozen=True, slots=True)
class Target:
    path: str
    rule: Rule | None
    role: Role


@dataclass(slots=True)
class Plan:
    """What to look at under a root: recorded targets and child-checked directories."""

    targets: dict[str, Target] = field(default_factory=dict)
    parents: set[str] = field(default_factory=set)
    child_dirs: list[Target] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)


@dataclass(slots=True)
class Snapshot:
    records: dict[str, FileRecord]
    roles: dict[str, Role]
    child_findings: list[Finding]
    warnings: list[ScanWarning]
    plan: Plan


def hostname() -> str:
    return socket.gethostname()


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
    extra = [
        Rule(
            f"{pkg}/*.py",
            Role.BINARY,
            "self",
            Expect(deny=0o022),
            optional=True,
            note="mail-integrity's own code",
        ),
        Rule(
            f"{pkg}/analyzers/*.py",
            Role.BINARY,
            "self",
            Expect(deny=0o022),
            optional=True,
            note="mail-integrity's own code",
        ),
    ]
    script = shutil.which("mail-integrity")
    if script:
        extra.append(
            Rule(
                os.path.abspath(script),
                Role.BINARY,
                "self",
                Expect(deny=0o022),
                optional=True,
                note="the mail-integrity command",
            )
        )
    return Policy(policy.profiles, policy.rules + tuple(extra))


def make_plan(root: str, policy: Policy, *, only: Iterable[str] | None = None) -> Plan:
    """Expand the policy's paths and globs under root into concrete targets."""
    plan = Plan()
    for rule in policy.rules:
        if rule.is_glob:
            for path in _glob(root, rule.pattern):
                if rule.matches(path):  # glob.glob's ** also yields the directory itself
                    _add_target(root, plan, policy, path)
        elif os.path.lexists(scanner.host_path(root, rule.pattern)):
            _add_target(root, plan, policy, rule.pattern)
        elif not rule.optional:
            plan.warnings.append(
                ScanWarning(rule.pattern, f"expected by profile {rule.profile} but missing")
            )
    for parent in policy.parents():
        if parent not in plan.targets and os.path.lexists(scanner.host_path(root, parent)):
            plan.targets[parent] = Target(parent, None, Role.DIRECTORY)
            plan.parents.add(parent)
    if only is not None:
        keep = set(only)
        plan.targets = {p: t for p, t in plan.targets.items() if p in keep}
        plan.child_dirs = [t for t in plan.child_dirs if t.path in keep]
    return plan


def _glob(root: str, pattern: str) -> list[str]:
    found = glob.glob(pattern.lstrip("/"), root_dir=root, recursive=True, include_hidden=True)
    return sorted("/" + p.rstrip("/") for p in found)


def _add_target(root: str, plan: Plan, policy: Policy, path: str) -> None:
    if path in plan.targets:
        return
    rule = policy.rule_for(path)
    role = rule.role if rule else Role.DIRECTORY
    plan.targets[path] = Target(path, rule, role)
    if rule is None:
        return
    if role in CHILD_ROLES:
        plan.child_dirs.append(Target(path, rule, role))
    elif rule.recursive and rule.pattern == path:
        for item in scanner.walk(root, path):
            if isinstance(item, ScanWarning):
                plan.warnings.append(item)
            elif not _ignored(item, rule):
                sub = policy.rule_for(item)
                plan.targets.setdefault(
                    item, Target(item, sub, sub.role if sub else rule.entry_role)
                )


def _ignored(path: str, rule: Rule) -> bool:
    return bool(rule.ignore) and rule.ignores(path.rsplit("/", 1)[-1])


# -- snapshot -----------------------------------------------------------------------------


def snapshot(
    root: str,
    policy: Policy,
    *,
    only: Iterable[str] | None = None,
    progress: Progress | None = None,
    plan: Plan | None = None,
) -> Snapshot:
    """Collect every target (and check queue/spool entries) under root.

    With a prepared ``plan`` and ``only`` (the daemon), just those paths are looked at:
    known targets, new entries of recursive directories, and queue/spool entries.
    """
    if plan is None:
        plan = make_plan(root, policy, only=only)
        targets = list(plan.targets.values())
        children: list[tuple[str, Target]] = []
    else:
        targets, children = scoped_targets(plan, policy, only or ())
    names = scanner.IdNames(root)
    records: dict[str, FileRecord] = {}
    roles: dict[str, Role] = {}
    warnings = list(plan.warnings) if only is None else []
    for target in targets:
        rec, warning = collect_target(root, target, names)
        if warning:
            warnings.append(warning)
        if rec is not None:
            records[target.path] = rec
            roles[target.path] = target.role
        if progress:
            progress(1)
    child_findings: list[Finding] = []
    for target in plan.child_dirs if only is None else []:
        if target.path in records and records[target.path].ftype == FileType.DIR:
            child_findings.extend(_check_children(root, target, names, warnings, progress))
    for path, parent in children:
        child_findings.extend(_check_child_path(root, path, parent, names, warnings))
    return Snapshot(records, roles, child_findings, warnings, plan)


def scoped_targets(
    plan: Plan, policy: Policy, paths: Iterable[str]
) -> tuple[list[Target], list[tuple[str, Target]]]:
    """Which targets and queue entries a set of changed paths touches."""
    child_tops = {t.path: t for t in plan.child_dirs}
    targets: dict[str, Target] = {}
    children: list[tuple[str, Target]] = []
    for path in sorted(set(paths)):
        if path in plan.targets:
            targets[path] = plan.targets[path]
            continue
        top = next((a for a in _ancestors(path) if a in child_tops), None)
        if top is not None:
            children.append((path, child_tops[top]))
            continue
        rule = policy.rule_for(path)
        if rule is not None and not _ignored(path, rule):
            targets[path] = Target(path, rule, rule.role)
    return list(targets.values()), children


def _ancestors(path: str) -> Iterable[str]:
    while path not in ("/", ""):
        path = path.rsplit("/", 1)[0] or "/"
        yield path


def _check_child_path(
    root: str, path: str, parent: Target, names: scanner.IdNames, warnings: list[ScanWarning]
) -> list[Finding]:
    if parent.rule is None or _ignored(path, parent.rule):
        return []
    got = scanner.collect(root, path, names=names, read_content=False, light=True)
    if isinstance(got, ScanWarning):
        if got.message != scanner.VANISHED:
            warnings.append(got)
        return []
    return check_child(got.record, parent.rule)


def collect_target(
    root: str, target: Target, names: scanner.IdNames
) -> tuple[FileRecord | None, ScanWarning | None]:
    """One path -> its record (with analyzer facts when the profile names an analyzer)."""
    rule, role = target.rule, target.role
    analyzer = analyzers.get(rule.analyzer) if rule and rule.analyzer else None
    wants_text = analyzer is not None and role != Role.SECRET
    got = scanner.collect(
        root,
        target.path,
        names=names,
        read_content=role not in NO_CONTENT,
        keep_text=wants_text,
        max_text=MAX_TEXT,
    )
    if isinstance(got, ScanWarning):
        return None, got
    rec = got.record
    if analyzer is not None and got.text is not None and role != Role.SECRET:
        rec = replace(rec, facts=analyzer.parse(got.text.decode("utf-8", errors="replace")))
    elif analyzer is not None and rec.ftype == FileType.FILE and rec.digest is not None:
        got = replace(
            got,
            warning=got.warning
            or ScanWarning(target.path, f"larger than {MAX_TEXT} bytes: content not analyzed"),
        )
    return rec, got.warning


def _check_children(
    root: str,
    target: Target,
    names: scanner.IdNames,
    warnings: list[ScanWarning],
    progress: Progress | None,
) -> list[Finding]:
    if target.rule is None:
        return []
    out: list[Finding] = []
    for item in scanner.walk(root, target.path, max_depth=4):
        if isinstance(item, ScanWarning):
            warnings.append(item)
            continue
        if _ignored(item, target.rule):
            continue
        got = scanner.collect(root, item, names=names, read_content=False, light=True)
        if isinstance(got, ScanWarning):
            if got.message != scanner.VANISHED:  # queue files come and go: normal
                warnings.append(got)
            continue
        out.extend(check_child(got.record, target.rule))
        if progress:
            progress(1)
    return out


def state_findings(snap: Snapshot) -> list[Finding]:
    """Everything the live state violates, with no baseline (init and audit)."""
    out = list(snap.child_findings)
    for path, rec in snap.records.items():
        target = snap.plan.targets[path]
        if path in snap.plan.parents:
            out.extend(check_parent(rec))
            continue
        out.extend(check_state(rec, target.rule, target.role))
        out.extend(assess_facts(rec, target.rule))
        if target.role != Role.DIRECTORY or rec.ftype != FileType.DIR:
            continue
        out.extend(check_parent(rec))
    out.extend(_postfix_services(snap))
    return _dedupe(out)


def _postfix_services(snap: Snapshot) -> list[Finding]:
    """master.cf overrides judged together with main.cf: the exact per-service relay verdict."""
    from integrity.analyzers import postfix

    def facts_of(analyzer: str) -> dict[str, FileRecord]:
        return {
            p.rsplit("/", 1)[0]: r
            for p, r in snap.records.items()
            if r.facts is not None
            and (t := snap.plan.targets.get(p)) is not None
            and t.rule is not None
            and t.rule.analyzer == analyzer
        }

    mains, masters = facts_of("postfix-main"), facts_of("postfix-master")
    out: list[Finding] = []
    for directory, master in masters.items():
        main = mains.get(directory)
        if main is not None and main.facts is not None and master.facts is not None:
            out.extend(postfix.assess_services(master.path, main.facts, master.facts))
    return out


def _dedupe(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.path, f.rule, f.attribute)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return sorted(out, key=lambda f: (-f.severity.rank, f.path, f.rule))


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


@dataclass(frozen=True, slots=True)
class SignKey:
    """The private signing key (meant to live off the host) and its passphrase."""

    path: str
    passphrase: bytes


def _check_root(root: str) -> str:
    if not os.path.isdir(root):
        raise UsageError(f"{root}: --root must be an existing directory")
    return os.path.abspath(root)


def init(opts: Options, *, progress: Progress | None = None, sign: SignKey | None = None) -> Report:
    """Build a new baseline; the report lists what the live state already violates."""
    root = _check_root(opts.root)
    policy = resolve_policy(root, opts.profiles, opts.profile_dirs)
    snap = snapshot(root, policy, progress=progress)
    store = Store.open(opts.db, create=True)
    try:
        store.replace_baseline(snap.records.values(), {p: str(r) for p, r in snap.roles.items()})
        store.set_meta("root", root)
        store.set_meta("profiles", ",".join(policy.profiles))
        store.set_meta("host", hostname())
        if sign is not None:
            seal(store, sign)
        report = Report(
            findings=state_findings(snap), warnings=snap.warnings, scanned=len(snap.records)
        )
        report.header = _header(store, root, policy, "init")
        run = store.begin_run("init", root, policy.profiles, hostname())
        store.track_findings(run, report.findings)
        store.finish_run(run, _summary(report), 0)
    finally:
        store.close()
    return report


def _header(store: Store, root: str, policy: Policy, command: str) -> dict[str, object]:
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
    }


def _summary(report: Report) -> dict[str, object]:
    return {
        "added": report.added,
        "removed": report.removed,
        "changed": report.changed,
        "by_severity": report.by_severity(),
        "scanned": report.scanned,
    }


def open_baseline(
    opts: Options,
) -> tuple[Store, str, Policy, dict[str, FileRecord], dict[str, Role]]:
    """The store, the root and policy it was built with, and its records and roles."""
    store = Store.open(opts.db)
    try:
        check_signature(store, opts)  # first: with a key, an edited row is a forgery (20)
        baseline, raw_roles = store.load_baseline()
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
    roles = {
        p: Role(r) if r in Role.__members__.values() else Role.DIRECTORY
        for p, r in raw_roles.items()
    }
    return store, root, policy, baseline, roles


def verify(
    opts: Options,
    *,
    only: Iterable[str] | None = None,
    progress: Progress | None = None,
    triage: Triage | None = None,
    record_run: bool = True,
    enforce: bool = False,
) -> Report:
    """Compare the live system with the baseline and judge every difference.

    ``enforce`` puts loosened modes and changed owners back to the baseline (never content).
    """
    store, root, policy, baseline, roles = open_baseline(opts)
    try:
        scope = None if only is None else sorted(set(only))
        snap = snapshot(root, policy, only=scope, progress=progress)
        auto_triage, provenance = package_triage(root, opts)
        report = diff_report(
            baseline, roles, snap, policy, scope=scope, triage=triage or auto_triage
        )
        report.findings = explain_binaries(report.findings, snap.records, provenance)
        if enforce:
            _enforce(root, report, baseline, snap.records)
        report.header = _header(store, root, policy, "verify")
        if record_run:
            run = store.begin_run("verify", root, policy.profiles, hostname())
            store.track_findings(run, report.findings, scope=scope)
            store.finish_run(run, _summary(report), report.exit_code())
    finally:
        store.close()
    return report


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
    """Pure part of verify: baseline vs snapshot -> Report."""
    all_roles = {**snap.roles, **roles}
    baseline_scope = baseline
    if scope is not None:
        keep = set(scope)
        baseline_scope = {p: r for p, r in baseline.items() if p in keep}
    changes = compare(baseline_scope, snap.records, all_roles)
    findings = judge(changes, baseline, snap.records, policy, all_roles, triage=triage)
    findings.extend(snap.child_findings)
    kinds: dict[str, set[str]] = {"added": set(), "removed": set(), "changed": set()}
    for ch in changes:
        kinds[str(ch.kind)].add(ch.path)
    gone = {ch.path for ch in changes if ch.kind == "removed"}
    return Report(
        findings=_dedupe(findings),
        warnings=[w for w in snap.warnings if w.path not in gone],
        added=len(kinds["added"]),
        removed=len(kinds["removed"]),
        changed=len(kinds["changed"]),
        scanned=len(snap.records),
    )


def update(
    opts: Options,
    *,
    paths: Iterable[str] | None,
    reason: str,
    who: str | None = None,
    sign: SignKey | None = None,
) -> int:
    """Accept the live state of ``paths`` (all when None) into the baseline; returns count."""
    if not reason.strip():
        raise UsageError("update needs --reason: say why the change is accepted")
    store, root, policy, baseline, roles = open_baseline(opts)
    try:
        if store.get_meta("signature") and sign is None:
            raise UsageError(
                f"{opts.db} is signed: accepting changes needs the signing key (--sign-key)"
            )
        scope = None if paths is None else sorted({_norm(p) for p in paths})
        snap = snapshot(root, policy, only=scope)
        if scope is not None:
            unknown = [p for p in scope if p not in baseline and p not in snap.records]
            if unknown:
                raise UsageError(f"{unknown[0]}: not monitored and not in the baseline")
        base = baseline if scope is None else {p: baseline[p] for p in scope if p in baseline}
        changed = {ch.path for ch in compare(base, snap.records, {**snap.roles, **roles})}
        upserts = [snap.records[p] for p in sorted(changed) if p in snap.records]
        deletes = [p for p in sorted(changed) if p not in snap.records]
        all_roles = {p: str(r) for p, r in {**roles, **snap.roles}.items()}
        count = store.apply_changes(
            upserts,
            deletes,
            all_roles,
            who=who or _who(),
            reason=reason,
            before={p: baseline.get(p) for p in changed},
        )
        if sign is not None:
            seal(store, sign)
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
    user = os.environ.get("SUDO_USER") or os.environ.get("USER") or str(os.getuid())
    return f"{user}@{hostname()}"


def audit(opts: Options, *, progress: Progress | None = None) -> Report:
    """Judge the live host against the profiles and the mail rules, with no baseline."""
    root = _check_root(opts.root)
    policy = resolve_policy(root, opts.profiles, opts.profile_dirs)
    snap = snapshot(root, policy, progress=progress)
    report = Report(
        findings=state_findings(snap), warnings=snap.warnings, scanned=len(snap.records)
    )
    report.header = {
        "command": "audit",
        "root": root,
        "profiles": list(policy.profiles),
        "host": hostname(),
    }
    return report


class Session:
    """A loaded baseline kept in memory for the daemon: full and path-scoped verifies.

    The store is opened per call (the daemon's worker thread owns it) and the baseline is
    reloaded when its generation moves (an admin ran ``update``).
    """

    def __init__(
        self, opts: Options, *, triage: Triage | None = None, enforce: bool = False
    ) -> None:
        self.opts = opts
        self.triage = triage
        self.enforce = enforce
        self.run_id: int | None = None
        self.generation = -1
        self._store: Store | None = None
        self.reload()

    @property
    def store(self) -> Store:
        """One connection, used by one thread at a time (start-up, then the worker).

        synchronous=NORMAL in WAL mode: a crash of the process loses nothing, and each
        check no longer waits for fsync (which made the latency tail).
        """
        if self._store is None:
            self._store = Store.open(self.opts.db, shared=True)
            self._store.db.execute("PRAGMA synchronous=NORMAL")
        return self._store

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def reload(self) -> None:
        store, self.root, self.policy, self.baseline, self.roles = open_baseline(self.opts)
        try:
            self.generation = store.generation
        finally:
            store.close()
        self.close()  # the worker reopens its own connection
        self.plan = make_plan(self.root, self.policy)
        self.auto_triage, self.provenance = package_triage(self.root, self.opts)

    def _stale(self) -> bool:
        store = self.store
        if store.generation != self.generation:
            check_signature(store, self.opts)
            store.load_baseline()  # refuses edited rows before we trust them
            return True
        return False

    def watch_dirs(self) -> tuple[set[str], set[str]]:
        """(directories to watch flat, directories to watch recursively) as host paths."""
        flat: set[str] = set()
        deep: set[str] = set()
        for target in self.plan.targets.values():
            rule = target.rule
            if rule is not None and rule.recursive and rule.pattern == target.path:
                deep.add(scanner.host_path(self.root, target.path))
            flat.add(scanner.host_path(self.root, target.path.rsplit("/", 1)[0] or "/"))
        for target in self.plan.child_dirs:
            flat.add(scanner.host_path(self.root, target.path))
        for rule in self.policy.rules:  # where a missing file or directory would appear
            literal = rule.pattern.split("*", 1)[0].split("?", 1)[0].split("[", 1)[0]
            parent = literal.rstrip("/").rsplit("/", 1)[0] or "/"
            while not os.path.isdir(scanner.host_path(self.root, parent)) and parent != "/":
                parent = parent.rsplit("/", 1)[0] or "/"
            flat.add(scanner.host_path(self.root, parent))
        return flat, deep

    def watched_dir_paths(self) -> set[str]:
        """Host paths of every directory the profiles name, present or not: when one is
        created, renamed or replaced, the watches must be rebuilt."""
        dir_roles = (Role.DIRECTORY, Role.QUEUE, Role.SPOOL)
        return {
            scanner.host_path(self.root, r.pattern)
            for r in self.policy.rules
            if not r.is_glob and (r.recursive or r.role in dir_roles)
        }

    def queue_dirs(self) -> set[str]:
        """Host paths of the queue and spool directories (watched for exposure only)."""
        return {scanner.host_path(self.root, t.path) for t in self.plan.child_dirs}

    def queue_entries(self, paths: Iterable[str]) -> set[str]:
        """The paths that lie inside a queue or spool directory (checked after the rest)."""
        tops = {t.path for t in self.plan.child_dirs}
        return {p for p in paths if any(a in tops for a in _ancestors(p))}

    def replan(self) -> None:
        self.plan = make_plan(self.root, self.policy)

    def model_path(self, host: str) -> str | None:
        """A host path from an inotify event -> the path inside the root (None if outside)."""
        root = self.root.rstrip("/")
        if not root:
            return host
        if host == root:
            return "/"
        if host.startswith(root + "/"):
            return host[len(root) :]
        return None

    def check(
        self, paths: Iterable[str] | None = None, *, progress: Progress | None = None
    ) -> tuple[Report, list[Finding], list[dict[str, object]]]:
        """Verify all (paths None) or some paths; returns (report, new findings, resolved)."""
        if self._stale():
            self.reload()
        if paths is None:
            self.plan = make_plan(self.root, self.policy)
            snap = snapshot(self.root, self.policy, progress=progress, plan=None)
            scope = None
        else:
            snap = snapshot(self.root, self.policy, only=paths, plan=self.plan)
            scope = sorted(set(snap.records) | {t for t in paths if t in self.baseline})
        report = diff_report(
            self.baseline,
            self.roles,
            snap,
            self.policy,
            scope=scope,
            triage=self.triage or self.auto_triage,
        )
        report.findings = explain_binaries(report.findings, snap.records, self.provenance)
        if self.enforce:
            _enforce(self.root, report, self.baseline, snap.records)
        store = self.store
        report.header = _header(store, self.root, self.policy, "watch")
        if paths is None or self.run_id is None:
            # one run row per full verify; event-driven checks attach to it, so an event
            # storm cannot grow the run log
            self.run_id = store.begin_run("watch-full", self.root, self.policy.profiles, hostname())
        track_scope = None if paths is None else sorted(set(paths) | set(snap.records))
        new, resolved = store.track_findings(self.run_id, report.findings, scope=track_scope)
        if paths is None:
            store.finish_run(self.run_id, _summary(report), report.exit_code())
        return report, new, resolved

    def open_findings(self, min_rank: int) -> list[dict[str, object]]:
        return self.store.open_findings(min_rank)

    def mark_sent(self, keys: Iterable[str]) -> None:
        self.store.mark_sent(keys)


def _fleet_record(rec: FileRecord) -> FileRecord:
    """A record as comparable across hosts: ids by name, per-host metadata dropped."""

    def ident(name: str | None, num: int) -> int:
        if name is None:
            return num
        return 0 if name == "root" else 1_000_000 + zlib.crc32(name.encode())

    return replace(
        rec,
        uid=ident(rec.owner, rec.uid),
        gid=ident(rec.group, rec.gid),
        mtime_ns=0,
        ctime_ns=0,
        inode=0,
        nlink=1,
    )


def compare_baselines(db_a: str, db_b: str, *, profile_dirs: Iterable[str] = ()) -> Report:
    """Fleet drift: how host B's baseline differs from host A's (A is the reference)."""
    (rec_a, roles_a, names_a), (rec_b, roles_b, _) = (_load_any(db_a), _load_any(db_b))
    extra = [str(d) for d in profile_dirs]
    policy = load(names_a, dirs=default_profile_dirs(extra) if extra else None)
    a = {p: _fleet_record(r) for p, r in rec_a.items()}
    b = {p: _fleet_record(r) for p, r in rec_b.items()}
    roles: dict[str, Role] = {p: _role(r) for p, r in {**roles_b, **roles_a}.items()}
    changes = compare(a, b, roles)
    findings = judge(changes, a, b, policy, roles)
    kinds: dict[str, set[str]] = {"added": set(), "removed": set(), "changed": set()}
    for ch in changes:
        kinds[str(ch.kind)].add(ch.path)
    report = Report(
        findings=_dedupe(findings),
        added=len(kinds["added"]),
        removed=len(kinds["removed"]),
        changed=len(kinds["changed"]),
        scanned=len(set(a) | set(b)),
    )
    report.header = {
        "command": "compare",
        "reference": db_a,
        "other": db_b,
        "profiles": list(policy.profiles),
    }
    return report


def _role(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        return Role.DIRECTORY


# -- trust: signatures, rollback ledger, package triage ------------------------------------


def signed_payload(store: Store) -> bytes:
    from integrity import signing

    profiles = [p for p in (store.get_meta("profiles", "") or "").split(",") if p]
    return signing.payload(
        rows_digest=store.current_digest(),
        host=store.get_meta("host", "") or "",
        generation=store.generation,
        signed_at=store.get_meta("signed_at", "") or "",
        root=store.get_meta("root", "/") or "/",
        profiles=profiles,
    )


def seal(store: Store, key: SignKey) -> str:
    """Sign the baseline's canonical digest (not the SQLite bytes); returns the signer."""
    from integrity import signing
    from integrity.store import now

    store.set_meta("signed_at", now())
    signature = signing.sign(key.path, key.passphrase, signed_payload(store))
    pub = signing.signer(key.path, key.passphrase)
    store.set_meta("signature", signature)
    store.set_meta("signer", pub)
    return pub


def check_signature(store: Store, opts: Options) -> None:
    """With a public key configured: valid signature, and no rollback to an older generation."""
    if not opts.public_key:
        return
    from integrity import signing

    signing.check(
        opts.public_key,
        signed_payload(store),
        store.get_meta("signature"),
        pinned=opts.pinned_fingerprint,
    )
    ledger = signing.Ledger(opts.ledger) if opts.ledger else signing.Ledger()
    fpr = signing.fingerprint(signing.load_public(opts.public_key))
    key = signing.Ledger.key_for(fpr, os.path.abspath(store.path))
    ledger.check(key, store.generation)
    ledger.record(key, store.generation)


def package_triage(
    root: str, opts: Options
) -> tuple[Triage | None, Callable[[FileRecord], str] | None]:
    """(triage, provenance) from the package manager under root, when there is one."""
    if not opts.packages:
        return None, None
    from integrity import packages

    backend = packages.detect_backend(root)
    if backend is None:
        return None, None
    return packages.make_triage(root, backend), lambda rec: packages.provenance(root, backend, rec)


def explain_binaries(
    findings: list[Finding],
    current: Mapping[str, FileRecord],
    provenance: Callable[[FileRecord], str] | None,
) -> list[Finding]:
    """Say where a changed binary stands against its package; one that differs is critical."""
    if provenance is None:
        return findings
    out = []
    for f in findings:
        rec = current.get(f.path)
        if f.rule in ("MI-BINARY-CHANGED", "MI-SETID-BINARY-REPLACED") and rec is not None:
            where = provenance(rec)
            sev = Severity.CRITICAL if where.startswith("differs from") else f.severity
            f = replace(f, severity=sev, message=f"{f.message} ({where})")
        out.append(f)
    return out


def export_baseline(db: str) -> dict[str, object]:
    """The baseline as JSON (for fleet comparison on another machine); checksum included."""
    store = Store.open(db)
    try:
        store.load_baseline()  # refuse to export rows that fail their checksum
        rows = [
            {"path": os.fsdecode(p), "role": role, "record": record}
            for p, role, record in sorted(store.raw_rows())
        ]
        meta = {
            k: store.get_meta(k)
            for k in (
                "host",
                "root",
                "profiles",
                "generation",
                "rows_digest",
                "signature",
                "signer",
            )
        }
    finally:
        store.close()
    return {"format": "mail-integrity-baseline/1", "meta": meta, "files": rows}


def _load_any(path: str) -> tuple[dict[str, FileRecord], dict[str, str], list[str]]:
    """Records, roles and profile names from a database or an exported JSON baseline."""
    import json

    from integrity.errors import BaselineCorruptError
    from integrity.store import rows_digest

    with open(path, "rb") as fh:
        head = fh.read(1)
    if head != b"{":
        store = Store.open(path)
        try:
            records, roles = store.load_baseline()
            names = [n for n in (store.get_meta("profiles", "") or "").split(",") if n]
        finally:
            store.close()
        return records, roles, names
    try:
        with open(path, encoding="utf-8") as fh:
            doc = json.load(fh)
        rows = [(os.fsencode(r["path"]), r["role"], r["record"]) for r in doc["files"]]
        meta = doc["meta"]
        if rows_digest(rows) != meta["rows_digest"]:
            raise BaselineCorruptError(f"{path}: exported rows do not match their checksum")
        records = {
            os.fsdecode(p): FileRecord.from_row({"path": os.fsdecode(p), **json.loads(rec)})
            for p, _, rec in rows
        }
        roles = {os.fsdecode(p): role for p, role, _ in rows}
    except (ValueError, KeyError, TypeError) as exc:
        raise BaselineCorruptError(f"{path}: not an exported baseline: {exc}") from exc
    return records, roles, [n for n in (meta.get("profiles") or "").split(",") if n]
