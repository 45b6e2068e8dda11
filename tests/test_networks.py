"""The one network-set judgement shared by postfix, exim and sendmail access."""

from __future__ import annotations

import pytest

from integrity.analyzers.networks import judge_networks, parse_network


@pytest.mark.parametrize(
    ("entries", "scope"),
    [
        (["0.0.0.0/0"], "open"),
        (["0.0.0.0/1", "128.0.0.0/1"], "open"),
        (["::/1", "8000::/1"], "open"),
        ([f"{n}.0.0.0/8" for n in range(1, 9)], "open"),
        ([f"8.{n}.0.0/9" for n in (0, 128)], "open"),
        (["8.0.0.0/8"], "open"),
        (["8.8.0.0/16"], "wide"),
        ([f"8.{n}.0.0/16" for n in range(4)], "wide"),
        (["192.0.2.0/24", "93.184.216.34"], "public"),
        (["10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16", "127.0.0.0/8"], "local"),
        (["[::1]/128", "fe80::/10"], "local"),
        (["!0.0.0.0/0", "127.0.0.1"], "local"),
        (["hash:/etc/postfix/network_table", "mail.example.org"], "none"),
    ],
)
def test_union_scope(entries: list[str], scope: str) -> None:
    """Entries are judged together: split halves of the Internet are as open as 0/0."""
    assert judge_networks(entries).scope == scope


@pytest.mark.parametrize(
    ("text", "net"),
    [
        ("192.168", "192.168.0.0/16"),
        ("10", "10.0.0.0/8"),
        ("10/8", "10.0.0.0/8"),
        ("IPv6:2001:db8::", "2001:db8::/128"),
        ("IPv6:2001:db8", "2001:db8::/32"),
        ("[::ffff:127.0.0.0]/104", "127.0.0.0/8"),
        ("0/0", "0.0.0.0/0"),
    ],
)
def test_parse_forms(text: str, net: str) -> None:
    """Postfix, exim and sendmail access address forms all parse to the same prefix."""
    assert str(parse_network(text)) == net


def test_private_space_is_not_counted() -> None:
    """Private ranges inside a grant do not count towards 'open'."""
    verdict = judge_networks(["10.0.0.0/8", "100.64.0.0/10"])
    assert verdict.v4 == 0 and verdict.scope == "local"
