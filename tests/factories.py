"""Builders of plain model objects for tests of pure stages (render, plan)."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from publisher.model import (
    Article,
    IssueContent,
    IssueSummary,
    PublishedArticle,
    article_id,
)

SITE_URL = "https://news.example.org/"
BASE_TIME = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)


def make_article(n: int = 1, **changes: Any) -> Article:
    """A local article; `n` makes id, slug, title and dates distinct."""
    article = Article(
        id=article_id("file", f"article-{n}.md"),
        slug=f"article-{n}",
        title=f"Article number {n}: harbour news",
        content_html=f'<p>Body of article {n}, see <a href="https://example.org/{n}">this</a>.</p>',
        summary=f"Body of article {n}.",
        date=BASE_TIME + timedelta(hours=n),
        collected_at=BASE_TIME + timedelta(hours=n, minutes=5),
        source_kind="file",
        source=f"article-{n}.md",
        author="Maren Holt",
    )
    return replace(article, **changes)


def make_issue_content(
    number: int = 1, articles: list[Article] | None = None, folder: str = "2026-11-24"
) -> IssueContent:
    articles = articles if articles is not None else [make_article(i) for i in range(1, 4)]
    published = tuple(
        PublishedArticle(
            article=a,
            issue_folder=folder,
            url=f"{SITE_URL}{folder}/{a.slug}.html" if a.source_kind == "file" else (a.url or ""),
        )
        for a in articles
    )
    summary = IssueSummary(
        number=number,
        folder=folder,
        published_at=datetime(2026, 11, 24, 6, 0, tzinfo=UTC),
        title=f"Test Dispatch #{number}: {articles[0].title}" if articles else "Test Dispatch",
        url=f"{SITE_URL}{folder}/",
        article_titles=tuple(a.title for a in articles),
    )
    return IssueContent(summary=summary, articles=published)


def make_upstream_article(n: int = 1, **changes: Any) -> Article:
    """An article collected from an upstream feed: it links to its original and credits it."""
    feed = "https://upstream.example.com/feed.xml"
    link = f"https://upstream.example.com/stories/{n}?ref=feed&lang=en"
    article = make_article(
        n,
        id=article_id("feed", link),
        slug=f"upstream-{n}",
        title=f"Upstream story {n}",
        source_kind="feed",
        source=feed,
        url=link,
        author="Ines Carvalho",
        publication="The Upstream Gazette",
    )
    return replace(article, **changes)


def make_published(
    articles: list[Article], folder: str = "2026-11-24"
) -> tuple[PublishedArticle, ...]:
    """Articles as the feeds get them: with their absolute URL (permalink or original link)."""
    return make_issue_content(articles=articles, folder=folder).articles


# -- render: upstream and long articles ---------------------------------------------------------

UPSTREAM_URL = "https://upstream.example.net/"

_WORDS = [
    "harbour",
    "ferry",
    "lantern",
    "quay",
    "tide",
    "council",
    "market",
    "bicycle",
    "winter",
    "reading",
    "river",
    "bridge",
    "evening",
    "festival",
    "library",
    "orchard",
    "station",
    "garden",
    "weather",
    "volunteer",
    "ledger",
    "archive",
    "kitchen",
    "baker",
    "musician",
    "neighbour",
    "school",
    "pavement",
    "signal",
    "lighthouse",
]


def make_feed_article(n: int = 1, **changes: Any) -> Article:
    """An article from an upstream feed: it links out to its original URL and credits the feed."""
    fields: dict[str, Any] = {
        "id": article_id("feed", f"{UPSTREAM_URL}posts/{n}"),
        "slug": f"upstream-{n}",
        "title": f"Upstream story {n}",
        "content_html": f"<p>Upstream body {n}.</p>",
        "summary": f"Upstream summary {n}.",
        "source_kind": "feed",
        "source": f"{UPSTREAM_URL}feed.xml",
        "url": f"{UPSTREAM_URL}posts/{n}",
        "publication": "Upstream Weekly",
        "author": None,
    }
    fields.update(changes)
    return make_article(n, **fields)


def long_body(n: int, words: int = 750) -> str:
    """Sanitized-looking HTML of about `words` words: paragraphs, a heading, a list, links."""
    paragraphs, count, k = [], 0, n
    while count < words:
        size = 60 + (k % 5) * 5
        text = " ".join(_WORDS[(k * 7 + i * 3) % len(_WORDS)] for i in range(size))
        link = f'<a href="https://example.org/{n}/{k}">{_WORDS[k % len(_WORDS)]}</a>'
        paragraphs.append(f"<p>{text.capitalize()} {link}.</p>")
        if len(paragraphs) == 5:
            paragraphs.append(
                f"<h2>Part two of {n}</h2><ul><li>first point</li><li>second</li></ul>"
            )
        count += size + 1
        k += 1
    return "\n".join(paragraphs)


def make_long_article(n: int = 1, words: int = 750, **changes: Any) -> Article:
    """A local article of about `words` words with a summary of its first sentence or so."""
    fields: dict[str, Any] = {
        "content_html": long_body(n, words),
        "summary": " ".join(_WORDS[(n + i) % len(_WORDS)] for i in range(40)).capitalize() + ".",
    }
    fields.update(changes)
    return make_article(n, **fields)
