"""sendmail.cf / submit.cf and .mc analyzers: what the MTA configuration *means*.

Both parsers reduce their input to one common "config view" (options by canonical
long name, classes, class files, mailers, maps, smart host) so the same checks judge a
.cf and a .mc. Debian appends the whole .mc to the .cf as ``# `` comments; it is parsed
into ``facts["embedded_mc"]`` so FEATUREs (which leave no O line) are visible from the
.cf alone, and so a hand-edited .cf (O/M/K lines changed, embedded .mc not) shows.
Severities follow reference/mta-facts.md sections 2.3 to 2.10 (WARN -> medium).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from typing import Any

from integrity.analyzers._shape import as_dict as _dict
from integrity.analyzers._shape import as_list as _list
from integrity.analyzers._shape import as_str as _str
from integrity.analyzers.networks import judge_networks, parse_network
from integrity.model import Facts, Finding, Severity

# --------------------------------------------------------------------------- tables


def _names(text: str) -> list[str]:
    return text.split()


#: single-letter option forms (sendmail/readcf.c OptionTab)
_SHORT = dict(
    zip(
        "78AaBbCcdEeFfGHhIiJjkKlLmnoOpPqQRrSsTtUuVvwxXyYzZ",
        _names(
            "SevenBitInput EightBitMode AliasFile AliasWait BlankSub MinFreeBlocks "
            "CheckpointInterval HoldExpensive DeliveryMode ErrorHeader ErrorMode TempFileMode "
            "SaveFromLine MatchGECOS HelpFile MaxHopCount ResolverOptions IgnoreDots ForwardPath "
            "SendMimeErrors ConnectionCacheSize ConnectionCacheTimeout UseErrorsTo LogLevel MeToo "
            "CheckAliases OldStyleHeaders DaemonPortOptions PrivacyOptions PostmasterCopy "
            "QueueFactor QueueDirectory DontPruneRoutes Timeout StatusFile SuperSafe QueueTimeout "
            "TimeZoneSpec UserDatabaseSpec DefaultUser FallbackMXhost Verbose TryNullMXList "
            "QueueLA RefuseLA RecipientFactor ForkEachJob ClassFactor RetryFactor"
        ),
        strict=True,
    )
)
_LONG_ONLY = _names(
    "QueueSortOrder HostsFile MinQueueAge DefaultCharSet ServiceSwitchFile DialDelay "
    "NoRecipientAction SafeFileEnvironment MaxMessageSize ColonOkInAddr MaxQueueRunSize "
    "MaxDaemonChildren DontExpandCnames MustQuoteChars SmtpGreetingMessage UnixFromLine "
    "OperatorChars DontInitGroups SingleLineFromHeader AllowBogusHELO "
    "ConnectionRateThrottle UnsafeGroupWrites DoubleBounceAddress HostStatusDirectory "
    "SingleThreadDelivery RunAsUser RrtImpliesDsn PidFile DontBlameSendmail "
    "DontProbeInterfaces MaxRecipientsPerMessage DeadLetterDrop DontLockFilesForRead "
    "MaxAliasRecursion ConnectOnlyTo TrustedUser MaxMimeHeaderLength ControlSocketName "
    "MaxHeadersLength MaxForwardEntries ProcessTitlePrefix DefaultAuthInfo AuthMechanisms "
    "ClientPortOptions DataFileBufferSize XscriptFileBufferSize LDAPDefaultSpec "
    "ServerCertFile ServerKeyFile ClientCertFile ClientKeyFile CACertFile CACertPath "
    "DHParameters InputMailFilters Milter AuthOptions QueueFileMode "
    "CertFingerprintAlgorithm CipherList RandFile TLSSrvOptions BadRcptThrottle "
    "DeliverByMin MaxQueueChildren MaxRunnersPerQueue DirectSubmissionModifiers "
    "NiceQueueRun SharedMemoryKey AuthMaxBits MailboxDatabase UseMSP DelayLA FastSplit "
    "SoftBounce SharedMemoryKeyFile RejectLogInterval RequiresDirfsync "
    "ConnectionRateWindowSize CRLFile FallbackSmartHost AuthRealm CRLPath HeloName "
    "MaxNOOPCommands ServerSSLOptions ClientSSLOptions MaxQueueAge BadRcptThrottleDelay "
    "RejectNUL UseCompressedIPv6Addresses SetCertAltnames TLSFallbacktoClear "
    "MaxMacroRecursion MaxRuleRecursion"
)
_CANON = {n.lower(): n for n in [*_SHORT.values(), *_LONG_ONLY]}

#: .mc define -> .cf option (cf/m4/proto.m4 `_OPTION` lines, the security-relevant subset)
_MC_OPTIONS = {
    "confPRIVACY_FLAGS": "PrivacyOptions",
    "confDONT_BLAME_SENDMAIL": "DontBlameSendmail",
    "confDEF_USER_ID": "DefaultUser",
    "confTRUSTED_USER": "TrustedUser",
    "confRUN_AS_USER": "RunAsUser",
    "confQUEUE_FILE_MODE": "QueueFileMode",
    "confTEMP_FILE_MODE": "TempFileMode",
    "confSAFE_FILE_ENV": "SafeFileEnvironment",
    "confFORWARD_PATH": "ForwardPath",
    "confUNSAFE_GROUP_WRITES": "UnsafeGroupWrites",
    "confAUTH_OPTIONS": "AuthOptions",
    "confAUTH_MECHANISMS": "AuthMechanisms",
    "ALIAS_FILE": "AliasFile",
    "QUEUE_DIR": "QueueDirectory",
    "STATUS_FILE": "StatusFile",
    "HELP_FILE": "HelpFile",
    "confPID_FILE": "PidFile",
    "confHOST_STATUS_DIRECTORY": "HostStatusDirectory",
    "confDEAD_LETTER_DROP": "DeadLetterDrop",
    "confCONTROL_SOCKET_NAME": "ControlSocketName",
    "confDEF_AUTH_INFO": "DefaultAuthInfo",
    "confSERVER_KEY": "ServerKeyFile",
    "confSERVER_CERT": "ServerCertFile",
    "confCLIENT_KEY": "ClientKeyFile",
    "confCLIENT_CERT": "ClientCertFile",
    "confCACERT_PATH": "CACertPath",
    "confCACERT": "CACertFile",
    "confSMTP_LOGIN_MSG": "SmtpGreetingMessage",
}

#: PrivacyOptions: goaway is a composite (sendmail.h PRIV_GOAWAY = 0x0000ffff)
_GOAWAY = frozenset(
    ["needmailhelo", "needexpnhelo", "needvrfyhelo", "noexpn", "novrfy", "noverb", "authwarnings"]
)
_PRIVACY_KEY = frozenset({"noexpn", "novrfy"})

_DBS_RATING: dict[str, Severity | None] = {"safe": None}
for _sev, _group in (
    (
        Severity.CRITICAL,
        "WorldWritableAliasFile WorldWritableForwardfile WorldWritableIncludefile "
        "RunWritableProgram RunProgramInUnsafeDirPath ForwardFileInUnsafeDirPathSafe "
        "IncludeFileInUnsafeDirPathSafe FileDeliveryToSymLink FileDeliveryToHardLink",
    ),
    (
        Severity.HIGH,
        "WriteMapToSymLink WriteMapToHardLink WriteStatsToSymLink WriteStatsToHardLink "
        "InsufficientEntropy GroupWritableAliasFile GroupWritableDirPathSafe MapInUnsafeDirPath "
        "ForwardFileInUnsafeDirPath IncludeFileInUnsafeDirPath ClassFileInUnsafeDirPath "
        "HelpFileInUnsafeDirPath ErrorHeaderInUnsafeDirPath LinkedAliasFileInWritableDir "
        "LinkedClassFileInWritableDir LinkedForwardFileInWritableDir "
        "LinkedIncludeFileInWritableDir LinkedMapInWritableDir "
        "LinkedServiceSwitchFileInWritableDir GroupWritableForwardFileSafe "
        "GroupWritableIncludeFileSafe",
    ),
    (
        Severity.MEDIUM,
        "GroupWritableForwardFile GroupWritableIncludeFile GroupWritableSASLDBFile "
        "GroupReadableSASLDBFile GroupReadableKeyFile GroupReadableDefaultAuthInfoFile "
        "ForwardFileInGroupWritableDirPath IncludeFileInGroupWritableDirPath",
    ),
    (
        Severity.INFO,
        "NonRootSafeAddr TrustStickyBit AssumeSafeChown DontWarnForwardFileInUnsafeDirPath",
    ),
):
    for _n in _group.split():
        _DBS_RATING[_n.lower()] = _sev

#: Debian 12 stock list (+ TLS and SASL additions): present, not a finding (mta-facts 2.3)
_DBS_DEBIAN = frozenset(
    n.lower()
    for n in _names(
        "AssumeSafeChown ForwardFileInGroupWritableDirPath GroupWritableForwardFileSafe "
        "GroupWritableIncludeFileSafe IncludeFileInGroupWritableDirPath "
        "DontWarnForwardFileInUnsafeDirPath TrustStickyBit NonRootSafeAddr "
        "GroupWritableIncludeFile GroupReadableDefaultAuthInfoFile GroupReadableKeyFile "
        "GroupReadableSASLDBFile GroupWritableSASLDBFile Safe"
    )
)

_PATH_OPTIONS = _names(
    "AliasFile QueueDirectory StatusFile HelpFile PidFile HostStatusDirectory "
    "DeadLetterDrop ControlSocketName DefaultAuthInfo ServerKeyFile ClientKeyFile "
    "CACertPath CACertFile ServerCertFile ClientCertFile SafeFileEnvironment"
)
#: matched against configured paths, never opened
_WORLD_WRITABLE_DIRS = ("/tmp", "/var/tmp", "/dev/shm", "/var/mail", "/var/spool/mail")  # noqa: S108
_TRUSTED_USERS_OK = frozenset({"", "root", "0", "smmta", "smmsp"})
_CLASS_T_STOCK = frozenset({"root", "daemon", "uucp"})
_SHELLS = frozenset(["sh", "bash", "dash", "csh", "tcsh", "ksh", "zsh", "ash", "busybox"])
_INTERPRETERS = re.compile(r"^(perl|python|ruby|php|awk|gawk|mawk|sed|tclsh|lua|node)[0-9.]*$")
_GENERIC_TLDS = frozenset(
    _names(
        "com net org edu gov mil int info biz name pro mobi arpa io co xyz online site app "
        "dev cloud top eu asia"
    )
)
_IPC = frozenset({"[IPC]", "[TCP]", "[LPC]", "[FILE]"})

_FEATURE_RISK: dict[str, tuple[Severity, str]] = {
    "promiscuous_relay": (Severity.CRITICAL, "relays mail from any site to any site"),
    "relay_local_from": (Severity.HIGH, "relays when the (forgeable) sender domain is local"),
    "relay_mail_from": (
        Severity.HIGH,
        "relays when the (forgeable) sender is marked RELAY in access",
    ),
    "loose_relay_check": (Severity.HIGH, "allows %-hack relaying through this host"),
    "relay_based_on_mx": (Severity.MEDIUM, "relays for any domain whose MX points here"),
    "relay_entire_domain": (Severity.MEDIUM, "relays for every host in the local domains"),
    "accept_unresolvable_domains": (Severity.INFO, "accepts senders from unresolvable domains"),
    "accept_unqualified_senders": (Severity.INFO, "accepts unqualified sender addresses"),
}

# --------------------------------------------------------------------------- helpers


def _finding(
    path: str,
    rule: str,
    severity: Severity,
    message: str,
    attribute: str = "",
    before: Any = None,
    after: Any = None,
    fix: str | None = None,
) -> Finding:
    return Finding(path, rule, severity, message, attribute, before, after, fix)


def _words(value: str) -> list[str]:
    """Comma/space separated option lists; empty items dropped, case folded."""
    return [w.strip().lower() for w in re.split(r"[,\s]+", value) if w.strip()]


def _short(value: Any, limit: int = 120) -> str:
    text = _str(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _prog_kind(command: str) -> str:
    """Classify a mailer program by its basename: smrsh, shell, interpreter, ipc, other."""
    if command in _IPC:
        return "ipc"
    base = command.rsplit("/", 1)[-1]
    if base == "smrsh":
        return "smrsh"
    if base in _SHELLS:
        return "shell"
    return "interpreter" if _INTERPRETERS.match(base) else "other"


def _is_tld(word: str) -> bool:
    """A bare top-level domain (heuristic: every 2-letter label, common generic TLDs)."""
    label = word.strip().lstrip(".").lower()
    return (len(label) == 2 and label.isalpha()) or label in _GENERIC_TLDS


def _public_short_prefix(word: str) -> bool:
    """An IPv4 prefix of one or two octets outside private, loopback and link-local space."""
    parts = word.strip().rstrip(".").split(".")
    if not 1 <= len(parts) <= 2 or not all(p.isdigit() and int(p) < 256 for p in parts):
        return False
    first = int(parts[0])
    second = int(parts[1]) if len(parts) == 2 else -1
    private = first in (10, 127) or (first, second) in ((192, 168), (169, 254))
    private = private or (first == 172 and 16 <= second <= 31)
    return not private


def _under_world_writable(path: str) -> bool:
    clean = path.strip()
    return any(clean == d or clean.startswith(d + "/") for d in _WORLD_WRITABLE_DIRS)


def _new_config() -> dict[str, Any]:
    return {
        "options": {},
        "daemon_port_options": [],
        "classes": {},
        "class_files": {},
        "mailers": {},
        "maps": {},
        "smart_host": None,
    }


# --------------------------------------------------------------------------- .cf parser


def _canonical_option(name: str) -> tuple[str, bool]:
    """Canonical long name (case-insensitive, unique prefixes allowed as in readcf.c)."""
    base, dot, sub = name.partition(".")
    low = base.lower()
    if low in _CANON:
        return _CANON[low] + dot + sub, True
    hits = [v for k, v in _CANON.items() if k.startswith(low)] if low else []
    if len(hits) == 1:
        return hits[0] + dot + sub, True
    return name, False


def _parse_option(body: str) -> tuple[str, str, bool]:
    """The text after ``O``: ``" Name=value"`` (long) or ``"xvalue"`` (one letter)."""
    if body.startswith(" ") or body.startswith("\t"):
        name, _eq, value = body.strip().partition("=")
        canon, known = _canonical_option(name.strip())
        return canon, value.strip(), known
    if not body:
        return "", "", False
    name = _SHORT.get(body[0], body[0])
    return name, body[1:].strip(), body[0] in _SHORT


def _class_name(body: str) -> tuple[str, str]:
    """``w words`` or ``{Name}words`` -> (name, rest)."""
    if body.startswith("{"):
        end = body.find("}")
        if end > 1:
            return body[1:end], body[end + 1 :]
        return "", body
    return (body[0], body[1:]) if body else ("", "")


def _parse_mailer(body: str) -> tuple[str, dict[str, str]]:
    name, _sep, rest = body.partition(",")
    fields: dict[str, str] = {}
    for part in re.split(r",\s*(?=[A-Za-z]=)", rest):
        key, eq, value = part.strip().partition("=")
        if eq and len(key) == 1:
            fields[key.upper()] = value.strip().rstrip(",").strip()
    return name.strip(), fields


def _logical_lines(lines: list[str]) -> Iterator[tuple[int, str]]:
    """Join .cf continuation lines (leading space or tab) onto the line before."""
    buf: list[str] = []
    start = 0
    for no, line in enumerate(lines, 1):
        if line[:1] in (" ", "\t") and buf:
            buf.append(line.strip())
            continue
        if buf:
            yield start, " ".join(buf)
        buf, start = [line.rstrip("\r")], no
    if buf:
        yield start, " ".join(buf)


def _cf_option(cfg: dict[str, Any], warnings: list[list[Any]], no: int, body: str) -> None:
    name, value, known = _parse_option(body)
    if not name:
        warnings.append([no, "empty option line"])
        return
    if name == "DaemonPortOptions":
        cfg["daemon_port_options"].append(value)
    else:
        cfg["options"][name] = value
    if not known:
        warnings.append([no, f"unknown option {name!r}"])


def _cf_class(cfg: dict[str, Any], kind: str, body: str) -> None:
    """C and T lines add words to a class; F lines name the file (or |program) filling it."""
    cname, rest = ("t", body) if kind == "T" else _class_name(body)
    if kind != "F":
        cfg["classes"].setdefault(cname, []).extend(rest.split())
        return
    words = [w for w in rest.split() if not w.startswith("-") and not w.startswith("%")]
    cfg["class_files"].setdefault(cname, []).append(words[0] if words else rest.strip())


_IGNORED_LINES = frozenset("SRHPVELYQXG")


def _cf_line(cfg: dict[str, Any], warnings: list[list[Any]], no: int, line: str) -> None:
    """Apply one logical .cf line to the config view."""
    kind, body = line[:1], line[1:]
    if kind == "O":
        _cf_option(cfg, warnings, no, body)
    elif kind in ("C", "T", "F"):
        _cf_class(cfg, kind, body)
    elif kind == "M":
        name, fields = _parse_mailer(body)
        cfg["mailers"][name] = fields
    elif kind == "K":
        name, _sp, spec = body.strip().partition(" ")
        cfg["maps"][name] = " ".join(spec.split())
    elif kind == "D":
        macro, value = _class_name(body)
        if macro == "S":
            cfg["smart_host"] = value.strip()
    elif kind not in _IGNORED_LINES:
        warnings.append([no, f"unknown .cf line type {kind!r}"])


def _split_embedded(text: str) -> tuple[list[str], str | None]:
    """Cut Debian's ``### /etc/mail/x.mc ###`` trailer off and un-comment it."""
    lines = text.split("\n")
    for i, line in enumerate(lines):
        if re.fullmatch(r"### \S+\.mc ###\s*", line):
            body = [ln[2:] if ln.startswith("# ") else ln.lstrip("#") for ln in lines[i + 1 :]]
            return lines[:i], "\n".join(body)
    return lines, None


