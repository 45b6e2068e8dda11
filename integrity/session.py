"""The daemon's view of a baseline: kept in memory, verified in full or path by path.

Used by ``watch``: one store connection, reloaded when an admin runs ``update``.
"""

from __future__ import annotations

import os
from collections.abc import Iterable

from integrity import scanner
from integrity.api import (
    Options,
    _enforce,
    _summary,
    diff_report,
    hostname,
    open_baseline,
    plan_for,
    self_findings,
    settle,
)
from integrity.judge import Triage
from integrity.lanes import keep_content, oversize_findings
from integrity.maps import table_dependents, with_dependents
from integrity.model import Finding, Report, Role
from integrity.selfstate import SelfState
from integrity.snapshot import Progress, Snapshot, ancestors, snapshot
from integrity.standing import is_standing
from integrity.store import Store, finding_key
from integrity.trust import package_triage


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
        self.announced = False  # the first full check publishes every standing finding
        self._store: Store | None = None
        self.reload()

    @property
    def store(self) -> Store:
        """One connection, used by one thread at a time (start-up, then the worker).

        synchronous=NORMAL in WAL mode: a crash of the process loses nothing, and each
        check no longer waits for fsync (which made the latency tail).
        """
        if self._store is None:
            self._store = Store.open(self.opts.db, shared=True, state_dir=self.opts.state_dir)
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
        self.own = SelfState.locate(self.root, self.opts.state_files())
        self.plan = plan_for(self.root, self.policy, self.own)
        self.auto_triage = package_triage(self.root, self.opts.packages)
        self.dependents = table_dependents(self.baseline)  # table file -> main.cf (maps.py)

    def stale(self) -> bool:
        return self._stale()

    def _stale(self) -> bool:
        """An admin accepted changes: ``reload`` checks and loads the new baseline once."""
        return self.store.generation != self.generation

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
        return {p for p in paths if any(a in tops for a in ancestors(p))}

    def replan(self) -> None:
        self.plan = plan_for(self.root, self.policy, self.own)

    def _skip(self) -> set[str]:
        """Our own state's paths: never compared with the baseline (judged by expectation)."""
        return self.own.excluded() - self.plan.parents

    def _own_touched(self, paths: Iterable[str]) -> bool:
        """A state directory itself was touched (not just our own writes to its files)."""
        skip = self._skip()
        return any(p in skip and not self.own.is_state_file(p) for p in paths)

    def model_path(self, host: str) -> str | None:
        """A host path from an inotify event -> the path inside the root (None if outside)."""
        return scanner.model_path(self.root, host)

    def check(
        self, paths: Iterable[str] | None = None, *, progress: Progress | None = None
    ) -> tuple[Report, list[Finding], list[dict[str, object]]]:
        """Verify all (paths None) or some paths; returns (report, new findings, resolved)."""
        if self._stale():
            self.reload()
        report, snap = self.scan(paths, progress=progress)
        new, resolved = self.track(report.findings, paths, snap, report)
        return report, new, resolved

    def scan(
        self,
        paths: Iterable[str] | None = None,
        *,
        progress: Progress | None = None,
        user_max_hash: int | None = None,
    ) -> tuple[Report, Snapshot]:
        """The collect-and-judge half of ``check``: no database writes (the daemon's lanes
        run it outside their database lock, so hashing never holds the lock); the caller
        checks ``stale()`` first, under that lock. ``user_max_hash``: see scanner.collect."""
        touched_self = False
        if paths is not None:
            paths = list(paths)
            touched_self = self._own_touched(paths)
            skip = self._skip()  # once: it is worked out from paths, not cheap per event
            paths = [p for p in paths if p not in skip]
        if paths is None:
            self.plan = plan_for(self.root, self.policy, self.own)  # new files since the last
            snap = snapshot(
                self.root, self.policy, progress=progress, plan=self.plan,
                user_max_hash=user_max_hash,
            )  # fmt: skip
            scope = None
        else:
            paths = with_dependents(paths, self.dependents)
            snap = snapshot(
                self.root, self.policy, only=paths, plan=self.plan, user_max_hash=user_max_hash
            )
            scope = sorted(set(snap.records) | {t for t in paths if t in self.baseline})
        if user_max_hash is not None:
            keep_content(snap.records, self.baseline, snap.warnings)
        report = diff_report(
            self.baseline,
            self.roles,
            snap,
            self.policy,
            scope=scope,
            triage=self.triage or self.auto_triage,
        )
        if user_max_hash is not None:
            roles = {**snap.roles, **self.roles}
            report.findings.extend(
                oversize_findings(snap.warnings, user_max_hash, lambda p: str(roles.get(p, "")))
            )
        if paths is None or touched_self:
            report.findings.extend(self_findings(self.own, self.root, self.plan))
        if self.enforce:
            _enforce(self.root, report, self.baseline, snap.records)
        return report, snap

    def track(
        self,
        findings: list[Finding],
        paths: Iterable[str] | None,
        snap: Snapshot | None = None,
        report: Report | None = None,
    ) -> tuple[list[Finding], list[dict[str, object]]]:
        """The database half of ``check``: findings of a full (paths None) or scoped check.

        Standing conditions in scope are judged again, acknowledged and waived findings set
        apart (into ``report.acknowledged``); the first full check publishes every standing
        high or critical finding, new or not: a (re)started daemon tells the SIEM what is
        still open.
        """
        store = self.store
        if paths is None or self.run_id is None:
            # one run row per full verify; event-driven checks attach to it, so an event
            # storm cannot grow the run log
            self.run_id = store.begin_run("watch-full", self.root, self.policy.profiles, hostname())
        records = set(snap.records) if snap is not None else set()
        track_scope = None
        if paths is not None:
            paths = list(paths)
            skip = self._skip()  # once per batch, not once per queue entry of a storm
            own = skip if self._own_touched(paths) else set()
            wanted = {p for p in paths if p not in skip} | records | own
            track_scope = sorted(wanted)
        held = Report(findings=list(findings))
        new, resolved = settle(
            store,
            held,
            self.opts.waivers,
            run=self.run_id,
            scope=track_scope,
            recheck=(self.root, self.policy),
        )
        if report is not None:
            report.findings, report.acknowledged = held.findings, held.acknowledged
        if paths is None and not self.announced:
            self.announced = True
            fresh = {finding_key(f) for f in new}
            new = new + [f for f in held.findings if is_standing(f) and finding_key(f) not in fresh]
        if paths is None and report is not None:
            store.finish_run(self.run_id, _summary(report), report.exit_code())
        return new, resolved

    def open_findings(self, min_rank: int) -> list[dict[str, object]]:
        return self.store.open_findings(min_rank)

    def mark_sent(self, keys: Iterable[str]) -> None:
        self.store.mark_sent(keys)
