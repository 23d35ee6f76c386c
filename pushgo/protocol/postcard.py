"""The postcard binary layout, for exactly the shapes warp-link frames use.

Postcard (the Rust serde format) writes unsigned integers wider than a byte as LEB128
varints, signed ones zig-zagged first, ``u8`` as one raw byte, a ``bool`` as one byte 0/1,
strings and byte vectors as a varint length then the bytes, an ``Option`` as a 0/1 tag then
the value, sequences and maps as a varint count then the items, and a struct as its fields in
declaration order with nothing between them. Trailing ``#[serde(default)]`` fields are still
written by the encoder and required by the decoder: postcard is not self-describing.

Pure: no I/O. A malformed body raises :class:`PostcardError` (the frame layer turns it into a
protocol error value).
"""

from __future__ import annotations

#: The widest varints: u16 takes at most 3 bytes, u32 5 and u64 10.
_MAX_VARINT_BYTES = {16: 3, 32: 5, 64: 10}


class PostcardError(ValueError):
    """The bytes do not hold the expected postcard value."""


class Writer:
    """Appends postcard values to one growing buffer."""

    def __init__(self) -> None:
        self._buf = bytearray()

    def output(self) -> bytes:
        return bytes(self._buf)

    def u8(self, value: int) -> Writer:
        if not 0 <= value <= 0xFF:
            raise PostcardError(f"u8 out of range: {value}")
        self._buf.append(value)
        return self

    def varint(self, value: int, bits: int = 64) -> Writer:
        if not 0 <= value < (1 << bits):
            raise PostcardError(f"u{bits} out of range: {value}")
        while True:
            byte = value & 0x7F
            value >>= 7
            if value:
                self._buf.append(byte | 0x80)
            else:
                self._buf.append(byte)
                return self

    def i64(self, value: int) -> Writer:
        if not -(1 << 63) <= value < (1 << 63):
            raise PostcardError(f"i64 out of range: {value}")
        return self.varint((value << 1) ^ (value >> 63), 64)

    def blob(self, value: bytes) -> Writer:
        self.varint(len(value), 64)
        self._buf += value
        return self

    def text(self, value: str) -> Writer:
        return self.blob(value.encode("utf-8"))

    def opt_str(self, value: str | None) -> Writer:
        return self.u8(0) if value is None else self.u8(1).text(value)

    def opt_u64(self, value: int | None) -> Writer:
        return self.u8(0) if value is None else self.u8(1).varint(value, 64)

    def opt_i64(self, value: int | None) -> Writer:
        return self.u8(0) if value is None else self.u8(1).i64(value)

    def u8_seq(self, values: list[int]) -> Writer:
        self.varint(len(values), 64)
        for v in values:
            self.u8(v)
        return self

    def str_map(self, values: dict[str, str]) -> Writer:
        self.varint(len(values), 64)
        for key, value in values.items():
            self.text(key).text(value)
        return self


class Reader:
    """Reads postcard values from one body, front to back."""

    def __init__(self, data: bytes) -> None:
        self._data = data
        self._pos = 0

    def done(self) -> None:
        """Every byte was consumed (trailing bytes mean a different layout)."""
        if self._pos != len(self._data):
            raise PostcardError(f"{len(self._data) - self._pos} trailing bytes")

    def u8(self) -> int:
        if self._pos >= len(self._data):
            raise PostcardError("unexpected end of body")
        value = self._data[self._pos]
        self._pos += 1
        return value

    def varint(self, bits: int = 64) -> int:
        value = 0
        for i in range(_MAX_VARINT_BYTES[bits]):
            byte = self.u8()
            value |= (byte & 0x7F) << (7 * i)
            if not byte & 0x80:
                if value >= (1 << bits):
                    raise PostcardError(f"varint overflows u{bits}")
                return value
        raise PostcardError(f"varint too long for u{bits}")

    def i64(self) -> int:
        raw = self.varint(64)
        return (raw >> 1) ^ -(raw & 1)

    def blob(self) -> bytes:
        size = self.varint(64)
        if size > len(self._data) - self._pos:
            raise PostcardError("length runs past the body")
        value = self._data[self._pos:self._pos + size]
        self._pos += size
        return bytes(value)

    def text(self) -> str:
        try:
            return self.blob().decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PostcardError("string is not UTF-8") from exc

    def _tag(self) -> bool:
        tag = self.u8()
        if tag > 1:
            raise PostcardError(f"invalid option tag {tag}")
        return tag == 1

    def opt_str(self) -> str | None:
        return self.text() if self._tag() else None

    def opt_u64(self) -> int | None:
        return self.varint(64) if self._tag() else None

    def opt_i64(self) -> int | None:
        return self.i64() if self._tag() else None

    def u8_seq(self) -> list[int]:
        count = self.varint(64)
        if count > len(self._data) - self._pos:
            raise PostcardError("sequence runs past the body")
        return [self.u8() for _ in range(count)]

    def str_map(self) -> dict[str, str]:
        count = self.varint(64)
        if count > len(self._data) - self._pos:
            raise PostcardError("map runs past the body")
        out: dict[str, str] = {}
        for _ in range(count):
            key = self.text()
            out[key] = self.text()
        return out