def parse_cf(text: str) -> Facts:
    """sendmail.cf / submit.cf -> the config view, plus the embedded .mc when present."""
    cfg = _new_config()
    warnings: list[list[Any]] = []
    lines, embedded = _split_embedded(text if isinstance(text, str) else "")
    for no, line in _logical_lines(lines):
        if line.strip() and not line.startswith("#"):
            _cf_line(cfg, warnings, no, line)
    cfg["embedded_mc"] = parse_mc(embedded) if embedded is not None else None
    cfg["warnings"] = warnings
    cfg["body"] = _body_digest(text if isinstance(text, str) else "")
    return cfg


#: what m4 stamps into a generated .cf and changes on every regeneration
_BUILD_STAMP = re.compile(r"^##### (built by |in /|using ).*$", re.MULTILINE)


def _body_digest(text: str) -> str:
    """Digest of the .cf without its build stamp: equal digests mean the same .cf, only
    regenerated (a hand edit anywhere, R rules included, changes it)."""
    import hashlib

    return hashlib.blake2b(_BUILD_STAMP.sub("", text).encode(), digest_size=16).hexdigest()


# --------------------------------------------------------------------------- .mc parser


class _M4:
    """A small m4 reader: quotes (`...'), ``dnl``, ``#`` comments, macro calls.

    It does not expand user macros; it only collects the top-level calls that
    configure sendmail, which is what the checks need.
    """

    def __init__(self, text: str) -> None:
        self.text = text
        self.pos = 0
        self.warnings: list[list[Any]] = []
        self._lpos, self._lno = 0, 1

    def line(self) -> int:
        """Line number at ``pos``, counted incrementally (inputs may be large)."""
        if self.pos < self._lpos:
            self._lpos, self._lno = 0, 1
        self._lno += self.text.count("\n", self._lpos, self.pos)
        self._lpos = self.pos
        return self._lno

    def skip_line(self) -> None:
        end = self.text.find("\n", self.pos)
        self.pos = len(self.text) if end < 0 else end + 1

    def skip_quote(self) -> str:
        """Consume a quoted string starting at ``pos`` and return its inside."""
        depth, start = 0, self.pos
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            self.pos += 1
            if ch == "`":
                depth += 1
            elif ch == "'":
                depth -= 1
                if depth == 0:
                    return self.text[start + 1 : self.pos - 1]
        self.warnings.append([self.text.count("\n", 0, start) + 1, "unterminated quote"])
        return self.text[start + 1 :]

    def at_dnl(self) -> bool:
        """``dnl`` as a whole word at ``pos``."""
        if not self.text.startswith("dnl", self.pos):
            return False
        before = self.text[self.pos - 1] if self.pos else " "
        after = self.text[self.pos + 3 : self.pos + 4]
        return not (before.isalnum() or before == "_" or after.isalnum() or after == "_")

    def args(self) -> list[str]:
        """Arguments of a call whose ``(`` is at ``pos``: one quote level removed."""
        self.pos += 1
        out: list[str] = []
        cur: list[str] = []
        depth, start_line = 0, self.line()
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "`":
                cur.append(self.skip_quote())
                continue
            if ch == "#":
                self.skip_line()
                continue
            if ch == "d" and self.at_dnl():
                self.skip_line()
                continue
            self.pos += 1
            if ch == "(":
                depth += 1
            elif ch == ")" and depth == 0:
                out.append("".join(cur).lstrip())
                return out
            elif ch == ")":
                depth -= 1
            elif ch == "," and depth == 0:
                out.append("".join(cur).lstrip())
                cur = []
                continue
            cur.append(ch)
        self.warnings.append([start_line, "unterminated macro call"])
        out.append("".join(cur).lstrip())
        return out

    def calls(self) -> Iterator[tuple[int, str, list[str]]]:
        """Yield (line, macro name, args) for every top-level call."""
        ident = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
        while self.pos < len(self.text):
            ch = self.text[self.pos]
            if ch == "`":
                self.skip_quote()
            elif ch == "#":
                self.skip_line()
            elif ch.isalpha() or ch == "_":
                m = ident.match(self.text, self.pos)
                if m is None:  # non-ASCII letter: not an m4 name
                    self.pos += 1
                    continue
                self.pos = m.end()
                name, no = m.group(), self.line()
                if name == "dnl":
                    self.skip_line()
                    continue
                has_args = self.pos < len(self.text) and self.text[self.pos] == "("
                yield no, name, self.args() if has_args else []
            else:
                self.pos += 1


