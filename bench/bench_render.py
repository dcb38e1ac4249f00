"""Time the digest and page rendering of a 50-article issue (~750 words each); prints a table.

Run: .venv/bin/python bench/bench_render.py [--articles N] [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # the repo's tests.factories builds the articles

from publisher.model import IssueSummary  # noqa: E402
from publisher.render.digest import (  # noqa: E402
    make_environment,
    render_archive,
    render_digest,
    render_issue_pages,
)
from publisher.render.text import html_to_text  # noqa: E402
from publisher.settings import load_settings  # noqa: E402
from tests.factories import make_issue_content, make_long_article  # noqa: E402


def timed(fn: Callable[[], Any], repeat: int) -> tuple[list[float], Any]:
    times, result = [], None
    for _ in range(repeat):
        start = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - start)
    return times, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--articles", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=7)
    args = parser.parse_args()

    settings = load_settings(ROOT / "settings.toml", environ={})
    env = make_environment(settings)
    # The generator overshoots by up to a paragraph: ask for 700 to get about 750 words.
    articles = [make_long_article(i, words=700) for i in range(1, args.articles + 1)]
    content = make_issue_content(articles=articles)
    words = sum(len(html_to_text(a.content_html).split()) for a in articles) // len(articles)
    archive = [
        IssueSummary(
            number=n,
            folder=f"issue-{n}",
            published_at=content.summary.published_at - timedelta(days=7 * n),
            title=f"Issue {n}",
            url=f"{settings.site.url}issue-{n}/",
            article_titles=tuple(f"Story {n}.{k}" for k in range(10)),
        )
        for n in range(1, 201)
    ]

    # A `publisher publish` run is a fresh process: time the first render on its own.
    start = time.perf_counter()
    cold_env = make_environment(settings)
    render_digest(cold_env, settings, content)
    render_issue_pages(cold_env, settings, content)
    cold = [time.perf_counter() - start]
    rows = []
    t_digest, digest = timed(lambda: render_digest(env, settings, content), args.repeat)
    html_size = len(digest.html.encode())
    rows.append(("render_digest", t_digest, f"{html_size:,} B html ({digest.form} form)"))
    t_pages, pages = timed(lambda: render_issue_pages(env, settings, content), args.repeat)
    size = sum(len(p) for p in pages.values())
    rows.append(("render_issue_pages", t_pages, f"{len(pages)} pages, {size:,} B"))
    both = [a + b for a, b in zip(t_digest, t_pages, strict=True)]
    rows.append(("digest + pages", both, ""))
    rows.append(("digest + pages, first run", cold, "new environment, cold caches"))
    small = make_issue_content(articles=articles[:5])
    t_small, small_digest = timed(lambda: render_digest(env, settings, small), args.repeat)
    rows.append(("render_digest, 5 articles", t_small, f"form {small_digest.form}"))
    t_archive, page = timed(lambda: render_archive(env, settings, archive), args.repeat)
    rows.append(("render_archive, 200 issues", t_archive, f"{len(page):,} B"))

    print(f"{args.articles} articles of ~{words} words, median of {args.repeat} runs\n")
    print(f"{'step':<28} {'median ms':>10} {'min ms':>8} {'x digest':>9}  output")
    base = statistics.median(t_digest)
    for name, times, note in rows:
        median = statistics.median(times)
        print(
            f"{name:<28} {median * 1000:>10.1f} {min(times) * 1000:>8.1f} "
            f"{median / base:>9.2f}  {note}"
        )


if __name__ == "__main__":
    main()
