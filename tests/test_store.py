"""The store: migrations upgrade in place, driver errors become StoreError, invariants hold."""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import sqlalchemy as sa
from alembic.config import Config
from alembic.script import ScriptDirectory

from publisher.errors import StoreError
from publisher.model import Issue
from publisher.store import HEAD_REVISION, MIGRATIONS_DIR, Store
from tests.factories import make_article

if TYPE_CHECKING:
    from multiprocessing.queues import Queue
    from multiprocessing.synchronize import Barrier


def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'nested' / 'store.db'}"


def test_head_revision_matches_the_newest_migration() -> None:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    assert ScriptDirectory.from_config(config).get_current_head() == HEAD_REVISION


def test_an_older_store_upgrades_in_place_keeping_its_articles(tmp_path: Path) -> None:
    url = db_url(tmp_path)
    with Store.open(url) as store:
        store.downgrade("0001")
        assert store.revision() == "0001"
        store.save_article(make_article(1), size=10, mtime_ns=5, content_hash="ab")
        assert not sa.inspect(store.engine).has_table("issues")
    with Store.open(url) as store:
        assert store.revision() == HEAD_REVISION
        assert sa.inspect(store.engine).has_table("issues")
        assert store.get_article(make_article(1).id) == make_article(1)


def _open_at_the_barrier(url: str, barrier: Barrier, answers: Queue[str]) -> None:
    barrier.wait()
    try:
        with Store.open(url) as store:
            answers.put(f"ok {store.revision()}")
    except StoreError as exc:
        answers.put(f"failed: {exc}")


def _connect_at_the_barrier(url: str, barrier: Barrier, answers: Queue[str]) -> None:
    store = Store(url)
    barrier.wait()
    try:
        with store.engine.connect() as conn:
            answers.put(str(conn.exec_driver_sql("PRAGMA journal_mode").scalar()))
    except sa.exc.OperationalError as exc:
        answers.put(f"failed: {exc}")
    finally:
        store.close()


def _open_together(
    url: str, processes: int, target: Callable[..., None] = _open_at_the_barrier
) -> list[str]:
    """`target` (Store.open(url)) in `processes` forked processes released at one moment."""
    import alembic.command  # imported once here, so the children reach the migration together

    assert alembic.command
    context = multiprocessing.get_context("fork")
    barrier, answers = context.Barrier(processes), context.Queue()
    children = [
        context.Process(target=target, args=(url, barrier, answers)) for _ in range(processes)
    ]
    for child in children:
        child.start()
    results = [answers.get(timeout=60) for _ in children]
    for child in children:
        child.join(timeout=60)
    return sorted(results)


@pytest.fixture(params=["sqlite", "postgresql"])
def new_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A store no process has opened yet (on PostgreSQL: the scratch database emptied)."""
    if request.param == "sqlite":
        return db_url(tmp_path)
    postgres_url: str = request.getfixturevalue("postgres_url")
    engine = sa.create_engine(postgres_url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP SCHEMA public CASCADE")
        conn.exec_driver_sql("CREATE SCHEMA public")
    engine.dispose()
    return postgres_url


@pytest.mark.parametrize("attempt", range(3))
def test_processes_opening_a_new_store_at_once_all_get_it_migrated(
    new_store_url: str, attempt: int
) -> None:
    # A scheduler and a server started together on a new site: before, one of them failed
    # ("table articles already exists" on SQLite, a duplicate key in pg_type on PostgreSQL).
    assert _open_together(new_store_url, processes=3) == [f"ok {HEAD_REVISION}"] * 3


def test_processes_connecting_to_a_new_file_at_once_all_switch_it_to_wal(tmp_path: Path) -> None:
    # SQLite may answer the WAL pragma "database is locked" at once, not after its busy
    # timeout: before, between one round in ten and most rounds failed here.
    for round_ in range(20):
        url = f"sqlite:///{tmp_path / f'store-{round_}.db'}"
        assert _open_together(url, 5, _connect_at_the_barrier) == ["wal"] * 5


def test_processes_upgrading_an_older_store_at_once_keep_its_articles(tmp_path: Path) -> None:
    url = db_url(tmp_path)
    with Store.open(url) as store:
        store.downgrade("0002")
        store.save_article(make_article(1), size=10, mtime_ns=5, content_hash="ab")
    assert _open_together(url, processes=3) == [f"ok {HEAD_REVISION}"] * 3
    with Store.open(url) as store:
        assert store.get_article(make_article(1).id) == make_article(1)


def test_a_store_with_published_issues_migrates_down_and_up_keeping_them(
    tmp_path: Path,
) -> None:
    url = db_url(tmp_path)
    article = make_article(1)
    with Store.open(url) as store:
        store.save_article(article, size=10, mtime_ns=5, content_hash="ab")
        store.save_issue(Issue(1, "2026-11-24", article.date, "T #1", (article.id,)))
        store.downgrade("0002")  # before, 0003's table copy of articles broke a foreign key
        assert store.get_issue(1) is not None
    with Store.open(url) as store:
        assert store.revision() == HEAD_REVISION
        assert store.get_issue(1) == Issue(1, "2026-11-24", article.date, "T #1", (article.id,))
        assert store.get_article(article.id) == article


def test_sqlite_runs_in_wal_mode(tmp_path: Path) -> None:
    with Store.open(db_url(tmp_path)) as store, store.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"


def test_a_file_that_is_not_a_database_gives_store_error(tmp_path: Path) -> None:
    path = tmp_path / "broken.db"
    path.write_bytes(b"this is not sqlite" * 100)
    with pytest.raises(StoreError) as caught:
        Store.open(f"sqlite:///{path}")
    assert str(caught.value).startswith(f"sqlite:///{path}: database error: DatabaseError")
    assert "check the store settings" in str(caught.value)


def test_article_round_trips_with_its_timezone_and_tags(tmp_path: Path) -> None:
    article = make_article(3, tags=("café", "news"), author=None, draft=True)
    with Store.open(db_url(tmp_path)) as store:
        store.save_article(article)
        assert store.get_article(article.id) == article
        assert store.unissued_articles() == []  # drafts are never issued


def test_an_article_can_be_in_one_issue_only(tmp_path: Path) -> None:
    one, two = make_article(1), make_article(2)
    with Store.open(db_url(tmp_path)) as store:
        store.save_article(one)
        store.save_article(two)
        issue = Issue(1, "2026-11-24", one.date, "T #1", (one.id,))
        store.save_issue(issue)
        assert [a.id for a in store.unissued_articles()] == [two.id]
        with pytest.raises(StoreError, match="IntegrityError"):
            store.save_issue(Issue(2, "2026-11-25", one.date, "T #2", (two.id, one.id)))
        # The failed issue left nothing behind.
        assert [a.id for a in store.unissued_articles()] == [two.id]
        assert store.get_issue() == issue
        assert store.issues_with_titles() == [(issue, (one.title,))]


def test_issue_listing_gives_first_titles_and_counts(tmp_path: Path) -> None:
    articles = [make_article(n) for n in range(1, 8)]
    with Store.open(db_url(tmp_path)) as store:
        for article in articles:
            store.save_article(article)
        first = Issue(1, "2026-11-24", articles[0].date, "T #1", tuple(a.id for a in articles[:6]))
        second = Issue(2, "2026-11-25", articles[0].date, "T #2", (articles[6].id,))
        store.save_issue(first)
        store.save_issue(second)
        listing = store.issue_listing(titles_per_issue=2)
    assert [(issue.number, titles, total) for issue, titles, total in listing] == [
        (2, (articles[6].title,), 1),
        (1, (articles[0].title, articles[1].title), 6),
    ]
