"""Profile format, loader and Policy lookups (integrity.policy)."""

from __future__ import annotations

import os
import re
import textwrap
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from integrity import policy
from integrity.errors import ConfigError
from integrity.model import Role
from integrity.policy import Expect, Policy, Rule

HEAD = '[profile]\nname = "{name}"\n'


def write(directory: Path, name: str, body: str, head: bool = True) -> Path:
    """Write ``name.toml`` (with a matching [profile] header unless head=False)."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.toml"
    text = (HEAD.format(name=name) if head else "") + textwrap.dedent(body)
    path.write_text(text, encoding="utf-8")
    return path


def rule(pattern: str, role: Role = Role.CONFIG, profile: str = "p", **kw: object) -> Rule:
    return Rule(pattern=pattern, role=role, profile=profile, expect=Expect(), **kw)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- modes


@pytest.mark.parametrize(
    ("text", "mode"),
    [
        ("644", 0o644),
        ("0644", 0o644),
        ("2755", 0o2755),
        ("3777", 0o3777),
        ("000", 0),
        ("7777", 0o7777),
    ],
)
def test_parse_mode_accepts_octal(text: str, mode: int) -> None:
    """Three or four octal digits parse to the 12-bit mode."""
    assert policy.parse_mode(text) == mode


@pytest.mark.parametrize("text", ["", "75", "12345", "0o755", "0800", "rwx", " 644", "-644"])
def test_parse_mode_rejects_anything_else(text: str) -> None:
    """Anything but 3-4 octal digits is a ValueError."""
    with pytest.raises(ValueError, match="octal"):
        policy.parse_mode(text)


@pytest.mark.parametrize(
    ("text", "bits"),
    [
        ("g+w,o+w", 0o022),
        ("o+rwx", 0o007),
        ("go+w", 0o022),
        (" g+w , o+w ", 0o022),
        ("a+s", 0o6000),
        ("u+s", 0o4000),
        ("g+s", 0o2000),
        ("o+t", 0o1000),
        ("u+rwx,g+rwx", 0o770),
        ("a+w", 0o222),
        ("0022", 0o022),
        ("077", 0o077),
    ],
)
def test_parse_deny_symbolic_and_octal(text: str, bits: int) -> None:
    """Deny accepts chmod-style clauses (u/g/o/a + r/w/x/s/t) and octal."""
    assert policy.parse_deny(text) == bits


@pytest.mark.parametrize("text", ["", "g-w", "x+w", "g+q", "+w", "o+s", "g+w,,o+w", "0999"])
def test_parse_deny_rejects_malformed(text: str) -> None:
    """Removals, unknown letters, setuid for others and bad octal are refused."""
    with pytest.raises(ValueError):
        policy.parse_deny(text)


@pytest.mark.parametrize(("mode", "text"), [(0o2755, "2755"), (0o644, "0644"), (0, "0000")])
def test_format_mode_four_digits(mode: int, text: str) -> None:
    """Modes print as four octal digits so set-id and sticky bits always show."""
    assert policy.format_mode(mode) == text


@pytest.mark.parametrize("mode", [-1, 0o10000])
def test_format_mode_rejects_out_of_range(mode: int) -> None:
    """Only the 12 permission bits are a mode."""
    with pytest.raises(ValueError):
        policy.format_mode(mode)


@given(st.integers(min_value=0, max_value=0o7777))
def test_mode_round_trip(mode: int) -> None:
    """parse_mode(format_mode(m)) == m for every 12-bit mode."""
    assert policy.parse_mode(policy.format_mode(mode)) == mode


@given(st.integers(min_value=0, max_value=0o7777))
def test_deny_octal_round_trip(mode: int) -> None:
    """An octal deny string parses to the bits it spells."""
    assert policy.parse_deny(policy.format_mode(mode)) == mode


@pytest.mark.parametrize(
    ("modes", "setid", "widest"),
    [
        ((), False, None),
        ((0o644,), False, 0o644),
        ((0o2755, 0o2555), True, 0o2755),
        ((0o4755,), True, 0o4755),
        ((0o1730, 0o0730), False, 0o1730),
        ((0o640, 0o604), False, 0o644),
    ],
)
def test_expect_setid_and_widest(modes: tuple[int, ...], setid: bool, widest: int | None) -> None:
    """allows_setid sees 06000 in any allowed mode; widest ORs the allowed modes."""
    expect = Expect(mode=modes)
    assert expect.allows_setid() is setid
    assert expect.widest() == widest


# --------------------------------------------------------------------------- globs


@pytest.mark.parametrize(
    ("pattern", "path", "hit"),
    [
        ("/etc/mail/sendmail.cf", "/etc/mail/sendmail.cf", True),
        ("/etc/mail/sendmail.cf", "/etc/mail/sendmail.cfx", False),
        ("/etc/mail/*.mc", "/etc/mail/sendmail.mc", True),
        ("/etc/mail/*.mc", "/etc/mail/.mc", True),
        ("/etc/mail/*.mc", "/etc/mail/m4/x.mc", False),
        ("/etc/mail/*", "/etc/mail", False),
        ("/run/sendmail/*/sendmail.pid", "/run/sendmail/mta/sendmail.pid", True),
        ("/run/sendmail/*/sendmail.pid", "/run/sendmail/a/b/sendmail.pid", False),
        ("/etc/exim4/conf.d/**", "/etc/exim4/conf.d/main/02_opts", True),
        ("/etc/exim4/conf.d/**", "/etc/exim4/conf.d/x", True),
        ("/etc/exim4/conf.d/**", "/etc/exim4/conf.d", False),
        ("/etc/exim4/conf.d/**", "/etc/exim4/conf.dx/y", False),
        ("/etc/a/**/*.key", "/etc/a/x.key", True),
        ("/etc/a/**/*.key", "/etc/a/b/c/x.key", True),
        ("/etc/a/**/*.key", "/etc/a/b/c/x.pem", False),
        ("/**/.forward", "/home/u/.forward", True),
        ("/etc/mail/access?db", "/etc/mail/access.db", True),
        ("/etc/mail/access?db", "/etc/mail/access/db", False),
        ("/var/spool/postfix/[a-d]*", "/var/spool/postfix/deferred", True),
        ("/var/spool/postfix/[a-d]*", "/var/spool/postfix/hold", False),
        ("/var/spool/postfix/[!a-d]*", "/var/spool/postfix/hold", True),
        ("/x/[!a]", "/x//", False),
        ("/x/a+b(c)", "/x/a+b(c)", True),
    ],
)
def test_rule_matches_globs(pattern: str, path: str, hit: bool) -> None:
    """* ? [...] stay within a segment; a ** segment spans any depth below its prefix."""
    assert rule(pattern).matches(path) is hit


_SEG = st.text(alphabet="abcxyz.-_+", min_size=1, max_size=6).filter(lambda s: s not in (".", ".."))


@given(st.lists(_SEG, min_size=1, max_size=5))
def test_double_star_matches_any_depth(segments: list[str]) -> None:
    """'/base/**' matches every path below /base, whatever the depth."""
    assert rule("/base/**").matches("/base/" + "/".join(segments))


@given(st.lists(_SEG, min_size=2, max_size=5))
def test_single_star_never_crosses_slash(segments: list[str]) -> None:
    """'/base/*' matches one level only."""
    assert not rule("/base/*").matches("/base/" + "/".join(segments))


@pytest.mark.parametrize(
    ("pattern", "glob"), [("/etc/mail", False), ("/etc/*.cf", True), ("/a/[b]", True)]
)
def test_is_glob(pattern: str, glob: bool) -> None:
    """A pattern is a glob when it holds * ? or [."""
    assert rule(pattern).is_glob is glob


# --------------------------------------------------------------------------- validation

A = '[[file]]\npath = "/a"\nrole = "config"\n'  # a valid entry, lines 3-5
ERRORS = [
    # (body, line, fragment)
    (
        A + '\n[[file]]\npath = "/b"\nrole = "config"\nmoed = "0644"\n',
        10,
        r"\[\[file\]\] #2: unknown key 'moed' \(did you mean 'mode'\?\)",
    ),
    (
        'descripton = "x"\n',
        3,
        r"\[profile\]: unknown key 'descripton' \(did you mean 'description'\?\)",
    ),
    (
        '[[file]]\npath = "/a"\nrole = "binry"\n',
        5,
        r"#1: unknown role 'binry' \(did you mean 'binary'\?\)",
    ),
    (
        A + 'analyzer = "postfix-mian"\n',
        6,
        r"unknown analyzer 'postfix-mian' \(did you mean 'postfix-main'\?\)",
    ),
    ('[[file]]\npath = "etc/a"\nrole = "config"\n', 4, r"path 'etc/a': must be absolute"),
    ('[[file]]\npath = "/etc//a"\nrole = "config"\n', 4, r"must be normalised"),
    ('[[file]]\npath = "/etc/a/"\nrole = "config"\n', 4, r"must be normalised"),
    (A + 'mode = "0999"\n', 6, r"bad mode '0999'"),
    (A + "mode = 644\n", 6, r"'mode' must be a non-empty string"),
    (A + 'mode = ["0644", 1]\n', 6, r"'mode' must be"),
    (A + 'deny = "g-w"\n', 6, r"bad deny 'g-w'"),
    (A + 'optional = "yes"\n', 6, r"'optional' must be true or false, not a string"),
    (A + 'owner = ""\n', 6, r"'owner' must be a non-empty string"),
    ('[[file]]\npath = 7\nrole = "config"\n', 4, r"'path' must be a string, not an integer"),
    ('[[file]]\nrole = "config"\n', 3, r"#1: missing required key 'path'"),
    ('[[file]]\npath = "/a"\n', 3, r"#1: missing required key 'role'"),
    (
        A + '[file.children]\nowner = "x"\n',
        6,
        r"#1 \[file.children\]: \[file.children\] needs role queue, spool or directory",
    ),
    (
        '[[file]]\npath = "/q"\nrole = "queue"\n[file.children]\nmoed = "0600"\n',
        7,
        r"#1 \[file.children\]: unknown key 'moed'",
    ),
    (
        '[[file]]\npath = "/q"\nrole = "queue"\n[file.children]\ntypes = ["file", "pipe"]\n',
        7,
        r"unknown type 'pipe'",
    ),
    (
        '[[file]]\npath = "/d"\nrole = "directory"\nentry_role = "secret"\n',
        6,
        r"entry_role needs recursive = true",
    ),
    (
        '[[file]]\npath = "/d"\nrole = "config"\nignore = ["*.lock"]\n',
        6,
        r"ignore needs recursive = true or role queue/spool",
    ),
    ('[[file]]\npath = "/d"\nrole = "spool"\nignore = ["a/*.lock"]\n', 6, r"cannot contain '/'"),
    (A + 'source = "/b"\n', 6, r"source needs role map"),
    ('[[file]]\npath = "/a"\nrole = "map"\nsource = "b"\n', 6, r"source 'b': must be absolute"),
    (
        '[[file]]\npath = "/a"\nrole = "secret"\nanalyzer = "aliases"\n',
        6,
        r"a secret is never read by an analyzer",
    ),
    (A + 'mode = ["0644", "0664"]\ndeny = "g+w"\n', 6, r"mode 0664 has bits that deny forbids"),
    (
        A + '\n[[file]]\npath = "/a"\nrole = "binary"\n',
        8,
        r"#2: path '/a' is already listed in \[\[file\]\] #1",
    ),
    (
        '[[file]]\npath = "/etc/**.conf"\nrole = "config"\n',
        4,
        r"'\*\*' must be a whole path segment",
    ),
    ('[[file]]\npath = "/etc/[abc"\nrole = "config"\n', 4, r"unterminated '\['"),
    ('mta = "qmail"\n', 3, r"unknown mta 'qmail'"),
    ('detect = ["/usr/sbin/*"]\n', 3, r"glob characters are not allowed here"),
    ('include = "common"\nfoo = 1\n', 4, r"\[profile\]: unknown key 'foo'"),
    ("[extra]\nx = 1\n", 3, r"\[extra\]: unknown key 'extra'"),
    (A + "note = 3\n", 6, r"'note' must be a string, not an integer"),
    (A + 'children = "x"\n', 6, r"'children' must be a table"),
    (A + '\nmode = = "1"\n', 7, r"TOML syntax error: Invalid value"),
]


@pytest.mark.parametrize(("body", "line", "fragment"), ERRORS)
def test_validation_error_names_file_line_and_problem(
    tmp_path: Path, body: str, line: int, fragment: str
) -> None:
    """Each broken profile gives one ConfigError line: file:line: section: problem."""
    path = write(tmp_path, "x", body)
    with pytest.raises(ConfigError) as info:
        policy.read_profile(path)
    message = info.value.message
    assert "\n" not in message
    assert re.match(rf"{re.escape(str(path))}:{line}: ", message), message
    assert re.search(fragment, message), message


@pytest.mark.parametrize(
    ("text", "line", "fragment"),
    [
        ('[profile]\nname = "y"\n', 2, r"\[profile\]: name 'y' must equal the file name 'x'"),
        ("[[file]]\n", 1, r"top level: missing \[profile\] table"),
        ('# c\n\n[profile]\nname = "x\n', 4, r"TOML syntax error: Illegal character"),
        ('file = 3\n[profile]\nname = "x"\n', 1, r"top level: 'file' must be an array of tables"),
    ],
)
def test_header_errors(tmp_path: Path, text: str, line: int, fragment: str) -> None:
    """Name/stem mismatch, missing [profile] and syntax errors carry their line."""
    path = tmp_path / "x.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        policy.read_profile(path)
    assert info.value.message.startswith(f"{path}:{line}: "), info.value.message
    assert re.search(fragment, info.value.message), info.value.message


def test_non_utf8_profile_names_the_line(tmp_path: Path) -> None:
    """Bytes that are not UTF-8 are a ConfigError at their line, not a crash."""
    path = tmp_path / "x.toml"
    path.write_bytes(b'[profile]\nname = "x"\nnote = "\xff"\n')
    with pytest.raises(ConfigError, match=rf"^{re.escape(str(path))}:3: not valid UTF-8"):
        policy.read_profile(path)


def test_relative_file_name_inside_cwd(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A profile under the working directory is named relative to it, as users typed it."""
    write(tmp_path / "baselines", "x", "bogus = 1\n")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=r"^baselines/x\.toml:3: "):
        policy.read_profile(Path("baselines/x.toml"))


