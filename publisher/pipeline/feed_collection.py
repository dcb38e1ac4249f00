"""Collect from upstream feeds (imported only when feeds are configured: httpx, feedparser)."""

from __future__ import annotations

import hashlib
import logging
from contextlib import closing
from dataclasses import replace
from datetime import datetime
from urllib.parse import urlsplit, urlunsplit

from publisher.model import (
    Article,
    CollectReport,
    FeedState,
    Problem,
    Progress,
    article_id,
    unique_slug,
)
from publisher.settings import FeedSource, Settings, SourcesSettings
from publisher.sources.feed_parse import ParsedFeed
from publisher.sources.feed_policy import is_due, request_for, skip_reason, state_after
from publisher.sources.feeds import FeedResult, poll_feeds, user_agent
from publisher.store import FeedArticleWrite, Store

log = logging.getLogger(__name__)


# ---------------------------------------------------------------------------- upstream feeds


def collect_feeds(
    store: Store,
    settings: Settings,
    now: datetime,
    progress: Progress | None,
    report: CollectReport,
) -> CollectReport:
    """Poll the configured feeds that are due and store their entries, one feed at a time."""
    sources = settings.sources
    states = _adopt_moved_feeds(store, sources.feeds, store.feed_states())
    configured = {source.url: source for source in sources.feeds}
    problems: list[Problem] = []
    requests = []
    not_due = 0
    for source in sources.feeds:
        state = states.get(source.url)
        if state is not None and state.gone:
            problems.append(
                Problem(
                    _feed_where(source.name, state.fetch_url),
                    f"not polled: it answered 410 Gone on {_moment(state.last_polled)}; "
                    "remove it from settings.toml",
                    "warning",
                )
            )
        elif is_due(state, source, sources, now):
            requests.append(request_for(state, source))
        else:
            not_due += 1
    tally = _FeedTally(not_due)
    taken: set[str] | None = None  # slugs in use, loaded on the first new article only
    results = poll_feeds(requests, sources, agent=user_agent(settings.site.url), now=now)
    with closing(results):  # a store error stops the polling threads and processes too
        for done, result in enumerate(results, start=1):
            source = configured[result.request.url]
            state = state_after(states.get(source.url), source, result, sources, now)
            if result.document is not None:
                taken = _store_feed_entries(
                    store, source, sources, result.document, state, now, taken, tally
                )
            else:
                store.save_feed_poll(state)
            tally.count(result)
            log.info("feed %r: %s", source.name, _outcome(result))
            problems.extend(_feed_problems(result, state))
            if progress is not None:
                progress(done, len(requests))
    return replace(
        report,
        problems=report.problems + tuple(problems),
        feeds_polled=len(requests),
        feeds_not_modified=tally.not_modified,
        feeds_failed=tally.failed,
        feeds_not_due=tally.not_due,
        feed_new=tally.new,
        feed_updated=tally.updated,
        feed_unchanged=tally.unchanged,
        feed_skipped=tally.skipped,
    )


class _FeedTally:
    """Counters of one feed collection run."""

    def __init__(self, not_due: int) -> None:
        self.not_due = not_due
        self.not_modified = self.failed = 0
        self.new = self.updated = self.unchanged = self.skipped = 0

    def count(self, result: FeedResult) -> None:
        self.not_modified += result.status == "not_modified"
        self.failed += result.status in ("failed", "gone")


def _adopt_moved_feeds(
    store: Store, sources: tuple[FeedSource, ...], states: dict[str, FeedState]
) -> dict[str, FeedState]:
    """A feed whose url the editor changed to where it moved keeps its state and articles."""
    configured = {source.url for source in sources}
    for source in sources:
        if source.url in states:
            continue
        old = next(
            (
                state
                for url, state in states.items()
                if url not in configured and state.current_url == source.url
            ),
            None,
        )
        if old is not None:
            store.rename_feed(old.url, source.url)
            del states[old.url]
            states[source.url] = replace(old, url=source.url, current_url=None)
    return states


