"""The store's delivery tables: subscribers, the outbox and its claims, on a real SQLite file."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.errors import StoreError
from publisher.model import AttemptResult, Issue
from publisher.store import HEAD_REVISION, MIGRATIONS_DIR, Store

NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)


def with_two_issues(store: Store) -> Store:
    store.save_issue(Issue(1, "2026-11-24", NOW, "One", ()))
    store.save_issue(Issue(2, "2026-11-25", NOW, "Two", ()))
    return store


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    with Store.open(f"sqlite:///{tmp_path / 'state' / 'p.db'}") as store:
        yield with_two_issues(store)


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same SQL on both databases the store supports (PostgreSQL emptied first)."""
    if request.param == "sqlite":
        yield request.getfixturevalue("sqlite_store")
        return
    yield with_two_issues(request.getfixturevalue("postgres_store"))


def people(store: Store, count: int) -> list[int]:
    store.import_subscribers(((f"p{n}@example.org", f"P {n}") for n in range(count)), now=NOW)
    return [s.id for s in store.iter_subscribers()]


def test_head_revision_is_the_newest_migration_file() -> None:
    files = sorted(p.name for p in (MIGRATIONS_DIR / "versions").glob("0*.py"))
    assert files[-1].startswith(HEAD_REVISION)


def test_migration_down_and_up_again(store: Store) -> None:
    store.downgrade("0002")
    with store.engine.connect() as conn:
        assert not sa.inspect(conn).has_table("outbox")
    store.migrate()
    with store.engine.connect() as conn:
        assert {"subscribers", "outbox"} <= set(sa.inspect(conn).get_table_names())
    assert store.revision() == HEAD_REVISION


def test_migration_0006_dates_old_sign_ups_by_their_first_request_and_keeps_the_outbox(
    store: Store,
) -> None:
    people(store, 2)
    store.enqueue_issue(1, now=NOW)
    store.downgrade("0005")
    with store.engine.begin() as conn:  # the 0005 table, without the new column
        conn.execute(
            sa.text(
                "INSERT INTO subscribers (email, name, status, bounce_count, created_at) "
                "VALUES (:email, '', 'pending', 0, :created)"
            ),
            [
                {"email": "late@example.org", "created": NOW.replace(tzinfo=None) - timedelta(3)},
                {"email": "new@example.org", "created": NOW.replace(tzinfo=None)},
            ],
        )

    store.migrate()

    columns = {c["name"] for c in sa.inspect(store.engine).get_columns("subscribers")}
    assert "confirm_sent_at" in columns
    assert store.delete_expired_signups(sent_before=NOW - timedelta(days=2)) == 1
    assert sorted(s.email for s in store.iter_subscribers()) == [
        "new@example.org",
        "p0@example.org",
        "p1@example.org",
    ]
    assert store.delivery_status(1).pending == 2  # a table copy would have cascaded them away


def test_the_database_refuses_a_second_row_for_the_same_issue_and_subscriber(
    store: Store,
) -> None:
    people(store, 1)
    assert store.enqueue_issue(1, now=NOW) == 1
    with pytest.raises(sa.exc.IntegrityError, match=r"(?i)unique"), store.engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO outbox (issue_number, subscriber_id, state, attempts, "
                "next_attempt_at) SELECT 1, id, 'pending', 0, '2026-01-01' FROM subscribers"
            )
        )


def test_enqueue_takes_active_subscribers_once_per_issue(store: Store) -> None:
    ids = people(store, 5)
    store.set_subscriber_status(ids[0], "unsubscribed", now=NOW)

    assert store.enqueue_issue(1, now=NOW) == 4
    store.import_subscribers([("late@example.org", "")], now=NOW)
    assert store.enqueue_issue(1, now=NOW) == 0  # the first send fixed the recipients
    assert store.enqueue_issue(2, now=NOW) == 5
    assert store.delivery_status(1).pending == 4


def test_two_workers_never_claim_the_same_row(store: Store, tmp_path: Path) -> None:
    people(store, 250)
    store.enqueue_issue(1, now=NOW)
    other = Store.open(store.url.render_as_string(hide_password=False))
    seen: list[int] = []
    for turn in range(6):
        worker, db = ("a", store) if turn % 2 == 0 else ("b", other)
        seen += [i.id for i in db.claim_due(1, worker=worker, now=NOW, limit=50)]

    assert len(seen) == len(set(seen)) == 250
    assert store.claim_due(1, worker="a", now=NOW, limit=50) == []
    assert store.release_claims(worker="b") == 100
    assert len(store.claim_due(1, worker="a", now=NOW, limit=500)) == 100


def test_rows_wait_until_due_and_stale_claims_are_released(store: Store) -> None:
    people(store, 2)
    store.enqueue_issue(1, now=NOW)
    first, second = store.claim_due(1, worker="w", now=NOW, limit=10)
    later = NOW + timedelta(minutes=10)
    store.finish_attempt(
        AttemptResult(first, "deferred", "451 later", NOW, "<m1@x>", next_attempt_at=later),
        bounce_threshold=3,
    )

    assert store.claim_due(1, worker="v", now=NOW, limit=10) == []  # deferred, and claimed
    assert store.release_claims(claimed_before=NOW - timedelta(minutes=1)) == 0
    assert store.release_claims(claimed_before=NOW + timedelta(minutes=1)) == 1
    assert [i.id for i in store.claim_due(1, worker="v", now=NOW, limit=10)] == [second.id]
    again = store.claim_due(1, worker="v", now=later, limit=10)
    assert [(i.id, i.attempts) for i in again] == [(first.id, 1)]
    status = store.delivery_status(1)
    assert (status.deferred, status.pending, status.next_attempt_at) == (1, 1, later)
    assert status.latest_errors == ("p0@example.org: 451 later",)


