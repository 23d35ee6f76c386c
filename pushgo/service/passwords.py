"""Channel passwords: a slow salted KDF (scrypt), verified off the event loop, and a short-lived
cache of verified credentials so a burst of sends pays the KDF once.

Owns: the hash format ``scrypt$N$r$p$salt$hash`` (base64url), constant-time comparison.
Must not import pushgo.api or pushgo.store.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
from collections import OrderedDict

import anyio
import anyio.to_thread

from pushgo.errors import InvalidInput

# N=2^14, r=8: ~16 MiB and a few tens of ms per check: slow for a guesser, fine for a person.
SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
_MAXMEM = 64 * 1024 * 1024

PASSWORD_MIN = 8
PASSWORD_MAX = 128

#: How long a verified (channel, password) pair skips the KDF.
CACHE_TTL_S = 60.0
CACHE_SIZE = 4096

def normalize_password(raw: str) -> str:
    """Trim and check the length in bytes (8–128)."""
    value = raw.strip()
    size = len(value.encode())
    if size < PASSWORD_MIN or size > PASSWORD_MAX:
        raise InvalidInput(
            f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} bytes", code="invalid_password"
        )
    return value


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def hash_password_sync(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P,
                            maxmem=_MAXMEM, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password_sync(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        expected = _unb64(digest)
        got = hashlib.scrypt(password.encode(), salt=_unb64(salt), n=int(n), r=int(r),
                             p=int(p), maxmem=_MAXMEM, dklen=len(expected))
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, expected)


class PasswordVerifier:
    """Verifies channel passwords; remembers successes for CACHE_TTL_S (runtime clock)."""

    def __init__(self, ttl: float = CACHE_TTL_S, size: int = CACHE_SIZE) -> None:
        self._ttl = ttl
        self._size = size
        self._cache: OrderedDict[bytes, float] = OrderedDict()
        # (channel, candidate) digest → (the channel's stored hash, expiry): lets a send
        # skip reading the channel before its write (see ``remembered``).
        self._granted: OrderedDict[bytes, tuple[str, float]] = OrderedDict()
        # Hashing is CPU-bound: two threads at most, so it never takes every worker thread
        # the store needs. Made on first use, inside the running event loop.
        self._limiter: anyio.CapacityLimiter | None = None

    def _kdf(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(2)
        return self._limiter

    async def hash(self, password: str) -> str:
        return await anyio.to_thread.run_sync(hash_password_sync, password, limiter=self._kdf())

    @staticmethod
    def _key(stored: str, password: str) -> bytes:
        # Keyed by the stored hash (so a changed password invalidates) and a fast digest of
        # the candidate; the candidate itself is never kept.
        return hashlib.sha256(stored.encode() + b"\0" + password.encode()).digest()

    @staticmethod
    def _channel_key(channel_id: str, password: str) -> bytes:
        return hashlib.sha256(channel_id.encode() + b"\0" + password.encode()).digest()

    def remember(self, channel_id: str, password: str, stored: str) -> None:
        """``password`` (normalized) opened ``channel_id`` whose hash is ``stored``."""
        key = self._channel_key(channel_id, password)
        self._granted[key] = (stored, anyio.current_time() + self._ttl)
        self._granted.move_to_end(key)
        while len(self._granted) > self._size:
            self._granted.popitem(last=False)

    def remembered(self, channel_id: str, password: str) -> str | None:
        """The stored hash ``password`` was verified against for ``channel_id`` within the
        TTL, or None. A sender then checks in its write transaction that the channel still
        has that hash (no separate read, no KDF)."""
        entry = self._granted.get(self._channel_key(channel_id, password))
        if entry is None or entry[1] <= anyio.current_time():
            return None
        return entry[0]

    async def verify(self, password: str, stored: str) -> bool:
        key = self._key(stored, password)
        now = anyio.current_time()
        expires = self._cache.get(key)
        if expires is not None and expires > now:
            return True
        ok = await anyio.to_thread.run_sync(verify_password_sync, password, stored,
                                            limiter=self._kdf())
        if ok:
            self._cache[key] = anyio.current_time() + self._ttl
            self._cache.move_to_end(key)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return ok