def test_fifo_profile_is_refused_without_blocking(tmp_path: Path) -> None:
    """A FIFO posing as a profile is rejected at once instead of hanging the loader."""
    fifo = tmp_path / "x.toml"
    os.mkfifo(fifo)
    with pytest.raises(ConfigError, match="not a regular file"):
        policy.read_profile(fifo)


def test_full_entry_parses_to_rule(tmp_path: Path) -> None:
    """Every documented key lands in the Rule with its parsed value and origin."""
    path = write(
        tmp_path,
        "x",
        """
        description = "demo"
        mta = "sendmail"
        detect = ["/usr/sbin/x"]

        [[file]]
        path = "/var/spool/q"
        role = "queue"
        owner = ["smmta", "root"]
        group = "smmsp"
        mode = ["2750", "0750"]
        deny = "o+rwx"
        optional = true
        ignore = ["*.lock"]
        note = "why"

        [file.children]
        owner = "smmta"
        deny = "g+w,o+rwx"
        types = ["file", "dir"]
        """,
    )
    profile = policy.read_profile(path)
    assert (profile.description, profile.mta, profile.detect) == (
        "demo",
        "sendmail",
        ("/usr/sbin/x",),
    )
    (got,) = profile.rules
    assert got == Rule(
        pattern="/var/spool/q",
        role=Role.QUEUE,
        profile="x",
        expect=Expect(owner=("smmta", "root"), group=("smmsp",), mode=(0o2750, 0o750), deny=0o007),
        optional=True,
        ignore=("*.lock",),
        children=Expect(owner=("smmta",), deny=0o027, types=("file", "dir")),
        note="why",
        origin="x.toml:8",
    )


