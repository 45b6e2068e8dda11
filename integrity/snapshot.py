"""Collect a whole policy's worth of paths: plan (what to look at), snapshot, state checks.

The first stage of every command: turn profiles and a root into targets, collect them,
check queue and spool entries for exposure, and say what the live state violates.
"""

from __future__ import annotations

import errno
import fnmatch
import functools
import glob
import json
import os
import posixpath
import re
import stat
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import cast

from integrity import analyzers, quick, scanner
from integrity.compare import NO_CONTENT
from integrity.judge import assess_facts, check_child, check_parent, check_state
from integrity.model import Facts, FileRecord, FileType, Finding, Role, ScanWarning
from integrity.policy import Expect, Policy, Rule

Progress = Callable[[int], None]
#: roles whose directory entries are checked one by one but never recorded
CHILD_ROLES = frozenset({Role.QUEUE, Role.SPOOL})
MAX_TEXT = 16 * 2**20
#: after this many rows the fast path got wrong (rows written by an older version, in
#: another canonical form), a verify stops trying it: until the next ``update`` it would
#: only cost time
_QUICK_GIVE_UP = 64


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


def make_plan(
    root: str, policy: Policy, *, only: Iterable[str] | None = None, lean: bool = False
) -> Plan:
    """Expand the policy's paths and globs under root into concrete targets.

    ``lean`` (a streamed verify): entries below a recursive directory keep no rule of their
    own (one is made per entry, with no analyzer): 100k entries, some 10 MiB saved.
    """
    plan = Plan()
    lean_ids = {id(r) for r in policy.rules} if lean else None
    for rule in policy.rules:
        if rule.is_glob:
            for path in _glob(root, rule.pattern):
                if rule.matches(path):  # glob.glob's ** also yields the directory itself
                    _add_target(root, plan, policy, path, lean_ids)
        elif os.path.lexists(scanner.host_path(root, rule.pattern)):
            _add_target(root, plan, policy, rule.pattern, lean_ids)
        elif not rule.optional:
            plan.warnings.append(
                ScanWarning(rule.pattern, f"expected by profile {rule.profile} but missing")
            )
    _add_link_targets(root, plan, policy)
    for parent in policy.parents():
        if parent not in plan.targets and os.path.lexists(scanner.host_path(root, parent)):
            plan.targets[parent] = Target(parent, None, Role.DIRECTORY)
            plan.parents.add(parent)
    if only is not None:
        keep = set(only)
        plan.targets = {p: t for p, t in plan.targets.items() if p in keep}
        plan.child_dirs = [t for t in plan.child_dirs if t.path in keep]
    return plan


def _add_link_targets(root: str, plan: Plan, policy: Policy) -> None:
    """What the profile's symlinks (and binary entries) lead to is monitored too (links.py)."""
    from integrity import links

    ids = {id(r) for r in policy.rules}
    linked = []
    for t in plan.targets.values():
        if t.rule is not None and id(t.rule) in ids:
            linked.append((t.path, t.rule))
        elif t.role == Role.BINARY and (rule := t.rule or policy.rule_for(t.path)) is not None:
            linked.append((t.path, rule))
    for hop, rule, _link in links.chain_targets(root, policy, linked):
        if hop not in plan.targets:
            plan.targets[hop] = Target(hop, rule, rule.role)
            if rule.role in CHILD_ROLES:
                plan.child_dirs.append(Target(hop, rule, rule.role))


def _glob(root: str, pattern: str) -> list[str]:
    found = glob.glob(pattern.lstrip("/"), root_dir=root, recursive=True, include_hidden=True)
    return sorted("/" + p.rstrip("/") for p in found)


def _add_target(
    root: str, plan: Plan, policy: Policy, path: str, lean_ids: set[int] | None = None
) -> None:
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
        rules = _DirRules(policy)
        for item in scanner.walk(root, path):
            if isinstance(item, ScanWarning):
                plan.warnings.append(item)
                continue
            if item in plan.targets:
                continue
            found = rules.lookup(item, full=lean_ids is None)
            if found is None:
                continue  # ignored by the directory's `ignore` (its name or a parent's)
            plan.targets[item] = Target(item, *found)


