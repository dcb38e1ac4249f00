"""Time the four feed renderers on generated ~750-word articles; print a table.

Run: .venv/bin/python bench/bench_feeds.py
The feeds' cost must follow the feed size (feeds.max_items), not the archive: the table shows
the time per feed for several sizes, as ratios to the default 50-item feed, and the share of
the 0.5 s budget that issue 3 gives a whole 50-article publish.
"""

from __future__ import annotations

import random
import statistics
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import Any

from publisher.model import Article, IssueSummary, PublishedArticle, article_id
from publisher.render.feeds import render_atom, render_issues_feed, render_json_feed, render_rss
from publisher.settings import FeedsSettings, Settings, SiteSettings

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
SITE = "https://dispatch.example.org/"
WORDS = (
    "harbour", "tide", "storm", "ferry", "quay", "lantern", "gull", "net", "rope", "anchor",
    "weather", "council", "market", "fisher", "boat", "salt", "wind", "chart", "pier", "dock",
)  # fmt: skip
SIZES = (10, 50, 200)
BUDGET_S = 0.5
REPEAT = 7


def paragraph(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return f'<p>{text.capitalize()} &amp; <a href="{SITE}x">more</a>.</p>'


def make_articles(n: int) -> list[PublishedArticle]:
    rng = random.Random(3)
    base = datetime(2026, 1, 1, tzinfo=UTC)
    out = []
    for i in range(n, 0, -1):  # newest first, as the caller hands them over
        date = base + timedelta(hours=i)
        article = Article(
            id=article_id("file", f"a{i}.md"),
            slug=f"a{i}",
            title=f"Story {i}: the {rng.choice(WORDS)} & the {rng.choice(WORDS)}",
            content_html="\n".join(paragraph(rng, 75) for _ in range(10)),  # ~750 words
            summary=" ".join(rng.choice(WORDS) for _ in range(40)),
            date=date,
            collected_at=date,
            source_kind="file",
            source=f"a{i}.md",
            author="Maren Holt",
            tags=("harbour", "news"),
        )
        out.append(PublishedArticle(article, "2026-01-01", f"{SITE}2026-01-01/a{i}.html"))
    return out


def make_issues(n: int) -> list[IssueSummary]:
    return [
        IssueSummary(
            number=i,
            folder=f"issue-{i}",
            published_at=NOW - timedelta(days=7 * (n - i)),
            title=f"The Dispatch #{i}",
            url=f"{SITE}issue-{i}/",
            article_titles=tuple(f"Story {i}.{k}" for k in range(20)),
        )
        for i in range(1, n + 1)
    ]


def best_of(fn: Callable[[], bytes]) -> float:
    times = []
    for _ in range(REPEAT):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    rows: list[tuple[str, int, float, int]] = []
    renders: dict[str, Callable[[Settings, Sequence[Any], datetime], bytes]] = {
        "feed.xml (RSS)": render_rss,
        "atom.xml": render_atom,
        "feed.json": render_json_feed,
        "issues.xml": render_issues_feed,
    }
    for size in SIZES:
        settings = Settings(
            site=SiteSettings(title="The Dispatch", url=SITE, author="Desk"),
            feeds=FeedsSettings(max_items=size),
        )
        articles, issues = make_articles(size), make_issues(size)
        for name, render in renders.items():
            data = issues if name == "issues.xml" else articles
            seconds = best_of(partial(render, settings, data, NOW))
            rows.append((name, size, seconds, len(render(settings, data, NOW))))

    at_50 = {name: s for name, size, s, _ in rows if size == 50}
    print(f"{'feed':<16}{'items':>6}{'median ms':>11}{'KiB':>8}{'x 50-item':>11}{'% of 0.5 s':>12}")
    for name, size, seconds, length in rows:
        print(
            f"{name:<16}{size:>6}{seconds * 1000:>11.2f}{length / 1024:>8.0f}"
            f"{seconds / at_50[name]:>11.2f}{seconds / BUDGET_S * 100:>11.1f}%"
        )
    total = sum(at_50.values())
    print(f"\nall four feeds at 50 items: {total * 1000:.1f} ms = {total / BUDGET_S:.0%} of 0.5 s")


if __name__ == "__main__":
    main()