# --------------------------------------------------------------------------- loading


def test_load_applies_includes_first_and_once(tmp_path: Path) -> None:
    """Includes are merged before the including profile, each profile only once."""
    write(tmp_path, "base", '[[file]]\npath = "/etc"\nrole = "directory"\n')
    write(tmp_path, "x", 'include = ["base"]\n[[file]]\npath = "/x"\nrole = "config"\n')
    write(tmp_path, "y", 'include = ["base", "x"]\n[[file]]\npath = "/y"\nrole = "config"\n')
    pol = policy.load(["x", "y"], dirs=[tmp_path])
    assert pol.profiles == ("base", "x", "y")
    assert [r.pattern for r in pol.rules] == ["/etc", "/x", "/y"]


@pytest.mark.parametrize(
    ("includes", "cycle"),
    [
        ({"a": ["a"]}, "a -> a"),
        ({"a": ["b"], "b": ["a"]}, "a -> b -> a"),
        ({"a": ["b"], "b": ["c"], "c": ["b"]}, "a -> b -> c -> b"),
    ],
)
def test_include_cycles_are_rejected(
    tmp_path: Path, includes: dict[str, list[str]], cycle: str
) -> None:
    """A profile that includes itself, directly or not, is a ConfigError naming the cycle."""
    for name, inc in includes.items():
        write(tmp_path, name, f"include = {inc!r}\n".replace("'", '"'))
    with pytest.raises(ConfigError, match=rf":3: \[profile\]: include cycle: {cycle}$"):
        policy.load(["a"], dirs=[tmp_path])