class _DirRules:
    """``policy.rule_for`` for walked entries, worked out once per directory.

    A walk asks about every entry; the exact rules of a directory, the globs that can
    reach it, its recursive ancestor and whether an ignored name hides it are the same
    for all its entries. ``lookup`` gives ``(own rule, its role)``, ``(None, entry_role)``
    for an entry of a recursive directory, or None when no rule covers the path: the same
    answers as ``Policy.rule_for`` (tests/test_snapshot_plan.py checks it path by path).
    """

    _MAX = 65536

    def __init__(self, policy: Policy) -> None:
        exact = {r.pattern: r for r in policy.rules if not r.is_glob}  # later profile wins
        self._exact: dict[str, dict[str, Rule]] = {}
        for pattern, rule in exact.items():
            self._exact.setdefault(posixpath.dirname(pattern), {})[pattern] = rule
        self._globs = [(_literal_prefix(r.pattern), r) for r in reversed(policy.rules) if r.is_glob]
        self._dirs: dict[str, _DirInfo] = {}

    def lookup(self, path: str, *, full: bool = False) -> tuple[Rule | None, Role] | None:
        """``full``: the entry rule itself (as ``rule_for`` makes it), not None."""
        directory, _, name = path.rpartition("/")
        info = self._info(directory or "/")
        own = info.own(path)
        if own is not None:
            return own, own.role
        top = info.top_rule
        if top is None or info.hidden or (info.ignore is not None and info.ignore(name)):
            return None
        if not full:
            return None, top.entry_role
        entry = Rule(
            pattern=path, role=top.entry_role, profile=top.profile,
            expect=top.children or Expect(), optional=True, ignore=top.ignore,
            note=f"entry below {info.top}", origin=top.origin, smrsh=top.smrsh,
        )  # fmt: skip
        return entry, entry.role

    def own(self, path: str) -> Rule | None:
        directory = posixpath.dirname(path)
        return self._info(directory).own(path)

    def _info(self, directory: str) -> _DirInfo:
        info = self._dirs.get(directory)
        if info is None:
            if len(self._dirs) >= self._MAX:
                self._dirs.clear()  # bounded memory; recomputing is cheap
            info = self._dirs[directory] = self._make(directory)
        return info

    def _make(self, directory: str) -> _DirInfo:
        base = directory if directory.endswith("/") else directory + "/"
        # a glob that cannot reach a directory cannot reach its subdirectories either:
        # only the parent's candidates are tried (a walk of 100k entries, 1,000 directories)
        above = self._info(posixpath.dirname(directory)).near if directory != "/" else None
        near = tuple(
            (prefix, rule) for prefix, rule in (self._globs if above is None else above)
            if base.startswith(prefix) or prefix.startswith(base)
        )  # fmt: skip
        info = _DirInfo(self._exact.get(directory, {}), tuple(r for _, r in near), near)
        own = self.own(directory) if directory != "/" else self._info_root_own()
        if own is not None and own.recursive:
            info.top, info.top_rule = directory, own
        elif directory != "/":
            parent = self._info(posixpath.dirname(directory))
            info.top, info.top_rule = parent.top, parent.top_rule
        if info.top_rule is not None and info.top_rule.ignore:
            info.ignore = _ignore_matcher(info.top_rule.ignore)
            if directory != info.top:
                below = directory[len(info.top) :].strip("/").split("/")
                info.hidden = any(info.top_rule.ignores(n) for n in below)
        return info

    def _info_root_own(self) -> Rule | None:
        rule = self._exact.get("/", {}).get("/")
        if rule is not None:
            return rule
        return next((r for p, r in self._globs if "/".startswith(p) and r.matches("/")), None)


@functools.lru_cache(maxsize=64)
def _ignore_matcher(patterns: tuple[str, ...]) -> Callable[[str], object]:
    """``Rule.ignores`` as one compiled regex (fnmatchcase is translate + match)."""
    return re.compile("|".join(f"(?:{fnmatch.translate(p)})" for p in patterns)).match


@dataclass(slots=True)
class _DirInfo:
    exact: dict[str, Rule]
    globs: tuple[Rule, ...]
    near: tuple[tuple[str, Rule], ...]  # (literal prefix, rule) of the globs above
    top: str = ""
    top_rule: Rule | None = None
    hidden: bool = False
    ignore: Callable[[str], object] | None = None

    def own(self, path: str) -> Rule | None:
        rule = self.exact.get(path)
        if rule is not None:
            return rule
        return next((r for r in self.globs if r.matches(path)), None)


def _literal_prefix(pattern: str) -> str:
    cut = min((pattern.index(c) for c in "*?[" if c in pattern), default=len(pattern))
    return pattern[:cut]


