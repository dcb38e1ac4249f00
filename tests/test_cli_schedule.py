"""The scheduling parts of the command line: `run`, `--wait`, and the schedule in `status`."""

from __future__ import annotations

import os
import socket
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import pytest
from click.testing import CliRunner, Result

from publisher import pipeline
from publisher.cli import cli
from publisher.model import JobRun
from publisher.store import Store
from tests.conftest import ROOT, Site
from tests.scheduler_support import (
    ENV,
    article_text,
    issue_numbers,
    publisher_command,
    run_publisher,
    schedule,
    wait_until,
)

pytestmark = pytest.mark.usefixtures("token_key")

SiteFactory = Callable[..., Site]
HOLDER = f"(pid {os.getpid()} on {socket.gethostname()}, since "


def invoke(site: Site, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(site.settings_path), *args])


def test_publish_by_hand_while_the_scheduler_publishes_exits_naming_the_holder(
    site: Site,
) -> None:
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    settings = site.settings()
    pipeline.collect(settings, now=datetime.now(UTC))  # so a publish would have an issue to make
    with pipeline.exclusive(settings, "publish", purpose="publisher run: publish"):
        result = run_publisher(site, "publish")
        dry = run_publisher(site, "publish", "--dry-run")  # changes nothing: needs no lock

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(f"error: another publish is under way: publisher run: publish {HOLDER}")
    assert line.endswith(" UTC); wait for it to end, or add --wait")
    assert dry.returncode == 0, dry.stderr
    assert issue_numbers(settings) == []


def test_send_by_hand_while_another_send_runs_exits_naming_the_holder(site: Site) -> None:
    with pipeline.exclusive(site.settings(), "send", purpose="publisher run: send"):
        result = run_publisher(site, "send")
    assert result.returncode == 1
    assert result.stderr.startswith(
        f"error: another send is under way: publisher run: send {HOLDER}"
    )


def test_publish_with_wait_waits_for_the_holder_then_publishes(site: Site) -> None:
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    settings = site.settings()
    pipeline.collect(settings, now=datetime.now(UTC))
    with pipeline.exclusive(settings, "publish", purpose="publisher run: publish"):
        waiting = subprocess.Popen(
            publisher_command(site, "publish", "--wait"),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=ROOT,
        )
        # Its first line says whom it waits for; meanwhile nothing is published.
        assert waiting.stderr is not None
        first = waiting.stderr.readline()
        assert first.startswith(f"waiting for publisher run: publish {HOLDER}")
        assert waiting.poll() is None
        assert issue_numbers(settings) == []
    out, err = waiting.communicate(timeout=60)
    assert waiting.returncode == 0, err
    assert "Published issue #1" in out
    assert issue_numbers(settings) == [1]


def test_run_without_any_scheduled_job_is_a_settings_error(site: Site) -> None:
    result = run_publisher(site, "run")
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"error: {site.settings_path}: [schedule]: no job is scheduled; set collect, publish "
        "or send (see the bundled settings.toml)"
    )


def test_a_bad_schedule_stops_run_before_it_starts_naming_the_key(
    make_site: SiteFactory,
) -> None:
    site = make_site(extra=schedule(publish="0 7 * * monday"))
    result = run_publisher(site, "run")
    assert result.returncode == 2
    assert "[schedule] publish: day of week: 'monday' is not a number" in result.stderr


