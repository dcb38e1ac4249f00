"""The outbox state machine: what each reply means for a row, and backoff with jitter."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.delivery.outbox import backoff, decide
from publisher.delivery.smtp import Reply
from publisher.model import OutboxItem
from publisher.settings import DeliverySettings

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
SETTINGS = DeliverySettings(max_attempts=4, retry_base=300, retry_max=3600)


def item(attempts: int = 0) -> OutboxItem:
    return OutboxItem(7, 1, 42, "jane@example.org", "Jane", "active", attempts)


def run(reply: Reply, attempts: int = 0) -> tuple[str, str, datetime | None, bool]:
    result = decide(
        item(attempts), reply, now=NOW, message_id="<m@x>", settings=SETTINGS, rng=random.Random(1)
    )
    return result.state, result.reply, result.next_attempt_at, result.hard_bounce


def test_accepted_is_sent_with_the_servers_reply() -> None:
    assert run(Reply("accepted", "DATA", "250 2.0.0 Ok")) == ("sent", "250 2.0.0 Ok", None, False)


def test_5xx_at_rcpt_fails_and_counts_as_a_bounce() -> None:
    state, reply, _, bounce = run(Reply("permanent", "RCPT", "550 5.1.1 User unknown"))

    assert (state, reply, bounce) == ("failed", "550 5.1.1 User unknown", True)


def test_5xx_at_data_fails_but_is_no_bounce_of_the_address() -> None:
    state, _, _, bounce = run(Reply("permanent", "DATA", "554 5.7.1 spam"))

    assert (state, bounce) == ("failed", False)


@pytest.mark.parametrize("verdict", ["temporary", "dropped"])
def test_4xx_or_a_broken_connection_is_deferred_with_a_wait(verdict: str) -> None:
    state, reply, next_at, _ = run(Reply(verdict, "DATA", "451 later"))  # type: ignore[arg-type]

    assert state == "deferred" and reply == "451 later"
    assert next_at is not None
    assert NOW + timedelta(seconds=150) <= next_at <= NOW + timedelta(seconds=300)


def test_the_last_allowed_attempt_fails_for_good_and_says_why() -> None:
    state, reply, next_at, bounce = run(Reply("temporary", "DATA", "451 later"), attempts=3)

    assert state == "failed" and next_at is None and not bounce
    assert reply == "gave up after 4 attempts; last: 451 later"


def test_waits_double_up_to_the_cap() -> None:
    rng = random.Random(5)
    for attempt, full in [(1, 300), (2, 600), (3, 1200), (4, 2400), (5, 3600), (9, 3600)]:
        waits = [backoff(attempt, 300, 3600, rng) for _ in range(200)]
        assert min(waits) >= full / 2
        assert full * 0.95 < max(waits) <= full


@given(st.integers(1, 500), st.floats(0, 10_000), st.floats(0, 100_000), st.integers())
def test_a_wait_is_never_negative_nor_over_the_cap(
    attempt: int, base: float, cap: float, seed: int
) -> None:
    wait = backoff(attempt, base, cap, random.Random(seed))

    assert 0 <= wait <= max(cap, 0) + 1e-6
    assert wait >= min(cap, base * 2.0 ** min(attempt - 1, 60)) / 2 - 1e-6


def test_jitter_spreads_the_retries_of_many_rows() -> None:
    rng = random.Random(3)
    waits = {round(backoff(1, 300, 3600, rng)) for _ in range(50)}

    assert len(waits) > 25