def test_unknown_include_and_unknown_name(tmp_path: Path) -> None:
    """Unknown profile names are errors, with a suggestion when one is close."""
    write(tmp_path, "common", "")
    write(tmp_path, "a", 'include = ["comon"]\n')
    with pytest.raises(
        ConfigError, match=r"a\.toml:3: .*unknown profile 'comon' \(did you mean 'common'\?\)"
    ):
        policy.load(["a"], dirs=[tmp_path])
    with pytest.raises(ConfigError, match=r"^unknown profile 'commn' \(did you mean 'common'\?\)"):
        policy.load(["commn"], dirs=[tmp_path])


def test_available_later_directory_wins(tmp_path: Path) -> None:
    """A profile in a later directory replaces the same name from an earlier one."""
    shipped, local = tmp_path / "shipped", tmp_path / "local"
    write(shipped, "a", "")
    write(shipped, "b", "")
    write(local, "b", "")
    (local / "notes.txt").write_text("not a profile")
    found = policy.available([shipped, local, tmp_path / "missing"])
    assert found == {"a": shipped / "a.toml", "b": local / "b.toml"}


def test_profile_dirs_search_order(monkeypatch: pytest.MonkeyPatch) -> None:
    """$MAIL_INTEGRITY_PROFILES first, then the source tree, prefixes, local dir, extra."""
    monkeypatch.setenv("MAIL_INTEGRITY_PROFILES", "/opt/p1:/opt/p2")
    dirs = policy.profile_dirs(["/srv/extra"])
    assert dirs[:2] == [Path("/opt/p1"), Path("/opt/p2")]
    assert dirs[2] == Path(policy.__file__).resolve().parent.parent / "baselines"
    assert dirs[-2:] == [Path("/etc/mail-integrity/profiles.d"), Path("/srv/extra")]
    assert Path("/usr/local/share/mail-integrity/baselines") in dirs
    assert len(dirs) == len(set(dirs))


