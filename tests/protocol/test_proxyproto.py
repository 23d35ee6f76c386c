"""PROXY protocol v1 header lines: the client address, UNKNOWN, and what is refused."""

from __future__ import annotations

import pytest

from pushgo.protocol.proxyproto import parse_v1


def test_tcp4_tcp6_and_unknown() -> None:
    assert parse_v1(b"PROXY TCP4 203.0.113.7 10.0.0.1 51234 5223") == ("203.0.113.7", 51234)
    assert parse_v1(b"PROXY TCP6 2001:db8::1 2001:db8::2 443 5223") == ("2001:db8::1", 443)
    assert parse_v1(b"PROXY UNKNOWN") is None
    assert parse_v1(b"PROXY UNKNOWN ffff::1 ffff::2 1 2") is None


@pytest.mark.parametrize("line", [
    b"GET / HTTP/1.1", b"PROXY", b"PROXY TCP5 1.2.3.4 1.2.3.4 1 2",
    b"PROXY TCP4 1.2.3 1.2.3.4 1 2", b"PROXY TCP4 2001:db8::1 1.2.3.4 1 2",
    b"PROXY TCP4 1.2.3.4 1.2.3.4 65536 2", b"PROXY TCP4 1.2.3.4 1.2.3.4 01 2",
    b"PROXY TCP4 1.2.3.4 1.2.3.4 -1 2", b"PROXY TCP4 1.2.3.4  1.2.3.4 1 2",
    "PROXY TCP4 1.2.3.4 1.2.3.4 1 2 é".encode(),
])
def test_bad_lines_are_refused(line: bytes) -> None:
    with pytest.raises(ValueError, match="PROXY"):
        parse_v1(line)
