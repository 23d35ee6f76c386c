"""pushgo.service.throttle on its own: the client address behind (un)trusted proxies, the token
buckets and their refill on the caller's clock, what a success gives back, and the bound on
remembered keys."""

from __future__ import annotations

import pytest

from pushgo.errors import RateLimited
from pushgo.service.throttle import (
    CLIENT,
    LOCAL,
    PasswordThrottle,
    RequestBudget,
    Rule,
    calling_from,
    client_address,
    current_client,
    networks,
)

PROXIES = networks(("10.0.0.0/8", "2001:db8:ffff::/48"))


@pytest.mark.parametrize(("peer", "forwarded", "trusted", "expected"), [
    ("192.0.2.1", [], (), "192.0.2.1"),
    # Not trusted: whatever the header says is ignored.
    ("192.0.2.1", ["198.51.100.7"], PROXIES, "192.0.2.1"),
    ("192.0.2.1", ["198.51.100.7"], (), "192.0.2.1"),
    # Trusted: the right-most address that is not a trusted proxy.
    ("10.0.0.5", ["198.51.100.7"], PROXIES, "198.51.100.7"),
    ("10.0.0.5", ["203.0.113.1, 198.51.100.7, 10.0.0.9"], PROXIES, "198.51.100.7"),
    ("10.0.0.5", ["203.0.113.1", "198.51.100.7,10.1.1.1"], PROXIES, "198.51.100.7"),
    ("10.0.0.5", ["198.51.100.7:4711"], PROXIES, "198.51.100.7"),
    ("10.0.0.5", ["[2001:db8:1:2:3::4]:443"], PROXIES, "2001:db8:1:2::/64"),
    # A malformed hop stops the walk at the last trusted one.
    ("10.0.0.5", ["198.51.100.7, unknown"], PROXIES, "10.0.0.5"),
    ("10.0.0.5", ["198.51.100.7, 10.0.0.7, nonsense"], PROXIES, "10.0.0.5"),
    # Every hop trusted: the left-most; no header: the proxy itself.
    ("10.0.0.5", ["10.0.0.8, 10.0.0.9"], PROXIES, "10.0.0.8"),
    ("10.0.0.5", [], PROXIES, "10.0.0.5"),
    # IPv6 clients share their /64; IPv4-mapped addresses are IPv4.
    ("2001:db8:1:2:aaaa::1", [], (), "2001:db8:1:2::/64"),
    ("::ffff:192.0.2.9", [], (), "192.0.2.9"),
    ("2001:db8:ffff::1", ["2001:db8:5::1"], PROXIES, "2001:db8:5::/64"),
    (None, ["198.51.100.7"], PROXIES, "unknown"),
    ("unix-socket", [], PROXIES, "unix-socket"),
])
def test_the_client_address(peer: str | None, forwarded: list[str],
                            trusted: tuple[object, ...], expected: str) -> None:
    assert client_address(peer, forwarded, trusted) == expected  # type: ignore[arg-type]


def test_the_client_is_a_context_value() -> None:
    assert current_client() == LOCAL
    with calling_from("192.0.2.1"):
        assert current_client() == "192.0.2.1" == CLIENT.get()
    assert current_client() == LOCAL


def wait_of(throttle: PasswordThrottle, channel: str, address: str, now_ms: int) -> int | None:
    try:
        throttle.check(channel, address, now_ms)
    except RateLimited as exc:
        return exc.retry_after
    return None


def test_failures_per_pair_and_per_address_refill_on_the_callers_clock() -> None:
    throttle = PasswordThrottle(pair=Rule(2, 10.0), address=Rule(3, 30.0))
    for _ in range(2):
        throttle.spend("c1", "a", 0)
    assert wait_of(throttle, "c1", "a", 0) == 10
    assert wait_of(throttle, "c1", "b", 0) is None  # another address
    assert wait_of(throttle, "c2", "a", 0) is None  # another channel, same address
    throttle.spend("c2", "a", 0)
    assert wait_of(throttle, "c3", "a", 0) == 30  # the address's budget is gone
    with pytest.raises(RateLimited):
        throttle.spend("c3", "a", 0)  # and nothing is taken by a refusal
    assert wait_of(throttle, "c3", "a", 29_999) == 1
    assert wait_of(throttle, "c3", "a", 30_000) is None
    assert wait_of(throttle, "c1", "a", 30_000) is None  # three pair tokens refilled: capped at 2


def test_a_success_gives_back_its_address_token_and_forgets_the_pair() -> None:
    throttle = PasswordThrottle(pair=Rule(2, 60.0), address=Rule(3, 60.0))
    throttle.spend("c1", "a", 0)
    throttle.spend("c1", "a", 0)
    throttle.succeeded("c1", "a", 0, spent=False)  # a cached success: spent nothing
    assert wait_of(throttle, "c1", "a", 0) is None
    throttle.spend("c1", "a", 0)  # the third check runs the KDF and passes
    throttle.succeeded("c1", "a", 0, spent=True)
    throttle.spend("c2", "a", 0)
    assert wait_of(throttle, "c3", "a", 0) == 60  # 2 failures + 1 now: the budget of 3


def test_the_buckets_remembered_are_bounded() -> None:
    throttle = PasswordThrottle(pair=Rule(1, 60.0), address=Rule(1, 60.0), size=3)
    for i in range(10):
        throttle.spend("c", f"a{i}", 0)
    assert len(throttle.addresses) == 3 and len(throttle.pairs) == 3
    assert wait_of(throttle, "c", "a9", 0) == 60
    assert wait_of(throttle, "c", "a0", 0) is None  # the oldest were forgotten
    throttle.spend("c", "a9", 60_000)  # refilled; spent again: still one entry
    assert len(throttle.addresses) == 3


def test_a_request_budget_refuses_after_its_failures() -> None:
    budget = RequestBudget(2)
    for _ in range(2):
        budget.check()
        budget.failed()
    with pytest.raises(RateLimited) as caught:
        budget.check()
    assert caught.value.code == "rate_limited" and caught.value.status == 429
    assert caught.value.retry_after == 1