def _ignored(path: str, rule: Rule) -> bool:
    return rule.ignores(path.rsplit("/", 1)[-1])


# -- snapshot -----------------------------------------------------------------------------


def snapshot(
    root: str,
    policy: Policy,
    *,
    only: Iterable[str] | None = None,
    progress: Progress | None = None,
    plan: Plan | None = None,
    user_max_hash: int | None = None,
) -> Snapshot:
    """Collect every target (and check queue/spool entries) under root.

    With a prepared ``plan`` (the daemon) it is not made again; with ``only`` as well, just
    those paths are looked at: known targets, new entries of recursive directories, and
    queue/spool entries. ``user_max_hash``: see ``scanner.collect``.
    """
    children: list[tuple[str, Target]] = []
    if plan is None:
        plan = make_plan(root, policy, only=only)
        targets = list(plan.targets.values())
    elif only is None:
        targets = list(plan.targets.values())
    else:
        targets, children = scoped_targets(plan, policy, only)
    names = scanner.IdNames(root)
    records: dict[str, FileRecord] = {}
    roles: dict[str, Role] = {}
    warnings = list(plan.warnings) if only is None else []
    for target in targets:
        rec, warning = collect_target(root, target, names, user_max_hash=user_max_hash)
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


@dataclass(slots=True)
class Drift:
    """What a streaming verify keeps: only the paths that differ, plus counts."""

    baseline: dict[str, FileRecord] = field(default_factory=dict)
    current: dict[str, FileRecord] = field(default_factory=dict)
    roles: dict[str, Role] = field(default_factory=dict)
    child_findings: list[Finding] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    scanned: int = 0


def stream_drift(
    root: str,
    plan: Plan,
    rows: Iterable[tuple[str, str, str]],
    *,
    progress: Progress | None = None,
    workers: int = 1,
    trust_ctime: bool = False,
) -> Drift:
    """Merge the baseline rows (in path order) with a scan of the plan, keeping only drift.

    Memory stays at the plan plus what changed, whatever the tree: an unchanged path is
    recognised by its canonical record JSON (quick.py) and dropped at once; only a path
    whose text differs is collected in full and compared attribute by attribute.
    ``workers``: 2 lets a forked helper make half of the texts (``quick.Texts``).
    ``trust_ctime``: reuse the stored digest of a file whose size, mtime, ctime and inode
    did not move (``quick.record_text``); the texts are then made here, next to the rows.
    """
    from integrity.compare import diff_records

    names = scanner.IdNames(root)
    out = Drift(warnings=list(plan.warnings))
    keyed = sorted((os.fsencode(t.path), t) for t in plan.targets.values())
    fast = quick.Names(names)

    def queues() -> _Queues:
        """The queue and spool entries: in the helper process while this one hashes, or
        here when there is no helper."""
        found: list[Finding] = []
        warned: list[ScanWarning] = []
        ticks: list[int] = []
        for t in plan.child_dirs:
            if _is_dir(root, t.path, names):
                found.extend(_check_children(root, t, names, warned, ticks.append))
        return found, warned, sum(ticks)

    texts = quick.Texts(
        root,
        [
            None if trust_ctime or _needs_full(t) else (t.path, t.role not in NO_CONTENT)
            for _, t in keyed
        ],
        fast,
        workers=workers,
        extra=queues,
    )
    it = zip(keyed, texts, strict=True)
    misses = 0  # fast answers the full comparison then found equal (an older row format)

    def scan(t: Target, record: str | None = None) -> FileRecord | None:
        known = None
        if record is not None and t.rule is not None and t.rule.analyzer:
            try:
                stored = json.loads(record)
                known = stored.get("digest"), stored.get("facts")
            except (ValueError, AttributeError):
                known = None
        rec, warning = collect_target(root, t, names, known)
        if warning:
            out.warnings.append(warning)
        if progress:
            progress(1)
        if rec is not None:
            out.scanned += 1
        return rec

    def keep_new(t: Target) -> None:
        rec = scan(t)
        if rec is not None:
            out.current[t.path], out.roles[t.path] = rec, t.role

    try:
        current = next(it, None)
        for path, role_text, record in rows:
            key = os.fsencode(path)
            while current is not None and current[0][0] < key:
                keep_new(current[0][1])  # on disk, not in the baseline: added
                current = next(it, None)
            role = role_from(role_text)
            if current is None or current[0][0] != key:
                out.baseline[path] = _parse(path, record)  # in the baseline, not planned
                out.roles[path] = role
                continue
            (_, target), text = current
            current = next(it, None)
            if target.rule is not None and target.rule.analyzer:
                record_cmp = _without_facts(record)  # same bytes: same facts (analyzers)
            else:
                record_cmp = record
            if trust_ctime and misses <= _QUICK_GIVE_UP and record_cmp and not _needs_full(target):
                content = target.role not in NO_CONTENT
                text = quick.record_text(root, path, fast, content=content, trusted=record_cmp)
            if text is not None and record_cmp is not None and quick.same_text(text, record_cmp):
                out.scanned += 1  # the common case: nothing moved (quick.py)
                if progress:
                    progress(1)
                continue
            rec = scan(target, record)
            if rec is not None and same_record(rec, record):
                misses += text is not None
                if misses > _QUICK_GIVE_UP:
                    texts.stop()
                continue
            old = _parse(path, record)
            if rec is None or diff_records(old, rec, role):
                out.baseline[path], out.roles[path] = old, role
                if rec is not None:
                    out.current[path] = rec
        while current is not None:
            keep_new(current[0][1])
            current = next(it, None)
        helped = texts.extra_result()
    finally:
        texts.close()
    found, warned, count = cast(_Queues, helped[0]) if helped else queues()
    out.child_findings.extend(found)
    out.warnings.extend(warned)
    if progress and count:
        progress(count)
    return out