def test_hard_bounces_mark_a_subscriber_bounced_at_the_threshold(store: Store) -> None:
    [sid] = people(store, 1)
    for issue in (1, 2):
        store.enqueue_issue(issue, now=NOW)
        [item] = store.claim_due(issue, worker="w", now=NOW, limit=1)
        store.finish_attempt(
            AttemptResult(item, "failed", "550 no", NOW, "<m@x>", hard_bounce=True),
            bounce_threshold=2,
        )
        subscriber = store.get_subscriber(subscriber_id=sid)
        assert subscriber is not None
        assert (subscriber.bounce_count, subscriber.status) == (
            (1, "active") if issue == 1 else (2, "bounced")
        )


def test_a_delivered_message_resets_the_bounce_count(store: Store) -> None:
    [sid] = people(store, 1)
    store.enqueue_issue(1, now=NOW)
    store.enqueue_issue(2, now=NOW)
    one = store.claim_due(1, worker="w", now=NOW, limit=1)[0]
    two = store.claim_due(2, worker="w", now=NOW, limit=1)[0]
    store.finish_attempt(
        AttemptResult(one, "failed", "550", NOW, hard_bounce=True), bounce_threshold=3
    )
    store.finish_attempt(AttemptResult(two, "sent", "250 ok", NOW, "<m@x>"), bounce_threshold=3)

    subscriber = store.get_subscriber(subscriber_id=sid)
    assert subscriber is not None and subscriber.bounce_count == 0
    assert store.sent_since(NOW - timedelta(hours=1)) == 1
    assert store.sent_since(NOW + timedelta(seconds=1)) == 0


def test_failed_rows_can_be_queued_again(store: Store) -> None:
    people(store, 3)
    store.enqueue_issue(1, now=NOW)
    for item in store.claim_due(1, worker="w", now=NOW, limit=2):
        store.finish_attempt(AttemptResult(item, "failed", "554 no", NOW), bounce_threshold=3)

    assert [f.reply for f in store.iter_failed(1)] == ["554 no", "554 no"]
    assert store.requeue_failed(1, now=NOW) == 2
    assert store.delivery_status(1).pending == 3
    assert list(store.iter_failed(1)) == []


def test_import_is_idempotent_and_keeps_an_unsubscribed_status(store: Store) -> None:
    rows = [(f"p{n}@example.org", "") for n in range(2500)]

    assert store.import_subscribers(rows, now=NOW) == 2500
    victim = store.get_subscriber(email="p7@example.org")
    assert victim is not None
    store.set_subscriber_status(victim.id, "unsubscribed", now=NOW)
    assert store.import_subscribers(rows, now=NOW) == 0
    assert store.count_subscribers() == {"active": 2499, "unsubscribed": 1}


def test_erasing_a_subscriber_removes_their_outbox_rows(store: Store) -> None:
    ids = people(store, 2)
    store.enqueue_issue(1, now=NOW)
    store.delete_subscriber(ids[0])

    assert store.get_subscriber(subscriber_id=ids[0]) is None
    assert store.delivery_status(1).pending == 1


def test_only_one_sender_at_a_time_on_sqlite(sqlite_store: Store) -> None:
    with sqlite_store.sender_lock() as only:
        assert only is True
        other = Store(str(sqlite_store.url))
        with (
            pytest.raises(StoreError, match="another `publisher send` is running"),
            other.sender_lock(),
        ):
            pass
    with sqlite_store.sender_lock() as only:  # released again
        assert only


def test_workers_claiming_at_once_never_share_a_row(store: Store) -> None:
    # PostgreSQL: `publisher send --shared` workers, each skipping the rows another has
    # locked; SQLite: one writer at a time. Either way every row goes to exactly one worker.
    people(store, 400)
    store.enqueue_issue(1, now=NOW)
    gate = threading.Barrier(4)
    claimed: dict[str, list[int]] = {}

    def work(worker: str) -> None:
        with Store.open(store.url.render_as_string(hide_password=False)) as own:
            gate.wait()
            mine = claimed.setdefault(worker, [])
            for _ in range(40):  # 16 claims of 25 empty the outbox, however they are shared
                batch = own.claim_due(1, worker=worker, now=NOW, limit=25)
                if not batch:
                    break
                mine += [item.id for item in batch]

    threads = [threading.Thread(target=work, args=(f"w{n}",)) for n in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    everything = [row for rows in claimed.values() for row in rows]
    assert len(everything) == len(set(everything)) == 400


def test_the_claim_locks_rows_only_where_the_database_can_skip_them(
    sqlite_store: Store,
) -> None:
    """The SQL of a claim: PostgreSQL workers skip each other's locked rows; SQLite has one
    writer, and its UPDATE is atomic."""
    from sqlalchemy.dialects import postgresql

    claim = sqlite_store.claim_statement(1, worker="w", now=NOW, limit=100)
    sql = " ".join(str(claim.compile(dialect=postgresql.dialect())).split())

    assert sql.startswith("UPDATE outbox SET claimed_by=")
    assert "WHERE outbox.id IN (SELECT outbox.id FROM outbox WHERE" in sql
    assert "FOR UPDATE SKIP LOCKED) RETURNING outbox.id" in sql
    sqlite_sql = str(claim.compile(dialect=sqlite_store.engine.dialect))
    assert "FOR UPDATE" not in sqlite_sql
