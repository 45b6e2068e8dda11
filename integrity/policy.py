"""Profiles: which paths matter on a mail host, what each is for, and what it should look like.

A profile is a TOML file (``baselines/*.toml``, local ones in
``/etc/mail-integrity/profiles.d``). Loading validates everything up front, so a typo in
a profile is a ``ConfigError`` naming file, line and key, never a silent hole in the
monitoring. After loading, ``Policy`` is a pure value: ``rule_for(path)`` answers which
rule governs a path, with no I/O.
"""

from __future__ import annotations

import fnmatch
import os
import posixpath
import re
import stat
import sys
import tomllib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import lru_cache
from pathlib import Path
from typing import Any, NoReturn

from integrity.analyzers import NAMES as ANALYZER_NAMES
from integrity.errors import ConfigError
from integrity.model import FileType, Role

__all__ = [
    "MTAS",
    "Expect",
    "Policy",
    "Profile",
    "Rule",
    "available",
    "behind_link",
    "detect",
    "format_mode",
    "load",
    "parse_deny",
    "parse_mode",
    "profile_dirs",
    "read_profile",
]

MTAS = ("sendmail", "postfix", "exim4", "dovecot")
ENV_VAR = "MAIL_INTEGRITY_PROFILES"
LOCAL_DIR = Path("/etc/mail-integrity/profiles.d")

_PROFILE_KEYS = ("name", "description", "mta", "detect", "detect_unless", "include")
_FILE_KEYS = (
    "path", "role", "owner", "group", "mode", "deny", "optional", "analyzer",
    "recursive", "entry_role", "source", "ignore", "note", "children", "rotates", "smrsh",
)  # fmt: skip
_CHILD_KEYS = ("owner", "group", "mode", "deny", "types")
_GLOB_CHARS = frozenset("*?[")
_CHILD_ROLES = frozenset({Role.QUEUE, Role.SPOOL, Role.DIRECTORY})
_IGNORE_ROLES = frozenset({Role.QUEUE, Role.SPOOL})
_SOURCE_ROLES = frozenset({Role.MAP, Role.GENERATED, Role.SECRET})  # a secret map
_DIR_CACHE_MAX = 65536

_Parser = Callable[[str], int]
_RulePredicate = Callable[["Rule"], bool]


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, slots=True)
class Expect:
    """What a path (or every child of a queue dir) is allowed to look like; empty = any."""

    owner: tuple[str, ...] = ()
    group: tuple[str, ...] = ()
    mode: tuple[int, ...] = ()  # allowed exact modes (12 bits)
    deny: int = 0  # bits never allowed
    types: tuple[str, ...] = ()  # FileType values allowed (children)

    def allows_setid(self) -> bool:
        """True when the profile lists a set-id mode: only then is the bit expected."""
        return any(m & 0o6000 for m in self.mode)

    def widest(self) -> int | None:
        """OR of the allowed modes: anything beyond it is a loosening; None if no modes."""
        if not self.mode:
            return None
        out = 0
        for m in self.mode:
            out |= m
        return out


@dataclass(frozen=True, slots=True)
class Rule:
    """One ``[[file]]`` entry of one profile, validated."""

    pattern: str
    role: Role
    profile: str
    expect: Expect
    analyzer: str | None = None
    optional: bool = False
    recursive: bool = False
    entry_role: Role = Role.CONFIG
    source: str | None = None
    ignore: tuple[str, ...] = ()
    children: Expect | None = None
    note: str = ""
    origin: str = ""  # "file.toml:line" for messages
    #: renewed by numbered versions (certbot's archive/privkeyN.pem and live/ links): a new
    #: version and a link moved to it are routine, not an intrusion
    rotates: bool = False
    #: an smrsh command directory (or an entry of one): every entry is a program that
    #: every alias and .forward pipe may run, so a new one is high and a shell critical
    smrsh: bool = False

    def matches(self, path: str) -> bool:
        """Whether ``path`` is this rule's path or matches its glob (not entries below it)."""
        if not self.is_glob:
            return path == self.pattern
        return _glob(self.pattern).match(path)

    @property
    def is_glob(self) -> bool:
        return not _GLOB_CHARS.isdisjoint(self.pattern)

    def ignores(self, name: str) -> bool:
        """Whether an entry called ``name`` below this directory is skipped."""
        return bool(self.ignore) and any(fnmatch.fnmatchcase(name, pat) for pat in self.ignore)


