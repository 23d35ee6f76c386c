"""CountingAPNs: an APNs endpoint for volume tests and benchmarks that only counts.

Every `POST /3/device/<token>` is answered `200` at once (one HEADERS frame, END_STREAM),
in the same scheduling round as the read that completed it, and counted per token; nothing
else is kept, so a run of millions costs one dict entry per token. There is no per-request
task, no header validation and no JWT check (MockAPNs does all of that for correctness
tests, at a few hundred to two thousand requests a second; this one served 16k/s to h2load).

It speaks real HTTP/2 over TLS through a small server core of its own (:class:`H2Counter`,
sans-I/O): the frames a client sends, SETTINGS/PING acknowledgements, flow-control windows
kept wide open, MAX_CONCURRENT_STREAMS 1000 from the start. Header blocks are parsed with
HPACK's dynamic table but only ``:path`` is ever Huffman-decoded: a Python HPACK decoder
spends most of a request on the never-indexed JWT, which a counter does not need.

    python -m pushgo.testing.counting_apns [--port 0]

prints the gateway settings that point at it (`export PUSHGO_APNS_ENDPOINT=…` and
`PUSHGO_PROVIDER_CA_FILE`, the CA every mock shares: see :mod:`pushgo.testing.mockcli`), then
serves until SIGINT or SIGTERM (Ctrl-C; so it can run in the background of a script) and
prints one JSON line, exit 0: `{"requests": N, "tokens": distinct, "duplicates": {token: n, …},
"duplicated_tokens": D}` (duplicates: at most 100 of the D tokens seen more than once).
Imports nothing from pushgo outside pushgo.testing.
"""

from __future__ import annotations

import argparse
import json
import struct
from collections import Counter
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path

import anyio
import anyio.abc
import anyio.to_thread
from anyio.streams.tls import TLSStream
from hpack.huffman_table import decode_huffman
from hpack.table import HeaderTable

from pushgo.testing.tls import LocalCA

DEVICE_PATH = b"/3/device/"
READ_SIZE = 256 * 1024
PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"
DATA, HEADERS, PRIORITY, RST_STREAM, SETTINGS, PUSH_PROMISE, PING, GOAWAY, WINDOW_UPDATE, \
    CONTINUATION = range(10)
END_STREAM, ACK, END_HEADERS, PADDED, PRIORITY_FLAG = 0x1, 0x1, 0x4, 0x8, 0x20
#: What a client may send us on the connection before we top it up (it starts at 64 KiB).
CONNECTION_WINDOW = 1 << 30
STREAM_WINDOW = 1 << 20
MAX_STREAMS = 1000
_header = struct.Struct(">HBBBL")
_STATIC = HeaderTable.STATIC_TABLE