# --------------------------------------------------------------------------- rule_for


@pytest.fixture
def layered(tmp_path: Path) -> Policy:
    """Two profiles: 'shipped' then 'local' (which overrides some rules)."""
    write(
        tmp_path,
        "shipped",
        """
        [[file]]
        path = "/etc/mail/sendmail.cf"
        role = "generated"
        [[file]]
        path = "/etc/mail/*.cf"
        role = "config"
        [[file]]
        path = "/etc/mail"
        role = "directory"
        recursive = true
        entry_role = "secret"
        ignore = ["*.old", "tmp"]
        [file.children]
        deny = "o+w"
        [[file]]
        path = "/etc/mail/smrsh"
        role = "directory"
        recursive = true
        entry_role = "binary"
        [[file]]
        path = "/etc/x.conf"
        role = "config"
        [[file]]
        path = "/opt/tree"
        role = "directory"
        recursive = true
        [[file]]
        path = "/var/mail"
        role = "spool"
        ignore = ["*.lock"]
        """,
    )
    write(
        tmp_path,
        "local",
        """
        [[file]]
        path = "/etc/x.conf"
        role = "secret"
        [[file]]
        path = "/etc/mail/s*.cf"
        role = "aliases"
        [[file]]
        path = "/opt/tree"
        role = "directory"
        """,
    )
    return policy.load(["shipped", "local"], dirs=[tmp_path])


@pytest.mark.parametrize(
    ("path", "pattern", "role", "profile"),
    [
        ("/etc/mail/sendmail.cf", "/etc/mail/sendmail.cf", Role.GENERATED, "shipped"),
        ("/etc/mail/submit.cf", "/etc/mail/s*.cf", Role.ALIASES, "local"),
        ("/etc/mail/other.cf", "/etc/mail/*.cf", Role.CONFIG, "shipped"),
        ("/etc/mail/access", "/etc/mail/access", Role.SECRET, "shipped"),
        ("/etc/mail/m4/dialup.m4", "/etc/mail/m4/dialup.m4", Role.SECRET, "shipped"),
        ("/etc/mail/smrsh/procmail", "/etc/mail/smrsh/procmail", Role.BINARY, "shipped"),
        ("/etc/x.conf", "/etc/x.conf", Role.SECRET, "local"),
        ("/etc/mail", "/etc/mail", Role.DIRECTORY, "shipped"),
    ],
)
def test_rule_for_precedence(
    layered: Policy, path: str, pattern: str, role: Role, profile: str
) -> None:
    """Exact beats glob beats recursive ancestor; among equals the later profile wins."""
    got = layered.rule_for(path)
    assert got is not None
    assert (got.pattern, got.role, got.profile) == (pattern, role, profile)


