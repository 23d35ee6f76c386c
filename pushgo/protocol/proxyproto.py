"""The PROXY protocol v1 header (HAProxy's text form) a TCP proxy may put before a
connection's bytes: ``PROXY TCP4|TCP6 <src> <dst> <sport> <dport>\\r\\n`` or
``PROXY UNKNOWN …\\r\\n``, at most 107 bytes. Pure: a line in, the client address out."""

from __future__ import annotations

import ipaddress

from pushgo.protocol.ids import is_digits

#: The longest v1 header, CRLF included.
MAX_LINE = 107


def parse_v1(line: bytes) -> tuple[str, int] | None:
    """The client (source) address of one header line without its CRLF; None for
    ``UNKNOWN``. ValueError names what is wrong."""
    try:
        text = line.decode("ascii")
    except UnicodeDecodeError:
        raise ValueError("PROXY header is not ASCII") from None
    parts = text.split(" ")
    if not parts or parts[0] != "PROXY":
        raise ValueError("missing PROXY protocol signature")
    if len(parts) >= 2 and parts[1] == "UNKNOWN":
        return None
    if len(parts) != 6 or parts[1] not in ("TCP4", "TCP6"):
        raise ValueError("invalid PROXY header fields")
    version = 4 if parts[1] == "TCP4" else 6
    try:
        src, dst = ipaddress.ip_address(parts[2]), ipaddress.ip_address(parts[3])
    except ValueError:
        raise ValueError("invalid PROXY address") from None
    if src.version != version or dst.version != version:
        raise ValueError(f"PROXY address is not IPv{version}")
    ports = []
    for raw in parts[4:]:
        if not is_digits(raw) or (len(raw) > 1 and raw[0] == "0") or int(raw) > 65535:
            raise ValueError("invalid PROXY port")
        ports.append(int(raw))
    return str(src), ports[0]
