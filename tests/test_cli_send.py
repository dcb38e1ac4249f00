"""The delivery commands as a user runs them, including a `publisher send` killed mid-run."""

from __future__ import annotations

import csv
import io
import os
import signal
import subprocess
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner, Result

from publisher.cli import cli
from publisher.store import Store
from tests.conftest import ROOT, Site
from tests.delivery_support import (
    SEND_NOW,
    TOKEN_KEY,
    add_subscribers,
    delivery_site,
    publish_issue,
    smtp_settings,
)
from tests.smtp_sink import SmtpSink

pytestmark = pytest.mark.usefixtures("token_key")

SiteFactory = Callable[..., Site]
NOW = ["--now", SEND_NOW.isoformat()]


def invoke(site: Site, *args: str) -> Result:
    return CliRunner().invoke(cli, ["--settings", str(site.settings_path), *args])


def run_publisher(site: Site, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--settings", str(site.settings_path), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env={**os.environ, "PUBLISHER_TOKEN_KEY": TOKEN_KEY},
        cwd=ROOT,
    )


def test_send_delivers_and_ends_with_the_summary_table(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=4)

    result = invoke(d.site, "send", *NOW)

    assert result.exit_code == 0, result.output
    assert "Queued 4 new recipient(s) for issue #1." in result.output
    assert "This run: 4 sent, 0 deferred, 0 failed, 0 skipped." in result.output
    assert "finished" in result.output
    assert sum(smtp_sink.recipients().values()) == 4


def test_a_failed_recipient_shows_in_status_and_as_csv(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=3)
    smtp_sink.faults.reject_rcpt = {"reader2@example.org"}

    sent = invoke(d.site, "send", *NOW)
    assert sent.exit_code == 1  # someone failed: cron should notice
    assert "1 failed" in sent.output and "finished" not in sent.output

    status = invoke(d.site, "status")
    assert status.exit_code == 0
    assert "#1" in status.output and "1 failed" in status.output
    assert "reader2@example.org: 550 5.1.1" in status.output

    listed = invoke(d.site, "status", "--failed", "1", "--csv")
    rows = list(csv.DictReader(io.StringIO(listed.output)))
    assert [(r["email"], r["attempts"]) for r in rows] == [("reader2@example.org", "1")]
    assert rows[0]["reply"].startswith("550 5.1.1 <reader2@example.org>")


def test_dry_run_and_test_address_from_the_command_line(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=2)

    dry = invoke(d.site, "send", "--dry-run", *NOW)
    assert dry.exit_code == 0, dry.output
    assert "Wrote 2 message(s)" in dry.output
    test = invoke(d.site, "send", "--test", "me@example.org", *NOW)
    assert test.exit_code == 0, test.output
    assert smtp_sink.recipients() == {"me@example.org": 1}
    assert "disagree" in invoke(d.site, "send", "2", "--retry-failed", "1").output


def test_subscriber_commands(site: Site, tmp_path: Path) -> None:
    people = tmp_path / "people.csv"
    people.write_text("email,name\na@example.org,Ann\nnope,Bad\nb@example.org,Ben\n")

    imported = invoke(site, "subscribers", "import", str(people), *NOW)
    assert imported.exit_code == 1  # one bad row
    assert f"{people}:3: 'nope' is not a valid address" in imported.output
    assert invoke(site, "subscribers", "import", str(people)).exit_code == 1
    assert invoke(site, "subscribers", "add", "C@Example.org", "--name", "Cy").output == (
        "c@example.org added.\n"
    )
    assert invoke(site, "subscribers", "remove", "a@example.org").exit_code == 0
    listed = invoke(site, "subscribers", "list")
    assert "3 subscriber(s): 2 active, 1 unsubscribed." in listed.output
    out = tmp_path / "all.csv"
    assert invoke(site, "subscribers", "export", str(out)).exit_code == 0
    assert len(out.read_text().splitlines()) == 4