def _frame(ftype: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    n = len(payload)
    return _header.pack(n >> 8, n & 0xFF, ftype, flags, stream_id) + payload


#: HEADERS(END_STREAM | END_HEADERS) with ``:status: 200`` (static table index 8).
_OK = b"\x88"


class ProtocolError(Exception):
    pass


class _Hpack:
    """Just enough HPACK to find ``:path``: the dynamic table is kept (entries carry their
    value's raw bytes and Huffman flag), values are decoded only for ``:path`` or when an
    entry's size must be known."""

    def __init__(self) -> None:
        self.table: list[tuple[bytes, bytes, bool]] = []  # newest first
        self.size = 0
        self.max_size = 4096

    def _int(self, data: bytes, i: int, prefix: int) -> tuple[int, int]:
        mask = (1 << prefix) - 1
        value = data[i] & mask
        i += 1
        if value < mask:
            return value, i
        shift = 0
        while True:
            if i >= len(data):
                raise ProtocolError("truncated HPACK integer")
            b = data[i]
            i += 1
            value += (b & 0x7F) << shift
            shift += 7
            if not b & 0x80:
                return value, i

    def _string(self, data: bytes, i: int) -> tuple[bytes, bool, int]:
        huffman = bool(data[i] & 0x80)
        n, i = self._int(data, i, 7)
        if i + n > len(data):
            raise ProtocolError("truncated HPACK string")
        return data[i:i + n], huffman, i + n

    def _entry(self, index: int) -> tuple[bytes, bytes, bool]:
        if 1 <= index <= len(_STATIC):
            name, value = _STATIC[index - 1]
            return name, value, False
        pos = index - len(_STATIC) - 1
        if not 0 <= pos < len(self.table):
            raise ProtocolError(f"HPACK index {index} out of range")
        return self.table[pos]

    def _add(self, name: bytes, raw: bytes, huffman: bool) -> None:
        value = decode_huffman(raw) if huffman else raw
        self.table.insert(0, (name, value, False))
        self.size += 32 + len(name) + len(value)
        self._evict()

    def _evict(self) -> None:
        while self.size > self.max_size and self.table:
            name, value, _ = self.table.pop()
            self.size -= 32 + len(name) + len(value)

    def path(self, block: bytes) -> bytes:
        """The block's ``:path`` (b"" if none), keeping the dynamic table in step."""
        path = b""
        i = 0
        while i < len(block):
            b = block[i]
            if b & 0x80:  # indexed
                index, i = self._int(block, i, 7)
                name, raw, huffman = self._entry(index)
            elif b & 0xE0 == 0x20:  # dynamic table size update
                self.max_size, i = self._int(block, i, 5)
                self._evict()
                continue
            else:
                incremental = bool(b & 0x40)
                index, i = self._int(block, i, 6 if incremental else 4)
                if index:
                    name = self._entry(index)[0]
                else:
                    raw_name, name_huffman, i = self._string(block, i)
                    name = decode_huffman(raw_name) if name_huffman else raw_name
                raw, huffman, i = self._string(block, i)
                if incremental:
                    self._add(name, raw, huffman)
            if name == b":path":
                path = decode_huffman(raw) if huffman else raw
        return path


class H2Counter:
    """Sans-I/O server side of one connection: ``receive(data)`` takes bytes, counts every
    completed request by its ``:path`` into ``on_request``, and returns the bytes to send."""

    def __init__(self, on_request: Callable[[bytes], None]) -> None:
        self.on_request = on_request
        self._buf = bytearray()
        self._preface = False
        self._hpack = _Hpack()
        self._block = bytearray()  # a header block waiting for CONTINUATION
        self._block_stream = 0
        self._block_ends_stream = False
        self._paths: dict[int, bytes] = {}  # streams whose body is still arriving
        self._window_used = 0
        self.closed = False

    def start(self) -> bytes:
        settings = struct.pack(">HLHL", 0x3, MAX_STREAMS, 0x4, STREAM_WINDOW)
        return (_frame(SETTINGS, 0, 0, settings)
                + _frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", CONNECTION_WINDOW - 65_535)))

    def receive(self, data: bytes) -> bytes:
        self._buf += data
        out = bytearray()
        buf = self._buf
        pos = 0
        if not self._preface:
            if len(buf) < len(PREFACE):
                return b""
            if bytes(buf[:len(PREFACE)]) != PREFACE:
                raise ProtocolError("bad connection preface")
            self._preface = True
            pos = len(PREFACE)
        while len(buf) - pos >= 9:
            hi, lo, ftype, flags, sid = _header.unpack_from(buf, pos)
            length = (hi << 8) | lo
            sid &= 0x7FFFFFFF
            if len(buf) - pos - 9 < length:
                break
            payload = bytes(buf[pos + 9:pos + 9 + length])
            pos += 9 + length
            self._frame(ftype, flags, sid, payload, out)
        del buf[:pos]
        if self._window_used >= CONNECTION_WINDOW // 2:
            out += _frame(WINDOW_UPDATE, 0, 0, struct.pack(">L", self._window_used))
            self._window_used = 0
        return bytes(out)

    def _frame(self, ftype: int, flags: int, sid: int, payload: bytes, out: bytearray) -> None:
        if self._block_stream and ftype != CONTINUATION:
            raise ProtocolError("expected CONTINUATION")
        if ftype == DATA:
            self._window_used += len(payload)
            if flags & END_STREAM:
                self._complete(sid, self._paths.pop(sid, b""), out)
        elif ftype == HEADERS:
            if flags & PADDED:
                pad = payload[0]
                payload = payload[1:len(payload) - pad]
            if flags & PRIORITY_FLAG:
                payload = payload[5:]
            self._block = bytearray(payload)
            self._block_stream = sid
            self._block_ends_stream = bool(flags & END_STREAM)
            if flags & END_HEADERS:
                self._headers_done(out)
        elif ftype == CONTINUATION:
            if sid != self._block_stream:
                raise ProtocolError("CONTINUATION on another stream")
            self._block += payload
            if flags & END_HEADERS:
                self._headers_done(out)
        elif ftype == SETTINGS:
            if not flags & ACK:
                out += _frame(SETTINGS, ACK, 0)
        elif ftype == PING:
            if not flags & ACK:
                out += _frame(PING, ACK, 0, payload)
        elif ftype == RST_STREAM:
            self._paths.pop(sid, None)
        elif ftype == GOAWAY:
            self.closed = True
        # PRIORITY, WINDOW_UPDATE (we send no DATA), unknown types: nothing to do

    def _headers_done(self, out: bytearray) -> None:
        sid = self._block_stream
        path = self._hpack.path(bytes(self._block))
        self._block = bytearray()
        self._block_stream = 0
        if self._block_ends_stream:
            self._complete(sid, path, out)
        else:
            self._paths[sid] = path

    def _complete(self, sid: int, path: bytes, out: bytearray) -> None:
        self.on_request(path)
        out += _frame(HEADERS, END_STREAM | END_HEADERS, sid, _OK)


class CountingAPNs:
    """Start with `async with mock.serving() as (host, port):`; read `counts` / `requests`."""

    def __init__(self, *, tls: LocalCA | None = None, host: str = "127.0.0.1", port: int = 0,
                 max_concurrent_streams: int = 1000) -> None:
        self.tls = tls or LocalCA()
        self.host = host
        self.port = port
        self.max_concurrent_streams = max_concurrent_streams
        self.counts: Counter[str] = Counter()
        self.requests = 0
        self.connections = 0
        self._event: anyio.Event | None = None
        self._waiting_for = 0

    @property
    def origin(self) -> str:
        return f"https://{self.host}:{self.port}"

    @asynccontextmanager
    async def serving(self) -> AsyncIterator[tuple[str, int]]:
        listener = await anyio.create_tcp_listener(local_host=self.host, local_port=self.port)
        self.port = listener.extra(anyio.abc.SocketAttribute.local_port)
        ssl_context = self.tls.server_context(("h2",))
        async with listener, anyio.create_task_group() as tg:

            async def accept(tcp: anyio.abc.SocketStream) -> None:
                try:
                    stream = await TLSStream.wrap(tcp, server_side=True, ssl_context=ssl_context,
                                                  standard_compatible=False)
                except (OSError, anyio.BrokenResourceError, anyio.EndOfStream):
                    await anyio.aclose_forcefully(tcp)
                    return
                self.connections += 1
                try:
                    await self._serve(stream)
                except (OSError, anyio.BrokenResourceError, anyio.EndOfStream,
                        anyio.ClosedResourceError, ProtocolError):
                    pass
                finally:
                    await anyio.aclose_forcefully(stream)

            tg.start_soon(listener.serve, accept)
            try:
                yield self.host, self.port
            finally:
                tg.cancel_scope.cancel()

    async def wait_for(self, requests: int, *, within: float) -> None:
        """Until at least `requests` have been answered (TimeoutError after `within` s)."""
        with anyio.fail_after(within):
            while self.requests < requests:
                self._waiting_for = requests
                self._event = anyio.Event()
                await self._event.wait()

    def _count(self, path: bytes) -> None:
        self.requests += 1
        if path.startswith(DEVICE_PATH):
            self.counts[path[len(DEVICE_PATH):].decode("ascii", "replace")] += 1

    async def _serve(self, stream: anyio.abc.ByteStream) -> None:
        conn = H2Counter(self._count)
        await stream.send(conn.start())
        while not conn.closed:
            try:
                data = await stream.receive(READ_SIZE)
            except anyio.EndOfStream:
                return
            out = conn.receive(data)
            if out:
                await stream.send(out)
            if self._event is not None and self.requests >= self._waiting_for:
                self._event.set()
                self._event = None

    def summary(self) -> dict[str, object]:
        dupes = {t: n for t, n in self.counts.items() if n > 1}
        return {"requests": self.requests, "tokens": len(self.counts),
                "duplicates": dict(list(dupes.items())[:100]),
                "duplicated_tokens": len(dupes)}


def main(argv: list[str] | None = None) -> int:
    import tempfile

    from pushgo.testing import mockcli
    from pushgo.testing.mock_apns import APNsKey

    parser = argparse.ArgumentParser(prog="python -m pushgo.testing.counting_apns",
                                     description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--workdir", help="also write ca.pem there")
    mockcli.add_common_arguments(parser)
    args = parser.parse_args(argv)
    tls = mockcli.shared_ca(args)
    mock = CountingAPNs(tls=tls, host=args.host, port=args.port)

    async def run() -> None:
        async with mock.serving() as (_host, _port):
            if args.workdir:
                tls.write_ca_file(Path(args.workdir) / "ca.pem")
            key = APNsKey.generate()  # never checked here, but the gateway signs with one
            key_file = key.write(Path(tempfile.mkdtemp(prefix="pushgo-counting-apns-"))
                                 / f"AuthKey_{key.key_id}.p8")
            mockcli.print_settings({
                "PUSHGO_APNS_ENDPOINT": f"https://{args.host}:{_port}",
                "PUSHGO_PROVIDER_CA_FILE": str(tls.ca_file), "PUSHGO_APNS_KEY_FILE": str(key_file),
                "PUSHGO_APNS_KEY_ID": key.key_id, "PUSHGO_APNS_TEAM_ID": key.team_id,
                "PUSHGO_APNS_TOPIC": "com.example.app"})
            await mockcli.until_signal()
        print(json.dumps(mock.summary()), flush=True)

    return mockcli.run(run, args.backend)


if __name__ == "__main__":
    raise SystemExit(main())