def test_recursive_entry_rule_carries_dir_settings(layered: Policy) -> None:
    """A synthesized entry rule takes entry_role, the dir's ignore and children expectation."""
    got = layered.rule_for("/etc/mail/peers/provider")
    assert got is not None
    assert got.ignore == ("*.old", "tmp")
    assert got.expect == Expect(deny=0o002)
    assert got.optional and not got.recursive


@pytest.mark.parametrize(
    "path",
    [
        "/etc/mail/sendmail.cf.old",
        "/etc/mail/tmp/x",
        "/etc/nothing",
        "/usr/bin/ls",
        "/",
        "/opt/tree/a",
    ],
)
def test_rule_for_none(layered: Policy, path: str) -> None:
    """Ignored entries, unlisted paths, and entries of a dir whose recursion was overridden."""
    assert layered.rule_for(path) is None


@pytest.mark.parametrize(
    ("path", "container"),
    [("/var/mail/alice", "/var/mail"), ("/var/mail/alice.lock", None), ("/etc/x", None)],
)
def test_container_for(layered: Policy, path: str, container: str | None) -> None:
    """Queue/spool children find their directory's rule; ignored names do not."""
    got = layered.container_for(path)
    assert (got.pattern if got else None) == container


def test_parents_lists_unruled_ancestors() -> None:
    """parents() gives every ancestor of rule paths and glob prefixes that has no rule."""
    pol = Policy(
        ("p",),
        (
            rule("/etc"),
            rule("/etc/mail/sendmail.cf"),
            rule("/var/spool/mqueue", Role.QUEUE),
            rule("/etc/ssl/private/*.key", Role.SECRET),
            rule("/etc/postfix/sasl_pass*", Role.SECRET),
            rule("/opt/tree", Role.DIRECTORY, recursive=True),
            rule("/opt/tree/a/b"),
        ),
    )
    assert pol.parents() == (
        "/",
        "/etc/mail",
        "/etc/postfix",
        "/etc/ssl",
        "/etc/ssl/private",
        "/opt",
        "/var",
        "/var/spool",
    )


def test_policy_is_a_value() -> None:
    """Two policies with the same rules compare equal, whatever lookups happened."""
    rules = (rule("/a/*"),)
    first, second = Policy(("p",), rules), Policy(("p",), rules)
    first.rule_for("/a/b")
    assert first == second
    assert hash(first) == hash(second)


# --------------------------------------------------------------------------- detect


@pytest.fixture
def detect_dirs(tmp_path: Path) -> list[Path]:
    d = tmp_path / "profiles"
    write(d, "alpha", 'detect = ["/usr/sbin/alpha", "/etc/alpha.cf"]\n')
    write(
        d, "beta", 'detect = ["/etc/mail/sendmail.cf"]\ndetect_unless = ["/usr/libexec/sendmail"]\n'
    )
    write(d, "gamma", "")
    return [d]


@pytest.mark.parametrize(
    ("tree", "expected"),
    [
        ([], []),
        (["usr/sbin/alpha"], ["alpha"]),
        (["etc/alpha.cf"], ["alpha"]),
        (["etc/mail/sendmail.cf"], ["beta"]),
        (["etc/mail/sendmail.cf", "usr/libexec/sendmail/sendmail"], []),
        (["etc/mail/sendmail.cf", "usr/sbin/alpha"], ["alpha", "beta"]),
        (["symlink:usr/sbin/alpha"], ["alpha"]),
    ],
)
def test_detect_on_tree(
    tmp_path: Path, detect_dirs: list[Path], tree: list[str], expected: list[str]
) -> None:
    """detect() names profiles whose detect paths exist (lstat) and no unless path does."""
    root = tmp_path / "root"
    root.mkdir()
    for entry in tree:
        link = entry.startswith("symlink:")
        target = root / entry.removeprefix("symlink:")
        target.parent.mkdir(parents=True, exist_ok=True)
        if link:
            target.symlink_to("/nonexistent/dangling")
        else:
            target.write_text("")
    assert policy.detect(str(root), dirs=detect_dirs) == expected
