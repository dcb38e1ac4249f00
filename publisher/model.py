"""The plain data that crosses stages: articles, issues, reports; id and slug rules."""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal

from slugify import slugify

SourceKind = Literal["file", "feed"]
Progress = Callable[[int, int], None]  # a long run reports (done, total) to its driver
Severity = Literal["error", "warning"]
DigestForm = Literal["full", "summary", "titles"]

SLUG_MAX_LENGTH = 80
# Names an issue folder uses for itself: an article page `<slug>.html` must not collide.
RESERVED_SLUGS = frozenset({"index", "email", "issue", "feed", "atom", "issues", "style"})


@dataclass(frozen=True, slots=True)
class ParsedArticle:
    """What a source read from one file or feed entry, before the store gives it an id."""

    title: str
    content_html: str  # sanitized
    summary: str  # plain text
    author: str | None = None
    publication: str | None = None
    date: datetime | None = None  # from the source; None: the time it was first collected
    url: str | None = None  # the original link, when the article lives elsewhere
    slug: str | None = None  # asked for in front matter; the store makes it unique
    tags: tuple[str, ...] = ()
    draft: bool = False
    warnings: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Article:
    """A stored article. `id` and `slug` never change once stored."""

    id: str
    slug: str
    title: str
    content_html: str
    summary: str
    date: datetime  # aware, UTC
    collected_at: datetime  # aware, UTC
    source_kind: SourceKind
    source: str  # path relative to the articles folder, or the feed URL
    author: str | None = None
    publication: str | None = None
    updated: datetime | None = None  # aware, UTC; set when the source changed after collection
    url: str | None = None
    tags: tuple[str, ...] = ()
    draft: bool = False
    source_missing: bool = False


@dataclass(frozen=True, slots=True)
class Issue:
    """A published issue: its number, folder name and the articles it carries, in order."""

    number: int
    folder: str  # YYYY-MM-DD, or YYYY-MM-DD-N for the Nth issue that day
    published_at: datetime  # aware, UTC
    title: str  # the digest's subject and the archive's entry
    article_ids: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class PublishedArticle:
    """An article as it appears in an issue and the feeds.

    `url` is absolute: our permalink page for a local article
    (`<site.url><issue folder>/<slug>.html`), the original link for one from an upstream feed.
    """

    article: Article
    issue_folder: str
    url: str

    @property
    def is_local(self) -> bool:
        return self.article.source_kind == "file"


@dataclass(frozen=True, slots=True)
class IssueSummary:
    """An issue as the archive page and issues.xml list it: no article bodies needed."""

    number: int
    folder: str
    published_at: datetime  # aware, UTC
    title: str  # e.g. "The Sample Dispatch #12: Harbour lights return"
    url: str  # absolute URL of the issue's web version (<site.url><folder>/)
    article_titles: tuple[str, ...]
    more_articles: int = 0  # articles beyond the titles listed (the archive lists a few)


@dataclass(frozen=True, slots=True)
class IssueContent:
    """Everything one issue's pages and digest are rendered from."""

    summary: IssueSummary
    articles: tuple[PublishedArticle, ...]  # in issue order


# Per-subscriber parts of the digest. Rendering leaves these markers in email.html,
# email.txt and email.eml; delivery fills them in for each subscriber. ASCII without "=" so
# they survive quoted-printable and base64 untouched.
PLACEHOLDER_UNSUBSCRIBE_URL = "%%UNSUBSCRIBE_URL%%"
PLACEHOLDER_GREETING = "%%GREETING%%"  # becomes "Hello Jane," or "Hello,"
PLACEHOLDER_RECIPIENT = "%%RECIPIENT%%"  # the To: address


@dataclass(frozen=True, slots=True)
class Digest:
    """The rendered digest of one issue: CSS already inlined, placeholders not yet filled."""

    subject: str
    preheader: str
    html: str  # email.html
    text: str  # email.txt
    # Which form fit under Gmail's clipping size: full articles, summaries with "Read more"
    # links, or titles with links only.
    form: DigestForm = "full"


@dataclass(frozen=True, slots=True)
class Problem:
    """One thing that went wrong with one item; the rest of the batch went on."""

    where: str  # file path, URL or setting
    message: str  # says what happened and what to do
    severity: Severity = "error"

    def __str__(self) -> str:
        return f"{self.where}: {self.message}"


