"""One network-set judgement for every relay list: postfix mynetworks, exim relay nets,
sendmail access ``Connect:`` grants and relay-domains address entries.

An attacker splits ``0.0.0.0/0`` into ``0.0.0.0/1 128.0.0.0/1`` or a few hundred /8s;
each entry alone looks narrow, the union is the whole Internet. So the judgement is on
the union: collapse every granted prefix, drop the private, loopback and reserved parts,
and measure what public address space is left. Pure.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass

Network = ipaddress.IPv4Network | ipaddress.IPv6Network

#: what counts as "open": all of a family, or at least a public /8 (IPv4) or /16 (IPv6)
OPEN_V4 = 2**24
OPEN_V6 = 2**111  # a /16 less its reserved parts (2001::/16 holds 2001:db8::/32)
#: a public prefix shorter than these is "wide" (high) when the union is not open
WIDE_V4 = 24
WIDE_V6 = 48

_NOT_PUBLIC = tuple(
    ipaddress.ip_network(n)
    for n in (
        "0.0.0.0/8", "10.0.0.0/8", "100.64.0.0/10", "127.0.0.0/8", "169.254.0.0/16",
        "172.16.0.0/12", "192.0.0.0/24", "192.0.2.0/24", "192.168.0.0/16", "198.18.0.0/15",
        "198.51.100.0/24", "203.0.113.0/24", "224.0.0.0/3",
        "::/128", "::1/128", "::ffff:0:0/96", "64:ff9b::/96", "100::/64", "2001:db8::/32",
        "fc00::/7", "fe80::/10", "ff00::/8",
    )
)  # fmt: skip
_ANY = frozenset({"*", "0/0", "::/0", "[::]/0", "[::/0]", "::::/0"})


def parse_network(text: str) -> Network | None:
    """An address or prefix as Postfix, Exim, Sendmail or Dovecot write it, or None.

    Accepts ``[::1]/128``, ``10/8``, ``0/0``, sendmail's ``IPv6:`` and partial-octet forms
    (``192.168`` = 192.168.0.0/16), and IPv4-mapped IPv6 (judged as the IPv4 range).
    """
    text = text.strip().replace("[", "").replace("]", "")
    if text.lower().startswith("ipv6:"):
        text = text[5:]
        groups = text.split(":")
        if "::" not in text and "/" not in text and len(groups) < 8:
            # sendmail access: leading groups match as a prefix ("IPv6:2001:db8" = /32)
            text = ":".join(groups) + "::/" + str(16 * len(groups))
    if text in _ANY:
        text = "0.0.0.0/0"
    addr, slash, bits = text.partition("/")
    addr = addr.rstrip(".") if ":" not in addr else addr
    if ":" not in addr and addr.replace(".", "").isdigit() and addr.count(".") < 3:
        octets = addr.split(".")
        if not slash:  # sendmail access: "192.168" is the /16 of its octets
            bits, slash = str(8 * len(octets)), "/"
        addr = ".".join([*octets, "0", "0", "0"][:4])
    try:
        net = ipaddress.ip_network(f"{addr}{slash}{bits}", strict=False)
    except ValueError:
        return None
    if isinstance(net, ipaddress.IPv6Network) and net.subnet_of(
        ipaddress.IPv6Network("::ffff:0:0/96")
    ):
        mapped = net.network_address.ipv4_mapped
        net = ipaddress.ip_network(f"{mapped}/{max(net.prefixlen - 96, 0)}", strict=False)
    return net


def is_public(net: Network) -> bool:
    return not any(net.version == p.version and net.subnet_of(p) for p in _NOT_PUBLIC)  # type: ignore[arg-type]


def public_size(nets: Iterable[Network]) -> tuple[int, int]:
    """How many public IPv4 and IPv6 addresses the union of ``nets`` covers."""
    sizes = [0, 0]
    for version in (4, 6):
        mine = [n for n in nets if n.version == version]
        for block in ipaddress.collapse_addresses(mine):  # type: ignore[type-var]
            sizes[version == 6] += _public_part(block)
    return sizes[0], sizes[1]


def _public_part(block: Network) -> int:
    """Addresses of ``block`` outside the non-public ranges (they never overlap each other
    except by containment, so subtracting the maximal ones once is exact)."""
    inside = [p for p in _NOT_PUBLIC if p.version == block.version and p.overlaps(block)]
    total = block.num_addresses
    for p in ipaddress.collapse_addresses(inside):  # type: ignore[type-var]
        if p.subnet_of(block):  # type: ignore[arg-type]
            total -= p.num_addresses
        elif block.subnet_of(p):  # type: ignore[arg-type]
            return 0
    return total


@dataclass(frozen=True, slots=True)
class Verdict:
    """How far a set of granted networks reaches: ``open`` (the Internet, or at least a
    public /8), ``wide`` (public prefixes wider than /24 or /48: ``wide_entries``),
    ``public`` (narrow public ranges), ``local`` or ``none``."""

    scope: str
    v4: int
    v6: int
    wide_entries: tuple[str, ...] = ()

    @property
    def text(self) -> str:
        parts = []
        if self.v4:
            parts.append(_size_text(self.v4, 32, "IPv4"))
        if self.v6:
            parts.append(_size_text(self.v6, 128, "IPv6"))
        return " and ".join(parts) or "no public addresses"


def _size_text(count: int, width: int, family: str) -> str:
    bits = count.bit_length() - 1
    if count == 2**width:
        return f"all of {family}"
    return f"about a /{width - bits} of public {family} space" if bits >= 0 else ""


def judge_networks(entries: Iterable[str]) -> Verdict:
    """Judge the granted entries together (``!`` exclusions and names are not grants)."""
    nets: list[Network] = []
    wide: list[str] = []
    kinds = set()
    for entry in entries:
        if entry.strip().startswith("!"):
            continue
        net = parse_network(entry)
        if net is None:
            continue
        nets.append(net)
        public = is_public(net) or net.prefixlen == 0
        kinds.add("public" if public else "local")
        limit = WIDE_V4 if net.version == 4 else WIDE_V6
        if public and net.prefixlen < limit:
            wide.append(entry.strip())
    v4, v6 = public_size(nets)
    if v4 >= OPEN_V4 or v6 >= OPEN_V6:
        return Verdict("open", v4, v6, tuple(wide))
    if wide:
        return Verdict("wide", v4, v6, tuple(wide))
    if "public" in kinds:
        return Verdict("public", v4, v6)
    return Verdict("local" if kinds else "none", v4, v6)