@dataclass(frozen=True, slots=True)
class Profile:
    """One profile file as read, before includes are resolved."""

    name: str
    path: Path
    description: str = ""
    mta: str | None = None
    detect: tuple[str, ...] = ()
    detect_unless: tuple[str, ...] = ()
    include: tuple[str, ...] = ()
    rules: tuple[Rule, ...] = ()
    include_at: str = ""  # "file:line" of the include key, for error messages


@dataclass(frozen=True)
class Policy:
    """The merged rules of the profiles in force; answers "which rule governs this path"."""

    profiles: tuple[str, ...]
    rules: tuple[Rule, ...]
    _exact: dict[str, Rule] = field(init=False, repr=False, compare=False)
    _globs: tuple[tuple[_Glob, Rule], ...] = field(init=False, repr=False, compare=False)
    _dirs: dict[str, Rule | None] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        exact = {r.pattern: r for r in self.rules if not r.is_glob}  # later profile wins
        object.__setattr__(self, "_exact", exact)
        globs = tuple((_glob(r.pattern), r) for r in reversed(self.rules) if r.is_glob)
        object.__setattr__(self, "_globs", globs)  # latest first
        object.__setattr__(self, "_dirs", {})

    def rule_for(self, path: str) -> Rule | None:
        """The most specific rule: exact path beats glob beats a recursive ancestor dir
        (which yields a synthesized Rule with role=entry_role and that dir's ignore); among
        equals the later profile wins (local overrides win over shipped). An entry whose
        name (or a directory name on the way) matches the ancestor's ``ignore`` has none."""
        own = self._own(path)
        if own is not None:
            return own
        found = self._ancestor(path, lambda r: r.recursive)
        if found is None:
            return None
        top, rule = found
        return _entry_rule(rule, top, path)

    def container_for(self, path: str) -> Rule | None:
        """The nearest queue/spool ancestor whose ``children`` expectation covers ``path``
        (queue files have no rule of their own); None when none or the name is ignored."""
        found = self._ancestor(path, lambda r: r.role in _IGNORE_ROLES)
        if found is None:
            return None
        top, rule = found
        return None if _ignored(rule, top, path) else rule

    def parents(self) -> tuple[str, ...]:
        """Every ancestor directory of every non-glob rule path (and of glob prefixes),
        e.g. '/', '/etc', '/etc/mail', that has no rule of its own; the api monitors them
        as role=directory with deny g+w,o+w unless sticky (sendmail's safe-file rule)."""
        dirs: set[str] = set()
        for rule in self.rules:
            base = _literal_dir(rule.pattern) if rule.is_glob else posixpath.dirname(rule.pattern)
            dirs.update(_self_and_ancestors(base))
        return tuple(sorted(d for d in dirs if self.rule_for(d) is None))

    def _own(self, path: str) -> Rule | None:
        rule = self._exact.get(path)
        if rule is not None:
            return rule
        for glob, rule in self._globs:
            if path.startswith(glob.prefix) and glob.regex.fullmatch(path) is not None:
                return rule
        return None

    def _dir_rule(self, path: str) -> Rule | None:
        """``_own`` for directories, cached: every file below a directory asks again."""
        try:
            return self._dirs[path]
        except KeyError:
            pass
        rule = self._own(path)
        if len(self._dirs) >= _DIR_CACHE_MAX:
            self._dirs.clear()  # bounded memory on huge trees; recomputing is cheap
        self._dirs[path] = rule
        return rule

    def _ancestor(self, path: str, want: _RulePredicate) -> tuple[str, Rule] | None:
        child, parent = path, posixpath.dirname(path)
        while parent != child:
            rule = self._dir_rule(parent)
            if rule is not None and want(rule):
                return parent, rule
            child, parent = parent, posixpath.dirname(parent)
        return None


# --------------------------------------------------------------------------- modes


_OCTAL = re.compile(r"[0-7]{3,4}")
_CLAUSE = re.compile(r"([ugoa]+)\+([rwxst]+)")
_PERM_BITS = {
    "u": {"r": 0o400, "w": 0o200, "x": 0o100, "s": 0o4000, "t": 0o1000},
    "g": {"r": 0o040, "w": 0o020, "x": 0o010, "s": 0o2000, "t": 0o1000},
    "o": {"r": 0o004, "w": 0o002, "x": 0o001, "t": 0o1000},
}


