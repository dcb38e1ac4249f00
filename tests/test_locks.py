"""Holding a lock: a second comer is told who holds it, or waits; the heartbeat keeps it."""

from __future__ import annotations

import os
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest
import sqlalchemy as sa

from publisher import pipeline
from publisher.errors import LockedError
from publisher.locks import WaitStopped, hold
from publisher.model import LockHolder
from publisher.store import Store, locks_table
from tests.conftest import Site


def wait_for(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def store_at(tmp_path: Path) -> Store:
    return Store.open(f"sqlite:///{tmp_path / 'locks.db'}")


def test_a_second_comer_gets_one_line_naming_the_holder(site: Site) -> None:
    settings = site.settings()
    with (
        pipeline.exclusive(settings, "publish", purpose="publisher run: publish"),
        pytest.raises(LockedError) as caught,
        pipeline.exclusive(settings, "publish", purpose="publisher publish"),
    ):
        pass  # pragma: no cover - never reached
    message = str(caught.value)
    assert "\n" not in message
    assert message.startswith(
        f"another publish is under way: publisher run: publish (pid {os.getpid()} on "
        f"{socket.gethostname()}, since {datetime.now(UTC):%Y-%m-%d}"
    )
    assert message.endswith("UTC); wait for it to end, or add --wait")


def test_the_lock_is_free_again_after_the_block_even_when_it_raised(site: Site) -> None:
    settings = site.settings()
    with (
        pytest.raises(RuntimeError),
        pipeline.exclusive(settings, "send", purpose="publisher send"),
    ):
        raise RuntimeError("boom")
    with pipeline.exclusive(settings, "send", purpose="publisher send"):
        assert [h.name for h in pipeline.schedule_status(settings).locks] == ["send"]
    assert pipeline.schedule_status(settings).locks == ()


def test_a_waiter_is_told_once_and_gets_the_lock_when_the_holder_lets_go(site: Site) -> None:
    settings = site.settings()
    told: list[LockHolder] = []
    order: list[str] = []
    first_in = threading.Event()
    let_go = threading.Event()

    def first() -> None:
        with pipeline.exclusive(settings, "publish", purpose="first"):
            first_in.set()
            let_go.wait(20)
            order.append("first out")

    thread = threading.Thread(target=first)
    thread.start()
    first_in.wait(20)
    threading.Timer(1.0, let_go.set).start()
    with pipeline.exclusive(settings, "publish", purpose="second", wait=True, on_wait=told.append):
        order.append("second in")
    thread.join()
    assert order == ["first out", "second in"]
    assert [h.purpose for h in told] == ["first"]


def test_a_stop_ends_the_wait_without_taking_the_lock(tmp_path: Path) -> None:
    stop = threading.Event()
    with (
        store_at(tmp_path) as store,
        hold(store, "publish", purpose="holder", timeout=60, busy="busy", hint="h"),
    ):
        threading.Timer(0.3, stop.set).start()
        started = time.monotonic()
        with (
            pytest.raises(WaitStopped),
            hold(
                store,
                "publish",
                purpose="waiter",
                timeout=60,
                busy="busy",
                hint="h",
                wait=True,
                stop=stop,
            ),
        ):
            pass  # pragma: no cover - never reached
        assert time.monotonic() - started < 5
        assert [h.purpose for h in store.lock_holders()] == ["holder"]


def test_the_heartbeat_moves_while_held_and_a_takeover_is_noticed(tmp_path: Path) -> None:
    with (
        store_at(tmp_path) as store,
        hold(store, "send", purpose="sender", timeout=4, busy="b", hint="h") as held,
    ):
        [before] = store.lock_holders()
        wait_for(lambda: store.lock_holders()[0].heartbeat_at > before.heartbeat_at)
        assert not held.lost.is_set()
        # Another process decided this one was dead and replaced the row.
        with store.engine.begin() as conn:
            conn.execute(sa.update(locks_table).values(token="z" * 32, pid=1))
        wait_for(held.lost.is_set)
    # Releasing left the other holder's row alone.
    with store_at(tmp_path) as store:
        assert [h.pid for h in store.lock_holders()] == [1]