def test_run_needs_the_token_key_when_it_will_send(
    make_site: SiteFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    site = make_site(extra=schedule(send="every 15m"))
    result = subprocess.run(
        publisher_command(site, "run", "--once"),
        capture_output=True,
        text=True,
        env={k: v for k, v in ENV.items() if k != "PUBLISHER_TOKEN_KEY"},
        cwd=ROOT,
        timeout=60,
    )
    assert result.returncode == 1
    assert "[delivery] token_key_env: the environment variable PUBLISHER_TOKEN_KEY" in (
        result.stderr
    )


def test_status_shows_each_job_last_and_next_run(make_site: SiteFactory) -> None:
    site = make_site(extra=schedule(collect="every 30m", publish="0 7 * * mon-fri"))
    settings = site.settings()
    assert run_publisher(site, "run", "--once").returncode == 0  # puts the jobs in the store
    finished = datetime(2026, 11, 24, 6, 0, 2, tzinfo=UTC)
    pipeline.record_job_run(
        settings,
        JobRun(
            "publish",
            "ok",
            started_at=finished - timedelta(seconds=2),
            finished_at=finished,
            summary="issue #4 in 2026-11-24/ with 3 article(s)",
            issue_number=4,
        ),
    )

    result = CliRunner(env={"COLUMNS": "160"}).invoke(
        cli, ["--settings", str(site.settings_path), "status"]
    )

    assert result.exit_code == 0, result.output
    lines = [line.strip() for line in result.output.splitlines()]
    assert "Schedule (Europe/Berlin)" in lines
    [publish] = [line for line in lines if "│ publish" in line]
    assert "0 7 * * mon-fri" in publish
    assert "2026-11-24 07:00" in publish  # 06:00:02 UTC, shown in the schedule's zone
    assert "ok: issue #4 in 2026-11-24/ with 3 article(s)" in publish
    [collect] = [line for line in lines if "│ collect" in line]
    assert "never" in collect
    next_collect = pipeline.schedule_status(settings).jobs[0].next_run
    assert next_collect is not None
    shown = f"{next_collect.astimezone(settings.schedule_zone):%Y-%m-%d %H:%M}"
    assert shown in collect
    [send] = [line for line in lines if "│ send" in line]
    assert "not scheduled" in send
    assert "publisher run: not running" in lines

    with pipeline.exclusive(settings, "scheduler", purpose="publisher run"):
        running = invoke(site, "status").output
    assert f"publisher run: running: publisher run {HOLDER}" in running.replace("\n", " ")


def test_run_on_postgresql_keeps_its_jobs_and_lock_in_that_database(
    make_site: SiteFactory, postgres_store: Store
) -> None:
    site = make_site(extra=schedule(collect="every 30m", publish="0 7 * * mon-fri"))
    site.use_database(postgres_store.url.render_as_string(hide_password=False))
    site.write("harbour-lights.txt", article_text("Harbour lights return"))
    settings = site.settings()

    first = run_publisher(site, "run", "--once")

    assert first.returncode == 0, first.stderr
    jobs = {job.job: job for job in pipeline.schedule_status(settings).jobs}
    assert sorted(jobs) == ["collect", "publish", "send"]
    assert jobs["collect"].next_run is not None and jobs["publish"].next_run is not None
    with postgres_store.engine.connect() as conn:  # APScheduler's own table, on PostgreSQL
        stored = conn.exec_driver_sql("SELECT count(*) FROM apscheduler_jobs").scalar()
    assert stored == 2
    with pipeline.exclusive(settings, "scheduler", purpose="publisher run"):
        second = run_publisher(site, "run", "--once")
    assert second.returncode == 1
    assert second.stderr.startswith(
        f"error: another `publisher run` is running on this store: publisher run {HOLDER}"
    )


def test_status_without_a_schedule_shows_no_schedule_section(site: Site) -> None:
    result = invoke(site, "status")
    assert result.exit_code == 0
    assert "Schedule" not in result.output


def test_run_help_teaches_with_examples(site: Site) -> None:
    text = invoke(site, "run", "--help").output
    assert "publisher run --once" in text
    assert "SIGTERM" in text
    assert "--wait" in invoke(site, "publish", "--help").output
    assert "--wait" in invoke(site, "send", "--help").output


def test_run_stops_waiting_for_another_run_on_sigterm(make_site: SiteFactory) -> None:
    site = make_site(extra=schedule(collect="every 1h"))
    with pipeline.exclusive(site.settings(), "scheduler", purpose="publisher run"):
        standby = subprocess.Popen(
            publisher_command(site, "run", "--wait"),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            env=ENV,
            cwd=ROOT,
        )
        assert standby.stderr is not None
        assert f"waiting for publisher run {HOLDER}" in standby.stderr.readline()
        standby.terminate()
        wait_until(lambda: standby.poll() is not None, "the standby to stop")
    assert standby.returncode == 0


def test_send_shared_is_for_postgresql_only(site: Site) -> None:
    result = invoke(site, "send", "--shared")
    assert result.exit_code == 2
    assert "--shared needs a PostgreSQL store" in result.output
