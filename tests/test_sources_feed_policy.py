"""Pure feed decisions: when a feed is due, what a poll leaves behind, which entries to keep."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta

from hypothesis import given
from hypothesis import strategies as st

from publisher.model import FeedState
from publisher.settings import FeedSource, SourcesSettings
from publisher.sources.feed_parse import FeedEntry
from publisher.sources.feed_policy import backoff, is_due, request_for, skip_reason, state_after
from publisher.sources.feeds import FeedRequest, FeedResult

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
SETTINGS = SourcesSettings(min_interval_minutes=30, backoff_minutes=15, backoff_max_hours=24)
SOURCE = FeedSource(url="https://a.example/feed.xml", name="A")
REQUEST = FeedRequest(url=SOURCE.url, name="A", fetch_url=SOURCE.url, etag='"v1"')


def entry(
    title: str = "Harbour news", text: str = "Ferries run late.", **changes: object
) -> FeedEntry:
    base = FeedEntry(
        identity="id-1",
        link="https://a.example/1",
        link_is_unique=True,
        title=title,
        content_html=f"<p>{text}</p>",
        summary=text,
        author=None,
        published=NOW - timedelta(days=1),
        updated=None,
        tags=(),
        fingerprint="f",
    )
    return replace(base, **changes)  # type: ignore[arg-type]


def test_backoff_doubles_from_the_base_and_stops_at_the_cap() -> None:
    waits = [backoff(n, SETTINGS) for n in (1, 2, 3, 4, 7, 8, 200)]

    assert [w // timedelta(minutes=1) for w in waits] == [15, 30, 60, 120, 960, 1440, 1440]


def test_a_feed_is_due_when_new_after_its_interval_or_its_pause_and_never_when_gone() -> None:
    polled = FeedState(url=SOURCE.url, name="A", last_polled=NOW)
    paused = replace(polled, failures=2, next_attempt=NOW + timedelta(hours=2))
    hourly = FeedSource(url=SOURCE.url, name="A", min_interval_minutes=60)

    assert is_due(None, SOURCE, SETTINGS, NOW)
    assert not is_due(polled, SOURCE, SETTINGS, NOW + timedelta(minutes=29))
    assert is_due(polled, SOURCE, SETTINGS, NOW + timedelta(minutes=30))
    assert not is_due(polled, hourly, SETTINGS, NOW + timedelta(minutes=59))
    assert not is_due(paused, SOURCE, SETTINGS, NOW + timedelta(minutes=119))
    assert is_due(paused, SOURCE, SETTINGS, NOW + timedelta(hours=2))
    assert not is_due(replace(polled, gone=True), SOURCE, SETTINGS, NOW + timedelta(days=365))


def test_the_next_request_asks_where_the_feed_moved_with_the_last_validators() -> None:
    state = FeedState(
        url=SOURCE.url,
        name="A",
        current_url="https://b.example/feed.xml",
        etag='"v2"',
        last_modified="Sun, 22 Nov 2026 08:00:00 GMT",
    )

    request = request_for(state, SOURCE)

    assert request.url == SOURCE.url  # the key stays the configured URL
    assert request.fetch_url == "https://b.example/feed.xml"
    assert (request.etag, request.last_modified) == ('"v2"', "Sun, 22 Nov 2026 08:00:00 GMT")


def test_a_success_keeps_the_new_validators_and_address_and_clears_failures() -> None:
    failing = FeedState(url=SOURCE.url, name="Old name", failures=3, last_error="HTTP 500")
    result = FeedResult(
        REQUEST,
        "fetched",
        http_status=200,
        moved_to="https://b.example/feed.xml",
        etag='"v2"',
        body_hash="h",
    )

    state = state_after(failing, SOURCE, result, SETTINGS, NOW)

    assert (state.etag, state.body_hash, state.current_url) == (
        '"v2"',
        "h",
        "https://b.example/feed.xml",
    )
    assert (state.failures, state.next_attempt, state.last_error) == (0, None, None)
    assert (state.name, state.last_polled, state.last_success) == ("A", NOW, NOW)


def test_a_failed_parse_keeps_the_old_validators_so_the_next_poll_reads_the_feed_again() -> None:
    before = FeedState(url=SOURCE.url, name="A", etag='"v1"', body_hash="old")
    result = FeedResult(REQUEST, "failed", http_status=200, etag='"v2"', error="not a feed")

    state = state_after(before, SOURCE, result, SETTINGS, NOW)

    assert (state.etag, state.body_hash) == ('"v1"', "old")
    assert state.failures == 1
    assert state.next_attempt == NOW + timedelta(minutes=15)
    assert state.last_error == "not a feed"


def test_retry_after_wins_over_the_backoff_and_gone_stops_polling() -> None:
    asked = NOW + timedelta(minutes=3)
    busy = state_after(
        None, SOURCE, FeedResult(REQUEST, "failed", retry_after=asked), SETTINGS, NOW
    )
    gone = state_after(None, SOURCE, FeedResult(REQUEST, "gone", error="HTTP 410"), SETTINGS, NOW)

    assert busy.next_attempt == asked
    assert gone.gone and gone.last_error == "HTTP 410"


def test_entries_older_than_max_age_are_skipped_a_feed_may_say_zero_for_no_limit() -> None:
    old = entry(published=NOW - timedelta(days=40))
    undated = entry(published=None)
    keep_all = FeedSource(url=SOURCE.url, name="A", max_age_days=0)

    assert skip_reason(old, SOURCE, SETTINGS, NOW) == "older than max_age_days"
    assert skip_reason(undated, SOURCE, SETTINGS, NOW) is None  # dated when first seen
    assert skip_reason(old, keep_all, SETTINGS, NOW) is None


def test_keywords_match_whole_words_and_phrases_in_any_case() -> None:
    source = FeedSource(
        url=SOURCE.url, name="A", include=("night tram", "C++"), exclude=("Sponsored",)
    )

    assert skip_reason(entry("The NIGHT TRAM returns"), source, SETTINGS, NOW) is None
    assert skip_reason(entry(text="Written in c++ again."), source, SETTINGS, NOW) is None
    assert skip_reason(entry("Night trams", tags=("night tram",)), source, SETTINGS, NOW) is None
    assert skip_reason(entry("Nightly tramway"), source, SETTINGS, NOW) == (
        "mentions none of the include keywords"
    )
    assert skip_reason(entry("Night tram", text="sponsored post"), source, SETTINGS, NOW) == (
        "mentions an exclude keyword"
    )


words = st.text(alphabet="abcdefghij", min_size=1, max_size=8)


@given(keyword=words, before=words, after=words)
def test_a_keyword_inside_a_longer_word_never_matches(
    keyword: str, before: str, after: str
) -> None:
    source = FeedSource(url=SOURCE.url, name="A", include=(keyword,))
    standalone = entry(title="x", text=f"{before} {keyword.upper()} {after}")
    embedded = entry(title="x", text=f"{before}{keyword}{after}")

    assert skip_reason(standalone, source, SETTINGS, NOW) is None
    assert skip_reason(embedded, source, SETTINGS, NOW) is not None
