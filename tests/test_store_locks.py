"""The store's locks and job runs (migration 0005): one holder per name, dead holders replaced."""

from __future__ import annotations

import os
import pickle
import socket
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher.locks import process_alive
from publisher.model import Issue, JobRun, LockHolder
from publisher.store import Store, metadata

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
HOST = socket.gethostname()


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'state' / 'store.db'}"
    emptied: Store = request.getfixturevalue("postgres_store")
    return emptied.url.render_as_string(hide_password=False)


def store_at(url: str) -> Store:
    return Store.open(url)


def dead_pid() -> int:
    """The id of a process that has exited (and been reaped) on this machine."""
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    child.wait()
    return child.pid


def acquire(
    store: Store,
    token: str,
    *,
    pid: int | None = None,
    host: str = HOST,
    now: datetime = NOW,
    timeout: float = 60,
    purpose: str = "publisher run",
) -> tuple[bool, LockHolder | None]:
    return store.acquire_lock(
        "publish",
        token=token,
        pid=os.getpid() if pid is None else pid,
        host=host,
        purpose=purpose,
        now=now,
        stale_before=now - timedelta(seconds=timeout),
        alive=process_alive,  # the real check: signal 0 to the pid
    )


@pytest.fixture
def dead() -> int:
    return dead_pid()


def test_a_free_lock_is_taken_and_a_second_comer_learns_the_holder(url: str) -> None:
    with store_at(url) as store:
        assert acquire(store, "a" * 32) == (True, None)
        taken, holder = acquire(store, "b" * 32, now=NOW + timedelta(seconds=5))
        assert not taken
        assert holder is not None
        assert (holder.name, holder.pid, holder.host) == ("publish", os.getpid(), HOST)
        assert holder.since == NOW
        assert holder.describe() == (
            f"publisher run (pid {os.getpid()} on {HOST}, since 2026-11-24 06:00:00 UTC)"
        )


def test_release_frees_the_lock_only_for_its_holder(url: str) -> None:
    with store_at(url) as store:
        acquire(store, "a" * 32)
        assert store.release_lock("publish", "b" * 32) is False  # not the holder
        assert acquire(store, "b" * 32)[0] is False
        assert store.release_lock("publish", "a" * 32) is True
        assert store.lock_holders() == []
        assert acquire(store, "b" * 32) == (True, None)


def test_a_lock_whose_process_died_on_this_host_is_taken_over_at_once(url: str, dead: int) -> None:
    with store_at(url) as store:
        acquire(store, "a" * 32, pid=dead)
        taken, previous = acquire(store, "b" * 32, now=NOW + timedelta(seconds=1))
        assert taken
        assert previous is not None and previous.pid == dead
        [holder] = store.lock_holders()
        assert (holder.pid, holder.since) == (os.getpid(), NOW + timedelta(seconds=1))
        assert store.refresh_lock("publish", "a" * 32, now=NOW) is False  # the dead one lost it


def test_a_holder_on_another_host_is_trusted_until_its_heartbeat_is_stale(
    url: str, dead: int
) -> None:
    with store_at(url) as store:
        # A dead pid on another machine means nothing here: only the heartbeat counts.
        acquire(store, "a" * 32, pid=dead, host="elsewhere")
        assert acquire(store, "b" * 32, now=NOW + timedelta(seconds=59))[0] is False
        assert store.refresh_lock("publish", "a" * 32, now=NOW + timedelta(seconds=50))
        assert acquire(store, "b" * 32, now=NOW + timedelta(seconds=100))[0] is False
        taken, previous = acquire(store, "b" * 32, now=NOW + timedelta(seconds=111))
        assert taken and previous is not None
        assert previous.host == "elsewhere"


def test_two_takers_of_one_dead_lock_cannot_both_win(url: str, dead: int) -> None:
    with store_at(url) as store:
        acquire(store, "a" * 32, pid=dead)
        first = acquire(store, "b" * 32)
        second = acquire(store, "c" * 32)
        assert first[0] is True
        assert second[0] is False  # the first taker is alive: it holds the lock now
        [holder] = store.lock_holders()
        assert store.refresh_lock("publish", "b" * 32, now=NOW)
        assert not store.refresh_lock("publish", "c" * 32, now=NOW)
        assert holder.name == "publish"


def test_locks_of_different_names_are_independent(url: str) -> None:
    with store_at(url) as store:
        acquire(store, "a" * 32)
        kwargs = {"pid": os.getpid(), "host": HOST, "now": NOW, "stale_before": NOW}
        assert store.acquire_lock(
            "send", token="b" * 32, purpose="publisher send", alive=lambda p: True, **kwargs
        ) == (True, None)
        assert [h.name for h in store.lock_holders()] == ["publish", "send"]


def test_job_runs_keep_the_latest_run_of_each_job(url: str) -> None:
    with store_at(url) as store:
        store.save_job_run(JobRun("publish", "running", started_at=NOW))
        store.save_job_run(
            JobRun(
                "publish",
                "ok",
                started_at=NOW,
                finished_at=NOW + timedelta(seconds=3),
                summary="issue #4 in 2026-11-24/",
                issue_number=4,
            )
        )
        store.save_job_run(JobRun("collect", "failed", started_at=NOW, summary="x" * 5000))
        runs = store.job_runs()
    assert set(runs) == {"publish", "collect"}
    assert runs["publish"] == JobRun(
        "publish",
        "ok",
        started_at=NOW,
        finished_at=NOW + timedelta(seconds=3),
        summary="issue #4 in 2026-11-24/",
        issue_number=4,
    )
    assert len(runs["collect"].summary) == 2000  # kept short


def test_next_runs_are_read_from_the_scheduler_job_store_table(url: str) -> None:
    when = datetime(2026, 11, 24, 6, 0, 30, tzinfo=UTC)
    with store_at(url) as store, store.engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO apscheduler_jobs VALUES (:id, :t, :s)"),
            [
                {"id": "publish", "t": when.timestamp(), "s": pickle.dumps({})},
                {"id": "send", "t": None, "s": pickle.dumps({})},
            ],
        )
    with store_at(url) as store:
        assert store.job_next_runs() == {"publish": when, "send": None}


def test_migration_0005_upgrades_a_delivery_store_and_matches_the_metadata(
    tmp_path: Path,
) -> None:
    with Store.open(f"sqlite:///{tmp_path / 'state' / 'store.db'}") as store:
        store.downgrade("0004")
        assert not sa.inspect(store.engine).has_table("locks")
        store.save_issue(Issue(1, "2026-11-24", NOW, "T #1", ()))
    with Store.open(f"sqlite:///{tmp_path / 'state' / 'store.db'}") as store:
        inspector = sa.inspect(store.engine)
        for name in ("locks", "job_runs", "apscheduler_jobs"):
            columns = {c["name"] for c in inspector.get_columns(name)}
            assert columns == set(metadata.tables[name].columns.keys()), name
        assert store.get_issue(1) is not None  # kept across the upgrade
        job_store = store.job_store()
        assert job_store.jobs_t.name == "apscheduler_jobs"
