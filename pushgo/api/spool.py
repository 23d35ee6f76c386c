"""A response spool: bytes added synchronously, taken asynchronously in coalesced chunks.

It exists for streamed answers to streamed requests (POST /messages/bulk): many HTTP/1.1
clients write the whole request body before they read any of the response. Were the answer
written straight to the socket, a long body would fill the socket buffers both ways and
stall both sides for good. So results wait here: in memory up to ``memory_limit`` bytes,
beyond that in an anonymous temporary file, and memory stays bounded either way.

Must not import pushgo.service or pushgo.store.
"""

from __future__ import annotations

import tempfile
from collections import deque
from collections.abc import AsyncIterator
from typing import IO

import anyio

MEMORY_LIMIT = 1024 * 1024
CHUNK = 256 * 1024


class Spool:
    def __init__(self, memory_limit: int = MEMORY_LIMIT, chunk: int = CHUNK) -> None:
        self.memory_limit = memory_limit
        self.chunk = chunk
        self._memory: deque[bytes] = deque()
        self._memory_bytes = 0
        self._file: IO[bytes] | None = None
        self._spilled = False  # new data goes to the file until it is drained
        self._read_at = 0
        self._write_at = 0
        self._closed = False
        self._event: anyio.Event | None = None
        self.spilled_bytes = 0  # in total, for tests and logs

    def add(self, data: bytes) -> None:
        if not data:
            return
        if not self._spilled and self._memory_bytes + len(data) <= self.memory_limit:
            self._memory.append(data)
            self._memory_bytes += len(data)
        else:
            if self._file is None:
                self._file = tempfile.TemporaryFile()  # noqa: SIM115 - closed by close()
            self._spilled = True
            self._file.seek(self._write_at)
            self._file.write(data)
            self._write_at += len(data)
            self.spilled_bytes += len(data)
        self._wake()

    def close(self) -> None:
        """No more data will be added; ``chunks`` ends once everything is taken."""
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        if self._event is not None:
            self._event.set()
            self._event = None

    def _take(self) -> bytes | None:
        if self._memory:
            out = b"".join(self._memory)
            self._memory.clear()
            self._memory_bytes = 0
            return out
        if self._spilled and self._file is not None:
            if self._read_at < self._write_at:
                self._file.flush()
                self._file.seek(self._read_at)
                out = self._file.read(min(self.chunk, self._write_at - self._read_at))
                self._read_at += len(out)
                return out
            # Drained: back to memory, reusing the file from its start next time.
            self._spilled = False
            self._read_at = self._write_at = 0
            self._file.truncate(0)
        return None

    async def chunks(self) -> AsyncIterator[bytes]:
        try:
            while True:
                data = self._take()
                if data is not None:
                    yield data
                    continue
                if self._closed:
                    return
                self._event = event = anyio.Event()
                await event.wait()
        finally:
            if self._file is not None:
                self._file.close()
                self._file = None