def _mc_call(mc: dict[str, Any], name: str, args: list[str]) -> None:
    """Record one top-level .mc macro call into the facts."""
    first = args[0] if args else ""
    if name == "FEATURE" and first:
        mc["features"][first] = args[1:]
    elif name == "define" and first:
        mc["defines"][first] = args[1] if len(args) > 1 else ""
    elif name == "undefine" and first:
        mc["defines"].pop(first, None)
    elif name == "DAEMON_OPTIONS":
        mc["daemon_port_options"].append(first)
    elif name == "MAILER" and first:
        mc["mailer_list"].append(first)
    elif name in ("include", "sinclude"):
        mc["includes"].append(first)
    elif name in ("OSTYPE", "DOMAIN"):
        mc[name.lower()] = first
    elif name in ("RELAY_DOMAIN", "LOCAL_DOMAIN"):
        cls = "R" if name == "RELAY_DOMAIN" else "w"
        mc["classes"].setdefault(cls, []).extend(first.split())
    elif name == "RELAY_DOMAIN_FILE":
        mc["class_files"].setdefault("R", []).append(first.split()[-1] if first.split() else "")


def _mc_view(mc: dict[str, Any]) -> None:
    """Derive the common config view (options, mailers, class t...) from the defines."""
    defines: dict[str, str] = mc["defines"]
    for macro, option in _MC_OPTIONS.items():
        if macro in defines:
            mc["options"][option] = defines[macro].strip()
    if "confTRUSTED_USERS" in defines:
        mc["classes"].setdefault("t", []).extend(defines["confTRUSTED_USERS"].split())
    ct_file = defines.get("confCT_FILE", "").split()
    if ct_file:
        mc["class_files"].setdefault("t", []).append(ct_file[-1])
    if "SMART_HOST" in defines:
        mc["smart_host"] = defines["SMART_HOST"].strip()
    if "LOCAL_MAILER_PATH" in defines:
        mc["mailers"]["local"] = {"P": defines["LOCAL_MAILER_PATH"].strip()}
    if "smrsh" in mc["features"]:
        smrsh = mc["features"]["smrsh"]
        mc["mailers"]["prog"] = {"P": smrsh[0] if smrsh and smrsh[0] else "smrsh"}
    elif "LOCAL_SHELL_PATH" in defines:
        mc["mailers"]["prog"] = {"P": defines["LOCAL_SHELL_PATH"].strip()}


