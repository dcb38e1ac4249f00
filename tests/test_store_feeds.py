"""The store's side of upstream feeds: migration 0003, one transaction per poll, renames."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.model import Article, FeedState, article_id
from publisher.pipeline import collect
from publisher.store import HEAD_REVISION, FeedArticleWrite, Store, feeds_table
from tests.conftest import Site

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
FEED = "https://a.example/feed.xml"


def feed_article(n: int, slug: str | None = None, source: str = FEED) -> FeedArticleWrite:
    article = Article(
        id=article_id("feed", f"{source}\nentry-{n}"),
        slug=slug or f"entry-{n}",
        title=f"Entry {n}",
        content_html=f"<p>Entry {n}.</p>",
        summary=f"Entry {n}.",
        date=NOW,
        collected_at=NOW,
        source_kind="feed",
        source=source,
        url=f"https://a.example/{n}",
    )
    return FeedArticleWrite(article, f"ek-{n}", f"lk-{n}", f"hash-{n}", new=True)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, site: Site) -> Iterator[Store]:
    if request.param == "postgresql":
        yield request.getfixturevalue("postgres_store")
        return
    with Store.open(site.settings().database_url) as opened:
        yield opened


def test_migration_0003_adds_feed_state_to_a_store_with_articles(site: Site) -> None:
    site.write("note.md", "# A note\n\nSome text.\n")
    collect(site.settings(), now=NOW)
    with Store.open(site.settings().database_url) as store:
        store.downgrade("0002")
        assert not sa.inspect(store.engine).has_table("feeds")
        store.migrate()
        assert store.revision() == HEAD_REVISION  # through every later migration too
        assert sa.inspect(store.engine).has_table(feeds_table.name)
        assert [a.title for a in store.iter_articles()] == ["A note"]
        columns = {c["name"] for c in sa.inspect(store.engine).get_columns("articles")}
        assert {"feed_entry_key", "feed_link_key"} <= columns


def test_a_poll_is_stored_whole_or_not_at_all(store: Store) -> None:
    state = FeedState(url=FEED, name="A", etag='"v1"', last_polled=NOW)
    clash = [feed_article(1), feed_article(2, slug="entry-1")]  # the second slug is taken

    with pytest.raises(StoreError):
        store.save_feed_poll(state, clash)

    # Nothing half-written: no article, and no ETag that would turn the next poll into a 304.
    assert store.count_articles() == 0
    assert store.feed_states() == {}


def test_entries_are_found_by_entry_key_or_link_key_within_their_feed_only(store: Store) -> None:
    store.save_feed_poll(FeedState(url=FEED, name="A"), [feed_article(1), feed_article(2)])
    other = "https://b.example/feed.xml"
    store.save_feed_poll(FeedState(url=other, name="B"), [feed_article(3, source=other)])

    found = store.feed_entries(FEED, ["ek-1", "ek-3"], ["lk-2"])

    assert sorted(f.slug for f in found) == ["entry-1", "entry-2"]
    assert store.feed_entries(FEED, [], []) == []


def test_an_update_keeps_slug_and_collection_time_and_rekeying_changes_only_keys(
    store: Store,
) -> None:
    first = feed_article(1)
    store.save_feed_poll(FeedState(url=FEED, name="A"), [first])
    later = datetime(2026, 11, 25, tzinfo=UTC)
    edited = Article(
        **{
            **{f: getattr(first.article, f) for f in first.article.__slots__},
            "title": "Entry 1, edited",
            "slug": "ignored",
            "collected_at": later,
            "updated": later,
        }
    )

    store.save_feed_poll(
        FeedState(url=FEED, name="A"),
        [FeedArticleWrite(edited, "ek-1", "lk-1", "hash-new", new=False)],
        rekeys=[(first.article.id, "ek-new", None)],
    )

    stored = store.get_article(first.article.id)
    assert stored is not None
    assert (stored.title, stored.slug, stored.collected_at, stored.updated) == (
        "Entry 1, edited",
        "entry-1",
        NOW,
        later,
    )
    (entry,) = store.feed_entries(FEED, ["ek-new"], [])
    assert (entry.content_hash, entry.link_key) == ("hash-new", None)


def test_renaming_a_feed_moves_its_state_and_articles_but_not_their_ids(store: Store) -> None:
    store.save_feed_poll(
        FeedState(url=FEED, name="A", current_url="https://new.example/feed.xml", etag='"v"'),
        [feed_article(1)],
    )

    store.rename_feed(FEED, "https://new.example/feed.xml")

    (state,) = store.feed_states().values()
    assert (state.url, state.current_url, state.etag) == (
        "https://new.example/feed.xml",
        None,
        '"v"',
    )
    (article,) = store.iter_articles("feed")
    assert article.source == "https://new.example/feed.xml"
    assert article.id == article_id("feed", f"{FEED}\nentry-1")