def _store_feed_entries(
    store: Store,
    source: FeedSource,
    sources: SourcesSettings,
    document: ParsedFeed,
    state: FeedState,
    now: datetime,
    taken: set[str] | None,
    tally: _FeedTally,
) -> set[str] | None:
    """Decide new / edited / unchanged per entry, then store them and the state at once."""
    keys = [
        (_key(entry.identity), _key(entry.link) if entry.link and entry.link_is_unique else None)
        for entry in document.entries
    ]
    stored = store.feed_entries(
        source.url, [ek for ek, _ in keys], [lk for _, lk in keys if lk is not None]
    )
    by_entry = {s.entry_key: s for s in stored if s.entry_key}
    by_link = {s.link_key: s for s in stored if s.link_key}
    writes: list[FeedArticleWrite] = []
    rekeys: list[tuple[str, str, str | None]] = []
    claimed: set[str] = set()
    for entry, (entry_key, link_key) in zip(document.entries, keys, strict=True):
        # Same id, or (ids rewritten upstream) same link: the same article.
        match = by_entry.get(entry_key) or (by_link.get(link_key) if link_key else None)
        moment = entry.published or entry.updated
        if match is not None:
            if match.article_id in claimed:
                continue  # two entries of this document are one stored article
            claimed.add(match.article_id)
            if match.content_hash == entry.fingerprint:
                tally.unchanged += 1
                if (match.entry_key, match.link_key) != (entry_key, link_key):
                    rekeys.append((match.article_id, entry_key, link_key))
                continue
            tally.updated += 1
            article_key, slug, collected_at = match.article_id, match.slug, match.collected_at
            date, updated = min(moment or match.date, now), entry.updated or now
        else:
            if skip_reason(entry, source, sources, now) is not None:
                tally.skipped += 1
                continue
            tally.new += 1
            if taken is None:
                taken = store.slugs()
            slug = unique_slug(entry.title, taken)
            taken.add(slug)
            article_key = article_id("feed", f"{source.url}\n{entry.identity}")
            collected_at, date, updated = now, min(moment or now, now), None
        article = Article(
            id=article_key,
            slug=slug,
            title=entry.title,
            content_html=entry.content_html,
            summary=entry.summary,
            date=date,
            collected_at=collected_at,
            source_kind="feed",
            source=source.url,
            author=entry.author,
            publication=source.name,
            updated=updated,
            # The original link is the permalink; an entry without one points at its site.
            url=entry.link or document.link or source.url,
            tags=entry.tags,
        )
        writes.append(
            FeedArticleWrite(article, entry_key, link_key, entry.fingerprint, new=match is None)
        )
    store.save_feed_poll(state, writes, rekeys)
    return taken


def _outcome(result: FeedResult) -> str:
    if result.document is not None:
        return f"{len(result.document.entries)} entries read"
    if result.status == "not_modified":
        return "not modified" + (" (304)" if result.http_status == 304 else " (same body)")
    return result.error or result.status


def _key(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


def _feed_problems(result: FeedResult, state: FeedState) -> list[Problem]:
    where = _feed_where(result.request.name, result.request.fetch_url)
    problems: list[Problem] = []
    if result.moved_to and result.moved_to != result.request.fetch_url:
        problems.append(
            Problem(
                where,
                f"moved permanently to {result.moved_to}; publisher polls it there from now on "
                "(you may put the new url in settings.toml)",
                "warning",
            )
        )
    if result.status in ("failed", "gone"):
        message = "; ".join(part for part in (result.error, result.hint) if part)
        if result.status == "failed" and state.next_attempt is not None:
            message += f"; next try after {_moment(state.next_attempt)}"
        problems.append(Problem(where, message))
    if result.document is not None:
        problems.extend(Problem(where, warning, "warning") for warning in result.document.warnings)
    return problems


def _feed_where(name: str, url: str) -> str:
    parts = urlsplit(url)
    if parts.password:  # a feed URL may carry a login; reports never show the password
        netloc = f"{parts.username}:***@{parts.hostname}" + (f":{parts.port}" if parts.port else "")
        url = urlunsplit(parts._replace(netloc=netloc))
    return f'feed "{name}" ({url})'


def _moment(moment: datetime | None) -> str:
    return "an unknown date" if moment is None else f"{moment:%Y-%m-%d %H:%M} UTC"