#: what the helper's queue check sends back: findings, warnings, entries seen
_Queues = tuple[list[Finding], list[ScanWarning], int]


def _is_dir(root: str, path: str, names: scanner.IdNames) -> bool:
    """Is this queue or spool directory (inside the root) a directory now?"""
    full = scanner.host_path(root, path)
    if scanner._escapes_root(root, full, names.parents):
        return False
    try:
        return stat.S_ISDIR(os.lstat(full).st_mode)
    except OSError:
        return False


def _needs_full(t: Target) -> bool:
    """Facts that depend on more than the file's own bytes (a map and its source, postfix
    main.cf and the tables it names) are never judged by the fast path."""
    return t.role == Role.MAP or bool(t.rule and t.rule.analyzer in analyzers.EXPANDING)


def _without_facts(record: str) -> str | None:
    """The stored record with ``"facts":null``, to compare with a fast-path text (which
    has no facts); None when it held none: too big to analyze, a secret, unreadable, whose
    verdict (and warning) only the full path gives.

    The top-level ``flags`` member is the last raw ``,"flags":[`` (quotes inside JSON
    strings are escaped), and facts is the member before it.
    """
    start, end = record.find('"facts":'), record.rfind(',"flags":[')
    if start < 0 or end < start or record.startswith("null", start + 8):
        return None
    return f"{record[: start + 8]}null{record[end:]}"


def same_record(rec: FileRecord, record: str) -> bool:
    """Whether ``rec`` is the record stored as ``record`` (canonical JSON), unchanged.

    Parsing the stored text and comparing values costs a third of writing ``rec`` out as
    canonical JSON and comparing text, with the same answer: both sides are the same
    JSON values. A record with analyzer facts is compared as text (facts may hold tuples,
    which JSON turns into lists).
    """
    if rec.facts is not None:
        from integrity.store import record_json

        return record_json(rec) == record
    try:
        stored = json.loads(record)
    except ValueError:
        return False
    row = rec.to_row()
    del row["path"]
    return bool(stored == row)


def _parse(path: str, record: str) -> FileRecord:
    from integrity.errors import BaselineCorruptError

    try:
        return FileRecord.from_row({"path": path, **json.loads(record)})
    except (ValueError, KeyError, TypeError) as exc:
        raise BaselineCorruptError(f"unreadable baseline row for {path}: {exc}") from exc


def role_from(text: str) -> Role:
    try:
        return Role(text)
    except ValueError:
        return Role.DIRECTORY


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
        top = next((a for a in ancestors(path) if a in child_tops), None)
        if top is not None:
            children.append((path, child_tops[top]))
            continue
        rule = policy.rule_for(path)
        if rule is not None and not _ignored(path, rule):
            targets[path] = Target(path, rule, rule.role)
    return list(targets.values()), children


def ancestors(path: str) -> Iterable[str]:
    while path not in ("/", ""):
        path = path.rsplit("/", 1)[0] or "/"
        yield path