def parse_mode(text: str) -> int:
    """Octal mode with 3 or 4 digits ("644", "2755") -> int; ValueError otherwise."""
    if not _OCTAL.fullmatch(text):
        raise ValueError(f"bad mode {text!r}: expected 3 or 4 octal digits such as '0755'")
    return int(text, 8)


def parse_deny(text: str) -> int:
    """Bits never allowed: octal ("0022") or symbolic ("g+w,o+rwx", "a+s") -> int."""
    if _OCTAL.fullmatch(text.strip()):
        return int(text.strip(), 8)
    bits = 0
    for clause in text.split(","):
        m = _CLAUSE.fullmatch(clause.strip())
        if m is None:
            raise ValueError(f"bad deny {text!r}: expected octal or clauses like 'g+w,o+rwx'")
        bits |= _clause_bits(m.group(1), m.group(2), text)
    return bits


def _clause_bits(who: str, perms: str, text: str) -> int:
    people = "ugo" if "a" in who else who
    bits = 0
    for p in perms:
        usable = [w for w in people if p in _PERM_BITS[w]]
        if not usable:
            raise ValueError(f"bad deny {text!r}: 's' applies to u or g only")
        for w in usable:
            bits |= _PERM_BITS[w][p]
    return bits


def format_mode(mode: int) -> str:
    """12 permission bits -> 4 octal digits ("2755"), the form profiles and messages use."""
    if not 0 <= mode <= 0o7777:
        raise ValueError(f"mode {mode!r} is outside 0..0o7777")
    return f"{mode:04o}"


# --------------------------------------------------------------------------- globs


@dataclass(frozen=True, slots=True)
class _Glob:
    """A compiled path glob; the literal prefix rejects most paths without the regex."""

    prefix: str
    regex: re.Pattern[str]

    def match(self, path: str) -> bool:
        return path.startswith(self.prefix) and self.regex.fullmatch(path) is not None


@lru_cache(maxsize=4096)
def _glob(pattern: str) -> _Glob:
    """``*``/``?``/``[...]`` stay inside one path segment; a ``**`` segment spans any depth."""
    parts = pattern.split("/")
    out: list[str] = []
    for i, seg in enumerate(parts):
        last = i == len(parts) - 1
        if seg == "**":
            out.append(".+" if last else "(?:.*/)?")
            continue
        if "**" in seg:
            raise ValueError("'**' must be a whole path segment, as in /etc/exim4/conf.d/**")
        out.append(_segment(seg) + ("" if last else "/"))
    return _Glob(_literal_prefix(pattern), re.compile("".join(out), re.DOTALL))


def _segment(seg: str) -> str:
    out: list[str] = []
    i = 0
    while i < len(seg):
        c = seg[i]
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = seg.find("]", i + 2 if seg[i + 1 : i + 2] in ("!", "]") else i + 1)
            if end < 0:
                raise ValueError("unterminated '[' in glob")
            out.append(_char_class(seg[i + 1 : end]))
            i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def _char_class(body: str) -> str:
    negate = body.startswith("!")
    body = body[1:] if negate else body
    escaped = body.replace("\\", "\\\\").replace("^", "\\^").replace("[", "\\[")
    return "(?!/)[" + ("^" if negate else "") + escaped + "]"


def _literal_prefix(pattern: str) -> str:
    cut = min((pattern.index(c) for c in _GLOB_CHARS if c in pattern), default=len(pattern))
    return pattern[:cut]


def _literal_dir(pattern: str) -> str:
    """The deepest directory every match of a glob lies in: '/etc/ssl/private/*.key' ->
    '/etc/ssl/private'."""
    prefix = _literal_prefix(pattern)
    return prefix.rstrip("/") or "/" if prefix.endswith("/") else posixpath.dirname(prefix)


def _self_and_ancestors(path: str) -> Iterable[str]:
    while True:
        yield path
        parent = posixpath.dirname(path)
        if parent == path:
            return
        path = parent


def _below(top: str, path: str) -> list[str]:
    return path[len(top) :].strip("/").split("/")


def _ignored(rule: Rule, top: str, path: str) -> bool:
    return bool(rule.ignore) and any(rule.ignores(name) for name in _below(top, path))


def _entry_rule(rule: Rule, top: str, path: str) -> Rule | None:
    if _ignored(rule, top, path):
        return None
    return Rule(
        pattern=path,
        role=rule.entry_role,
        profile=rule.profile,
        expect=rule.children or Expect(),
        optional=True,
        ignore=rule.ignore,
        note=f"entry below {top}",
        origin=rule.origin,
        smrsh=rule.smrsh,
    )


