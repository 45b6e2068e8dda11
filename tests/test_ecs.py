"""Every event body is valid ECS 8.x by our field table (tests/data/ecs_fields.tsv), and
the table itself matches the official schema when a clone of elastic/ecs is at hand."""

from __future__ import annotations

import os
import shutil
import subprocess
from dataclasses import replace
from pathlib import Path

import pytest

from integrity import emit
from integrity.emit import Observed, observe
from integrity.model import Actor, Finding, Severity
from integrity.syslog import dropped_event
from integrity.wire import ECS_VERSION
from tests.ecs_check import load_table, problems

HOST = "mx1.example.org"
#: a local clone of github.com/elastic/ecs (bare or not); the cross-check skips without it
ECS_REPO = Path(os.environ.get("MI_ECS_REPO", "/work/.mirror/elastic+ecs/repo"))


def _findings(tmp_path: Path) -> list[tuple[Finding, Observed | None]]:
    """Findings of every shape, with and without the file's live state."""
    (tmp_path / "etc").mkdir()
    conf = tmp_path / "etc/main.cf"
    conf.write_text("relayhost = [smtp.example.org]\n")
    link = tmp_path / "etc/link"
    link.symlink_to("/etc/passwd")
    added = Finding("/etc/main.cf", "MI-FILE-ADDED", Severity.MEDIUM, "new file", "", None, "file")
    content = Finding("/etc/main.cf", "MI-CONTENT-CHANGED", Severity.MEDIUM, "changed",
                      "content", "blake3:aa", "blake3:bb")  # fmt: skip
    relink = Finding("/etc/link", "MI-LINK-TARGET-CHANGED", Severity.HIGH, "retargeted",
                     "link_target", "/a", "/etc/passwd")  # fmt: skip
    removed = Finding("/etc/gone", "MI-FILE-REMOVED", Severity.HIGH, "removed", "", "file", None)
    relay = Finding("/etc/main.cf", "MI-POSTFIX-OPEN-RELAY", Severity.CRITICAL, "open relay",
                    "smtpd_relay_restrictions", "a", "b")  # fmt: skip
    owner = Finding("/etc/main.cf", "MI-OWNER-CHANGED", Severity.CRITICAL, "owner",
                    "owner", "root(0)", "nobody(65534)")  # fmt: skip
    who = Actor(
        uid=1001, user="bob", euid=0, euser="root", auid=1000, auser="alice", pid=11, ppid=10,
        exe="/usr/bin/chmod", comm="chmod", args=("chmod", "0664", "x"), tty="pts0",
        session=3, event_id="1700000000.123:42", syscall="fchmodat",
    )  # fmt: skip
    by = replace(owner, actor=who)
    nobody = replace(content, actor=Actor(reason="kernel audit is disabled"))
    root = str(tmp_path)
    out: list[tuple[Finding, Observed | None]] = []
    for f in (added, content, relink, removed, relay, owner, by, nobody):
        out += [(f, None), (f, observe(root, f))]
    return out


def test_every_event_is_valid_ecs(tmp_path):
    """Findings (new, re-sent, resolved, attributed late; with and without who-data),
    heartbeat, lifecycle, baseline, drop and who-data events use only ECS fields of the
    right types, our documented mail_integrity.* fields, or the table's Auditbeat names."""
    bodies = []
    for f, seen in _findings(tmp_path):
        for action in emit.ACTIONS:
            bodies.append(emit.finding_event(f, host=HOST, action=action, seen=seen)[3])
    stats = {"sent": 3, "queued": 0, "dropped": 0, "connected": True}
    bodies.append(emit.heartbeat_event(4, stats, host=HOST)[3])
    bodies += [emit.lifecycle_event(p, host=HOST, version="0.1")[3] for p in ("start", "stop")]
    bodies.append(emit.baseline_event("init", generation=1, digest="d", signer="", host=HOST)[3])
    bodies.append(dropped_event(7, 0, HOST)[1])
    bodies.append(emit.whodata_event("MI-WHODATA-UNAVAILABLE", "no CAP_AUDIT_READ", host=HOST)[3])
    for body in bodies:
        assert problems(body) == [], body
        assert body["ecs"]["version"] == ECS_VERSION