def parse_mc(text: str) -> Facts:
    """sendmail .mc -> FEATUREs, defines, DAEMON_OPTIONS, MAILERs and the config view."""
    mc = _new_config()
    mc.update(features={}, defines={}, mailer_list=[], includes=[], ostype=None, domain=None)
    reader = _M4(text if isinstance(text, str) else "")
    for _no, name, args in reader.calls():
        _mc_call(mc, name, args)
    _mc_view(mc)
    mc["warnings"] = reader.warnings
    return mc


# --------------------------------------------------------------------------- state checks

Check = Callable[[str, dict[str, Any], bool], list[Finding]]


def _privacy_flags(value: str) -> set[str]:
    """Effective PrivacyOptions flags, with goaway expanded."""
    flags = set(_words(value))
    if "goaway" in flags:
        flags |= _GOAWAY
    return flags - {"goaway", "public"}


def _check_privacy(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    opts = _dict(cfg.get("options"))
    if "PrivacyOptions" not in opts:
        if not cfg.get("_mc"):
            return [_privacy_missing(path, None)]
        return []
    raw = _str(opts["PrivacyOptions"])
    flags = _privacy_flags(raw)
    if not flags:
        return [_privacy_missing(path, raw)]
    lacking = sorted(_PRIVACY_KEY - flags)
    if lacking and not msp:
        return [
            _finding(
                path,
                "MI-SENDMAIL-PRIVACY-EXPN-VRFY",
                Severity.INFO,
                f"SMTP {'/'.join(x[2:].upper() for x in lacking)} still answered after HELO: "
                "anyone can probe which local accounts exist",
                "option:PrivacyOptions",
                None,
                raw,
                "add goaway (or noexpn,novrfy) to PrivacyOptions / confPRIVACY_FLAGS",
            )
        ]
    return []


def _privacy_missing(path: str, raw: str | None) -> Finding:
    return _finding(
        path,
        "MI-SENDMAIL-PRIVACY-MISSING",
        Severity.MEDIUM,
        "PrivacyOptions is unset or 'public': EXPN, VRFY and VERB are open to anyone",
        "option:PrivacyOptions",
        None,
        raw,
        "O PrivacyOptions=goaway,restrictmailq,restrictqrun,restrictexpand",
    )


def _check_dbs(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    raw = _str(_dict(cfg.get("options")).get("DontBlameSendmail"))
    out: list[Finding] = []
    for value in sorted(set(_words(raw))):
        if value in _DBS_DEBIAN:
            continue
        rating = _DBS_RATING.get(value, Severity.MEDIUM)
        if rating is None:
            continue
        known = value in _DBS_RATING
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-DBS-UNSAFE",
                rating,
                f"DontBlameSendmail {value} turns off a sendmail file-safety check"
                + ("" if known else " (value unknown to this tool)"),
                f"option:DontBlameSendmail:{value}",
                None,
                value,
                f"remove {value} from DontBlameSendmail / confDONT_BLAME_SENDMAIL",
            )
        )
    return out


def _user_part(value: str) -> str:
    return value.strip().split(":", 1)[0].split(".", 1)[0].strip().lower()


