"""The scheduler's pure parts: when a delivery resumes at start, and the one-line summaries."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import pytest

from publisher.model import (
    CollectReport,
    DeliveryBacklog,
    DeliveryStatus,
    Issue,
    JobRun,
    Problem,
    PublishReport,
    SendReport,
)
from publisher.scheduler import (
    collect_line,
    job_label,
    publish_line,
    send_line,
    should_resume_send,
)

PUBLISHED = datetime(2026, 11, 24, 6, 0, 5, tzinfo=UTC)
ISSUE = Issue(3, "2026-11-24", PUBLISHED, "Dispatch #3: Lights", ("a", "b"))
JOB_START = PUBLISHED - timedelta(seconds=5)


def backlog(*, queued: bool, due: int = 0, issue: Issue | None = ISSUE) -> DeliveryBacklog:
    return DeliveryBacklog(issue, queued=queued, due=due)


@pytest.mark.parametrize(
    ("state", "last_publish", "follows", "expected"),
    [
        # Nothing published: nothing to resume.
        (backlog(queued=False, issue=None), None, True, False),
        # A send was cut short: its due messages go on, whoever started it.
        (backlog(queued=True, due=12), None, False, True),
        (backlog(queued=True, due=0), None, True, False),
        # The publish job published #3 and stopped before the send that follows it.
        (
            backlog(queued=False),
            JobRun("publish", "stopped", JOB_START, issue_number=3),
            True,
            True,
        ),
        (backlog(queued=False), JobRun("publish", "ok", JOB_START, issue_number=3), False, False),
        # #3 came from a manual `publisher publish`: the scheduler does not send it by itself.
        (backlog(queued=False), JobRun("publish", "ok", JOB_START, issue_number=2), True, False),
        # The publish job died (SIGKILL) after saving #3, before recording that it had.
        (backlog(queued=False), JobRun("publish", "running", JOB_START), True, True),
        (
            backlog(queued=False),
            JobRun("publish", "running", PUBLISHED + timedelta(hours=1)),
            True,
            False,
        ),
    ],
)
def test_when_a_delivery_resumes_at_start(
    state: DeliveryBacklog, last_publish: JobRun | None, follows: bool, expected: bool
) -> None:
    assert should_resume_send(state, last_publish, follows) is expected


def test_collect_line() -> None:
    report = CollectReport(
        new=2,
        updated=1,
        unchanged=40,
        source_missing=("gone.txt",),
        problems=(Problem("articles/bad.txt", "not UTF-8"),),
    )
    assert collect_line(report) == ("2 new, 1 updated, 40 unchanged, 1 failed, 1 source missing")


def test_publish_line() -> None:
    assert publish_line(PublishReport(issue=None)) == "nothing new to publish"
    assert publish_line(PublishReport(issue=ISSUE, digest_form="summary")) == (
        "issue #3 in 2026-11-24/ with 2 article(s), digest summary: Dispatch #3: Lights"
    )


def test_send_line_says_what_happened_and_what_is_left() -> None:
    status = DeliveryStatus(3, "Dispatch #3", pending=5, sent=90, deferred=2)
    report = SendReport(
        3,
        "Dispatch #3",
        queued=97,
        sent=90,
        deferred=2,
        stopped="stopped on request",
        status=status,
    )
    assert send_line(report) == (
        "issue #3: 90 sent, 2 deferred, 0 failed, 0 skipped (97 newly queued); "
        "7 still to send; stopped: stopped on request"
    )
    done = DeliveryStatus(3, "Dispatch #3", sent=97)
    assert send_line(SendReport(3, "Dispatch #3", status=done)) == (
        "issue #3: 0 sent, 0 deferred, 0 failed, 0 skipped; delivery finished"
    )


def test_a_stored_job_label_changes_exactly_when_the_schedule_does() -> None:
    berlin, utc = ZoneInfo("Europe/Berlin"), ZoneInfo("UTC")
    label = job_label("publish", "0 7 * * mon-fri", berlin)
    assert label == "publish: 0 7 * * mon-fri (Europe/Berlin)"
    assert job_label("publish", "0 7 * * mon-fri", berlin) == label
    assert job_label("publish", "0 8 * * mon-fri", berlin) != label
    assert job_label("publish", "0 7 * * mon-fri", utc) != label
