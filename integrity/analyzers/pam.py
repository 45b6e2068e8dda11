"""PAM stacks of the mail services (SMTP AUTH through saslauthd/sendmail, dovecot logins).

``auth sufficient pam_permit.so`` at the top of /etc/pam.d/dovecot lets any password in;
so does an ``auth`` stack that lost its real check. The facts are the stack, line by line,
with ``@include``/``include``/``substack`` kept as references (the included files are
monitored and analysed on their own).
"""

from __future__ import annotations

from typing import Any

from integrity.analyzers._shape import as_dict, as_list
from integrity.model import Facts, Finding, Severity

TYPES = ("auth", "account", "password", "session")
#: modules that check a credential: an auth stack with none of them (and no include) lets
#: everyone in or no one
CHECKERS = frozenset(
    {
        "pam_unix",
        "pam_sss",
        "pam_ldap",
        "pam_krb5",
        "pam_winbind",
        "pam_userdb",
        "pam_pwdfile",
        "pam_mysql",
        "pam_pgsql",
        "pam_radius_auth",
        "pam_tacplus",
        "pam_google_authenticator",
        "pam_oath",
        "pam_u2f",
        "pam_yubico",
        "pam_sepermit",
        "pam_systemd_home",
        "pam_ipa",
    }
)
#: modules that accept without checking anything
PERMIT = frozenset({"pam_permit", "pam_rootok", "pam_succeed_if", "pam_exec"})


def _module(path: str) -> str:
    name = path.rsplit("/", 1)[-1]
    return name[:-3] if name.endswith(".so") else name


def _control(text: str) -> str:
    """``[success=done default=ignore]`` -> its effect; bare words unchanged."""
    if not text.startswith("["):
        return text
    if "success=done" in text or ("success=ok" in text and "default=ignore" in text):
        return "sufficient-like"
    return text


def parse(text: str) -> Facts:
    stack: dict[str, list[list[Any]]] = {t: [] for t in TYPES}
    includes: list[str] = []
    warnings: list[list[Any]] = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.split("#", 1)[0].strip()
        if not line:
            continue
        if line.startswith("@include"):
            includes.append(line.split(None, 1)[1] if " " in line else "")
            continue
        kind = line.split(None, 1)[0].lstrip("-").lower()
        rest = line.split(None, 1)[1] if " " in line else ""
        if kind not in TYPES:
            warnings.append([number, f"unknown PAM type {kind!r}"])
            continue
        if rest.startswith("["):
            end = rest.find("]")
            control, rest = rest[: end + 1], rest[end + 1 :].strip()
        else:
            control, _, rest = rest.partition(" ")
        module, _, args = rest.strip().partition(" ")
        if control in {"include", "substack"}:
            stack[kind].append([number, control, module, ""])
            continue
        if not module:
            warnings.append([number, "no module"])
            continue
        stack[kind].append([number, _control(control), _module(module), args.strip()])
    return {"stack": stack, "includes": includes, "warnings": warnings}


def _auth(facts: Facts) -> list[tuple[int, str, str, str]]:
    stack = as_dict(facts.get("stack"))
    return [
        (int(e[0]), str(e[1]), str(e[2]), str(e[3]))
        for e in as_list(stack.get("auth"))
        if isinstance(e, list) and len(e) == 4
    ]


def _delegates(facts: Facts) -> bool:
    """The real check lives in an included file (common-auth, system-auth...)."""
    return bool(as_list(facts.get("includes"))) or any(
        c in {"include", "substack"} for _, c, _, _ in _auth(facts)
    )


def _checks(facts: Facts) -> bool:
    return _delegates(facts) or any(m in CHECKERS for _, _, m, _ in _auth(facts))


def _bypasses(facts: Facts) -> list[tuple[int, str]]:
    """Lines that end the auth stack with success before any credential is checked."""
    out = []
    for line, control, module, args in _auth(facts):
        if module in CHECKERS or control in {"include", "substack"}:
            break  # the real check comes first: what follows cannot skip it
        if control in {"sufficient", "sufficient-like"} and module in PERMIT:
            out.append((line, f"{control} {module} {args}".strip()))
    return out


def _permit_anywhere(facts: Facts) -> set[tuple[str, str]]:
    return {(c, m) for _, c, m, _ in _auth(facts) if m == "pam_permit"}


def _bypass_finding(path: str, line: int, what: str) -> Finding:
    return Finding(
        path,
        "MI-PAM-AUTH-BYPASS",
        Severity.CRITICAL,
        f"auth line {line} ({what}) accepts a login before any password is checked",
        "pam:auth",
        None,
        f"line {line}: {what}",
        fix=f"remove line {line} from {path}",
    )


def diff(path: str, before: Facts, after: Facts) -> list[Finding]:
    out: list[Finding] = []
    old_bypass = {w for _, w in _bypasses(before)}
    out += [_bypass_finding(path, n, w) for n, w in _bypasses(after) if w not in old_bypass]
    for control, module in sorted(_permit_anywhere(after) - _permit_anywhere(before)):
        if not any(f.rule == "MI-PAM-AUTH-BYPASS" for f in out):
            out.append(
                Finding(
                    path,
                    "MI-PAM-PERMIT-ADDED",
                    Severity.CRITICAL,
                    f"auth stack gained {control} {module}: accepts without a check",
                    "pam:auth",
                    None,
                    f"{control} {module}",
                )
            )
    if _checks(before) and not _checks(after):
        out.append(
            Finding(
                path,
                "MI-PAM-AUTH-LOST",
                Severity.CRITICAL,
                "auth stack lost its credential check (no pam_unix/sss/ldap... nor include)",
                "pam:auth",
                "checked",
                "no check",
            )
        )
    return out


def assess(path: str, facts: Facts) -> list[Finding]:
    out = [_bypass_finding(path, n, w) for n, w in _bypasses(facts)]
    auth = _auth(facts)
    if auth and not _checks(facts) and any(m in PERMIT for _, _, m, _ in auth):
        out.append(
            Finding(
                path,
                "MI-PAM-AUTH-LOST",
                Severity.CRITICAL,
                "auth stack has no credential check, only modules that accept",
                "pam:auth",
                None,
                "no check",
            )
        )
    return out
