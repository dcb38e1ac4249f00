"""The store: the only module that speaks SQL (SQLAlchemy Core; SQLite or PostgreSQL)."""

from __future__ import annotations

import fcntl
import functools
import json
import os
import sqlite3
import threading
import time
from collections.abc import Callable, Collection, Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Connection, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from publisher.errors import StoreError
from publisher.model import (
    Article,
    AttemptResult,
    DeliveryStatus,
    FailedDelivery,
    FeedState,
    Issue,
    JobRun,
    LockHolder,
    OutboxItem,
    SourceKind,
    Subscriber,
    SubscriberStatus,
)

# The newest migration in publisher/migrations/versions; a test keeps the two in step.
HEAD_REVISION = "0006"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# How long a SQLite connection waits for another process's write to finish.
SQLITE_BUSY_SECONDS = 30
# PostgreSQL advisory lock held while migrating (any fixed number; ASCII "pubschem").
SCHEMA_LOCK_KEY = 0x7075_6273_6368_656D

metadata = sa.MetaData()
articles_table = sa.Table(
    "articles",
    metadata,
    sa.Column("id", sa.String(40), primary_key=True),
    sa.Column("slug", sa.String(120), nullable=False, unique=True),
    sa.Column("title", sa.Text, nullable=False),
    sa.Column("author", sa.Text),
    sa.Column("publication", sa.Text),
    sa.Column("summary", sa.Text, nullable=False),
    sa.Column("content_html", sa.Text, nullable=False),
    sa.Column("url", sa.Text),
    sa.Column("tags", sa.Text, nullable=False),
    sa.Column("draft", sa.Boolean, nullable=False),
    sa.Column("date", sa.DateTime, nullable=False),
    sa.Column("updated", sa.DateTime),
    sa.Column("collected_at", sa.DateTime, nullable=False),
    sa.Column("source_kind", sa.String(8), nullable=False),
    sa.Column("source", sa.Text, nullable=False),
    sa.Column("source_size", sa.BigInteger),
    sa.Column("source_mtime_ns", sa.BigInteger),
    sa.Column("content_hash", sa.String(64)),
    sa.Column("source_missing", sa.Boolean, nullable=False),
    # Upstream entries (migration 0003): hashes of the entry's identity and of its link,
    # so a feed that rewrites its ids but keeps its links is recognised.
    sa.Column("feed_entry_key", sa.String(64), index=True),
    sa.Column("feed_link_key", sa.String(64), index=True),
)
issues_table = sa.Table(
    "issues",
    metadata,
    sa.Column("number", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("folder", sa.String(40), nullable=False, unique=True),
    sa.Column("published_at", sa.DateTime, nullable=False),
    sa.Column("title", sa.Text, nullable=False),
)
issue_articles_table = sa.Table(
    "issue_articles",
    metadata,
    sa.Column("issue_number", sa.Integer, sa.ForeignKey("issues.number"), nullable=False),
    sa.Column(
        "article_id", sa.String(40), sa.ForeignKey("articles.id"), nullable=False, unique=True
    ),
    sa.Column("position", sa.Integer, nullable=False),
    sa.PrimaryKeyConstraint("issue_number", "position"),
)
# --- delivery (issue 5): mirrors migrations/versions/0004_delivery.py
subscribers_table = sa.Table(
    "subscribers",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("email", sa.String(320), nullable=False, unique=True),
    sa.Column("name", sa.Text, nullable=False, server_default=""),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("bounce_count", sa.Integer, nullable=False, server_default="0"),
    sa.Column("created_at", sa.DateTime, nullable=False),
    sa.Column("confirmed_at", sa.DateTime),
    sa.Column("unsubscribed_at", sa.DateTime),
    sa.Column("confirm_sent_at", sa.DateTime),  # the latest confirmation link (migration 0006)
    sa.CheckConstraint(
        "status IN ('pending', 'active', 'unsubscribed', 'bounced')", name="ck_subscribers_status"
    ),
    sa.Index("ix_subscribers_status", "status", "id"),
)
outbox_table = sa.Table(
    "outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("issue_number", sa.Integer, sa.ForeignKey("issues.number"), nullable=False),
    sa.Column(
        "subscriber_id",
        sa.Integer,
        sa.ForeignKey("subscribers.id", ondelete="CASCADE"),
        nullable=False,
    ),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_attempt_at", sa.DateTime, nullable=False),
    sa.Column("last_attempt_at", sa.DateTime),
    sa.Column("last_reply", sa.Text),
    sa.Column("message_id", sa.String(255)),
    sa.Column("claimed_by", sa.String(120)),
    sa.Column("claimed_at", sa.DateTime),
    sa.Column("sent_at", sa.DateTime),
    sa.UniqueConstraint("issue_number", "subscriber_id", name="uq_outbox_issue_subscriber"),
    sa.CheckConstraint(
        "state IN ('pending', 'sent', 'deferred', 'failed', 'skipped')", name="ck_outbox_state"
    ),
    sa.Index("ix_outbox_due", "issue_number", "state", "next_attempt_at"),
    sa.Index("ix_outbox_sent_at", "sent_at"),
    sa.Index("ix_outbox_subscriber", "subscriber_id"),
)


# --- scheduling (issue 6): mirrors migrations/versions/0005_locks.py
locks_table = sa.Table(
    "locks",
    metadata,
    sa.Column("name", sa.String(40), primary_key=True),
    sa.Column("token", sa.String(32), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("purpose", sa.String(120), nullable=False),
    sa.Column("since", sa.DateTime, nullable=False),
    sa.Column("heartbeat_at", sa.DateTime, nullable=False),
)
job_runs_table = sa.Table(
    "job_runs",
    metadata,
    sa.Column("job", sa.String(40), primary_key=True),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("started_at", sa.DateTime),
    sa.Column("finished_at", sa.DateTime),
    sa.Column("scheduled_for", sa.DateTime),
    sa.Column("summary", sa.Text, nullable=False, server_default=""),
    sa.Column("issue_number", sa.Integer),
    sa.CheckConstraint(
        "outcome IN ('running', 'ok', 'failed', 'stopped', 'missed')", name="ck_job_runs_outcome"
    ),
)
# APScheduler's own table (its SQLAlchemyJobStore reads and writes it); we only read next runs.
apscheduler_jobs_table = sa.Table(
    "apscheduler_jobs",
    metadata,
    sa.Column("id", sa.Unicode(191), primary_key=True),
    sa.Column("next_run_time", sa.Float(25), index=True),
    sa.Column("job_state", sa.LargeBinary, nullable=False),
)


# The outbox row after one attempt; NULL parameters keep what the row has.
_FINISH_ATTEMPT = (
    outbox_table.update()
    .where(outbox_table.c.id == sa.bindparam("row_id"))
    .values(
        state=sa.bindparam("state"),
        attempts=outbox_table.c.attempts + 1,
        last_attempt_at=sa.bindparam("at", type_=sa.DateTime),
        last_reply=sa.bindparam("reply"),
        message_id=sa.func.coalesce(
            sa.bindparam("message_id", type_=sa.String), outbox_table.c.message_id
        ),
        sent_at=sa.func.coalesce(
            sa.bindparam("sent_at", type_=sa.DateTime), outbox_table.c.sent_at
        ),
        next_attempt_at=sa.func.coalesce(
            sa.bindparam("next_at", type_=sa.DateTime), outbox_table.c.next_attempt_at
        ),
        claimed_by=None,
        claimed_at=None,
    )
)
# A delivered message ends a run of hard bounces.
_RESET_BOUNCES = (
    subscribers_table.update()
    .where(
        subscribers_table.c.id == sa.bindparam("subscriber_id"),
        subscribers_table.c.bounce_count > 0,
    )
    .values(bounce_count=0)
)


feeds_table = sa.Table(
    "feeds",
    metadata,
    sa.Column("url", sa.String(2000), primary_key=True),
    sa.Column("name", sa.Text, nullable=False),
    sa.Column("current_url", sa.Text),
    sa.Column("etag", sa.Text),
    sa.Column("last_modified", sa.Text),
    sa.Column("body_hash", sa.String(64)),
    sa.Column("last_polled", sa.DateTime),
    sa.Column("last_success", sa.DateTime),
    sa.Column("failures", sa.Integer, nullable=False),
    sa.Column("next_attempt", sa.DateTime),
    sa.Column("gone", sa.Boolean, nullable=False),
    sa.Column("last_error", sa.Text),
)


@dataclass(frozen=True, slots=True)
class FileState:
    """What the store remembers of an article file, to skip unchanged files cheaply."""

    article_id: str
    slug: str
    size: int | None
    mtime_ns: int | None
    content_hash: str | None
    missing: bool
    date: datetime
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class StoredFeedEntry:
    """What the store remembers of an article collected from an upstream feed entry."""

    article_id: str
    slug: str
    entry_key: str | None
    link_key: str | None
    content_hash: str | None
    date: datetime
    collected_at: datetime


@dataclass(frozen=True, slots=True)
class FeedArticleWrite:
    """One article to insert (`new`) or update in place, with its upstream keys."""

    article: Article
    entry_key: str
    link_key: str | None
    content_hash: str
    new: bool


P = ParamSpec("P")
R = TypeVar("R")


def _wrap_errors(method: Callable[P, R]) -> Callable[P, R]:
    """Driver errors leave the store as StoreError, naming the database."""

    @functools.wraps(method)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return method(*args, **kwargs)
        except SQLAlchemyError as exc:
            store = args[0]
            where = store.where if isinstance(store, Store) else "store"
            cause = getattr(exc, "orig", None) or exc
            raise StoreError(
                f"database error: {type(cause).__name__}: {cause}".splitlines()[0],
                where=where,
                hint="check the store settings and that the database is reachable",
            ) from exc

    return wrapper


def _use_wal(cursor: Any) -> None:
    """PRAGMA journal_mode=WAL, waiting while another process switches a new file over.

    SQLite answers this pragma "database is locked" at once instead of through the busy
    timeout, so two processes opening a brand-new store together would see one fail.
    """
    deadline = time.monotonic() + SQLITE_BUSY_SECONDS
    while True:
        try:
            cursor.execute("PRAGMA journal_mode=WAL")
            return
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) or time.monotonic() > deadline:
                raise
            time.sleep(0.005)


def _revision(conn: Connection) -> str | None:
    """The schema's migration revision; None for a store with no tables yet."""
    if not sa.inspect(conn).has_table("alembic_version"):
        return None
    revision: str | None = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
    return revision


def _to_db(moment: datetime | None) -> datetime | None:
    # Stored as naive UTC: both SQLite and PostgreSQL keep that unchanged.
    if moment is None:
        return None
    return moment.astimezone(UTC).replace(tzinfo=None)


def _from_db(moment: datetime | None) -> datetime | None:
    return None if moment is None else moment.replace(tzinfo=UTC)


def _article_from_row(row: sa.Row[Any]) -> Article:
    m = row._mapping
    return Article(
        id=m["id"],
        slug=m["slug"],
        title=m["title"],
        content_html=m["content_html"],
        summary=m["summary"],
        date=m["date"].replace(tzinfo=UTC),
        collected_at=m["collected_at"].replace(tzinfo=UTC),
        source_kind=m["source_kind"],
        source=m["source"],
        author=m["author"],
        publication=m["publication"],
        updated=_from_db(m["updated"]),
        url=m["url"],
        tags=tuple(json.loads(m["tags"])),
        draft=bool(m["draft"]),
        source_missing=bool(m["source_missing"]),
    )


def _article_values(article: Article) -> dict[str, Any]:
    return {
        "id": article.id,
        "slug": article.slug,
        "title": article.title,
        "author": article.author,
        "publication": article.publication,
        "summary": article.summary,
        "content_html": article.content_html,
        "url": article.url,
        "tags": json.dumps(list(article.tags), ensure_ascii=False),
        "draft": article.draft,
        "date": _to_db(article.date),
        "updated": _to_db(article.updated),
        "collected_at": _to_db(article.collected_at),
        "source_kind": article.source_kind,
        "source": article.source,
        "source_missing": article.source_missing,
    }


class Store:
    """A handful of methods over the database; any of them may raise StoreError."""

    def __init__(self, url: str) -> None:
        self.url: URL = make_url(url)
        self.where = self.url.render_as_string(hide_password=True)
        self.engine: Engine = self._create_engine()
        # SQLite has one writer: delivery threads take turns here instead of in its busy loop.
        self._write_lock = threading.Lock() if self.url.get_backend_name() == "sqlite" else None

    @classmethod
    def open(cls, url: str) -> Store:
        """Connect (creating a SQLite file's folder if needed) and migrate to the newest schema."""
        store = cls(url)
        store.migrate()
        return store

    def _create_engine(self) -> Engine:
        if self.url.get_backend_name() != "sqlite":
            return sa.create_engine(self.url, pool_pre_ping=True)
        database = self.url.database
        if database and database != ":memory:":
            try:
                Path(database).parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreError(
                    f"cannot create the store's folder ({exc.strerror})",
                    where=database,
                    hint="set store.path to a writable place",
                ) from None
        engine = sa.create_engine(self.url, connect_args={"timeout": SQLITE_BUSY_SECONDS})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            _use_wal(cursor)
            # WAL + NORMAL: a power cut may lose the last commits, never corrupt the file.
            cursor.execute("PRAGMA synchronous=NORMAL")
            cursor.execute("PRAGMA foreign_keys=ON")
            cursor.close()

        return engine

    def close(self) -> None:
        self.engine.dispose()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ schema

    @_wrap_errors
    def revision(self) -> str | None:
        with self.engine.connect() as conn:
            return _revision(conn)

    @_wrap_errors
    def migrate(self) -> None:
        """Upgrade the schema in place to HEAD_REVISION; a no-op when it is there already."""
        if self.revision() == HEAD_REVISION:
            return
        self._run_alembic("upgrade", HEAD_REVISION)

    @_wrap_errors
    def downgrade(self, revision: str) -> None:
        """For tests of the migration path: move the schema back to `revision`."""
        self._run_alembic("downgrade", revision)

    def _run_alembic(self, verb: str, revision: str) -> None:
        # Imported here: alembic costs start-up time and is needed only when the schema moves.
        from alembic import command
        from alembic.config import Config

        config = Config()
        config.set_main_option("script_location", str(MIGRATIONS_DIR))
        with self.engine.begin() as conn:
            # A scheduler and a server started together on a new or older store would both
            # migrate it and one would fail half-way ("table already exists"): the second
            # waits here for the first, then finds the schema where it wanted it.
            self._lock_schema(conn)
            if _revision(conn) == revision:
                return
            config.attributes["connection"] = conn
            getattr(command, verb)(config, revision)

    def _lock_schema(self, conn: Connection) -> None:
        """Hold the schema until `conn`'s transaction ends (the migrations run inside it)."""
        backend = self.url.get_backend_name()
        if backend == "sqlite":
            # The write lock now, not at the first write: DDL runs inside this transaction.
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif backend == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": SCHEMA_LOCK_KEY})

    # ------------------------------------------------------------------ articles

    @_wrap_errors
    def file_states(self) -> dict[str, FileState]:
        """Source path -> what was stored of that article file."""
        t = articles_table
        query = sa.select(
            t.c.source,
            t.c.id,
            t.c.slug,
            t.c.source_size,
            t.c.source_mtime_ns,
            t.c.content_hash,
            t.c.source_missing,
            t.c.date,
            t.c.collected_at,
        ).where(t.c.source_kind == "file")
        with self.engine.connect() as conn:
            return {
                row.source: FileState(
                    article_id=row.id,
                    slug=row.slug,
                    size=row.source_size,
                    mtime_ns=row.source_mtime_ns,
                    content_hash=row.content_hash,
                    missing=bool(row.source_missing),
                    date=row.date.replace(tzinfo=UTC),
                    collected_at=row.collected_at.replace(tzinfo=UTC),
                )
                for row in conn.execute(query)
            }

    @_wrap_errors
    def slugs(self) -> set[str]:
        with self.engine.connect() as conn:
            return set(conn.execute(sa.select(articles_table.c.slug)).scalars())

    @_wrap_errors
    def save_article(
        self,
        article: Article,
        *,
        size: int | None = None,
        mtime_ns: int | None = None,
        content_hash: str | None = None,
    ) -> None:
        """Insert or replace one article in its own transaction; id and slug never change."""
        values = _article_values(article)
        values.update(source_size=size, source_mtime_ns=mtime_ns, content_hash=content_hash)
        t = articles_table
        with self.engine.begin() as conn:
            exists = conn.execute(sa.select(t.c.slug).where(t.c.id == article.id)).first()
            if exists is None:
                conn.execute(t.insert().values(values))
            else:
                values.pop("slug")  # a stored slug is a published permalink
                conn.execute(t.update().where(t.c.id == article.id).values(values))

    @_wrap_errors
    def record_file_seen(self, article_id: str, size: int, mtime_ns: int) -> None:
        """The file was touched but its content is the same: remember the new stat only."""
        t = articles_table
        with self.engine.begin() as conn:
            conn.execute(
                t.update()
                .where(t.c.id == article_id)
                .values(source_size=size, source_mtime_ns=mtime_ns, source_missing=False)
            )

    @_wrap_errors
    def set_source_missing(self, article_ids: list[str], missing: bool) -> None:
        if not article_ids:
            return
        t = articles_table
        with self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id.in_(article_ids)).values(source_missing=missing))

    @_wrap_errors
    def get_article(self, article_id: str) -> Article | None:
        with self.engine.connect() as conn:
            row = conn.execute(
                sa.select(articles_table).where(articles_table.c.id == article_id)
            ).first()
        return None if row is None else _article_from_row(row)

    def iter_articles(self, source_kind: SourceKind | None = None) -> Iterator[Article]:
        """Every stored article, oldest collected first, streamed."""
        t = articles_table
        query = sa.select(t).order_by(t.c.collected_at, t.c.id)
        if source_kind is not None:
            query = query.where(t.c.source_kind == source_kind)
        rows = self._stream(query)
        for row in rows:
            yield _article_from_row(row)

    def _stream(self, query: sa.Select[Any]) -> Iterator[sa.Row[Any]]:
        # A generator outlives _wrap_errors, so it wraps its own driver errors.
        try:
            with self.engine.connect() as conn:
                yield from conn.execution_options(stream_results=True, yield_per=500).execute(query)
        except SQLAlchemyError as exc:
            raise StoreError(
                f"database error: {exc}".splitlines()[0],
                where=self.where,
                hint="check the store settings and that the database is reachable",
            ) from exc

    @_wrap_errors
    def count_articles(self) -> int:
        with self.engine.connect() as conn:
            return int(
                conn.execute(sa.select(sa.func.count()).select_from(articles_table)).scalar_one()
            )

    # ------------------------------------------------------------------ issues

    @_wrap_errors
    def unissued_articles(self) -> list[Article]:
        """Articles in no issue yet, drafts left out, oldest collected first."""
        t, ia = articles_table, issue_articles_table
        query = (
            sa.select(t)
            .where(t.c.draft == sa.false())
            .where(~sa.exists().where(ia.c.article_id == t.c.id))
            .order_by(t.c.collected_at, t.c.id)
        )
        with self.engine.connect() as conn:
            return [_article_from_row(row) for row in conn.execute(query)]

    @_wrap_errors
    def save_issue(self, issue: Issue) -> None:
        """Record a published issue and its articles in one transaction.

        The database refuses an article already in another issue, or a taken number or folder.
        """
        with self.engine.begin() as conn:
            conn.execute(
                issues_table.insert().values(
                    number=issue.number,
                    folder=issue.folder,
                    published_at=_to_db(issue.published_at),
                    title=issue.title,
                )
            )
            if issue.article_ids:
                conn.execute(
                    issue_articles_table.insert(),
                    [
                        {"issue_number": issue.number, "article_id": aid, "position": pos}
                        for pos, aid in enumerate(issue.article_ids)
                    ],
                )

    @_wrap_errors
    def get_issue(self, number: int | None = None) -> Issue | None:
        """The issue with this number, or the newest one when `number` is None."""
        query = sa.select(issues_table)
        if number is None:
            query = query.order_by(issues_table.c.number.desc()).limit(1)
        else:
            query = query.where(issues_table.c.number == number)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
            if row is None:
                return None
            ids = conn.execute(
                sa.select(issue_articles_table.c.article_id)
                .where(issue_articles_table.c.issue_number == row.number)
                .order_by(issue_articles_table.c.position)
            ).scalars()
            return Issue(
                number=row.number,
                folder=row.folder,
                published_at=row.published_at.replace(tzinfo=UTC),
                title=row.title,
                article_ids=tuple(ids),
            )

    @_wrap_errors
    def issue_listing(self, titles_per_issue: int) -> list[tuple[Issue, tuple[str, ...], int]]:
        """Every issue newest first with its first article titles and its article count.

        For the archive page: two bounded queries, so its cost does not grow with the number
        of articles per issue. `article_ids` is left empty.
        """
        it, ia, t = issues_table, issue_articles_table, articles_table
        count = (
            sa.select(sa.func.count())
            .where(ia.c.issue_number == it.c.number)
            .scalar_subquery()
            .label("articles")
        )
        titles: dict[int, list[str]] = {}
        with self.engine.connect() as conn:
            issues = conn.execute(sa.select(it, count).order_by(it.c.number.desc())).all()
            rows = conn.execute(
                sa.select(ia.c.issue_number, t.c.title)
                .join(t, t.c.id == ia.c.article_id)
                .where(ia.c.position < titles_per_issue)
                .order_by(ia.c.issue_number, ia.c.position)
            )
            for number, title in rows:
                titles.setdefault(number, []).append(title)
        return [
            (
                Issue(
                    number=row.number,
                    folder=row.folder,
                    published_at=row.published_at.replace(tzinfo=UTC),
                    title=row.title,
                    article_ids=(),
                ),
                tuple(titles.get(row.number, ())),
                int(row.articles),
            )
            for row in issues
        ]

    @_wrap_errors
    def articles_by_id(self, article_ids: list[str]) -> dict[str, Article]:
        if not article_ids:
            return {}
        query = sa.select(articles_table).where(articles_table.c.id.in_(article_ids))
        with self.engine.connect() as conn:
            return {row.id: _article_from_row(row) for row in conn.execute(query)}

    @_wrap_errors
    def published_articles(self, limit: int) -> list[tuple[Article, str]]:
        """The latest `limit` published articles with their issue folder: newest issue first,
        issue order within it. The cost follows `limit`, not the archive."""
        t, ia, it = articles_table, issue_articles_table, issues_table
        query = (
            sa.select(t, it.c.folder)
            .join(ia, ia.c.article_id == t.c.id)
            .join(it, it.c.number == ia.c.issue_number)
            .order_by(ia.c.issue_number.desc(), ia.c.position)
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [(_article_from_row(row), row.folder) for row in conn.execute(query)]

    @_wrap_errors
    def issues_with_titles(self, limit: int | None = None) -> list[tuple[Issue, tuple[str, ...]]]:
        """Issues newest first, each with its article ids and titles in issue order."""
        it, ia, t = issues_table, issue_articles_table, articles_table
        with self.engine.connect() as conn:
            issues = conn.execute(sa.select(it).order_by(it.c.number.desc()).limit(limit)).all()
            if not issues:
                return []
            lowest = issues[-1].number
            members: dict[int, list[tuple[str, str]]] = {}
            rows = conn.execute(
                sa.select(ia.c.issue_number, t.c.id, t.c.title)
                .join(t, t.c.id == ia.c.article_id)
                .where(ia.c.issue_number >= lowest)
                .order_by(ia.c.issue_number, ia.c.position)
            )
            for number, aid, title in rows:
                members.setdefault(number, []).append((aid, title))
        result = []
        for row in issues:
            pairs = members.get(row.number, [])
            issue = Issue(
                number=row.number,
                folder=row.folder,
                published_at=row.published_at.replace(tzinfo=UTC),
                title=row.title,
                article_ids=tuple(aid for aid, _ in pairs),
            )
            result.append((issue, tuple(title for _, title in pairs)))
        return result

    # ------------------------------------------------------------------ subscribers (issue 5)

    def _writing(self) -> AbstractContextManager[object]:
        return self._write_lock if self._write_lock is not None else nullcontext()

    @_wrap_errors
    def add_subscriber(
        self, email: str, name: str, *, now: datetime, status: SubscriberStatus = "active"
    ) -> tuple[Subscriber, bool]:
        """Insert a subscriber unless the address is there; returns (subscriber, created)."""
        t = subscribers_table
        with self._writing(), self.engine.begin() as conn:
            # preserve_rowcount: psycopg 3 otherwise reports -1 for an INSERT.
            result = conn.execution_options(preserve_rowcount=True).execute(
                self._insert_ignore(t).values(
                    email=email,
                    name=name,
                    status=status,
                    bounce_count=0,
                    created_at=_to_db(now),
                    confirmed_at=_to_db(now) if status == "active" else None,
                    confirm_sent_at=_to_db(now) if status == "pending" else None,
                )
            )
            row = conn.execute(sa.select(t).where(t.c.email == email)).one()
        return _subscriber_from_row(row), result.rowcount == 1

    @_wrap_errors
    def note_confirmation_sent(self, subscriber_id: int, *, now: datetime) -> None:
        """Record that a fresh confirmation link went to this subscriber at `now`."""
        t = subscribers_table
        with self._writing(), self.engine.begin() as conn:
            conn.execute(
                sa.update(t).where(t.c.id == subscriber_id).values(confirm_sent_at=_to_db(now))
            )

    @_wrap_errors
    def delete_expired_signups(self, *, sent_before: datetime) -> int:
        """Delete the pending (never confirmed) subscribers whose latest confirmation link went
        out before `sent_before`; returns how many. Nothing else of theirs is stored."""
        t = subscribers_table
        with self._writing(), self.engine.begin() as conn:
            result = conn.execution_options(preserve_rowcount=True).execute(
                sa.delete(t).where(
                    t.c.status == "pending", t.c.confirm_sent_at < _to_db(sent_before)
                )
            )
        return int(result.rowcount)

    @_wrap_errors
    def import_subscribers(self, rows: Iterable[tuple[str, str]], *, now: datetime) -> int:
        """Add (email, name) pairs as active subscribers in batches; addresses already there
        are left as they are. Returns how many were new."""
        t = subscribers_table
        moment = _to_db(now)
        new = 0
        batch: list[dict[str, Any]] = []

        def flush() -> int:
            with self._writing(), self.engine.begin() as conn:
                before = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
                conn.execute(self._insert_ignore(t), batch)
                after = conn.execute(sa.select(sa.func.count()).select_from(t)).scalar_one()
            batch.clear()
            return int(after) - int(before)

        for email, name in rows:
            batch.append(
                {
                    "email": email,
                    "name": name,
                    "status": "active",
                    "bounce_count": 0,
                    "created_at": moment,
                    "confirmed_at": moment,
                }
            )
            if len(batch) >= 1000:
                new += flush()
        if batch:
            new += flush()
        return new

    @_wrap_errors
    def get_subscriber(
        self, *, subscriber_id: int | None = None, email: str | None = None
    ) -> Subscriber | None:
        t = subscribers_table
        query = sa.select(t)
        if subscriber_id is not None:
            query = query.where(t.c.id == subscriber_id)
        elif email is not None:
            query = query.where(t.c.email == email)
        else:
            return None
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _subscriber_from_row(row)

    @_wrap_errors
    def set_subscriber_status(
        self, subscriber_id: int, status: SubscriberStatus, *, now: datetime
    ) -> None:
        t = subscribers_table
        values: dict[str, Any] = {"status": status}
        if status == "active":
            values.update(confirmed_at=_to_db(now), unsubscribed_at=None, bounce_count=0)
        elif status == "unsubscribed":
            values.update(unsubscribed_at=_to_db(now))
        with self._writing(), self.engine.begin() as conn:
            conn.execute(t.update().where(t.c.id == subscriber_id).values(values))

    @_wrap_errors
    def delete_subscriber(self, subscriber_id: int) -> None:
        """Erase a subscriber and their outbox rows (a request to be forgotten)."""
        with self._writing(), self.engine.begin() as conn:
            conn.execute(outbox_table.delete().where(outbox_table.c.subscriber_id == subscriber_id))
            conn.execute(subscribers_table.delete().where(subscribers_table.c.id == subscriber_id))

    def iter_subscribers(self, status: SubscriberStatus | None = None) -> Iterator[Subscriber]:
        """Subscribers in the order they joined, streamed (never all in memory)."""
        t = subscribers_table
        query = sa.select(t).order_by(t.c.id)
        if status is not None:
            query = query.where(t.c.status == status)
        for row in self._stream(query):
            yield _subscriber_from_row(row)

    @_wrap_errors
    def count_subscribers(self) -> dict[str, int]:
        """Status -> how many subscribers have it."""
        t = subscribers_table
        query = sa.select(t.c.status, sa.func.count()).group_by(t.c.status)
        with self.engine.connect() as conn:
            return {status: int(n) for status, n in conn.execute(query)}

    # --- server (issue 7)

    @_wrap_errors
    def activate_subscriber(self, subscriber_id: int, *, now: datetime) -> bool:
        """Make a subscriber active unless they are already; True when this call did it.

        One conditional UPDATE, so two clicks on one confirmation link race harmlessly: only
        one of them sees True (and sends the welcome).
        """
        t = subscribers_table
        with self._writing(), self.engine.begin() as conn:
            result = conn.execute(
                t.update()
                .where(t.c.id == subscriber_id, t.c.status != "active")
                .values(
                    status="active",
                    confirmed_at=_to_db(now),
                    unsubscribed_at=None,
                    bounce_count=0,
                )
            )
        return result.rowcount == 1

    # ------------------------------------------------------------------ outbox (issue 5)

    def _insert_ignore(self, table: sa.Table) -> Any:
        # INSERT ... ON CONFLICT DO NOTHING: both databases we support spell it the same way.
        if self.engine.dialect.name == "postgresql":
            from sqlalchemy.dialects.postgresql import insert as pg_insert

            return pg_insert(table).on_conflict_do_nothing()
        from sqlalchemy.dialects.sqlite import insert as sqlite_insert

        return sqlite_insert(table).on_conflict_do_nothing()

    @_wrap_errors
    def enqueue_issue(self, issue_number: int, *, now: datetime) -> int:
        """Create one pending row per active subscriber, once per issue; returns rows created.

        The first `send` of an issue fixes its recipients; later runs only work through them.
        """
        o, s = outbox_table, subscribers_table
        already = sa.exists().where(o.c.issue_number == issue_number)
        source = sa.select(
            sa.literal(issue_number).label("issue_number"),
            s.c.id,
            sa.literal("pending").label("state"),
            sa.literal(0).label("attempts"),
            sa.literal(_to_db(now), sa.DateTime).label("next_attempt_at"),
        ).where(s.c.status == "active", ~already)
        insert = self._insert_ignore(o).from_select(
            ["issue_number", "subscriber_id", "state", "attempts", "next_attempt_at"], source
        )
        with self._writing(), self.engine.begin() as conn:
            # preserve_rowcount: psycopg 3 otherwise reports -1 for an INSERT ... SELECT.
            return int(conn.execution_options(preserve_rowcount=True).execute(insert).rowcount or 0)

    @_wrap_errors
    def has_outbox(self, issue_number: int) -> bool:
        o = outbox_table
        with self.engine.connect() as conn:
            query = sa.select(o.c.id).where(o.c.issue_number == issue_number).limit(1)
            return conn.execute(query).first() is not None

    def _due(self, issue_number: int, now: datetime) -> sa.ColumnElement[bool]:
        o = outbox_table
        return sa.and_(
            o.c.issue_number == issue_number,
            o.c.state.in_(("pending", "deferred")),
            o.c.next_attempt_at <= _to_db(now),
        )

    def _item_query(self) -> sa.Select[Any]:
        o, s = outbox_table, subscribers_table
        return sa.select(
            o.c.id,
            o.c.issue_number,
            o.c.subscriber_id,
            o.c.attempts,
            s.c.email,
            s.c.name,
            s.c.status,
        ).join(s, s.c.id == o.c.subscriber_id)

    @_wrap_errors
    def count_due(self, issue_number: int, *, now: datetime) -> int:
        o = outbox_table
        query = sa.select(sa.func.count()).select_from(o).where(self._due(issue_number, now))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    def iter_due(self, issue_number: int, *, now: datetime) -> Iterator[OutboxItem]:
        """Rows that are due, streamed, without claiming them (for a dry run)."""
        o = outbox_table
        query = self._item_query().where(self._due(issue_number, now)).order_by(o.c.id)
        for row in self._stream(query):
            yield _item_from_row(row)

    @_wrap_errors
    def claim_due(
        self, issue_number: int, *, worker: str, now: datetime, limit: int
    ) -> list[OutboxItem]:
        """Claim up to `limit` due, unclaimed rows for `worker` in one short transaction.

        On PostgreSQL rows another worker holds are skipped (FOR UPDATE SKIP LOCKED); on
        SQLite the single UPDATE ... RETURNING is atomic against other writers.
        """
        o = outbox_table
        claim = self.claim_statement(issue_number, worker=worker, now=now, limit=limit)
        with self._writing(), self.engine.begin() as conn:
            ids = list(conn.execute(claim).scalars())
            if not ids:
                return []
            rows = conn.execute(self._item_query().where(o.c.id.in_(ids)).order_by(o.c.id))
            return [_item_from_row(row) for row in rows]

    def claim_statement(
        self, issue_number: int, *, worker: str, now: datetime, limit: int
    ) -> sa.Update:
        """UPDATE ... WHERE id IN (SELECT ... FOR UPDATE SKIP LOCKED) RETURNING id."""
        o = outbox_table
        due = (
            sa.select(o.c.id)
            .where(self._due(issue_number, now), o.c.claimed_by.is_(None))
            .order_by(o.c.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        return (
            o.update()
            .where(o.c.id.in_(due))
            .values(claimed_by=worker, claimed_at=_to_db(now))
            .returning(o.c.id)
        )

    @_wrap_errors
    def finish_attempt(self, result: AttemptResult, *, bounce_threshold: int) -> None:
        """Record what one attempt did, and release the row's claim, in one transaction."""
        s = subscribers_table
        at = _to_db(result.at)
        params = {
            "row_id": result.item.id,
            "state": result.state,
            "at": at,
            "reply": result.reply[:2000],
            "message_id": result.message_id or None,
            "sent_at": at if result.state == "sent" else None,
            "next_at": _to_db(result.next_attempt_at),
        }
        subscriber = s.c.id == result.item.subscriber_id
        with self._writing(), self.engine.begin() as conn:
            # One prebuilt statement: this runs once per message sent, so it must be cheap.
            conn.execute(_FINISH_ATTEMPT, params)
            if result.state == "sent":
                conn.execute(_RESET_BOUNCES, {"subscriber_id": result.item.subscriber_id})
            elif result.hard_bounce:
                bounced = sa.and_(s.c.bounce_count + 1 >= bounce_threshold, s.c.status == "active")
                conn.execute(
                    s.update()
                    .where(subscriber)
                    .values(
                        bounce_count=s.c.bounce_count + 1,
                        status=sa.case((bounced, "bounced"), else_=s.c.status),
                    )
                )

    @_wrap_errors
    def skip(self, item: OutboxItem, *, reason: str, now: datetime) -> None:
        """The subscriber left before their turn: the row is done, nothing was sent."""
        o = outbox_table
        with self._writing(), self.engine.begin() as conn:
            conn.execute(
                o.update()
                .where(o.c.id == item.id)
                .values(
                    state="skipped",
                    last_reply=reason,
                    last_attempt_at=_to_db(now),
                    claimed_by=None,
                    claimed_at=None,
                )
            )

    @_wrap_errors
    def release_claims(
        self, *, worker: str | None = None, claimed_before: datetime | None = None
    ) -> int:
        """Give claimed rows back: one worker's, those older than a moment, or (neither) all."""
        o = outbox_table
        query = o.update().where(o.c.claimed_by.is_not(None))
        if worker is not None:
            query = query.where(o.c.claimed_by == worker)
        if claimed_before is not None:
            query = query.where(o.c.claimed_at < _to_db(claimed_before))
        with self._writing(), self.engine.begin() as conn:
            return int(conn.execute(query.values(claimed_by=None, claimed_at=None)).rowcount or 0)

    @_wrap_errors
    def requeue_failed(self, issue_number: int, *, now: datetime) -> int:
        """Queue an issue's failed rows again, with a fresh count of attempts."""
        o = outbox_table
        query = (
            o.update()
            .where(o.c.issue_number == issue_number, o.c.state == "failed")
            .values(state="pending", attempts=0, next_attempt_at=_to_db(now))
        )
        with self._writing(), self.engine.begin() as conn:
            return int(conn.execute(query).rowcount or 0)

    @_wrap_errors
    def sent_since(self, moment: datetime) -> int:
        """Messages handed to the server since `moment`, over every issue (the hourly limit)."""
        o = outbox_table
        query = sa.select(sa.func.count()).select_from(o).where(o.c.sent_at >= _to_db(moment))
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar_one())

    @_wrap_errors
    def delivery_status(self, issue_number: int, *, errors: int = 5) -> DeliveryStatus:
        """Outbox counts of one issue, its earliest retry and its latest errors."""
        o, s = outbox_table, subscribers_table
        with self.engine.connect() as conn:
            title = conn.execute(
                sa.select(issues_table.c.title).where(issues_table.c.number == issue_number)
            ).scalar()
            counts: dict[str, int] = dict(
                conn.execute(
                    sa.select(o.c.state, sa.func.count())
                    .where(o.c.issue_number == issue_number)
                    .group_by(o.c.state)
                ).all()
            )
            next_at = conn.execute(
                sa.select(sa.func.min(o.c.next_attempt_at)).where(
                    o.c.issue_number == issue_number, o.c.state == "deferred"
                )
            ).scalar()
            latest = conn.execute(
                sa.select(s.c.email, o.c.last_reply)
                .join(s, s.c.id == o.c.subscriber_id)
                .where(o.c.issue_number == issue_number, o.c.state.in_(("deferred", "failed")))
                .order_by(o.c.last_attempt_at.desc(), o.c.id.desc())
                .limit(errors)
            ).all()
        return DeliveryStatus(
            issue_number=issue_number,
            title=title or "",
            pending=int(counts.get("pending", 0)),
            sent=int(counts.get("sent", 0)),
            deferred=int(counts.get("deferred", 0)),
            failed=int(counts.get("failed", 0)),
            skipped=int(counts.get("skipped", 0)),
            next_attempt_at=_from_db(next_at),
            latest_errors=tuple(f"{email}: {reply}" for email, reply in latest),
        )

    @_wrap_errors
    def issues_with_outbox(self, limit: int) -> list[int]:
        """Numbers of the newest issues that have outbox rows, newest first."""
        o = outbox_table
        query = (
            sa.select(o.c.issue_number).distinct().order_by(o.c.issue_number.desc()).limit(limit)
        )
        with self.engine.connect() as conn:
            return [int(n) for n in conn.execute(query).scalars()]

    def iter_failed(self, issue_number: int) -> Iterator[FailedDelivery]:
        """Every failed recipient of an issue with the server's answer, streamed."""
        o, s = outbox_table, subscribers_table
        query = (
            sa.select(s.c.email, o.c.last_reply, o.c.attempts, o.c.last_attempt_at, o.c.message_id)
            .join(s, s.c.id == o.c.subscriber_id)
            .where(o.c.issue_number == issue_number, o.c.state == "failed")
            .order_by(o.c.id)
        )
        for row in self._stream(query):
            yield FailedDelivery(
                email=row.email,
                reply=row.last_reply or "",
                attempts=int(row.attempts),
                last_attempt_at=_from_db(row.last_attempt_at),
                message_id=row.message_id or "",
            )

    @contextmanager
    def sender_lock(self) -> Iterator[bool]:
        """Held while a `send` runs. SQLite: one sender at a time (a lock file beside the
        database, freed by the kernel even on SIGKILL); yields True, meaning any claim left in
        the outbox belongs to a dead run. Other databases: yields False; workers share."""
        database = self.url.database
        if self.url.get_backend_name() != "sqlite" or not database or database == ":memory:":
            yield False
            return
        path = Path(f"{database}.send-lock")
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        except OSError as exc:
            raise StoreError(
                f"cannot open the send lock ({exc.strerror})", where=str(path)
            ) from None
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise StoreError(
                    "another `publisher send` is running on this store",
                    where=str(path),
                    hint="wait for it to finish; it works through the same outbox",
                ) from None
            yield True
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ upstream feeds

    @_wrap_errors
    def feed_states(self) -> dict[str, FeedState]:
        """Configured feed URL -> its fetch state."""
        with self.engine.connect() as conn:
            return {
                row.url: _feed_state_from_row(row) for row in conn.execute(sa.select(feeds_table))
            }

    @_wrap_errors
    def feed_entries(
        self, feed_url: str, entry_keys: Collection[str], link_keys: Collection[str]
    ) -> list[StoredFeedEntry]:
        """Articles from this feed stored under any of these entry or link keys."""
        t = articles_table
        matches = []
        if entry_keys:
            matches.append(t.c.feed_entry_key.in_(list(entry_keys)))
        if link_keys:
            matches.append(t.c.feed_link_key.in_(list(link_keys)))
        if not matches:
            return []
        query = sa.select(
            t.c.id,
            t.c.slug,
            t.c.feed_entry_key,
            t.c.feed_link_key,
            t.c.content_hash,
            t.c.date,
            t.c.collected_at,
        ).where(t.c.source_kind == "feed", t.c.source == feed_url, sa.or_(*matches))
        with self.engine.connect() as conn:
            return [
                StoredFeedEntry(
                    article_id=row.id,
                    slug=row.slug,
                    entry_key=row.feed_entry_key,
                    link_key=row.feed_link_key,
                    content_hash=row.content_hash,
                    date=row.date.replace(tzinfo=UTC),
                    collected_at=row.collected_at.replace(tzinfo=UTC),
                )
                for row in conn.execute(query)
            ]

    @_wrap_errors
    def save_feed_poll(
        self,
        state: FeedState,
        writes: Sequence[FeedArticleWrite] = (),
        rekeys: Sequence[tuple[str, str, str | None]] = (),
    ) -> None:
        """Store one poll in one transaction: its articles, re-keyed entries and fetch state.

        `rekeys` are (article id, entry key, link key) of unchanged entries whose id or link
        changed upstream. An update keeps the stored slug and collected_at.
        """
        t = articles_table
        with self.engine.begin() as conn:
            inserts = [_feed_article_values(w) for w in writes if w.new]
            if inserts:
                conn.execute(t.insert(), inserts)
            for write in writes:
                if not write.new:
                    values = _feed_article_values(write)
                    for kept in ("id", "slug", "collected_at"):
                        values.pop(kept)
                    conn.execute(t.update().where(t.c.id == write.article.id).values(values))
            for article_id_, entry_key, link_key in rekeys:
                conn.execute(
                    t.update()
                    .where(t.c.id == article_id_)
                    .values(feed_entry_key=entry_key, feed_link_key=link_key)
                )
            values = _feed_state_values(state)
            f = feeds_table
            exists = conn.execute(sa.select(f.c.url).where(f.c.url == state.url)).first()
            if exists is None:
                conn.execute(f.insert().values(values))
            else:
                conn.execute(f.update().where(f.c.url == state.url).values(values))

    @_wrap_errors
    def rename_feed(self, old_url: str, new_url: str) -> None:
        """The editor put a moved feed's new address in the settings: keep its state and articles.

        Article ids stay as stored, so published permalinks and issue records are untouched.
        """
        with self.engine.begin() as conn:
            conn.execute(
                feeds_table.update()
                .where(feeds_table.c.url == old_url)
                .values(url=new_url, current_url=None)
            )
            t = articles_table
            conn.execute(
                t.update()
                .where(t.c.source_kind == "feed", t.c.source == old_url)
                .values(source=new_url)
            )

    # ------------------------------------------------------------------ locks, job runs (issue 6)

    @_wrap_errors
    def acquire_lock(
        self,
        name: str,
        *,
        token: str,
        pid: int,
        host: str,
        purpose: str,
        now: datetime,
        stale_before: datetime,
        alive: Callable[[int], bool],
    ) -> tuple[bool, LockHolder | None]:
        """Take the named lock for the holder `token` in one transaction.

        Returns (True, None) when it was free; (True, previous) when it was taken over from a
        dead holder (on this host with its process gone, or silent since `stale_before`);
        (False, holder) when a live holder has it. Two takers of one dead lock never both win:
        the takeover only replaces the row it read.
        """
        t = locks_table
        values = {
            "name": name,
            "token": token,
            "pid": pid,
            "host": host[:255],
            "purpose": purpose[:120],
            "since": _to_db(now),
            "heartbeat_at": _to_db(now),
        }
        # RETURNING says whether the row went in: an INSERT's rowcount is -1 on psycopg 3.
        insert = self._insert_ignore(t).values(values).returning(t.c.name)
        with self._writing(), self.engine.begin() as conn:
            for _ in range(2):
                if conn.execute(insert).first() is not None:
                    return True, None
                row = conn.execute(sa.select(t).where(t.c.name == name)).first()
                if row is not None:
                    break
            else:  # pragma: no cover - freed and taken again between every statement
                return False, None
            holder = _holder_from_row(row)
            dead = (row.host == host and not alive(int(row.pid))) or (
                holder.heartbeat_at < stale_before
            )
            if not dead:
                return False, holder
            replace = t.update().where(t.c.name == name, t.c.token == row.token).values(values)
            taken = conn.execute(replace).rowcount == 1
            return taken, holder

    @_wrap_errors
    def refresh_lock(self, name: str, token: str, *, now: datetime) -> bool:
        """The holder's heartbeat; False when the lock is no longer this holder's."""
        t = locks_table
        query = (
            t.update().where(t.c.name == name, t.c.token == token).values(heartbeat_at=_to_db(now))
        )
        with self._writing(), self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1

    @_wrap_errors
    def release_lock(self, name: str, token: str) -> bool:
        """Free the lock if this holder still has it; False when it had been taken over."""
        t = locks_table
        query = t.delete().where(t.c.name == name, t.c.token == token)
        with self._writing(), self.engine.begin() as conn:
            return conn.execute(query).rowcount == 1

    @_wrap_errors
    def lock_holders(self) -> list[LockHolder]:
        """Every held lock, by name."""
        with self.engine.connect() as conn:
            rows = conn.execute(sa.select(locks_table).order_by(locks_table.c.name))
            return [_holder_from_row(row) for row in rows]

    @_wrap_errors
    def save_job_run(self, run: JobRun) -> None:
        """Record the latest run of a job, replacing the one before."""
        t = job_runs_table
        values = {
            "outcome": run.outcome,
            "started_at": _to_db(run.started_at),
            "finished_at": _to_db(run.finished_at),
            "scheduled_for": _to_db(run.scheduled_for),
            "summary": run.summary[:2000],
            "issue_number": run.issue_number,
        }
        with self._writing(), self.engine.begin() as conn:
            if conn.execute(t.update().where(t.c.job == run.job).values(values)).rowcount == 0:
                conn.execute(self._insert_ignore(t).values(job=run.job, **values))

    @_wrap_errors
    def job_runs(self) -> dict[str, JobRun]:
        """Job name -> its latest recorded run."""
        with self.engine.connect() as conn:
            return {
                row.job: JobRun(
                    job=row.job,
                    outcome=row.outcome,
                    started_at=_from_db(row.started_at),
                    finished_at=_from_db(row.finished_at),
                    scheduled_for=_from_db(row.scheduled_for),
                    summary=row.summary or "",
                    issue_number=row.issue_number,
                )
                for row in conn.execute(sa.select(job_runs_table))
            }

    @_wrap_errors
    def job_next_runs(self) -> dict[str, datetime | None]:
        """Job id -> when the scheduler's job store will next run it (None: paused)."""
        t = apscheduler_jobs_table
        with self.engine.connect() as conn:
            return {
                job_id: None if when is None else datetime.fromtimestamp(when, UTC)
                for job_id, when in conn.execute(sa.select(t.c.id, t.c.next_run_time))
            }

    def job_store(self) -> Any:
        """APScheduler's SQLAlchemyJobStore on this store's engine and its migrated table."""
        from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore

        return SQLAlchemyJobStore(engine=self.engine, tablename=apscheduler_jobs_table.name)


def _holder_from_row(row: sa.Row[Any]) -> LockHolder:
    return LockHolder(
        name=row.name,
        pid=int(row.pid),
        host=row.host,
        purpose=row.purpose,
        since=row.since.replace(tzinfo=UTC),
        heartbeat_at=row.heartbeat_at.replace(tzinfo=UTC),
    )


def _subscriber_from_row(row: sa.Row[Any]) -> Subscriber:
    m = row._mapping
    return Subscriber(
        id=int(m["id"]),
        email=m["email"],
        name=m["name"] or "",
        status=m["status"],
        bounce_count=int(m["bounce_count"]),
        created_at=m["created_at"].replace(tzinfo=UTC),
        confirmed_at=_from_db(m["confirmed_at"]),
        unsubscribed_at=_from_db(m["unsubscribed_at"]),
    )


def _item_from_row(row: sa.Row[Any]) -> OutboxItem:
    return OutboxItem(
        id=int(row.id),
        issue_number=int(row.issue_number),
        subscriber_id=int(row.subscriber_id),
        email=row.email,
        name=row.name or "",
        subscriber_status=row.status,
        attempts=int(row.attempts),
    )


def _feed_article_values(write: FeedArticleWrite) -> dict[str, Any]:
    values = _article_values(write.article)
    values.update(
        feed_entry_key=write.entry_key,
        feed_link_key=write.link_key,
        content_hash=write.content_hash,
    )
    return values


def _feed_state_from_row(row: sa.Row[Any]) -> FeedState:
    return FeedState(
        url=row.url,
        name=row.name,
        current_url=row.current_url,
        etag=row.etag,
        last_modified=row.last_modified,
        body_hash=row.body_hash,
        last_polled=_from_db(row.last_polled),
        last_success=_from_db(row.last_success),
        failures=row.failures,
        next_attempt=_from_db(row.next_attempt),
        gone=bool(row.gone),
        last_error=row.last_error,
    )


def _feed_state_values(state: FeedState) -> dict[str, Any]:
    return {
        "url": state.url,
        "name": state.name,
        "current_url": state.current_url,
        "etag": state.etag,
        "last_modified": state.last_modified,
        "body_hash": state.body_hash,
        "last_polled": _to_db(state.last_polled),
        "last_success": _to_db(state.last_success),
        "failures": state.failures,
        "next_attempt": _to_db(state.next_attempt),
        "gone": state.gone,
        "last_error": state.last_error,
    }
