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
from collections.abc import Callable
from typing import Any, TypeVar

import anyio
import anyio.to_thread

from pushgo.errors import InvalidInput, ServerBusy, codes

T = TypeVar("T")

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
#: KDF threads, and the checks that may wait for one; past that a check answers 503
#: server_busy (Retry-After) at once instead of queueing without bound.
KDF_THREADS = 2
KDF_WAITING = 64


class _Running:
    """One KDF check in flight: identical concurrent checks wait for its answer."""

    def __init__(self) -> None:
        self.done = anyio.Event()
        self.result: bool | None = None


def normalize_password(raw: str) -> str:
    """Trim and check the length in bytes (8–128)."""
    value = raw.strip()
    size = len(value.encode())
    if size < PASSWORD_MIN or size > PASSWORD_MAX:
        raise InvalidInput(
            codes.INVALID_PASSWORD, f"password must be {PASSWORD_MIN}-{PASSWORD_MAX} bytes"
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
        # the store needs (nor anything /healthz or /readyz wait on). Made on first use,
        # inside the running event loop.
        self._limiter: anyio.CapacityLimiter | None = None
        self._queued = 0  # KDF runs waiting or running
        self._running: dict[bytes, _Running] = {}

    def _kdf(self) -> anyio.CapacityLimiter:
        if self._limiter is None:
            self._limiter = anyio.CapacityLimiter(KDF_THREADS)
        return self._limiter

    def _check_room(self) -> None:
        if self._queued >= KDF_THREADS + KDF_WAITING:
            busy = ServerBusy(codes.SERVER_BUSY, "too many password checks at once; retry")
            busy.retry_after = 1
            raise busy

    async def _run_kdf(self, func: Callable[..., T], *args: Any) -> T:
        self._check_room()
        self._queued += 1
        try:
            return await anyio.to_thread.run_sync(func, *args, limiter=self._kdf())
        finally:
            self._queued -= 1

    async def hash(self, password: str) -> str:
        return await self._run_kdf(hash_password_sync, password)

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

    async def verify(self, password: str, stored: str,
                     before_kdf: Callable[[], None] | None = None) -> bool:
        """Does ``password`` match ``stored``? A recent success answers from the cache; a
        check identical to one in flight waits for its answer; otherwise ``before_kdf`` is
        called (it may raise to refuse the work) and the KDF runs."""
        key = self._key(stored, password)
        while True:
            expires = self._cache.get(key)
            if expires is not None and expires > anyio.current_time():
                return True
            running = self._running.get(key)
            if running is None:
                break
            await running.done.wait()
            if running.result is not None:
                return running.result
        self._check_room()  # before ``before_kdf``: a refusal here costs the caller nothing
        if before_kdf is not None:
            before_kdf()
        running = self._running[key] = _Running()
        try:
            ok = await self._run_kdf(verify_password_sync, password, stored)
            running.result = ok
        finally:
            del self._running[key]
            running.done.set()
        if ok:
            self._cache[key] = anyio.current_time() + self._ttl
            self._cache.move_to_end(key)
            while len(self._cache) > self._size:
                self._cache.popitem(last=False)
        return ok