def test_finding_types_follow_what_happened(tmp_path):
    """event.type is creation/deletion/change by what happened; action from Elastic's
    file vocabulary; sha256 only of changed content; file.* from the live file."""
    events = {
        (f.rule, seen is not None): emit.finding_event(f, host=HOST, seen=seen)[3]
        for f, seen in _findings(tmp_path)
    }
    assert events["MI-FILE-ADDED", True]["event"]["type"] == ["creation"]
    assert events["MI-FILE-ADDED", True]["event"]["action"] == "created"
    assert events["MI-FILE-REMOVED", False]["event"]["type"] == ["deletion"]
    assert events["MI-FILE-REMOVED", False]["event"]["action"] == "deleted"
    assert events["MI-CONTENT-CHANGED", True]["event"]["action"] == "updated"
    assert events["MI-OWNER-CHANGED", True]["event"]["action"] == "attributes_modified"
    relay = events["MI-POSTFIX-OPEN-RELAY", True]
    assert relay["event"]["action"] == "config_change"
    assert relay["event"]["category"] == ["file", "configuration"]
    assert relay["rule"]["category"] == "mail configuration"
    assert "hash" not in relay["file"]  # not a content finding: nothing read
    assert events["MI-LINK-TARGET-CHANGED", True]["file"]["target_path"] == "/etc/passwd"
    assert events["MI-LINK-TARGET-CHANGED", True]["file"]["type"] == "symlink"


def test_extra_fields_are_merged_without_overriding():
    """Optional ECS fields (who made a change) join the body; they never replace ours."""
    f = Finding("/etc/x", "MI-FILE-ADDED", Severity.MEDIUM, "new", "", None, "file")
    extra = {"user": {"name": "mallory", "id": "1001"}, "process": {"pid": 42},
             "file": {"path": "/elsewhere", "owner": "x"}, "event": {"kind": "signal"}}  # fmt: skip
    body = emit.finding_event(f, host=HOST, extra=extra)[3]
    assert body["user"] == {"name": "mallory", "id": "1001"} and body["process"] == {"pid": 42}
    assert body["file"]["path"] == "/etc/x" and body["file"]["owner"] == "x"
    assert body["event"]["kind"] == "alert"


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({"file": {"size": "12"}}, "file.size: '12' is not a long"),
        ({"file": {"inode": 12}}, "file.inode: 12 is not a keyword"),
        ({"event": {"type": "change"}}, "event.type: ECS wants an array"),
        ({"event": {"kind": "finding"}}, "event.kind: 'finding' not among"),
        ({"event": {"category": ["file"], "type": ["start"]}}, "not expected with category"),
        ({"file": {"owner_name": "x"}}, "file.owner_name: not ECS"),
        ({"mail_integrity": {"secret": "x"}}, "custom field not in the table"),
        ({"labels": {"connected": True}}, "labels"),
        ({"@timestamp": "yesterday"}, "is not a date"),
    ],
)
def test_validator_rejects_what_is_not_ecs(body, problem):
    """The checker is not a rubber stamp: unknown names and wrong types are reported."""
    assert any(problem in p for p in problems(body)), problems(body)


def _ecs_flat(tag: str) -> dict[str, dict[str, object]] | None:
    """ecs_flat.yml at a release tag of the local elastic/ecs clone, or None."""
    yaml = pytest.importorskip("yaml")
    if not ECS_REPO.exists() or shutil.which("git") is None:
        return None
    proc = subprocess.run(
        ["git", "-C", str(ECS_REPO), "show", f"{tag}:generated/ecs/ecs_flat.yml"],
        capture_output=True, timeout=60,
    )  # fmt: skip
    if proc.returncode != 0:
        return None
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # the C parser is 10x faster
    data: dict[str, dict[str, object]] = yaml.load(proc.stdout, Loader=loader)
    return data


@pytest.mark.slow  # parses a 22,000-line YAML file
@pytest.mark.parametrize("tag", [f"v{ECS_VERSION}", "v8.17.0"])
def test_table_matches_the_official_schema(tag):
    """Each ECS row of our table has the official type, array-ness and allowed values
    (ECS_VERSION, and the last 8.x release), so the validator checks the real schema."""
    flat = _ecs_flat(tag)
    if flat is None:
        pytest.skip(f"no elastic/ecs clone with tag {tag} at {ECS_REPO}")
    fields, expected = load_table()
    for name, spec in fields.items():
        if spec.custom or spec.auditbeat:
            prefixes = ("mail_integrity.",) if spec.custom else ("auditd.", "user.audit.")
            assert name.startswith(prefixes), name
            assert name not in flat
            continue
        official = flat[name]
        assert official["type"] == spec.type, name
        assert ("array" in (official.get("normalize") or [])) == spec.array, name
        allowed = official.get("allowed_values") or []
        assert tuple(a["name"] for a in allowed) == spec.allowed, name  # type: ignore[index]
    official_categories = flat["event.category"]["allowed_values"]
    categories = {a["name"]: tuple(a["expected_event_types"]) for a in official_categories}
    assert categories == expected