def _check_child_path(
    root: str, path: str, parent: Target, names: scanner.IdNames, warnings: list[ScanWarning]
) -> list[Finding]:
    if parent.rule is None or _ignored(path, parent.rule):
        return []
    got = scanner.collect(root, path, names=names, read_content=False, light=True, xattrs=True)
    if isinstance(got, ScanWarning):
        if got.message != scanner.VANISHED:
            warnings.append(got)
        return []
    return check_child(got.record, parent.rule)


def collect_target(
    root: str,
    target: Target,
    names: scanner.IdNames,
    known: tuple[str | None, Facts | None] | None = None,
    *,
    user_max_hash: int | None = None,
) -> tuple[FileRecord | None, ScanWarning | None]:
    """One path -> its record (with analyzer facts when the profile names an analyzer).

    ``known``: the baseline's (digest, facts). Facts are a function of the content, so
    when the bytes just read have that digest the analyzer is not run again (the aliases
    of a big host: tens of ms and some MiB saved on every verify).
    ``user_max_hash`` (the daemon): see ``scanner.collect``.
    """
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
        user_max_hash=user_max_hash,
    )
    if isinstance(got, ScanWarning):
        return None, got
    rec = got.record
    if role == Role.MAP and rule is not None and rec.ftype == FileType.FILE and rec.digest:
        from integrity import maps  # what the map holds against its source (maps.py)

        source = maps.map_source(target.path, rule.source, root)
        if source is not None:
            rec = replace(rec, facts=maps.map_facts(root, target.path, source))
    if analyzer is not None and got.text is not None and role != Role.SECRET:
        unchanged = known is not None and known[0] is not None and known[0] == rec.digest
        if unchanged and known is not None and analyzer.references is None:
            rec = replace(rec, facts=known[1])  # facts of a file that names no other file
        else:
            facts = analyzer.parse(got.text.decode("utf-8", errors="replace"))
            if analyzer.references is not None and analyzer.expand is not None:
                from integrity import maps  # the tables and files the facts name (maps.py)

                facts = analyzer.expand(facts, maps.read_texts(root, analyzer.references(facts)))
            rec = replace(rec, facts=facts)
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
    """Every entry of a queue or spool directory against the directory's rule.

    A queue holds thousands of entries that look alike: a (type and mode, owner) pair seen
    clean once, on an entry with no extended attribute, is clean again without building a
    record (one ``lstat`` and one ``listxattr`` per entry). Mailboxes are always judged
    one by one: their names matter.
    """
    rule = target.rule
    if rule is None:
        return []
    ignore = _ignore_matcher(rule.ignore) if rule.ignore else None
    clean: set[tuple[int, int]] = set()  # (st_mode, st_uid) of queue entries judged clean
    alike = rule.role == Role.QUEUE
    out: list[Finding] = []
    for item in scanner.walk_entries(root, target.path, max_depth=4):
        if isinstance(item, ScanWarning):
            warnings.append(item)
            continue
        path, st = item
        if ignore is not None and ignore(path.rsplit("/", 1)[-1]):
            continue
        if progress:
            progress(1)
        key = (st.st_mode, st.st_uid) if alike and st is not None else None
        if key in clean and not _has_xattrs(root, path):
            continue
        got = scanner.collect(root, path, names=names, read_content=False, light=True, xattrs=True)
        if isinstance(got, ScanWarning):
            if got.message != scanner.VANISHED:  # queue files come and go: normal
                warnings.append(got)
            continue
        found = check_child(got.record, rule)
        if key is not None and not found and _plain(got.record, key):
            clean.add(key)
        out.extend(found)
    return out


def _has_xattrs(root: str, path: str) -> bool:
    """Any extended attribute (an ACL, a capability...), or no way to tell."""
    try:
        return bool(os.listxattr(scanner.host_path(root, path), follow_symlinks=False))
    except OSError as exc:
        return exc.errno != errno.ENOENT


def _plain(rec: FileRecord, key: tuple[int, int]) -> bool:
    """The record is the one the key describes, and carries no extended attribute."""
    return (
        not rec.xattrs
        and rec.uid == key[1]
        and rec.mode == stat.S_IMODE(key[0])
        and rec.ftype == scanner._ftype(key[0])
    )


def state_findings(snap: Snapshot) -> list[Finding]:
    """Everything the live state violates, with no baseline (init and audit)."""
    out = list(snap.child_findings)
    for path, rec in snap.records.items():
        target = snap.plan.targets[path]
        out.extend(_record_state(rec, target, path in snap.plan.parents, snap.records))
    out.extend(_postfix_services(snap))
    return dedupe(out)


