"""The nesting limit of every JSON document the gateway reads from a client.

No request field of the API, MCP or OAuth nests deeper than a few levels, while a parser's
recursion (``json.loads``, msgspec's untyped decoding, anything that walks the result) fails
with ``RecursionError`` somewhere past a thousand. :func:`check` refuses a document nested
deeper than :data:`MAX_DEPTH` before any parser sees it, so a deep document is a clear
rejection on every route, never a 500.

Cheap on ordinary bodies: a document with at most ``MAX_DEPTH`` opening brackets in all cannot
nest deeper, which two ``bytes.count`` calls decide; only other documents are scanned.

Pure: no I/O, imports nothing from pushgo.
"""

from __future__ import annotations

import json
import re
from itertools import accumulate
from typing import Any

#: The deepest nesting of arrays and objects accepted (the top level is depth 1).
MAX_DEPTH = 64

_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"', re.DOTALL)
_NOT_BRACKETS = bytes(b for b in range(256) if b not in b"[]{}")
_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}


class TooDeep(ValueError):
    """A JSON document nested deeper than the limit (a ValueError, as json's own errors)."""

    def __init__(self, limit: int) -> None:
        super().__init__(f"JSON nested deeper than {limit} levels")
        self.limit = limit


def depth(raw: bytes | str) -> int:
    """How deep ``raw`` nests arrays and objects, brackets inside strings not counted.

    For a malformed document the answer is an upper bound of what a parser would reach.
    """
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else bytes(raw)
    brackets = _STRING.sub(b"", data).translate(None, _NOT_BRACKETS)
    if not brackets:
        return 0
    return max(0, *accumulate(_STEP[b] for b in brackets))


def check(raw: bytes | str, limit: int = MAX_DEPTH) -> None:
    """Raise :class:`TooDeep` when ``raw`` nests deeper than ``limit``."""
    data = raw.encode("utf-8", "surrogatepass") if isinstance(raw, str) else raw
    if data.count(b"[") + data.count(b"{") > limit and depth(data) > limit:
        raise TooDeep(limit)


def loads(raw: bytes | str, limit: int = MAX_DEPTH) -> Any:
    """``json.loads`` with the nesting limit: every failure is a ValueError."""
    check(raw, limit)
    return json.loads(raw)