def _check_users(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    opts = _dict(cfg.get("options"))
    out: list[Finding] = []
    default_user = _str(opts.get("DefaultUser"))
    if default_user and _user_part(default_user) in ("root", "0"):
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-DEFAULTUSER-ROOT",
                Severity.CRITICAL,
                f"DefaultUser is {default_user}: programs and files named in aliases and "
                ".forward files run as root",
                "option:DefaultUser",
                None,
                default_user,
                "O DefaultUser=mail:mail (Debian) or mailnull",
            )
        )
    trusted = _user_part(_str(opts.get("TrustedUser")))
    if trusted not in _TRUSTED_USERS_OK:
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-TRUSTEDUSER-UNUSUAL",
                Severity.HIGH,
                f"TrustedUser is {trusted!r}: that account owns the alias databases and the "
                "control socket",
                "option:TrustedUser",
                None,
                trusted,
                "O TrustedUser=smmta (Debian MTA), smmsp (MSP) or root",
            )
        )
    return out + _check_run_as(path, opts, msp)


def _check_run_as(path: str, opts: dict[str, Any], msp: bool) -> list[Finding]:
    run_as = _str(opts.get("RunAsUser"))
    if not run_as:
        return []
    if msp and _user_part(run_as) != "smmsp":
        sev, text = Severity.MEDIUM, f"the MSP runs as {run_as!r} instead of smmsp"
    elif not msp:
        sev, text = Severity.INFO, f"the MTA daemon drops to {run_as!r} after binding"
    else:
        return []
    return [
        _finding(path, "MI-SENDMAIL-RUNASUSER", sev, text, "option:RunAsUser", None, run_as, None)
    ]


def _mode(value: str) -> int | None:
    try:
        return int(value.strip(), 8)
    except ValueError:
        return None


def _check_modes(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    opts = _dict(cfg.get("options"))
    out: list[Finding] = []
    for name, sev, what in (
        ("QueueFileMode", Severity.HIGH, "queued mail"),
        ("TempFileMode", Severity.MEDIUM, "temporary, pid and status files"),
    ):
        mode = _mode(_str(opts.get(name)))
        if mode is not None and mode & 0o007:
            out.append(
                _finding(
                    path,
                    f"MI-SENDMAIL-{name.upper()}-OPEN",
                    sev,
                    f"{name} {opts[name]} gives other users access to {what}",
                    f"option:{name}",
                    None,
                    opts[name],
                    f"O {name}=0640 (Debian MTA) or 0600",
                )
            )
    if _str(opts.get("UnsafeGroupWrites")).strip().lower()[:1] in ("f", "n", "0"):
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-UNSAFEGROUPWRITES-OFF",
                Severity.MEDIUM,
                "UnsafeGroupWrites=False: group-writable .forward and :include: files may "
                "name programs and files",
                "option:UnsafeGroupWrites",
                None,
                opts["UnsafeGroupWrites"],
                "remove the UnsafeGroupWrites line",
            )
        )
    return out


def _check_forward_path(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    raw = _str(_dict(cfg.get("options")).get("ForwardPath"))
    bad = [e for e in raw.split(":") if e.strip() and not e.strip().startswith("$z")]
    bad += [e for e in raw.split(":") if _under_world_writable(e) and e not in bad]
    if not bad:
        return []
    return [
        _finding(
            path,
            "MI-SENDMAIL-FORWARDPATH-UNSAFE",
            Severity.HIGH,
            f"ForwardPath reads .forward files from {', '.join(bad)}, outside the users' "
            "home directories: whoever can write there redirects their mail",
            "option:ForwardPath",
            None,
            raw,
            "O ForwardPath=$z/.forward.$w:$z/.forward",
        )
    ]


def _check_paths(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    opts = _dict(cfg.get("options"))
    out: list[Finding] = []
    for name in _PATH_OPTIONS:
        value = _str(opts.get(name))
        items = [v for v in value.split(",") if _under_world_writable(v.split(":")[-1])]
        if items:
            out.append(
                _finding(
                    path,
                    "MI-SENDMAIL-PATH-UNSAFE",
                    Severity.HIGH,
                    f"{name} points into a world-writable directory ({items[0]}): "
                    "any local user can plant or swap that file",
                    f"option:{name}",
                    None,
                    value,
                    f"point {name} back to its /etc/mail or /var/lib/sendmail location",
                )
            )
    return out


def _check_auth(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    opts = _dict(cfg.get("options"))
    mechs = set(_words(_str(opts.get("AuthMechanisms"))))
    plain = sorted(mechs & {"plain", "login"})
    if not plain or "p" in _words(_str(opts.get("AuthOptions"))):
        return []
    return [
        _finding(
            path,
            "MI-SENDMAIL-AUTH-PLAINTEXT",
            Severity.MEDIUM,
            f"SMTP AUTH offers {'/'.join(m.upper() for m in plain)} without AuthOptions 'p': "
            "passwords may cross the network unencrypted",
            "option:AuthOptions",
            None,
            _str(opts.get("AuthOptions")),
            "add p to AuthOptions / confAUTH_OPTIONS",
        )
    ]


def _check_exposure(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    out: list[Finding] = []
    exposed = [d for d in _list(cfg.get("daemon_port_options")) if not _loopback(_str(d))]
    if exposed and not msp:
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-LISTEN-PUBLIC",
                Severity.INFO,
                "sendmail accepts SMTP connections on all interfaces, not only on loopback",
                "option:DaemonPortOptions",
                None,
                [_short(d) for d in exposed],
                None,
            )
        )
    banner = _str(_dict(cfg.get("options")).get("SmtpGreetingMessage"))
    if "$v" in banner or "$Z" in banner:
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-BANNER-VERSION",
                Severity.INFO,
                "the SMTP greeting announces the sendmail version ($v/$Z)",
                "option:SmtpGreetingMessage",
                None,
                _short(banner),
                "O SmtpGreetingMessage=$j Sendmail; $b",
            )
        )
    return out


def _loopback(spec: str) -> bool:
    addr = re.search(r"\bAddr(?:ess)?\s*=\s*([^,\s]+)", spec, re.IGNORECASE)
    if addr is None:
        return "nomta" in spec.lower()
    value = addr.group(1).strip("[]").lower()
    return value.startswith("127.") or value in ("::1", "localhost", "ipv6:::1")


def _check_classes(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    classes = _dict(cfg.get("classes"))
    out: list[Finding] = []
    words = sorted({_str(w) for w in _list(classes.get("R"))})
    for word in words:
        if word in ("", ".") or _is_tld(word) or _public_short_prefix(word):
            out.append(_relay_finding(path, word))
    nets = [w for w in words if not w.isalpha() and parse_network(w) is not None]
    union = judge_networks(nets)
    if union.scope == "open" and not out:  # narrow entries that together cover the Internet
        out.append(_relay_finding(path, f"{', '.join(nets[:6])} ({union.text})"))
    extra = sorted({_str(w) for w in _list(classes.get("t"))} - _CLASS_T_STOCK)
    if extra:
        out.append(_trusted_finding(path, extra, Severity.MEDIUM))
    wide = sorted(w for w in {_str(x) for x in _list(classes.get("w"))} if _wide_local(w))
    if wide:
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-LOCALNAMES-WIDE",
                Severity.MEDIUM,
                f"class w (local host names) holds {', '.join(wide)}: mail for a whole "
                "top-level domain would be delivered here",
                "class:w",
                None,
                wide,
                "remove those names from local-host-names / Cw",
            )
        )
    for cls, files in sorted(_dict(cfg.get("class_files")).items()):
        out.extend(_class_file_findings(path, cls, _list(files)))
    return out


