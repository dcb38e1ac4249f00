"""Planning the next issue: pure, clock injected, folders per day."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

from publisher.model import Issue
from publisher.plan import plan_issue
from publisher.settings import Settings, load_settings
from tests.factories import make_article


def settings_with(tmp_path: Path, extra: str = "") -> Settings:
    path = tmp_path / "settings.toml"
    path.write_text(
        '[site]\ntitle = "Dispatch"\nurl = "https://n.example.org/"\n'
        f'timezone = "Europe/Berlin"\n{extra}',
        encoding="utf-8",
    )
    return load_settings(path, environ={})


# 23:30 UTC on the 24th is already the 25th in Berlin.
LATE = datetime(2026, 11, 24, 23, 30, tzinfo=UTC)


def test_nothing_new_means_no_issue(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    assert plan_issue([], None, LATE, settings) is None
    drafts = [make_article(1, draft=True), make_article(2, source_missing=True)]
    assert plan_issue(drafts, None, LATE, settings) is None


def test_first_issue_number_date_folder_and_title_in_the_site_zone(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    articles = [make_article(1), make_article(2), make_article(3, draft=True)]
    plan = plan_issue(articles, None, LATE, settings)
    assert plan is not None
    assert (plan.number, plan.folder, plan.published_at) == (1, "2026-11-25", LATE)
    # newest first by default; drafts left out
    assert [a.slug for a in plan.articles] == ["article-2", "article-1"]
    assert plan.title == "Dispatch #1: Article number 2: harbour news"
    assert plan.to_issue().article_ids == tuple(a.id for a in plan.articles)


def test_second_and_third_issue_on_one_day(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    first = Issue(4, "2026-11-25", LATE, "t", ())
    plan = plan_issue([make_article(1)], first, LATE + timedelta(minutes=5), settings)
    assert plan is not None and (plan.number, plan.folder) == (5, "2026-11-25-2")
    second = Issue(5, "2026-11-25-2", LATE, "t", ())
    plan = plan_issue([make_article(1)], second, LATE + timedelta(hours=1), settings)
    assert plan is not None and plan.folder == "2026-11-25-3"
    next_day = plan_issue([make_article(1)], second, LATE + timedelta(days=1), settings)
    assert next_day is not None and next_day.folder == "2026-11-26"


def test_max_articles_takes_the_longest_waiting_and_orders_as_set(tmp_path: Path) -> None:
    settings = settings_with(tmp_path, '[issue]\nmax_articles = 2\norder = "oldest"\n')
    # article 3 was collected first but is dated last
    waiting = [
        make_article(1, collected_at=LATE - timedelta(hours=1)),
        make_article(2, collected_at=LATE - timedelta(hours=2)),
        make_article(3, collected_at=LATE - timedelta(hours=3)),
    ]
    plan = plan_issue(waiting, None, LATE, settings)
    assert plan is not None
    assert [a.slug for a in plan.articles] == ["article-2", "article-3"]


def test_planning_is_pure_same_input_same_plan(tmp_path: Path) -> None:
    settings = settings_with(tmp_path)
    articles = [make_article(i) for i in range(1, 6)]
    assert plan_issue(articles, None, LATE, settings) == plan_issue(
        list(reversed(articles)), None, LATE, settings
    )
