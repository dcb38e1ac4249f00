"""Rate limits: messages per second are paced, the hourly budget stops a run."""

from __future__ import annotations

from publisher.delivery.pacing import RateLimiter


class FakeTime:
    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_no_limits_never_waits() -> None:
    clock = FakeTime()
    limiter = RateLimiter(0, 0, monotonic=clock.monotonic, sleep=clock.sleep)

    assert all(limiter.acquire() for _ in range(1000))
    assert clock.slept == []


def test_per_second_limit_spaces_messages_evenly() -> None:
    clock = FakeTime()
    limiter = RateLimiter(4, 0, monotonic=clock.monotonic, sleep=clock.sleep)

    for _ in range(9):
        limiter.acquire()
    assert clock.now == 102.0  # 9 messages at 4/s: the 9th goes out 2 s after the first
    assert all(abs(s - 0.25) < 1e-9 for s in clock.slept)


def test_hourly_budget_counts_earlier_runs_and_then_refuses() -> None:
    limiter = RateLimiter(0, 10, already=7)

    assert [limiter.acquire() for _ in range(5)] == [True, True, True, False, False]


def test_hourly_budget_already_spent_refuses_at_once() -> None:
    assert RateLimiter(0, 10, already=12).acquire() is False