def _wide_local(word: str) -> bool:
    return word.startswith("*") or (not word.startswith("[") and _is_tld(word))


def _relay_finding(path: str, word: str) -> Finding:
    return _finding(
        path,
        "MI-SENDMAIL-OPEN-RELAY",
        Severity.CRITICAL,
        f"class R (relay domains) holds {word!r}: this host relays for a whole top-level "
        "domain or public address range, an open relay",
        "class:R",
        None,
        word,
        f"remove {word!r} from relay-domains / RELAY_DOMAIN / CR",
    )


def _trusted_finding(path: str, names: list[str], sev: Severity) -> Finding:
    return _finding(
        path,
        "MI-SENDMAIL-TRUSTED-USERS",
        sev,
        f"{', '.join(names)} may now set any sender address with -f and no "
        "X-Authentication-Warning (class t)",
        "class:t",
        None,
        names,
        "keep class t to root, daemon and uucp",
    )


def _class_file_findings(path: str, cls: str, files: list[Any]) -> list[Finding]:
    out: list[Finding] = []
    for spec in (_str(f) for f in files):
        if spec.startswith("|"):
            out.append(
                _finding(
                    path,
                    "MI-SENDMAIL-CLASS-PROGRAM",
                    Severity.HIGH,
                    f"class {cls} is filled by running the program {spec[1:]!r} at start-up",
                    f"class_file:{cls}",
                    None,
                    spec,
                    f"remove the F{cls}|... line",
                )
            )
        elif _under_world_writable(spec):
            out.append(
                _finding(
                    path,
                    "MI-SENDMAIL-CLASSFILE-UNSAFE",
                    Severity.HIGH,
                    f"class {cls} is read from {spec}, in a world-writable directory",
                    f"class_file:{cls}",
                    None,
                    spec,
                    "keep class files under /etc/mail",
                )
            )
    return out


def _check_mailers(path: str, cfg: dict[str, Any], msp: bool) -> list[Finding]:
    mailers = _dict(cfg.get("mailers"))
    out: list[Finding] = []
    prog = _dict(mailers.get("prog"))
    if prog:
        out.extend(_prog_mailer_findings(path, prog))
    local = _str(_dict(mailers.get("local")).get("P"))
    if _prog_kind(local) in ("shell", "interpreter"):
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-LOCAL-MAILER-UNSAFE",
                Severity.HIGH,
                f"the local mailer is {local}, a shell or interpreter running as root",
                "mailer:local:P",
                None,
                local,
                "Mlocal P=/usr/sbin/sensible-mda (Debian) or mail.local",
            )
        )
    return out


def _prog_mailer_findings(path: str, prog: dict[str, Any]) -> list[Finding]:
    command = _str(prog.get("P"))
    kind = _prog_kind(command)
    out: list[Finding] = []
    if "S" in _str(prog.get("F")):
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-PROG-AS-ROOT",
                Severity.CRITICAL,
                "the prog mailer has flag S: programs named in aliases and .forward run as root",
                "mailer:prog:F",
                None,
                prog.get("F"),
                "remove S from the Mprog F= flags",
            )
        )
    base = command.rsplit("/", 1)[-1]
    if kind in ("smrsh", "ipc") or not command:
        return out
    if kind == "shell" and base == "sh":
        sev, text = Severity.LOW, "the prog mailer is /bin/sh, not smrsh"
    elif kind in ("shell", "interpreter"):
        sev, text = Severity.HIGH, f"the prog mailer is {command}, a full shell or interpreter"
    else:
        sev, text = Severity.MEDIUM, f"the prog mailer is {command}, not smrsh"
    out.append(
        _finding(
            path,
            "MI-SENDMAIL-PROG-NO-SMRSH",
            sev,
            f"{text}: any program can be run from aliases and .forward files",
            "mailer:prog:P",
            None,
            command,
            "FEATURE(`smrsh') in the .mc, then rebuild the .cf",
        )
    )
    return out


_CONFIG_CHECKS: tuple[Check, ...] = (
    _check_privacy,
    _check_dbs,
    _check_users,
    _check_modes,
    _check_forward_path,
    _check_paths,
    _check_auth,
    _check_exposure,
    _check_classes,
    _check_mailers,
)


def _is_msp(path: str, cfg: dict[str, Any]) -> bool:
    opts = _dict(cfg.get("options"))
    base = path.rsplit("/", 1)[-1].lower()
    if base.startswith("submit") or "msp" in _dict(cfg.get("features")):
        return True
    return _str(opts.get("UseMSP")).lower().startswith("t")


def _assess_config(path: str, cfg: dict[str, Any]) -> list[Finding]:
    msp = _is_msp(path, cfg)
    out: list[Finding] = []
    for check in _CONFIG_CHECKS:
        out.extend(check(path, cfg, msp))
    return out


def _assess_features(path: str, mc: dict[str, Any], prefix: str) -> list[Finding]:
    features = {_str(k).lower() for k in _dict(mc.get("features"))}
    out: list[Finding] = []
    for name in sorted(features & set(_FEATURE_RISK)):
        sev, meaning = _FEATURE_RISK[name]
        rule = "MI-SENDMAIL-OPEN-RELAY" if name == "promiscuous_relay" else "MI-SENDMAIL-RELAY"
        out.append(
            _finding(
                path,
                rule if sev.rank >= Severity.MEDIUM.rank else "MI-SENDMAIL-FEATURE-LAX",
                sev,
                f"FEATURE({name}) {meaning}",
                f"{prefix}feature:{name}",
                None,
                name,
                f"remove FEATURE(`{name}') from the .mc and rebuild the .cf",
            )
        )
    return out


def _smrsh_missing(path: str, mc: dict[str, Any]) -> list[Finding]:
    features = {_str(k).lower() for k in _dict(mc.get("features"))}
    mailers = {_str(m).lower() for m in _list(mc.get("mailer_list"))}
    if "smrsh" in features or "msp" in features or not mailers & {"local", "prog"}:
        return []
    return [
        _finding(
            path,
            "MI-SENDMAIL-SMRSH-MISSING",
            Severity.LOW,
            "FEATURE(smrsh) is not used: aliases and .forward files may run any program "
            "through /bin/sh",
            "feature:smrsh",
            None,
            None,
            "add FEATURE(`smrsh') before MAILER(`local')",
        )
    ]


def assess_cf(path: str, facts: Facts) -> list[Finding]:
    """Risky state of a .cf with no baseline (also runs the FEATURE checks of the embedded .mc)."""
    cfg = _dict(facts)
    out = _assess_config(path, cfg)
    embedded = _dict(cfg.get("embedded_mc"))
    if embedded:
        out.extend(_assess_features(path, embedded, "mc:"))
    return out


def assess_mc(path: str, facts: Facts) -> list[Finding]:
    """Risky state of a .mc: the relay FEATUREs, smrsh, and the option checks of its defines."""
    mc = dict(_dict(facts))
    mc["_mc"] = True
    out = _assess_features(path, mc, "") + _smrsh_missing(path, mc)
    return out + [f for f in _assess_config(path, mc) if f.rule != "MI-SENDMAIL-PROG-NO-SMRSH"]


