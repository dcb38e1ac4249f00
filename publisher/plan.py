"""Plan the next issue: which articles, its number, date and folder. Pure: no I/O, no clock."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from publisher.model import Article, Issue
from publisher.settings import Settings


@dataclass(frozen=True, slots=True)
class IssuePlan:
    """The next issue, decided but not yet rendered or written."""

    number: int
    folder: str
    published_at: datetime  # aware, UTC
    title: str
    articles: tuple[Article, ...]  # in issue order

    def to_issue(self) -> Issue:
        return Issue(
            number=self.number,
            folder=self.folder,
            published_at=self.published_at,
            title=self.title,
            article_ids=tuple(a.id for a in self.articles),
        )


def issue_folder(published_at: datetime, settings: Settings, last: Issue | None) -> str:
    """`YYYY-MM-DD` in the site's time zone; the Nth issue of a day gets `-N`."""
    day = published_at.astimezone(settings.zone).date().isoformat()
    if last is None or not last.folder.startswith(day):
        return day
    suffix = last.folder[len(day) :].lstrip("-")
    return f"{day}-{int(suffix) + 1 if suffix.isdigit() else 2}"


def issue_title(settings: Settings, number: int, lead: Article) -> str:
    return f"{settings.site.title} #{number}: {lead.title}"


def plan_issue(
    candidates: Sequence[Article], last: Issue | None, now: datetime, settings: Settings
) -> IssuePlan | None:
    """The next issue from articles in no issue yet, or None when there is nothing to send.

    Drafts, and articles whose file was deleted before they went out, are left out. When more
    are waiting than `issue.max_articles`, the longest-waiting go first so none is starved;
    within the issue they are ordered as `issue.order` says.
    """
    eligible = [a for a in candidates if not a.draft and not a.source_missing]
    if not eligible:
        return None
    eligible.sort(key=lambda a: (a.collected_at, a.id))
    chosen = eligible[: settings.issue.max_articles]
    newest_first = settings.issue.order == "newest"
    chosen.sort(key=lambda a: (a.date, a.id), reverse=newest_first)
    number = last.number + 1 if last else 1
    return IssuePlan(
        number=number,
        folder=issue_folder(now, settings, last),
        published_at=now,
        title=issue_title(settings, number, chosen[0]),
        articles=tuple(chosen),
    )
