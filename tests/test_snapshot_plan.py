"""The fast plan (rule lookup per directory) gives exactly what ``Policy.rule_for`` gives."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from integrity import api, scanner
from integrity.model import Role
from integrity.policy import Expect, Policy, Rule
from integrity.snapshot import _DirRules, make_plan
from tests import mtatrees


def _expected(policy: Policy, path: str) -> tuple[Rule | None, Role] | None:
    rule = policy.rule_for(path)
    if rule is None:
        return None
    return (rule if rule in policy.rules else None), rule.role


def _all_paths(root: Path) -> list[str]:
    out = []
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            out.append("/" + os.path.relpath(os.path.join(dirpath, name), root))
    return out


def _tree(tmp_path: Path) -> Path:
    """Entries with ignored names at several depths, globs, nested recursive rules."""
    root = tmp_path / "root"
    for rel in (
        "etc/mail/a.cf", "etc/mail/a-b/x", "etc/mail/a/b.old", "etc/mail/a/b/c",
        "etc/mail/x.old/inner/deep", "etc/mail/m4/one.m4", "etc/mail/m4/two.txt",
        "etc/mail/smrsh/prog", "etc/mail/smrsh/sub.old/p", "etc/other/f", "etc/mail.errors",
    ):  # fmt: skip
        p = root / rel
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_text("x")
    return root


def _policy() -> Policy:
    def rule(pattern: str, role: Role, **kw: object) -> Rule:
        return Rule(pattern, role, "t", Expect(), **kw)  # type: ignore[arg-type]

    return Policy(
        ("t",),
        (
            rule("/etc/mail", Role.DIRECTORY, recursive=True, ignore=("*.old", "*.errors")),
            rule("/etc/mail/m4/*.m4", Role.CONFIG),
            rule("/etc/mail/a/b/c", Role.SECRET),
            rule("/etc/mail/x.old/inner/deep", Role.ALIASES),
            rule("/etc/mail/smrsh", Role.DIRECTORY, recursive=True, entry_role=Role.BINARY),
            rule("/etc/other/**", Role.VOLATILE),
            rule("/etc/mail/a.cf", Role.GENERATED),
        ),
    )


def test_dir_rules_match_rule_for_on_every_path(tmp_path: Path) -> None:
    """Per-directory lookup answers like rule_for: exact, glob, entry, ignored, nested."""
    root = _tree(tmp_path)
    policy = _policy()
    rules = _DirRules(policy)
    paths = [*_all_paths(root), "/", "/etc", "/nowhere/x"]
    for path in sorted(paths):
        assert rules.lookup(path) == _expected(policy, path), path
        full = rules.lookup(path, full=True)
        want = policy.rule_for(path)
        assert (full and full[0]) == want, path


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() != 0, reason="real package trees need chown (root)")
@pytest.mark.parametrize("mta", ["sendmail", "postfix", "exim4", "dovecot"])
def test_lean_plan_matches_rule_for_on_real_trees(mta: str, tmp_path: Path) -> None:
    """On each real MTA tree the lean and full plans hold rule_for's rule and role per path."""
    mtatrees.ensure_accounts()
    root = str(mtatrees.build_tree(mta, tmp_path / "root"))
    policy = api.resolve_policy(root, ["auto"])
    lean, full = make_plan(root, policy, lean=True), make_plan(root, policy)
    assert set(lean.targets) == set(full.targets)
    for path, target in full.targets.items():
        if path in full.parents:
            continue
        if target.rule is not None and target.rule.note.startswith("behind the symlink "):
            continue  # a hop of a monitored symlink (links.py): the link's rule, by design
        assert target.rule == policy.rule_for(path), path
        assert target.role == lean.targets[path].role, path
        got = lean.targets[path].rule
        assert got is None or got is policy.rule_for(path), path
    walked = [p for p in _all_paths(Path(root)) if policy.rule_for(p) is not None]
    under = [p for p in walked if any(p.startswith(t + "/") for t in _recursive_tops(policy))]
    assert under and set(under) <= set(full.targets)
    assert scanner.host_path(root, "/etc") == os.path.join(root, "etc")


def _recursive_tops(policy: Policy) -> list[str]:
    return [r.pattern for r in policy.rules if r.recursive and not r.is_glob]