# --------------------------------------------------------------------------- diff


def _key(f: Finding) -> tuple[str, str, str]:
    return f.rule, f.attribute, repr(f.after)


def _new_risks(path: str, before: list[Finding], after: list[Finding]) -> list[Finding]:
    """Findings of the new state that the old state did not have."""
    old = {_key(f) for f in before}
    return [f for f in after if _key(f) not in old]


def _diff_privacy(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    raw_b, raw_a = _str(b.get("PrivacyOptions")), _str(a.get("PrivacyOptions"))
    if "PrivacyOptions" not in b or _privacy_flags(raw_b) == _privacy_flags(raw_a):
        return []
    lost = sorted(_privacy_flags(raw_b) - _privacy_flags(raw_a))
    if not lost:
        gained = sorted(_privacy_flags(raw_a) - _privacy_flags(raw_b))
        return [
            _finding(
                path,
                "MI-SENDMAIL-PRIVACY-TIGHTENED",
                Severity.LOW,
                f"PrivacyOptions gained {', '.join(gained)}",
                "option:PrivacyOptions",
                raw_b,
                raw_a,
            )
        ]
    sev = Severity.HIGH if set(lost) & _PRIVACY_KEY else Severity.MEDIUM
    return [
        _finding(
            path,
            "MI-SENDMAIL-PRIVACY-WEAKENED",
            sev,
            f"PrivacyOptions lost {', '.join(lost)}: SMTP clients and local users learn more "
            "about this host",
            "option:PrivacyOptions",
            raw_b,
            raw_a,
            f"O PrivacyOptions={raw_b}",
        )
    ]


def _diff_dbs(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    old = set(_words(_str(b.get("DontBlameSendmail"))))
    new = set(_words(_str(a.get("DontBlameSendmail"))))
    out: list[Finding] = []
    for value in sorted((new - old) & _DBS_DEBIAN - {"safe"}):
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-DBS-ADDED",
                Severity.LOW,
                f"DontBlameSendmail gained {value} (part of Debian's default list)",
                f"option:DontBlameSendmail:{value}",
                None,
                value,
                f"remove {value} from DontBlameSendmail if it is not needed",
            )
        )
    for value in sorted(old - new):
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-DBS-REMOVED",
                Severity.INFO,
                f"DontBlameSendmail no longer has {value}: sendmail is stricter",
                f"option:DontBlameSendmail:{value}",
                value,
                None,
            )
        )
    return out


_HIGH_CHANGES = {
    "DefaultUser": "programs from aliases now run as",
    "RunAsUser": "the daemon now runs as",
    "TrustedUser": "the trusted account is now",
    "ForwardPath": ".forward files are now looked up at",
}


def _diff_options(path: str, b: dict[str, Any], a: dict[str, Any], done: set[str]) -> list[Finding]:
    out: list[Finding] = []
    for name in sorted(set(b) | set(a)):
        if f"option:{name}" in done or name in ("PrivacyOptions", "DontBlameSendmail"):
            continue
        old, new = b.get(name), a.get(name)
        if old == new:
            continue
        if name in _PATH_OPTIONS or name in _HIGH_CHANGES:
            what = _HIGH_CHANGES.get(name, f"{name} now points to")
            sev, rule = Severity.HIGH, "MI-SENDMAIL-PATH-CHANGED"
            rule = rule if name in _PATH_OPTIONS else "MI-SENDMAIL-IDENTITY-CHANGED"
            if name == "SafeFileEnvironment":
                sev = Severity.MEDIUM
            text = f"{what} {_short(new) if new is not None else '(default)'}"
        else:
            sev, rule = Severity.MEDIUM, "MI-SENDMAIL-OPTION-CHANGED"
            text = f"option {name} changed from {_short(old)!r} to {_short(new)!r}"
        out.append(_finding(path, rule, sev, text, f"option:{name}", old, new, None))
    return out


def _diff_listen(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    old, new = _list(b.get("daemon_port_options")), _list(a.get("daemon_port_options"))
    if old == new:
        return []
    widened = all(_loopback(_str(d)) for d in old) and not all(_loopback(_str(d)) for d in new)
    sev = Severity.MEDIUM if widened else Severity.LOW
    text = "sendmail now listens beyond loopback" if widened else "listening sockets changed"
    return [
        _finding(
            path,
            "MI-SENDMAIL-LISTEN-CHANGED",
            sev,
            f"{text}: {', '.join(_short(_str(d), 60) for d in new) or 'none'}",
            "option:DaemonPortOptions",
            old,
            new,
        )
    ]


def _diff_classes(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    old_c, new_c = _dict(b.get("classes")), _dict(a.get("classes"))
    out: list[Finding] = []
    added_r = sorted({_str(w) for w in _list(new_c.get("R"))} - set(_list(old_c.get("R"))))
    if added_r:
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-RELAY-DOMAINS-ADDED",
                Severity.HIGH,
                f"this host now relays mail for {', '.join(added_r)} (class R)",
                "class:R",
                _list(old_c.get("R")),
                _list(new_c.get("R")),
                "remove them from RELAY_DOMAIN / relay-domains unless intended",
            )
        )
    added_t = sorted({_str(w) for w in _list(new_c.get("t"))} - set(_list(old_c.get("t"))))
    if added_t:
        out.append(_trusted_finding(path, added_t, Severity.MEDIUM))
    for cls in sorted((set(old_c) | set(new_c)) - {"R", "t"}):
        if sorted(map(str, _list(old_c.get(cls)))) != sorted(map(str, _list(new_c.get(cls)))):
            out.append(_class_changed(path, cls, old_c.get(cls), new_c.get(cls)))
    return out + _diff_class_files(path, b, a)


def _class_changed(path: str, cls: str, old: Any, new: Any) -> Finding:
    sev = Severity.INFO if cls == "w" else Severity.MEDIUM
    return _finding(
        path,
        "MI-SENDMAIL-CLASS-CHANGED",
        sev,
        f"class {cls} changed"
        + (": the set of local host names is different" if cls == "w" else ""),
        f"class:{cls}",
        old,
        new,
    )