def behind_link(rule: Rule, path: str, link: str) -> Rule:
    """The rule for a file a monitored symlink leads to (``/etc/alternatives/mta``, the real
    ``sendmail.sendmail``): the link's role and expectations hold for what it points to,
    since a symlink's own mode means nothing. Used when the file has no rule of its own."""
    return Rule(
        pattern=path,
        role=rule.role,
        profile=rule.profile,
        expect=rule.expect if rule.role not in _IGNORE_ROLES else replace(rule.expect, mode=()),
        optional=True,
        children=rule.children,
        note=f"behind the symlink {link}",
        origin=rule.origin,
    )


# --------------------------------------------------------------------------- discovery


def profile_dirs(extra: Sequence[str] = ()) -> list[Path]:
    """Search order: $MAIL_INTEGRITY_PROFILES, the source tree's baselines/ (Path(__file__)
    .parent.parent / "baselines"), sys.prefix/share/mail-integrity/baselines,
    /usr/local/share/..., then local overrides /etc/mail-integrity/profiles.d and `extra`.
    A later directory's profile with the same name replaces the earlier one."""
    env = [Path(p) for p in os.environ.get(ENV_VAR, "").split(os.pathsep) if p]
    candidates = [
        *env,
        Path(__file__).resolve().parent.parent / "baselines",
        Path(sys.prefix) / "share" / "mail-integrity" / "baselines",
        Path("/usr/local/share/mail-integrity/baselines"),
        LOCAL_DIR,
        *(Path(p) for p in extra),
    ]
    out: list[Path] = []
    for path in candidates:
        if path not in out:
            out.append(path)
    return out


def available(dirs: Sequence[Path] | None = None) -> dict[str, Path]:
    """Profile name -> file, later directories replacing earlier ones; sorted by name."""
    found: dict[str, Path] = {}
    for d in profile_dirs() if dirs is None else dirs:
        try:
            entries = sorted(d.iterdir())
        except OSError:
            continue  # a search directory that does not exist is normal
        for entry in entries:
            if entry.suffix == ".toml" and entry.is_file():
                found[entry.stem] = entry
    return dict(sorted(found.items()))


def load(names: Sequence[str], *, dirs: Sequence[Path] | None = None) -> Policy:
    """Read the named profiles with their includes (each once, includes first) into a Policy."""
    found = available(dirs)
    done: dict[str, Profile] = {}
    for name in names:
        if name not in found:
            raise ConfigError(f"unknown profile {name!r}{_suggest(name, found)}")
        _visit(name, found, done, ())
    profiles = tuple(done.values())
    return Policy(tuple(p.name for p in profiles), tuple(r for p in profiles for r in p.rules))


def _visit(
    name: str, found: Mapping[str, Path], done: dict[str, Profile], stack: tuple[str, ...]
) -> None:
    if name in done:
        return
    profile = read_profile(found[name])
    chain = (*stack, name)
    for inc in profile.include:
        where = f"{profile.include_at}: [profile]: include"
        if inc in chain:
            raise ConfigError(f"{where} cycle: {' -> '.join((*chain, inc))}")
        if inc not in found:
            raise ConfigError(f"{where}: unknown profile {inc!r}{_suggest(inc, found)}")
        _visit(inc, found, done, chain)
    done[name] = profile


def detect(root: str, *, dirs: Sequence[Path] | None = None) -> list[str]:
    """Names of profiles (with a non-empty ``detect``) that apply to the tree at ``root``:
    some detect path exists (lstat) and no ``detect_unless`` path does."""
    out: list[str] = []
    for name, path in available(dirs).items():
        profile = read_profile(path)
        if not profile.detect or _exists_any(root, profile.detect_unless):
            continue
        if _exists_any(root, profile.detect):
            out.append(name)
    return out


def _exists_any(root: str, paths: Iterable[str]) -> bool:
    for p in paths:
        try:
            os.lstat(os.path.join(root, p.lstrip("/")))
        except OSError:
            continue
        return True
    return False


def _suggest(word: str, choices: Iterable[str]) -> str:
    import difflib  # only to suggest a name for a typo

    close = difflib.get_close_matches(word, list(choices), n=1)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- reading

