"""pushgo.service.passwords: channel passwords are 8–128 bytes once trimmed, stored as salted
scrypt with their cost parameters, verified in constant time off the event loop; successes
are remembered for a while, failures never."""

from __future__ import annotations

import pytest

from pushgo.service import passwords
from pushgo.service.passwords import (
    PasswordVerifier,
    hash_password_sync,
    normalize_password,
    verify_password_sync,
)
from tests.service.support import PASSWORD, fails


class CountingKdf:
    """verify_password_sync, counting its calls."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.calls = 0
        self._real = passwords.verify_password_sync
        monkeypatch.setattr(passwords, "verify_password_sync", self)

    def __call__(self, password: str, stored: str) -> bool:
        self.calls += 1
        return self._real(password, stored)


@pytest.fixture
def kdf(monkeypatch: pytest.MonkeyPatch) -> CountingKdf:
    return CountingKdf(monkeypatch)


def test_a_password_is_trimmed():
    assert normalize_password(f"  {PASSWORD}\n") == PASSWORD


@pytest.mark.parametrize("raw", ["é" * 4, "x" * 128, "     12345678     "])
def test_lengths_from_8_to_128_bytes_are_accepted(raw):
    assert normalize_password(raw) == raw.strip()


@pytest.mark.parametrize("raw", ["", "1234567", "é" * 3 + "x", "x" * 129, "é" * 65, " " * 20])
def test_lengths_outside_8_to_128_bytes_are_invalid_password(raw):
    with fails("invalid_password"):
        normalize_password(raw)


def test_a_hash_records_scheme_cost_and_salt_and_differs_each_time():
    first, second = hash_password_sync(PASSWORD), hash_password_sync(PASSWORD)
    scheme, n, r, p, salt, digest = first.split("$")
    assert (scheme, int(n), int(r), int(p)) == ("scrypt", passwords.SCRYPT_N, passwords.SCRYPT_R,
                                                passwords.SCRYPT_P)
    assert salt and digest and "=" not in salt + digest
    assert first != second
    assert PASSWORD not in first


def test_verify_accepts_only_the_password_that_was_hashed():
    stored = hash_password_sync(PASSWORD)
    assert verify_password_sync(PASSWORD, stored) is True
    assert verify_password_sync(PASSWORD + "x", stored) is False


def test_a_hash_verifies_with_its_own_cost_after_the_default_changes(monkeypatch):
    stored = hash_password_sync(PASSWORD)
    monkeypatch.setattr(passwords, "SCRYPT_N", passwords.SCRYPT_N * 2)
    assert verify_password_sync(PASSWORD, stored) is True
    assert hash_password_sync(PASSWORD).split("$")[1] == str(passwords.SCRYPT_N)


@pytest.mark.parametrize("stored", ["", "plain", "bcrypt$16$8$1$c2FsdA$ZGlnZXN0",
                                    "scrypt$many$8$1$c2FsdA$ZGlnZXN0", "scrypt$16$8$1$!!$!!"])
def test_a_malformed_stored_hash_verifies_nothing(stored):
    assert verify_password_sync(PASSWORD, stored) is False


@pytest.mark.anyio
async def test_the_verifier_hashes_and_verifies_off_the_event_loop():
    verifier = PasswordVerifier()
    stored = await verifier.hash(PASSWORD)
    assert await verifier.verify(PASSWORD, stored) is True
    assert await verifier.verify("another-password", stored) is False


@pytest.mark.anyio
async def test_a_verified_password_skips_the_kdf_next_time(kdf: CountingKdf):
    verifier, stored = PasswordVerifier(), hash_password_sync(PASSWORD)
    assert await verifier.verify(PASSWORD, stored) and await verifier.verify(PASSWORD, stored)
    assert kdf.calls == 1


@pytest.mark.anyio
async def test_a_wrong_password_pays_the_kdf_every_time(kdf: CountingKdf):
    verifier, stored = PasswordVerifier(), hash_password_sync(PASSWORD)
    for _ in range(3):
        assert await verifier.verify("wrong-password", stored) is False
    assert kdf.calls == 3


@pytest.mark.anyio
async def test_the_cache_is_per_stored_hash(kdf: CountingKdf):
    verifier = PasswordVerifier()
    await verifier.verify(PASSWORD, hash_password_sync(PASSWORD))
    await verifier.verify(PASSWORD, hash_password_sync(PASSWORD))  # a changed password
    assert kdf.calls == 2


@pytest.mark.anyio
async def test_a_zero_ttl_remembers_nothing(kdf: CountingKdf):
    verifier, stored = PasswordVerifier(ttl=0), hash_password_sync(PASSWORD)
    await verifier.verify(PASSWORD, stored)
    await verifier.verify(PASSWORD, stored)
    verifier.remember("C1", PASSWORD, stored)
    assert kdf.calls == 2 and verifier.remembered("C1", PASSWORD) is None


@pytest.mark.anyio
async def test_a_remembered_grant_is_per_channel_and_password():
    verifier = PasswordVerifier()
    verifier.remember("C1", PASSWORD, "stored-hash")
    assert verifier.remembered("C1", PASSWORD) == "stored-hash"
    assert verifier.remembered("C1", "another-password") is None
    assert verifier.remembered("C2", PASSWORD) is None


@pytest.mark.anyio
async def test_the_oldest_grant_goes_when_the_cache_is_full():
    verifier = PasswordVerifier(size=2)
    for cid in ("C1", "C2", "C3"):
        verifier.remember(cid, PASSWORD, f"hash-{cid}")
    assert [verifier.remembered(c, PASSWORD) for c in ("C1", "C2", "C3")] == [
        None, "hash-C2", "hash-C3"]
