"""The per-provider circuit breaker as a pure state machine, on a clock the test moves."""

from __future__ import annotations

from pushgo.delivery.breaker import Breaker, State


def opened() -> Breaker:
    b = Breaker(threshold=3, window_s=10.0, cooldown_s=5.0, probes=2)
    for at in (0.0, 0.5, 1.0):  # opens at 1.0
        b.failure("ServiceUnavailable", at)
    assert b.state is State.OPEN
    return b


def test_closed_admits_everything_and_a_success_ends_a_streak():
    b = Breaker(threshold=3, window_s=10.0)
    assert b.admit(0.0) is None
    assert not b.failure("ServiceUnavailable", 0.0)
    assert not b.failure("ServiceUnavailable", 0.1)
    assert not b.success()  # closed stays closed; the streak is over
    assert not b.failure("ServiceUnavailable", 0.2)
    assert not b.failure("ServiceUnavailable", 0.3)
    assert b.state is State.CLOSED and b.failures == 2


def test_a_burst_of_threshold_failures_opens_it_and_it_admits_nothing():
    b = Breaker(threshold=3, window_s=10.0, cooldown_s=5.0)
    assert not b.failure("ServiceUnavailable", 0.0)
    assert not b.failure("InternalServerError", 0.0)
    assert b.failure("ServiceUnavailable", 0.0)
    assert (b.state, b.last_error, b.opened) == (State.OPEN, "ServiceUnavailable", 1)
    assert b.holding
    assert b.admit(4.9) == 0
    assert b.wait_s(1.0) == 4.0


def test_a_slow_streak_opens_it_once_it_lasts_the_window():
    # Refused connections come only as fast as the pool's backoff tries them.
    b = Breaker(threshold=20, window_s=10.0)
    assert not b.failure("ConnectionRefused", 0.0)
    assert not b.failure("ConnectionRefused", 4.0)
    assert not b.failure("ConnectionRefused", 9.9)
    assert b.failure("ConnectionRefused", 10.0)
    assert b.state is State.OPEN and b.last_error == "ConnectionRefused"


def test_one_failure_long_after_another_success_does_not_open_it():
    b = Breaker(threshold=20, window_s=10.0)
    b.failure("ServiceUnavailable", 0.0)
    b.success()
    assert not b.failure("ServiceUnavailable", 60.0)
    assert not b.failure("ServiceUnavailable", 65.0)
    assert b.state is State.CLOSED


def test_after_the_cool_down_it_half_opens_and_admits_probes_once_per_cool_down():
    b = opened()
    assert not b.tick(5.5)
    assert b.tick(6.0)  # opened at 1.0, cool-down 5 s
    assert b.state is State.HALF_OPEN and b.holding
    assert b.admit(6.0) == 2
    assert b.admit(7.0) == 0  # the probes are out; no more until their answer or a cool-down
    assert b.wait_s(7.0) == 4.0
    assert b.admit(11.0) == 2  # no answer came: probe again


def test_a_failed_probe_opens_it_again_for_another_cool_down():
    b = opened()
    b.admit(6.0)
    assert b.failure("ServiceUnavailable", 6.5)
    assert b.state is State.OPEN and b.opened == 2
    assert b.admit(11.0) == 0
    assert b.admit(11.5) == 2


def test_the_first_success_closes_it_and_clears_the_error():
    b = opened()
    b.admit(6.0)
    assert b.success()
    assert (b.state, b.last_error, b.failures) == (State.CLOSED, None, 0)
    assert b.admit(6.1) is None and not b.holding


def test_a_success_while_open_closes_it_too():
    # A stream sent before it opened came back 200: the provider serves again.
    b = opened()
    assert b.success() and b.state is State.CLOSED


def test_failures_while_open_keep_the_last_error_and_do_not_reopen():
    b = opened()
    assert not b.failure("ConnectionRefused", 1.0)
    assert b.last_error == "ConnectionRefused" and b.opened == 1
    assert not b.tick(5.5)
    assert b.tick(6.0)  # the cool-down counts from the opening


def test_the_state_numbers_are_those_of_the_metric():
    assert [int(s) for s in (State.CLOSED, State.OPEN, State.HALF_OPEN)] == [0, 1, 2]