_Where = tuple[str, int]  # ("profile", 0), ("file", n), ("children", n), ("top", 0)
_HEADER = re.compile(r"\s*(\[\[?)\s*([A-Za-z0-9_. -]+?)\s*\]\]?\s*(?:#.*)?")
_KEY = re.compile(r"\s*([A-Za-z0-9_-]+|\"[^\"]*\")\s*[.=]")


@dataclass(frozen=True, slots=True)
class _Lines:
    """Line of each section header and key: tomllib keeps no positions for valid input."""

    headers: dict[_Where, int]
    keys: dict[tuple[_Where, str], int]

    def line(self, where: _Where, key: str | None = None) -> int:
        if key is not None and (where, key) in self.keys:
            return self.keys[where, key]
        if where in self.headers:
            return self.headers[where]
        if where[0] == "children":
            return self.line(("file", where[1]), "children")
        return 1


def _index_lines(text: str) -> _Lines:
    headers: dict[_Where, int] = {}
    keys: dict[tuple[_Where, str], int] = {}
    where: _Where = ("top", 0)
    files = 0
    for no, raw in enumerate(text.splitlines(), 1):
        if h := _HEADER.fullmatch(raw):
            name = h.group(2).strip()
            if h.group(1) == "[[" and name == "file":
                files += 1
            where = _section_of(name, files)
            headers.setdefault(where, no)
        elif k := _KEY.match(raw):
            keys.setdefault((where, k.group(1).strip('"')), no)
    return _Lines(headers, keys)


def _section_of(name: str, files: int) -> _Where:
    if name == "file":
        return ("file", files)
    if name == "file.children":
        return ("children", files)
    return (name, 0)


def _label(where: _Where) -> str:
    kind, n = where
    if kind == "file":
        return f"[[file]] #{n}"
    if kind == "children":
        return f"[[file]] #{n} [file.children]"
    return "top level" if kind == "top" else f"[{kind}]"


@dataclass(frozen=True, slots=True)
class _Ctx:
    """The file being read: turns a problem into the one-line ConfigError users see."""

    shown: str
    lines: _Lines

    def fail(self, where: _Where, key: str | None, problem: str) -> NoReturn:
        line = self.lines.line(where, key)
        raise ConfigError(f"{self.shown}:{line}: {_label(where)}: {problem}")

    def origin(self, path: Path, where: _Where) -> str:
        return f"{path.name}:{self.lines.line(where)}"


_TYPE_NAMES = {bool: "a boolean", int: "an integer", float: "a number", str: "a string",
               list: "an array", dict: "a table"}  # fmt: skip