@dataclass(frozen=True, slots=True)
class CollectReport:
    """What one `collect` run did."""

    new: int = 0
    updated: int = 0
    unchanged: int = 0
    source_missing: tuple[str, ...] = ()
    problems: tuple[Problem, ...] = field(default=())
    # Upstream feeds: how many were polled, answered 304 (or the same body), failed, waited.
    feeds_polled: int = 0
    feeds_not_modified: int = 0
    feeds_failed: int = 0
    feeds_not_due: int = 0
    # Their entries: stored as new articles, edited in place, seen again, or left out by filters.
    feed_new: int = 0
    feed_updated: int = 0
    feed_unchanged: int = 0
    feed_skipped: int = 0

    @property
    def failed(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")


@dataclass(frozen=True, slots=True)
class FeedState:
    """What the store remembers of one configured upstream feed between polls."""

    url: str  # as configured in settings.toml: the feed's key
    name: str
    current_url: str | None = None  # where a permanent redirect (301/308) moved it
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None  # of the last body parsed: an identical body is not parsed again
    last_polled: datetime | None = None  # aware, UTC
    last_success: datetime | None = None  # aware, UTC
    failures: int = 0  # consecutive
    next_attempt: datetime | None = None  # backoff or Retry-After; None: min interval only
    gone: bool = False  # answered 410 Gone: no longer polled
    last_error: str | None = None

    @property
    def fetch_url(self) -> str:
        return self.current_url or self.url


def article_id(source_kind: SourceKind, key: str) -> str:
    """A stable id from where an article came from: same source, same id, forever."""
    digest = hashlib.sha256(f"{source_kind}:{key}".encode()).hexdigest()
    return digest[:20]


def unique_slug(wanted: str, taken: Collection[str]) -> str:
    """Slugify `wanted`, then add -2, -3, ... until it is not in `taken`."""
    base = slugify(wanted, max_length=SLUG_MAX_LENGTH, word_boundary=True) or "article"
    slug, n = base, 2
    while slug in taken or slug in RESERVED_SLUGS:
        slug = f"{base}-{n}"
        n += 1
    return slug


@dataclass(frozen=True, slots=True)
class PublishReport:
    """What one `publish` run did (or, with --dry-run, would do)."""

    issue: Issue | None  # None: nothing new to publish
    site_files_changed: tuple[str, ...] = ()
    rebuilt: int = 0  # issue folders regenerated by --rebuild
    digest_form: str = ""  # "full", "summaries" or "titles": what fitted under the size limit
    dry_run: bool = False
    problems: tuple[Problem, ...] = ()


# ---------------------------------------------------------------- delivery (issue 5)

SubscriberStatus = Literal["pending", "active", "unsubscribed", "bounced"]
SUBSCRIBER_STATUSES: tuple[SubscriberStatus, ...] = ("pending", "active", "unsubscribed", "bounced")
# pending -> sent | deferred -> ... | failed; skipped: the subscriber left before their turn.
OutboxState = Literal["pending", "sent", "deferred", "failed", "skipped"]
OUTBOX_STATES: tuple[OutboxState, ...] = ("pending", "sent", "deferred", "failed", "skipped")


@dataclass(frozen=True, slots=True)
class Subscriber:
    """Someone on the list. `email` is normalised (lower case, ASCII domain); ids never change."""

    id: int
    email: str
    name: str
    status: SubscriberStatus
    bounce_count: int  # permanent refusals in a row; a delivered message resets it
    created_at: datetime  # aware, UTC
    confirmed_at: datetime | None = None
    unsubscribed_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class OutboxItem:
    """One outbox row claimed for sending, with what its message is made from."""

    id: int
    issue_number: int
    subscriber_id: int
    email: str
    name: str
    subscriber_status: SubscriberStatus
    attempts: int  # attempts made before this one


@dataclass(frozen=True, slots=True)
class AttemptResult:
    """What one attempt to hand a message to the server means for its outbox row."""

    item: OutboxItem
    state: OutboxState  # sent, deferred or failed (skipped: never attempted)
    reply: str  # the server's answer, or what broke
    at: datetime  # aware, UTC
    message_id: str = ""
    next_attempt_at: datetime | None = None  # deferred only
    hard_bounce: bool = False  # 5xx at RCPT: counts toward the bounce threshold


@dataclass(frozen=True, slots=True)
class DeliveryStatus:
    """Outbox counts of one issue. It is finished only when nothing is pending, deferred or
    failed."""

    issue_number: int
    title: str
    pending: int = 0
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    next_attempt_at: datetime | None = None  # the earliest deferred retry
    latest_errors: tuple[str, ...] = ()  # "address: reply", newest first

    @property
    def total(self) -> int:
        return self.pending + self.sent + self.deferred + self.failed + self.skipped

    @property
    def finished(self) -> bool:
        return self.total > 0 and self.pending == self.deferred == self.failed == 0


@dataclass(frozen=True, slots=True)
class FailedDelivery:
    """A recipient the server refused for good, with its answer."""

    email: str
    reply: str
    attempts: int
    last_attempt_at: datetime | None
    message_id: str


@dataclass(frozen=True, slots=True)
class SendReport:
    """What one `send` run did, and where the issue stands after it."""

    issue_number: int
    title: str
    queued: int = 0  # outbox rows created by this run
    requeued: int = 0  # failed rows queued again (--retry-failed)
    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    written: int = 0  # .eml files written by a dry run
    dry_run_dir: str = ""
    test_address: str = ""
    stopped: str = ""  # why the run stopped before the outbox was empty ("" = it did not)
    status: DeliveryStatus | None = None


@dataclass(frozen=True, slots=True)
class ImportReport:
    """What one subscriber import did; bad rows are problems, the rest were imported."""

    new: int = 0
    unchanged: int = 0
    problems: tuple[Problem, ...] = ()


@dataclass(frozen=True, slots=True)
class UnsubscribeResult:
    email: str
    already: bool  # they had unsubscribed (or bounced) before


# ---------------------------------------------------------------- server (issue 7)

NoticeKind = Literal["confirm", "welcome"]
ConfirmOutcome = Literal["confirmed", "already", "expired", "invalid"]


@dataclass(frozen=True, slots=True)
class Notice:
    """One message outside any issue (a confirmation request or a welcome), ready for SMTP."""

    kind: NoticeKind
    subscriber_id: int
    recipient: str
    envelope_from: str
    data: bytes


@dataclass(frozen=True, slots=True)
class SubscribeResult:
    """What a subscribe request did. The web page never shows `before`: no enumeration."""

    email: str
    before: SubscriberStatus | None  # None: the address was new
    notice: Notice | None  # the confirmation request to send; None for an active subscriber


@dataclass(frozen=True, slots=True)
class ConfirmResult:
    """What a confirmation link did; a replayed or stale link changes nothing."""

    outcome: ConfirmOutcome
    email: str = ""  # empty for an invalid link
    notice: Notice | None = None  # the welcome, only the first time


# ---------------------------------------------------------------- scheduling (issue 6)

JobOutcome = Literal["running", "ok", "failed", "stopped", "missed"]


@dataclass(frozen=True, slots=True)
class LockHolder:
    """Who holds a named lock in the store: which process on which machine, since when."""

    name: str  # "scheduler", "publish", "send"
    pid: int
    host: str
    purpose: str  # what the holder is doing, e.g. "publisher run"
    since: datetime  # aware, UTC
    heartbeat_at: datetime  # aware, UTC; refreshed while the holder works

    def describe(self) -> str:
        return (
            f"{self.purpose} (pid {self.pid} on {self.host}, "
            f"since {self.since:%Y-%m-%d %H:%M:%S} UTC)"
        )


@dataclass(frozen=True, slots=True)
class JobRun:
    """The last run of a scheduled job (collect, publish or send)."""

    job: str
    outcome: JobOutcome
    started_at: datetime | None = None  # aware, UTC
    finished_at: datetime | None = None
    scheduled_for: datetime | None = None  # the due time, for a run that was missed
    summary: str = ""  # the log line's text
    issue_number: int | None = None  # publish: the issue it published


@dataclass(frozen=True, slots=True)
class JobStatus:
    """One scheduled job as `publisher status` shows it."""

    job: str
    schedule: str  # as written in [schedule]; "" = not scheduled
    last: JobRun | None
    next_run: datetime | None  # aware, UTC; None = not in the job store (yet)


@dataclass(frozen=True, slots=True)
class ScheduleStatus:
    jobs: tuple[JobStatus, ...]
    zone: str  # the zone the schedule is read in
    locks: tuple[LockHolder, ...]  # who holds what right now


@dataclass(frozen=True, slots=True)
class DeliveryBacklog:
    """Where the newest issue's delivery stands, to decide whether a send should run now."""

    issue: Issue | None  # the newest issue; None: nothing published yet
    queued: bool  # its outbox rows exist: a send has started it
    due: int  # rows pending or deferred and due now
