"""Pure decisions about upstream feeds: which are due, what a poll leaves, which entries to keep."""

from __future__ import annotations

import functools
import re
from dataclasses import replace
from datetime import datetime, timedelta

from publisher.model import FeedState
from publisher.settings import FeedSource, SourcesSettings
from publisher.sources.clean import html_to_text
from publisher.sources.feed_parse import FeedEntry
from publisher.sources.feeds import FeedRequest, FeedResult


def min_interval(source: FeedSource, settings: SourcesSettings) -> timedelta:
    minutes = source.min_interval_minutes
    return timedelta(minutes=settings.min_interval_minutes if minutes is None else minutes)


def is_due(
    state: FeedState | None, source: FeedSource, settings: SourcesSettings, now: datetime
) -> bool:
    """Never polled; or its pause (min interval, backoff or Retry-After) is over; never if gone."""
    if state is None:
        return True
    if state.gone:
        return False
    if state.next_attempt is not None:
        return now >= state.next_attempt
    return state.last_polled is None or now >= state.last_polled + min_interval(source, settings)


def request_for(state: FeedState | None, source: FeedSource) -> FeedRequest:
    if state is None:
        return FeedRequest(url=source.url, name=source.name, fetch_url=source.url)
    return FeedRequest(
        url=source.url,
        name=source.name,
        fetch_url=state.fetch_url,
        etag=state.etag,
        last_modified=state.last_modified,
        body_hash=state.body_hash,
    )


def state_after(
    state: FeedState | None,
    source: FeedSource,
    result: FeedResult,
    settings: SourcesSettings,
    now: datetime,
) -> FeedState:
    """The fetch state to store once `result` is stored: validators, backoff, gone."""
    base = replace(
        state or FeedState(url=source.url, name=source.name), name=source.name, last_polled=now
    )
    if result.status in ("fetched", "not_modified"):
        return replace(
            base,
            current_url=result.moved_to or base.current_url,
            etag=result.etag,
            last_modified=result.last_modified,
            body_hash=result.body_hash or base.body_hash,
            last_success=now,
            failures=0,
            next_attempt=None,
            last_error=None,
        )
    error = "; ".join(part for part in (result.error, result.hint) if part) or "failed"
    if result.status == "gone":
        return replace(base, gone=True, failures=base.failures + 1, last_error=error)
    failures = base.failures + 1
    # Validators stay as they were: a failed parse must not turn the next poll into a 304.
    return replace(
        base,
        failures=failures,
        next_attempt=result.retry_after or now + backoff(failures, settings),
        last_error=error,
    )


def backoff(failures: int, settings: SourcesSettings) -> timedelta:
    """The pause after `failures` failures in a row: doubling from backoff_minutes, capped."""
    cap = timedelta(hours=settings.backoff_max_hours)
    exponent = min(failures - 1, 32)  # 2**32 minutes is far past any cap
    return min(timedelta(minutes=settings.backoff_minutes * 2**exponent), cap)


def skip_reason(
    entry: FeedEntry, source: FeedSource, settings: SourcesSettings, now: datetime
) -> str | None:
    """Why a new entry is not collected (too old, filtered out), or None to keep it."""
    max_age = settings.max_age_days if source.max_age_days is None else source.max_age_days
    moment = entry.published or entry.updated
    if max_age and moment is not None and moment < now - timedelta(days=max_age):
        return "older than max_age_days"
    if not source.include and not source.exclude:
        return None
    text = " ".join((entry.title, " ".join(entry.tags), html_to_text(entry.content_html)))
    if source.include and not _keywords(source.include).search(text):
        return "mentions none of the include keywords"
    if source.exclude and _keywords(source.exclude).search(text):
        return "mentions an exclude keyword"
    return None


@functools.lru_cache(maxsize=64)
def _keywords(words: tuple[str, ...]) -> re.Pattern[str]:
    # Whole words or phrases, any case: "art" must not match "start".
    alternatives = "|".join(re.escape(word) for word in words)
    return re.compile(rf"(?<!\w)(?:{alternatives})(?!\w)", re.IGNORECASE)