def test_help_teaches_with_examples(site: Site) -> None:
    for command in (["send"], ["status"], ["subscribers"], ["unsubscribe"]):
        text = invoke(site, *command, "--help").output
        assert "publisher " + command[0] in text
        assert "Example" in text


def test_errors_are_one_line_without_a_traceback(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    site = make_site(extra=smtp_settings(smtp_sink))

    result = run_publisher(site, "send")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: there is no issue to send yet; run `publisher publish` first"
    )


def test_unsubscribe_command(make_site: SiteFactory, smtp_sink: SmtpSink) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=1)
    invoke(d.site, "send", *NOW)
    header = smtp_sink.messages[0].parsed()["List-Unsubscribe"]
    token = header.split("token=")[1].split(">")[0]

    assert invoke(d.site, "unsubscribe", token).output == "reader1@example.org is unsubscribed.\n"
    again = invoke(d.site, "unsubscribe", token)
    assert again.output == "reader1@example.org was already unsubscribed.\n"


def test_send_killed_mid_run_then_run_again_sends_each_subscriber_one_message(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    site = make_site(extra=smtp_settings(smtp_sink))
    settings = site.settings()
    publish_issue(settings)
    addresses = add_subscribers(settings, 60)
    smtp_sink.faults.data_delay = 0.03  # ~35 messages a second over 2 connections
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--settings", str(site.settings_path), "send"],
        env={**os.environ, "PUBLISHER_TOKEN_KEY": TOKEN_KEY},
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while len(smtp_sink.messages) < 20 and time.monotonic() < deadline:
        assert process.poll() is None, process.stderr.read() if process.stderr else ""
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    killed_at = len(smtp_sink.messages)
    assert 20 <= killed_at < 60  # it really died half-way

    smtp_sink.faults.data_delay = 0.0
    rerun = run_publisher(site, "send")
    assert rerun.returncode == 0, rerun.stderr

    ids: dict[str, set[str]] = defaultdict(set)
    for received in smtp_sink.messages:
        ids[received.rcpt_tos[0]].add(str(received.parsed()["Message-ID"]))
    assert sorted(ids) == sorted(addresses)
    assert all(len(message_ids) == 1 for message_ids in ids.values())
    # At most one message per connection can be accepted but not yet recorded at the kill.
    assert len(smtp_sink.messages) - len(addresses) <= settings.smtp.connections
    status = invoke(site, "status")
    assert "finished" in status.output


def test_shared_senders_on_postgresql_send_each_subscriber_one_message(
    make_site: SiteFactory, smtp_sink: SmtpSink, postgres_store: Store
) -> None:
    site = make_site(extra=smtp_settings(smtp_sink))
    site.use_database(postgres_store.url.render_as_string(hide_password=False))
    settings = site.settings()
    publish_issue(settings)
    addresses = add_subscribers(settings, 300)  # three claims' worth (CLAIM_BATCH)
    smtp_sink.faults.data_delay = 0.01  # so that each worker is still busy when the next comes
    command = [sys.executable, "-m", "publisher", "--settings", str(site.settings_path)]
    workers = [
        subprocess.Popen(
            [*command, "send", "--shared", *NOW],
            env={**os.environ, "PUBLISHER_TOKEN_KEY": TOKEN_KEY},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(3)
    ]
    outputs = [worker.communicate(timeout=60) for worker in workers]

    assert [worker.returncode for worker in workers] == [0, 0, 0], outputs
    assert smtp_sink.recipients() == {address: 1 for address in addresses}
    sent = [int(out.split("This run: ")[1].split(" sent")[0]) for out, _err in outputs]
    assert sum(sent) == 300
    assert sum(count > 0 for count in sent) >= 2  # they really shared the outbox
    assert "finished" in invoke(site, "status").output


def test_failed_list_of_an_unknown_issue_is_an_error_before_any_output(site: Site) -> None:
    result = invoke(site, "status", "--failed", "9", "--csv")

    assert result.output == ""
    assert str(result.exception) == "there is no issue #9; see `publisher status`"
