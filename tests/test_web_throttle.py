"""Failed-login throttling: per account and per address, growing delay, with an injected clock."""

from __future__ import annotations

from twisted.internet.task import Clock

from web.throttle import LoginThrottle


def throttle(clock: Clock, **kw: float) -> LoginThrottle:
    return LoginThrottle(clock=clock.seconds, **kw)  # type: ignore[arg-type]


def test_an_account_is_locked_after_three_failures_for_a_doubling_delay():
    clock = Clock()
    t = throttle(clock)
    keys = t.keys("Alice", "10.0.0.1")
    for _ in range(3):
        assert t.wait(keys) == 0
        t.failed(keys)
    assert t.wait(keys) == 0  # three failures are free
    t.failed(keys)
    assert t.wait(keys) == 1.0  # the 4th locks for 1 s
    clock.advance(1.0)
    assert t.wait(keys) == 0
    t.failed(keys)
    assert t.wait(keys) == 2.0  # 5th failure: 2 s
    clock.advance(2.0)
    t.failed(keys)
    assert t.wait(keys) == 4.0  # then 4 s


def test_the_delay_is_capped_and_forgotten_after_an_hour_without_failures():
    clock = Clock()
    t = throttle(clock, max_delay=60)
    keys = t.keys("bob", "10.0.0.2")
    for _ in range(20):
        clock.advance(t.wait(keys))
        t.failed(keys)
    assert t.wait(keys) == 60
    clock.advance(3601)
    assert t.wait(keys) == 0
    t.failed(keys)
    assert t.wait(keys) == 0  # counting from zero again


def test_a_good_password_clears_the_account_but_not_the_address():
    clock = Clock()
    t = throttle(clock, ip_free=4)
    keys = t.keys("carol", "10.0.0.3")
    for _ in range(4):
        t.failed(keys)
    t.succeeded(keys[0])
    other = t.keys("dave", "10.0.0.3")
    assert t.wait(other) == 0
    t.failed(other)  # the address's 5th failure, whatever the name: 1 s
    assert t.wait(t.keys("erin", "10.0.0.3")) == 1.0
    assert t.wait(t.keys("erin", "10.0.0.4")) == 0  # another address is not affected


def test_unknown_and_real_names_are_counted_alike_and_case_blind():
    clock = Clock()
    t = throttle(clock)
    for name in ("Nobody", "NOBODY", "nobody", "nobody"):
        t.failed(t.keys(name, f"10.1.0.{len(name)}"))
    assert t.wait(t.keys("nObOdY", "10.9.9.9")) == 1.0


def test_memory_stays_bounded_under_many_names():
    clock = Clock()
    t = throttle(clock, max_keys=100)
    for i in range(1000):
        t.failed(t.keys(f"user{i}", "10.0.0.9"))
    assert len(t.entries) <= 100
