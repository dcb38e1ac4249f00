"""Rate limits, client keys and the Origin check, on their own."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.server.guard import RateLimit, client_key, origin_of, retry_after, same_origin


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_a_bucket_allows_a_burst_then_one_request_per_share_of_the_window() -> None:
    clock = Clock()
    limit = RateLimit(3, 60.0, clock=clock)

    assert [limit.take("a") for _ in range(3)] == [0.0, 0.0, 0.0]
    assert limit.take("a") == pytest.approx(20.0)
    assert limit.take("b") == 0.0  # another client has its own bucket
    clock.now += 20.0
    assert limit.take("a") == 0.0
    assert limit.take("a") == pytest.approx(20.0)


def test_a_refused_request_uses_no_allowance() -> None:
    clock = Clock()
    limit = RateLimit(1, 10.0, clock=clock)
    limit.take("a")
    for _ in range(5):
        limit.take("a")  # hammering while blocked

    clock.now += 10.0

    assert limit.take("a") == 0.0


def test_a_limit_of_zero_is_no_limit() -> None:
    limit = RateLimit(0, 60.0)

    assert all(limit.take("a") == 0.0 for _ in range(1000))


def test_the_buckets_stay_bounded_and_forget_the_least_recent_client() -> None:
    clock = Clock()
    limit = RateLimit(1, 3600.0, clock=clock, max_keys=100)
    limit.take("old")
    for n in range(150):
        limit.take(f"client-{n}")

    assert len(limit.buckets) == 100
    assert limit.take("old") == 0.0  # forgotten: a full allowance again


@pytest.mark.parametrize(
    ("client", "key"),
    [
        (("203.0.113.7", 5000), "203.0.113.7"),
        (("2001:db8:1:2:aaaa::1", 5000), "2001:db8:1:2::/64"),
        (("2001:db8:1:2:bbbb::9", 5000), "2001:db8:1:2::/64"),  # same /64: same limit
        (("::ffff:203.0.113.7", 5000), "203.0.113.7"),
        (None, "unknown"),
        (("unix-socket", 0), "unix-socket"),
    ],
)
def test_clients_are_counted_by_ip_and_ipv6_by_their_64(
    client: tuple[str, int] | None, key: str
) -> None:
    assert client_key({"type": "http", "client": client}) == key


@pytest.mark.parametrize(
    ("url", "origin"),
    [
        ("https://News.Example.org/path?q=1", "https://news.example.org"),
        ("https://news.example.org:443/", "https://news.example.org"),
        ("http://127.0.0.1:8000", "http://127.0.0.1:8000"),
        ("http://[::1]:8000/x", "http://[::1]:8000"),
        ("null", ""),
        ("https://host:99999/", ""),
        ("", ""),
    ],
)
def test_origin_of(url: str, origin: str) -> None:
    assert origin_of(url) == origin


ALLOWED = {"https://news.example.org"}


@pytest.mark.parametrize(
    ("headers", "ok"),
    [
        ({"origin": "https://news.example.org"}, True),
        ({"origin": "https://news.example.org", "referer": "https://evil.example/"}, True),
        ({"origin": "https://evil.example", "referer": "https://news.example.org/"}, False),
        ({"origin": "null", "referer": "https://news.example.org/"}, False),
        ({"referer": "https://news.example.org/2026-11-24/"}, True),
        ({"referer": "https://news.example.org.evil.example/"}, False),
        ({"origin": "http://news.example.org"}, False),  # http is another origin
        ({}, False),
    ],
)
def test_same_origin(headers: dict[str, str], ok: bool) -> None:
    assert same_origin(headers, ALLOWED) is ok


@given(st.text(max_size=200), st.text(max_size=200))
def test_no_origin_or_referer_text_passes_unless_it_names_an_allowed_origin(
    origin: str, referer: str
) -> None:
    if same_origin({"origin": origin}, ALLOWED):
        assert origin_of(origin) in ALLOWED
    if same_origin({"referer": referer}, ALLOWED):
        assert origin_of(referer) in ALLOWED


@pytest.mark.parametrize(("seconds", "header"), [(0.01, "1"), (1.0, "1"), (1199.2, "1200")])
def test_retry_after_is_whole_seconds_never_zero(seconds: float, header: str) -> None:
    assert retry_after(seconds) == header