def _diff_class_files(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    old_f, new_f = _dict(b.get("class_files")), _dict(a.get("class_files"))
    out: list[Finding] = []
    for cls in sorted(set(old_f) | set(new_f)):
        if old_f.get(cls) != new_f.get(cls):
            sev = Severity.HIGH if cls in ("R", "t") else Severity.MEDIUM
            out.append(
                _finding(
                    path,
                    "MI-SENDMAIL-CLASSFILE-CHANGED",
                    sev,
                    f"class {cls} is now read from {_list(new_f.get(cls)) or 'nowhere'}",
                    f"class_file:{cls}",
                    old_f.get(cls),
                    new_f.get(cls),
                )
            )
    return out


def _diff_mailers(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    old_m, new_m = _dict(b.get("mailers")), _dict(a.get("mailers"))
    out: list[Finding] = []
    for name in sorted(set(old_m) | set(new_m)):
        old, new = _dict(old_m.get(name)), _dict(new_m.get(name))
        if old == new:
            continue
        if not old or not new:
            out.append(_mailer_added_removed(path, name, old, new))
            continue
        for key in sorted(set(old) | set(new)):
            if old.get(key) != new.get(key):
                out.append(_mailer_field(path, name, key, old.get(key), new.get(key)))
    return out


def _mailer_added_removed(
    path: str, name: str, old: dict[str, Any], new: dict[str, Any]
) -> Finding:
    if not new:
        return _finding(
            path,
            "MI-SENDMAIL-MAILER-REMOVED",
            Severity.MEDIUM,
            f"mailer {name} was removed",
            f"mailer:{name}",
            _str(old.get("P")),
            None,
        )
    prog = _str(new.get("P"))
    sev = Severity.MEDIUM if prog in _IPC else Severity.HIGH
    return _finding(
        path,
        "MI-SENDMAIL-MAILER-ADDED",
        sev,
        f"new mailer {name} delivers through {prog or '?'}",
        f"mailer:{name}",
        None,
        prog,
        f"remove the M{name} definition unless intended",
    )


def _mailer_field(path: str, name: str, key: str, old: Any, new: Any) -> Finding:
    if key in ("P", "A"):
        return _finding(
            path,
            "MI-SENDMAIL-MAILER-PROGRAM-CHANGED",
            Severity.HIGH,
            f"mailer {name} now runs {_short(new)!r} instead of {_short(old)!r}",
            f"mailer:{name}:{key}",
            old,
            new,
            f"restore {key}={old} on M{name}",
        )
    return _finding(
        path,
        "MI-SENDMAIL-MAILER-CHANGED",
        Severity.MEDIUM,
        f"mailer {name} field {key} changed from {_short(old)!r} to {_short(new)!r}",
        f"mailer:{name}:{key}",
        old,
        new,
    )


def _diff_maps(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    old_k, new_k = _dict(b.get("maps")), _dict(a.get("maps"))
    out: list[Finding] = []
    for name in sorted(set(old_k) | set(new_k)):
        old, new = old_k.get(name), new_k.get(name)
        if old == new:
            continue
        risky = name in ("access", "authinfo", "aliases") or _str(new).startswith("program")
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-MAP-CHANGED",
                Severity.HIGH if risky else Severity.MEDIUM,
                f"map {name} is now {_short(new) if new else 'removed'!s}",
                f"map:{name}",
                old,
                new,
            )
        )
    return out


def _diff_smart_host(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    old, new = b.get("smart_host") or None, a.get("smart_host") or None
    if old == new:
        return []
    return [
        _finding(
            path,
            "MI-SENDMAIL-SMARTHOST-CHANGED",
            Severity.HIGH,
            f"all outgoing mail now goes through {new or 'direct delivery'} "
            f"instead of {old or 'direct delivery'}",
            "macro:S",
            old,
            new,
            f"restore DS{old or ''} / SMART_HOST",
        )
    ]


def _diff_config(path: str, before: dict[str, Any], after: dict[str, Any]) -> list[Finding]:
    out = _new_risks(path, _assess_config(path, before), _assess_config(path, after))
    ob, oa = _dict(before.get("options")), _dict(after.get("options"))
    out += _diff_privacy(path, ob, oa) + _diff_dbs(path, ob, oa)
    out += _diff_options(path, ob, oa, {f.attribute for f in out})
    out += _diff_listen(path, before, after) + _diff_classes(path, before, after)
    out += _diff_mailers(path, before, after) + _diff_maps(path, before, after)
    return out + _diff_smart_host(path, before, after)


def _diff_features(path: str, b: dict[str, Any], a: dict[str, Any], prefix: str) -> list[Finding]:
    old, new = _dict(b.get("features")), _dict(a.get("features"))
    out = _new_risks(path, _assess_features(path, b, prefix), _assess_features(path, a, prefix))
    for name in sorted(set(old) | set(new)):
        if name.lower() in _FEATURE_RISK and name in new:
            continue
        if old.get(name) != new.get(name):
            lost_smrsh = name == "smrsh" and name not in new
            out.append(
                _finding(
                    path,
                    "MI-SENDMAIL-FEATURE-CHANGED",
                    Severity.HIGH if lost_smrsh else Severity.MEDIUM,
                    f"FEATURE({name}) was "
                    + ("added" if name not in old else "removed" if name not in new else "changed"),
                    f"{prefix}feature:{name}",
                    old.get(name),
                    new.get(name),
                )
            )
    return out


def diff_cf(path: str, before: Facts, after: Facts) -> list[Finding]:
    """What changed in a .cf means; flags a .cf edited by hand behind its embedded .mc."""
    b, a = _dict(before), _dict(after)
    out = _diff_config(path, b, a)
    emb_b, emb_a = _dict(b.get("embedded_mc")), _dict(a.get("embedded_mc"))
    if emb_b or emb_a:
        out += _diff_features(path, emb_b, emb_a, "mc:")
    if out and emb_b and emb_b == emb_a:
        out.append(
            _finding(
                path,
                "MI-SENDMAIL-CF-HAND-EDITED",
                Severity.MEDIUM,
                "the .cf changed but its embedded .mc did not: it was edited by hand, "
                "or an m4 file the .mc includes changed",
                "content",
                None,
                None,
                "regenerate it from the .mc (make -C /etc/mail) and review the difference",
            )
        )
    return out


def diff_mc(path: str, before: Facts, after: Facts) -> list[Finding]:
    """What changed in a .mc means: FEATUREs, defines (as options), daemons, mailers."""
    b, a = dict(_dict(before)), dict(_dict(after))
    b["_mc"] = a["_mc"] = True
    out = _diff_features(path, b, a, "") + _diff_config(path, b, a)
    out = [f for f in out if f.rule != "MI-SENDMAIL-PROG-NO-SMRSH"]
    seen = {f.attribute for f in out}
    old_d, new_d = _dict(b.get("defines")), _dict(a.get("defines"))
    for name in sorted(set(old_d) | set(new_d)):
        if name in _MC_OPTIONS or old_d.get(name) == new_d.get(name):
            continue
        if f"define:{name}" not in seen:
            out.append(
                _finding(
                    path,
                    "MI-SENDMAIL-DEFINE-CHANGED",
                    Severity.MEDIUM,
                    f"define({name}) changed from {_short(old_d.get(name))!r} to "
                    f"{_short(new_d.get(name))!r}",
                    f"define:{name}",
                    old_d.get(name),
                    new_d.get(name),
                )
            )
    return out + _diff_mc_lists(path, b, a)


def _diff_mc_lists(path: str, b: dict[str, Any], a: dict[str, Any]) -> list[Finding]:
    out: list[Finding] = []
    for key, what in (("mailer_list", "MAILER"), ("includes", "include")):
        old, new = _list(b.get(key)), _list(a.get(key))
        if old != new:
            out.append(
                _finding(
                    path,
                    "MI-SENDMAIL-MC-CHANGED",
                    Severity.MEDIUM,
                    f"{what} list changed: now {', '.join(map(str, new)) or 'empty'}",
                    f"mc:{key}",
                    old,
                    new,
                )
            )
    return out
