"""The store: the only module that speaks SQL (SQLAlchemy Core; SQLite or PostgreSQL)."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import sqlalchemy as sa
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.exc import SQLAlchemyError

from publisher.errors import StoreError
from publisher.model import Article, FeedState, Issue, SourceKind

# The newest migration in publisher/migrations/versions; a test keeps the two in step.
HEAD_REVISION = "0003"
MIGRATIONS_DIR = Path(__file__).parent / "migrations"

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
        engine = sa.create_engine(self.url, connect_args={"timeout": 30})

        @sa.event.listens_for(engine, "connect")
        def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute("PRAGMA journal_mode=WAL")
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
            if not sa.inspect(conn).has_table("alembic_version"):
                return None
            return conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()

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
            config.attributes["connection"] = conn
            getattr(command, verb)(config, revision)

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
    def list_issues(self, limit: int | None = None) -> list[Issue]:
        """Issues newest first, without their article lists (article_ids is empty)."""
        query = sa.select(issues_table).order_by(issues_table.c.number.desc()).limit(limit)
        with self.engine.connect() as conn:
            return [
                Issue(
                    number=row.number,
                    folder=row.folder,
                    published_at=row.published_at.replace(tzinfo=UTC),
                    title=row.title,
                    article_ids=(),
                )
                for row in conn.execute(query)
            ]

    @_wrap_errors
    def articles_by_id(self, article_ids: list[str]) -> dict[str, Article]:
        if not article_ids:
            return {}
        query = sa.select(articles_table).where(articles_table.c.id.in_(article_ids))
        with self.engine.connect() as conn:
            return {row.id: _article_from_row(row) for row in conn.execute(query)}

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
