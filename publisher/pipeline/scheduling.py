"""Scheduling support: store-wide locks around use cases, job runs and schedule status."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from typing import Any

from publisher.delivery.smtp import smtp_password
from publisher.delivery.tokens import load_key
from publisher.locks import HeldLock, hold
from publisher.model import (
    DeliveryBacklog,
    JobRun,
    JobStatus,
    LockHolder,
    ScheduleStatus,
)
from publisher.settings import Settings
from publisher.store import Store

log = logging.getLogger(__name__)


JOB_NAMES = ("collect", "publish", "send")
# Lock name -> (what a second comer is told, what it can do).
_LOCK_TEXTS = {
    "scheduler": (
        "another `publisher run` is running on this store",
        "stop it first, or add --wait to take over when it stops",
    ),
    "publish": ("another publish is under way", "wait for it to end, or add --wait"),
    "send": ("another send is under way", "wait for it to end, or add --wait"),
}


@contextmanager
def exclusive(
    settings: Settings,
    name: str,
    *,
    purpose: str,
    wait: bool = False,
    stop: threading.Event | None = None,
    on_wait: Callable[[LockHolder], None] | None = None,
) -> Iterator[HeldLock]:
    """Hold the store-wide lock `name` ("scheduler", "publish" or "send") around a use case.

    Without `wait` a live holder makes this raise LockedError naming it (purpose, pid, host,
    since when); with `wait` it waits until the lock is free, or its holder dead, or `stop`
    is set (WaitStopped). Works the same on SQLite and PostgreSQL: the lock is a row.
    """
    busy, hint = _LOCK_TEXTS[name]
    with (
        Store.open(settings.database_url) as store,
        hold(
            store,
            name,
            purpose=purpose,
            timeout=settings.schedule.lock_timeout,
            busy=busy,
            hint=hint,
            wait=wait,
            stop=stop,
            on_wait=on_wait,
        ) as held,
    ):
        yield held


def record_job_run(settings: Settings, run: JobRun) -> None:
    """Remember a scheduled job's latest run (shown by `publisher status`)."""
    with Store.open(settings.database_url) as store:
        store.save_job_run(run)


def job_runs(settings: Settings) -> dict[str, JobRun]:
    with Store.open(settings.database_url) as store:
        return store.job_runs()


def delivery_backlog(settings: Settings, *, now: datetime) -> DeliveryBacklog:
    """The newest issue, whether its delivery has started, and how many messages are due."""
    with Store.open(settings.database_url) as store:
        issue = store.get_issue()
        if issue is None:
            return DeliveryBacklog(None, queued=False, due=0)
        return DeliveryBacklog(
            issue,
            queued=store.has_outbox(issue.number),
            due=store.count_due(issue.number, now=now),
        )


def schedule_status(settings: Settings) -> ScheduleStatus:
    """Each job's schedule, last run and next run, and who holds which lock now."""
    with Store.open(settings.database_url) as store:
        runs = store.job_runs()
        next_runs = store.job_next_runs()
        holders = store.lock_holders()
    jobs = tuple(
        JobStatus(
            job=name,
            schedule=getattr(settings.schedule, name),
            last=runs.get(name),
            next_run=next_runs.get(name) if getattr(settings.schedule, name) else None,
        )
        for name in JOB_NAMES
    )
    return ScheduleStatus(jobs=jobs, zone=str(settings.schedule_zone), locks=tuple(holders))


def check_send_ready(settings: Settings) -> None:
    """Fail now, not at the first scheduled send, when a secret delivery needs is missing."""
    load_key(settings)
    smtp_password(settings)


def open_job_store(settings: Settings) -> Any:
    """APScheduler's SQLAlchemyJobStore on the project's database (migrated first); the
    scheduler's shutdown closes it."""
    return Store.open(settings.database_url).job_store()