def _record_state(
    rec: FileRecord,
    target: Target,
    parent: bool,
    records: Mapping[str, FileRecord] | None = None,
) -> list[Finding]:
    """What one record violates on its own (``parent``: an ancestor of monitored paths;
    ``records``: the symlinks an smrsh entry may lead through)."""
    if parent:
        return check_parent(rec)
    out = check_state(rec, target.rule, target.role, records)
    out.extend(assess_facts(rec, target.rule))
    if target.role == Role.DIRECTORY and rec.ftype == FileType.DIR:
        out.extend(check_parent(rec))
    return out


@dataclass(slots=True)
class StateScan:
    """What a streamed snapshot keeps while its records go to the store: no records."""

    findings: list[Finding] = field(default_factory=list)
    warnings: list[ScanWarning] = field(default_factory=list)
    scanned: int = 0


def stream_snapshot(
    root: str, policy: Policy, out: StateScan, *, progress: Progress | None = None
) -> Iterator[tuple[FileRecord, Role]]:
    """``snapshot`` + ``state_findings`` one record at a time, in path (bytes) order.

    For init: each (record, role) is yielded to be written and then dropped; ``out``
    gathers the findings and warnings, complete once the iterator is exhausted. Only
    the plan (lean) and records carrying analyzer facts (judged together at the end) stay
    in memory, whatever the size of the tree.
    """
    plan = make_plan(root, policy, lean=True)
    names = scanner.IdNames(root)
    rules = _DirRules(policy)
    out.warnings.extend(plan.warnings)
    with_facts: dict[str, FileRecord] = {}
    links: dict[str, FileRecord] = {}
    smrsh: list[tuple[FileRecord, Target]] = []
    dirs: set[str] = set()
    for target in sorted(plan.targets.values(), key=lambda t: os.fsencode(t.path)):
        parent = target.path in plan.parents
        if target.rule is None and not parent:
            found = rules.lookup(target.path, full=True)  # the entry rule, one at a time
            target = Target(target.path, *found) if found else target
        rec, warning = collect_target(root, target, names)
        if warning:
            out.warnings.append(warning)
        if progress:
            progress(1)
        if rec is None:
            continue
        out.scanned += 1
        out.findings.extend(_record_state(rec, target, parent))
        if rec.facts is not None:
            with_facts[target.path] = rec
        if rec.ftype == FileType.SYMLINK:  # few: kept to follow smrsh entries' chains
            links[target.path] = rec
            if target.rule is not None and target.rule.smrsh:
                smrsh.append((rec, target))
        if rec.ftype == FileType.DIR:
            dirs.add(target.path)
        yield rec, target.role
    findings = out.findings
    for t in plan.child_dirs:
        if t.path in dirs:
            findings.extend(_check_children(root, t, names, out.warnings, progress))
    findings.extend(_postfix_services(Snapshot(with_facts, {}, [], [], plan)))
    for rec, target in smrsh:  # now that every hop of their chains has been seen
        findings.extend(check_state(rec, target.rule, target.role, links))
    out.findings = dedupe(findings)


def recheck_state(root: str, policy: Policy, paths: Iterable[str]) -> list[Finding]:
    """The state conditions of a few baselined paths, as they are now (standing findings).

    A small plan of its own: the paths, with their rules (and, for postfix, the main.cf and
    master.cf beside them, judged together), never a walk of the whole policy.
    """
    plan = Plan()
    parents = set(policy.parents())
    wanted = set(paths)
    for path in sorted(wanted):
        rule = policy.rule_for(path)
        if rule is not None and rule.analyzer and rule.analyzer.startswith("postfix"):
            folder = path.rsplit("/", 1)[0]
            wanted.update((f"{folder}/main.cf", f"{folder}/master.cf"))
    for path in sorted(wanted):
        if not os.path.lexists(scanner.host_path(root, path)):
            continue
        rule = None if path in parents else policy.rule_for(path)
        if path in parents:
            plan.parents.add(path)
        plan.targets[path] = Target(path, rule, rule.role if rule else Role.DIRECTORY)
    if not plan.targets:
        return []
    return state_findings(snapshot(root, policy, plan=plan))


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


def dedupe(findings: Iterable[Finding]) -> list[Finding]:
    seen: set[tuple[str, str, str]] = set()
    out = []
    for f in findings:
        key = (f.path, f.rule, f.attribute)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return sorted(out, key=lambda f: (-f.severity.rank, f.path, f.rule))