def _kind(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


@dataclass(frozen=True, slots=True)
class _Sec:
    """One table of the document, with typed accessors that fail with file and line."""

    ctx: _Ctx
    where: _Where
    data: Mapping[str, Any]

    def fail(self, key: str | None, problem: str) -> NoReturn:
        self.ctx.fail(self.where, key, problem)

    def check_keys(self, allowed: Sequence[str]) -> None:
        for key in self.data:
            if key not in allowed:
                self.fail(key, f"unknown key {key!r}{_suggest(key, allowed)}")

    def text(self, key: str, *, required: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None:
            if required:
                self.fail(None, f"missing required key {key!r}")
            return None
        if not isinstance(value, str):
            self.fail(key, f"{key!r} must be a string, not {_kind(value)}")
        return value

    def strings(self, key: str) -> tuple[str, ...]:
        """A string or an array of strings ("A / B" alternatives in mta-facts)."""
        value = self.data.get(key, [])
        items = [value] if isinstance(value, str) else value
        if not isinstance(items, list) or not all(isinstance(v, str) and v for v in items):
            self.fail(key, f"{key!r} must be a non-empty string or an array of them")
        return tuple(items)

    def flag(self, key: str) -> bool:
        value = self.data.get(key, False)
        if not isinstance(value, bool):
            self.fail(key, f"{key!r} must be true or false, not {_kind(value)}")
        return value

    def role(self, key: str, default: Role | None = None) -> Role:
        text = self.text(key, required=default is None)
        if text is None and default is not None:
            return default
        try:
            return Role(str(text))
        except ValueError:
            self.fail(key, f"unknown {key} {text!r}{_suggest(str(text), [str(r) for r in Role])}")

    def path(self, key: str, value: Any, *, glob: bool) -> str:
        if not isinstance(value, str):
            self.fail(key, f"{key!r} must be a string, not {_kind(value)}")
        problem = _path_problem(value, glob=glob)
        if problem:
            self.fail(key, f"{key} {value!r}: {problem}")
        return value

    def paths(self, key: str) -> tuple[str, ...]:
        return tuple(self.path(key, p, glob=False) for p in self.strings(key))


def _path_problem(path: str, *, glob: bool) -> str | None:
    if not path.startswith("/"):
        return "must be absolute (start with '/')"
    if "\0" in path:
        return "contains a NUL byte"
    parts = path.split("/")[1:]
    if path != "/" and any(p in ("", ".", "..") for p in parts):
        return "must be normalised (no '//', '.', '..' or trailing '/')"
    if not glob and not _GLOB_CHARS.isdisjoint(path):
        return "glob characters are not allowed here"
    if glob and not _GLOB_CHARS.isdisjoint(path):
        try:
            _glob(path)
        except ValueError as exc:
            return str(exc)
    return None


def read_profile(path: Path) -> Profile:
    """Read and validate one profile file (includes are not followed here)."""
    shown = _shown(path)
    text = _read_text(path, shown)
    ctx = _Ctx(shown, _index_lines(text))
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(_syntax_message(shown, text, str(exc))) from None
    return _parse_doc(ctx, path, data)


def _read_text(path: Path, shown: str) -> str:
    """Read without blocking on a FIFO and refuse anything but a regular file."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(f"{shown}: cannot read profile: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise ConfigError(f"{shown}: not a regular file")
        raw = fh.read()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = raw[: exc.start].count(b"\n") + 1
        raise ConfigError(f"{shown}:{line}: not valid UTF-8") from None


_TOML_POS = re.compile(r"\s*\(at (?:line (\d+), column (\d+)|end of document)\)\s*$")


def _syntax_message(shown: str, text: str, message: str) -> str:
    m = _TOML_POS.search(message)
    if m is None:
        return f"{shown}: TOML syntax error: {message}"
    what = message[: m.start()]
    if m.group(1) is None:
        return f"{shown}:{max(1, len(text.splitlines()))}: TOML syntax error: {what} (at end)"
    return f"{shown}:{m.group(1)}: TOML syntax error: {what} (column {m.group(2)})"


def _shown(path: Path) -> str:
    """The file as messages name it: relative to the working directory when inside it."""
    try:
        rel = os.path.relpath(path)
    except (OSError, ValueError):
        return str(path)
    return str(path) if rel.startswith("..") else rel


def _parse_doc(ctx: _Ctx, path: Path, data: Mapping[str, Any]) -> Profile:
    top = _Sec(ctx, ("top", 0), data)
    for key in data:
        if key not in ("profile", "file"):
            where: _Where = (key, 0) if (key, 0) in ctx.lines.headers else ("top", 0)
            ctx.fail(where, key, f"unknown key {key!r}{_suggest(key, ['profile', 'file'])}")
    head = data.get("profile")
    if not isinstance(head, dict):
        top.fail("profile", "missing [profile] table")
    profile = _parse_head(_Sec(ctx, ("profile", 0), head), path)
    entries = data.get("file", [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) for e in entries):
        top.fail("file", "'file' must be an array of tables ([[file]])")
    rules = _parse_rules(ctx, path, profile.name, entries)
    return replace(profile, rules=rules)


def _parse_head(sec: _Sec, path: Path) -> Profile:
    sec.check_keys(_PROFILE_KEYS)
    name = sec.text("name", required=True)
    if name != path.stem:
        sec.fail("name", f"name {name!r} must equal the file name {path.stem!r}")
    mta = sec.text("mta")
    if mta is not None and mta not in MTAS:
        sec.fail("mta", f"unknown mta {mta!r}: expected one of {', '.join(MTAS)}")
    return Profile(
        name=str(name),
        path=path,
        description=sec.text("description") or "",
        mta=mta,
        detect=sec.paths("detect"),
        detect_unless=sec.paths("detect_unless"),
        include=sec.strings("include"),
        include_at=f"{sec.ctx.shown}:{sec.ctx.lines.line(sec.where, 'include')}",
    )


def _parse_rules(
    ctx: _Ctx, path: Path, profile: str, entries: Sequence[Mapping[str, Any]]
) -> tuple[Rule, ...]:
    rules: list[Rule] = []
    seen: dict[str, int] = {}
    for n, entry in enumerate(entries, 1):
        sec = _Sec(ctx, ("file", n), entry)
        rule = _parse_rule(sec, profile, ctx.origin(path, ("file", n)))
        if rule.pattern in seen:
            sec.fail(
                "path", f"path {rule.pattern!r} is already listed in [[file]] #{seen[rule.pattern]}"
            )
        seen[rule.pattern] = n
        rules.append(rule)
    return tuple(rules)


def _parse_rule(sec: _Sec, profile: str, origin: str) -> Rule:
    sec.check_keys(_FILE_KEYS)
    if "path" not in sec.data:
        sec.fail(None, "missing required key 'path'")
    source = sec.data.get("source")
    rule = Rule(
        pattern=sec.path("path", sec.data["path"], glob=True),
        role=sec.role("role"),
        profile=profile,
        expect=_parse_expect(sec, types=False),
        analyzer=_parse_analyzer(sec),
        optional=sec.flag("optional"),
        recursive=sec.flag("recursive"),
        entry_role=sec.role("entry_role", Role.CONFIG),
        source=None if source is None else sec.path("source", source, glob=False),
        ignore=_parse_ignore(sec),
        children=_parse_children(sec),
        note=sec.text("note") or "",
        origin=origin,
        rotates=sec.flag("rotates"),
        smrsh=sec.flag("smrsh"),
    )
    _check_rule(sec, rule)
    return rule


def _parse_analyzer(sec: _Sec) -> str | None:
    name = sec.text("analyzer")
    if name is not None and name not in ANALYZER_NAMES:
        sec.fail("analyzer", f"unknown analyzer {name!r}{_suggest(name, sorted(ANALYZER_NAMES))}")
    return name


def _parse_ignore(sec: _Sec) -> tuple[str, ...]:
    globs = sec.strings("ignore")
    for g in globs:
        if "/" in g:
            sec.fail("ignore", f"ignore {g!r}: entry name globs cannot contain '/'")
    return globs


def _parse_children(sec: _Sec) -> Expect | None:
    table = sec.data.get("children")
    if table is None:
        return None
    if not isinstance(table, dict):
        sec.fail("children", f"'children' must be a table, not {_kind(table)}")
    child = _Sec(sec.ctx, ("children", sec.where[1]), table)
    child.check_keys(_CHILD_KEYS)
    return _parse_expect(child, types=True)


def _parse_expect(sec: _Sec, *, types: bool) -> Expect:
    expect = Expect(
        owner=sec.strings("owner"),
        group=sec.strings("group"),
        mode=tuple(_convert(sec, "mode", m, parse_mode) for m in sec.strings("mode")),
        deny=0 if "deny" not in sec.data else _convert(sec, "deny", sec.text("deny"), parse_deny),
        types=_parse_types(sec) if types else (),
    )
    for m in expect.mode:
        if m & expect.deny:
            sec.fail("mode", f"mode {format_mode(m)} has bits that deny forbids")
    return expect


def _convert(sec: _Sec, key: str, text: str | None, parse: _Parser) -> int:
    try:
        return parse(str(text))
    except ValueError as exc:
        sec.fail(key, str(exc))


def _parse_types(sec: _Sec) -> tuple[str, ...]:
    allowed = [str(t) for t in FileType]
    for t in sec.strings("types"):
        if t not in allowed:
            sec.fail("types", f"unknown type {t!r}: expected some of {', '.join(allowed)}")
    return sec.strings("types")


def _check_rule(sec: _Sec, rule: Rule) -> None:
    """Combinations that parse but cannot mean what the author wanted."""
    if rule.analyzer and rule.role is Role.SECRET:
        sec.fail("analyzer", "a secret is never read by an analyzer")
    if rule.children is not None and rule.role not in _CHILD_ROLES:
        problem = f"[file.children] needs role queue, spool or directory, not {rule.role}"
        sec.ctx.fail(("children", sec.where[1]), None, problem)
    if rule.smrsh and not (rule.recursive and rule.role is Role.DIRECTORY):
        sec.fail("smrsh", "smrsh = true needs role directory and recursive = true")
    if "entry_role" in sec.data and not rule.recursive:
        sec.fail("entry_role", "entry_role needs recursive = true")
    if rule.ignore and not (rule.recursive or rule.role in _IGNORE_ROLES):
        sec.fail("ignore", "ignore needs recursive = true or role queue/spool")
    if rule.source is not None and rule.role not in _SOURCE_ROLES:
        sec.fail("source", f"source needs role map, generated or secret, not {rule.role}")
