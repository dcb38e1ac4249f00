"""`publisher run` for real: APScheduler in a subprocess, an SMTP sink, second-level schedules."""

from __future__ import annotations

import signal
import socket
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest

from publisher import pipeline
from tests.conftest import Site
from tests.delivery_support import add_subscribers, smtp_settings
from tests.scheduler_support import (
    Running,
    article_text,
    issue_numbers,
    next_runs,
    run_publisher,
    schedule,
    set_next_run,
    wait_until,
)
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.usefixtures("token_key")

SiteFactory = Callable[..., Site]


def message_ids(sink: SmtpSink) -> dict[str, list[str]]:
    """Recipient -> the Message-IDs of every message the sink received for them."""
    ids: dict[str, list[str]] = defaultdict(list)
    for received in sink.messages:
        for recipient in received.rcpt_tos:
            ids[recipient].append(str(received.parsed()["Message-ID"]))
    return ids


def test_collect_then_publish_then_send_and_the_sink_gets_the_digest(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    site = make_site(
        extra=smtp_settings(smtp_sink)
        + schedule(
            collect="every 1s", publish="every 3s", send="every 1s", send_after_publish=False
        )
    )
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    site.write("market.txt", article_text("The market moves indoors"))
    readers = add_subscribers(site.settings(), 3)

    run = Running(site, "run")
    try:
        run.wait_for(r"send: issue #1: 3 sent")
        code, _ = run.stop()
    finally:
        run.close()

    assert code == 0, run.text()
    log = run.text()
    collected = log.index("INFO collect: 2 new, 0 updated, 0 unchanged, 0 failed")
    published = log.index("INFO publish: issue #1 in ")
    sent = log.index(
        "INFO send: issue #1: 3 sent, 0 deferred, 0 failed, 0 skipped (3 newly queued)"
    )
    assert collected < published < sent
    assert log.rstrip().endswith("publisher run: stopped")
    assert smtp_sink.recipients() == dict.fromkeys(readers, 1)
    message = smtp_sink.messages[0].parsed()
    assert message["Subject"].startswith("Test Dispatch #1: ")
    html = message.get_body(("html",))
    assert html is not None
    assert "Harbour lights return" in html.get_content()
    assert "The market moves indoors" in html.get_content()
    runs = pipeline.job_runs(site.settings())
    assert {job: run.outcome for job, run in runs.items()} == {
        "collect": "ok",
        "publish": "ok",
        "send": "ok",
    }


def test_sigterm_mid_send_then_a_restart_delivers_every_message_exactly_once(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    site = make_site(extra=smtp_settings(smtp_sink) + schedule(publish="every 1s"))
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    settings = site.settings()
    readers = add_subscribers(settings, 60)
    smtp_sink.faults.data_delay = 0.1  # ~20 messages a second over 2 connections

    first = Running(site, "run", name="first")
    try:
        wait_until(lambda: len(smtp_sink.messages) >= 10, "the send to get going")
        code, took = first.stop(signal.SIGTERM)
    finally:
        first.close()
    assert code == 0, first.text()
    assert took < 10  # the messages in hand, then out
    stopped_at = len(smtp_sink.messages)
    assert stopped_at < 60, "the send finished before the stop; nothing was tested"
    assert "stopped: stopped on request; the rest stays queued for the next run" in first.text()
    [status] = pipeline.delivery_status(settings)
    assert status.sent == stopped_at  # every message handed over was recorded
    assert status.pending == 60 - stopped_at

    smtp_sink.faults.data_delay = 0.0
    second = Running(site, "run", name="second")
    try:
        second.wait_for(r"send: issue #1: \d+ sent.*delivery finished")
        assert second.stop()[0] == 0
    finally:
        second.close()
    assert "send: issue #1's delivery was cut short; going on with it now" in second.text()
    ids = message_ids(smtp_sink)
    assert sorted(ids) == sorted(readers)
    assert all(len(received) == 1 for received in ids.values()), "someone got two messages"
    assert len(smtp_sink.messages) == 60
    assert issue_numbers(settings) == [1]


def test_two_runs_on_one_store_publish_one_issue_and_a_standby_takes_over_a_dead_one(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    site = make_site(extra=smtp_settings(smtp_sink) + schedule(publish="every 1s"))
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    settings = site.settings()
    readers = add_subscribers(settings, 5)

    a, b = Running(site, "run", name="a"), Running(site, "run", name="b")
    standby: Running | None = None
    try:
        wait_until(
            lambda: any(p.process.poll() is not None for p in (a, b)), "one of the two to give way"
        )
        loser, winner = (a, b) if a.process.poll() is not None else (b, a)
        assert loser.process.returncode == 1
        [line] = loser.text().strip().splitlines()
        assert line.startswith(
            "error: another `publisher run` is running on this store: publisher run "
            f"(pid {winner.pid} on {socket.gethostname()}, since "
        )
        assert line.endswith("UTC); stop it first, or add --wait to take over when it stops")
        winner.wait_for(r"send: issue #1: 5 sent")

        standby = Running(site, "run", "--wait", name="standby")
        standby.wait_for(rf"waiting for publisher run \(pid {winner.pid} on ")
        winner.kill()  # SIGKILL: no chance to let go of the lock
        standby.wait_for(rf"took over the scheduler lock from publisher run \(pid {winner.pid} ")
        standby.wait_for(r"publish: nothing new to publish")
        site.write("market.txt", article_text("The market moves indoors"))
        standby.wait_for(r"send: issue #2: 5 sent")
        assert standby.stop()[0] == 0
    finally:
        for process in (a, b, standby):
            if process is not None:
                process.close()

    assert issue_numbers(settings) == [1, 2]
    ids = message_ids(smtp_sink)
    assert sorted(ids) == sorted(readers)
    assert all(len(set(received)) == len(received) == 2 for received in ids.values())


def test_a_run_missed_during_downtime_is_made_up_once_within_the_grace_time(
    make_site: SiteFactory,
) -> None:
    site = make_site(extra=schedule(publish="*/10 * * * *", send_after_publish=False))
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    settings = site.settings()

    first = run_publisher(site, "run", "--once")
    assert first.returncode == 0, first.stderr
    assert "nothing is due; publish: */10 * * * * (Europe/Berlin), next " in first.stderr
    # Down for 55 minutes: five or six runs of the ten-minute schedule were missed.
    set_next_run(settings, "publish", datetime.now(UTC) - timedelta(minutes=55))

    second = run_publisher(site, "run", "--once")
    assert second.returncode == 0, second.stderr
    assert second.stderr.count("INFO publish: ") == 1  # coalesced into one run
    assert "INFO publish: issue #1 in " in second.stderr
    assert issue_numbers(settings) == [1]
    upcoming = next_runs(settings)["publish"]
    assert upcoming is not None and upcoming > datetime.now(UTC)

    third = run_publisher(site, "run", "--once")
    assert "nothing is due" in third.stderr
    assert "INFO publish: " not in third.stderr


def test_a_run_missed_by_more_than_the_grace_time_is_skipped_with_a_log_line(
    make_site: SiteFactory,
) -> None:
    site = make_site(extra=schedule(publish="@yearly", misfire_grace_time=600))
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    settings = site.settings()
    assert run_publisher(site, "run", "--once").returncode == 0
    set_next_run(settings, "publish", datetime.now(UTC) - timedelta(hours=3))

    result = run_publisher(site, "run", "--once")

    assert result.returncode == 0, result.stderr
    assert "INFO publish: issue" not in result.stderr
    [line] = [line for line in result.stderr.splitlines() if "WARNING publish: skipped" in line]
    assert "3 h 0 min late, more than [schedule] misfire_grace_time (600 s)" in line
    assert issue_numbers(settings) == []
    upcoming = next_runs(settings)["publish"]
    assert upcoming is not None and upcoming > datetime.now(UTC) + timedelta(days=1)
    last = pipeline.job_runs(settings)["publish"]
    assert last.outcome == "missed" and last.scheduled_for is not None


def test_once_exits_1_when_a_due_job_failed(make_site: SiteFactory) -> None:
    site = make_site(extra=schedule(collect="every 1h"))
    settings = site.settings()
    assert run_publisher(site, "run", "--once").returncode == 0
    site.articles.rmdir()
    set_next_run(settings, "collect", datetime.now(UTC) - timedelta(seconds=5))

    result = run_publisher(site, "run", "--once")

    assert result.returncode == 1
    assert "ERROR collect: failed: " in result.stderr
    assert "articles folder not found" in result.stderr
    assert pipeline.job_runs(settings)["collect"].outcome == "failed"


def test_a_changed_schedule_replaces_the_stored_job_instead_of_catching_up(
    make_site: SiteFactory,
) -> None:
    site = make_site(extra=schedule(collect="every 1h", publish="*/10 * * * *"))
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    assert run_publisher(site, "run", "--once").returncode == 0
    set_next_run(site.settings(), "publish", datetime.now(UTC) - timedelta(minutes=5))
    text = site.settings_path.read_text(encoding="utf-8")
    site.settings_path.write_text(
        text.replace('publish = "*/10 * * * *"', 'publish = "@yearly"').replace(
            'collect = "every 1h"', 'collect = ""'
        ),
        encoding="utf-8",
    )

    result = run_publisher(site, "run", "--once")

    assert result.returncode == 0, result.stderr
    assert "INFO publish: " not in result.stderr  # the old schedule's due run went with it
    assert "collect: no longer scheduled; removed from the job store" in result.stderr
    settings = site.settings()
    assert issue_numbers(settings) == []
    stored = next_runs(settings)
    assert set(stored) == {"publish"}
    assert stored["publish"] is not None
    assert stored["publish"] > datetime.now(UTC) + timedelta(days=1)
