"""`send` end to end: a real SQLite store, real files, a real SMTP server that misbehaves."""

from __future__ import annotations

import re
from collections.abc import Callable
from datetime import timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path

import pytest

from publisher import pipeline
from publisher.errors import DeliveryError
from publisher.settings import Settings
from publisher.store import Store
from tests.conftest import Site
from tests.delivery_support import (
    SEND_NOW,
    add_subscribers,
    delivery_site,
    publish_issue,
    smtp_settings,
)
from tests.smtp_sink import SmtpSink, free_port

pytestmark = pytest.mark.usefixtures("token_key")

SiteFactory = Callable[..., Site]


def links(header: str) -> list[str]:
    return re.findall(r"<([^>]+)>", header)


def assert_each_once(sink: SmtpSink, addresses: list[str]) -> None:
    """Every address got exactly one message, and nobody else got any."""
    assert sink.recipients() == dict.fromkeys(addresses, 1)


def test_every_active_subscriber_gets_one_standards_exact_message(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    site = make_site(extra=smtp_settings(smtp_sink))
    settings = site.settings()
    publish_issue(settings, title="Test Dispatch #1: Grüße vom Hafen – “lights” return")
    addresses = add_subscribers(settings, 12)

    report = pipeline.send(settings, now=SEND_NOW)

    assert (report.queued, report.sent, report.failed, report.deferred) == (12, 12, 0, 0)
    assert report.status is not None and report.status.finished
    assert_each_once(smtp_sink, addresses)
    assert len({m.connection for m in smtp_sink.messages}) <= 2  # connections are reused
    for received in smtp_sink.messages:
        data = received.data
        assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
        assert max(len(line) for line in data.split(b"\r\n")) <= 998
        assert received.mail_from == "desk@news.example.org"
        message = received.parsed()
        [to] = message["To"].addresses
        assert to.addr_spec == received.rcpt_tos[0]
        assert to.display_name == f"Reader {to.addr_spec[6:-12]}"
        assert b"Subject: =?utf-8?" in data.split(b"\r\n\r\n")[0]
        assert message["Subject"] == "Test Dispatch #1: Grüße vom Hafen – “lights” return"
        assert parsedate_to_datetime(message["Date"]) >= SEND_NOW
        assert message["List-Id"] == '"Test Dispatch" <test-dispatch.news.example.org>'
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        https, mailto = links(message["List-Unsubscribe"])
        assert https.startswith("https://news.example.org/unsubscribe?token=")
        assert mailto.startswith("mailto:desk@news.example.org?subject=unsubscribe")
        assert message.get_content_type() == "multipart/alternative"
        text, page = (str(p.get_content()) for p in message.iter_parts())
        assert f"Unsubscribe: {https}" in text
        assert f'<a href="{https}"' in page
        assert text.startswith(f"Hello {to.display_name},")
        assert f"Sent to {to.addr_spec}." in text
    ids = [m.parsed()["Message-ID"] for m in smtp_sink.messages]
    assert len(set(ids)) == 12


def test_451_for_the_first_messages_defers_them_until_a_later_run(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=8)
    smtp_sink.faults.defer_data_first = 3

    first = pipeline.send(d.settings, now=SEND_NOW)
    assert (first.sent, first.deferred) == (5, 3)
    assert first.status is not None and not first.status.finished
    assert first.status.deferred == 3
    assert first.status.next_attempt_at is not None
    assert first.status.next_attempt_at >= SEND_NOW + timedelta(seconds=300)
    assert all("451 4.3.0 Try again later" in e for e in first.status.latest_errors)

    too_soon = pipeline.send(d.settings, now=SEND_NOW + timedelta(seconds=1))
    assert (too_soon.sent, too_soon.deferred) == (0, 0)

    later = pipeline.send(d.settings, now=SEND_NOW + timedelta(hours=2))
    assert later.sent == 3
    assert later.status is not None and later.status.finished
    assert_each_once(smtp_sink, [f"reader{n}@example.org" for n in range(1, 9)])


def test_a_refused_recipient_fails_with_the_reply_and_is_skipped_next_issue(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=5)
    smtp_sink.faults.reject_rcpt = {"reader3@example.org"}

    report = pipeline.send(d.settings, now=SEND_NOW)

    assert (report.sent, report.failed) == (4, 1)
    assert report.status is not None and not report.status.finished
    [failed] = list(pipeline.failed_deliveries(d.settings, 1))
    assert failed.email == "reader3@example.org"
    assert failed.reply.startswith("550 5.1.1 <reader3@example.org>: Recipient address rejected")
    assert failed.message_id.startswith("<1.")
    with Store.open(d.settings.database_url) as store:
        subscriber = store.get_subscriber(email="reader3@example.org")
    assert subscriber is not None and subscriber.status == "bounced"  # threshold 1 in tests

    publish_issue(d.settings, 2, title="Test Dispatch #2")
    second = pipeline.send(d.settings, now=SEND_NOW + timedelta(days=7))
    assert (second.queued, second.sent) == (4, 4)
    assert "reader3@example.org" not in smtp_sink.recipients()


def test_retry_failed_queues_the_failed_recipients_again(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=3, delivery__bounce_threshold=5)
    smtp_sink.faults.reject_rcpt = {"reader2@example.org"}
    pipeline.send(d.settings, now=SEND_NOW)
    smtp_sink.faults.reject_rcpt = set()

    report = pipeline.send(d.settings, now=SEND_NOW + timedelta(hours=1), retry_failed=True)

    assert (report.requeued, report.sent) == (1, 1)
    assert report.status is not None and report.status.finished
    assert_each_once(smtp_sink, [f"reader{n}@example.org" for n in range(1, 4)])


def test_a_dropped_connection_reconnects_and_delivers_everything_once(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=10)
    smtp_sink.faults.drop_after = 4

    report = pipeline.send(d.settings, now=SEND_NOW)

    assert smtp_sink.dropped
    assert (report.sent, report.deferred, report.failed) == (10, 0, 0)
    assert len({m.connection for m in smtp_sink.messages}) >= 2
    assert_each_once(smtp_sink, [f"reader{n}@example.org" for n in range(1, 11)])


def test_server_down_at_the_start_loses_nothing_and_the_next_run_delivers_all(
    make_site: SiteFactory,
) -> None:
    sink = SmtpSink(port=free_port())  # not started: nobody listens there yet
    d = delivery_site(make_site, sink, subscribers=6)

    with pytest.raises(DeliveryError, match="cannot reach the SMTP server"):
        pipeline.send(d.settings, now=SEND_NOW)
    [status] = pipeline.delivery_status(d.settings)
    assert (status.pending, status.sent, status.deferred) == (6, 0, 0)

    sink.start()
    try:
        report = pipeline.send(d.settings, now=SEND_NOW + timedelta(minutes=5))
    finally:
        sink.stop()
    assert (report.queued, report.sent) == (0, 6)
    assert_each_once(sink, [f"reader{n}@example.org" for n in range(1, 7)])


def test_someone_who_unsubscribes_before_their_turn_is_skipped(make_site: SiteFactory) -> None:
    sink = SmtpSink(port=free_port())
    d = delivery_site(make_site, sink, subscribers=3)
    with pytest.raises(DeliveryError):
        pipeline.send(d.settings, now=SEND_NOW)  # rows exist, nothing went out
    pipeline.remove_subscriber(d.settings, "reader2@example.org", now=SEND_NOW)

    sink.start()
    try:
        report = pipeline.send(d.settings, now=SEND_NOW)
    finally:
        sink.stop()
    assert (report.sent, report.skipped) == (2, 1)
    assert report.status is not None and report.status.finished
    assert_each_once(sink, ["reader1@example.org", "reader3@example.org"])


def test_temporary_failures_give_up_after_max_attempts(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=1, delivery__retry_base=0.0)
    smtp_sink.faults.defer_data_first = 100

    report = pipeline.send(d.settings, now=SEND_NOW)

    assert (report.deferred, report.failed) == (2, 1)  # max_attempts = 3 in tests
    [failed] = list(pipeline.failed_deliveries(d.settings, 1))
    assert failed.reply == "gave up after 3 attempts; last: 451 4.3.0 Try again later"
    assert failed.attempts == 3
    with Store.open(d.settings.database_url) as store:
        subscriber = store.get_subscriber(email="reader1@example.org")
    assert subscriber is not None and subscriber.status == "active"  # not a bounce


def test_the_hourly_limit_stops_the_run_and_leaves_the_rest_pending(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=8, smtp__rate_per_hour=5)

    report = pipeline.send(d.settings, now=SEND_NOW)
    assert report.sent == 5
    assert "hourly limit" in report.stopped
    assert report.status is not None and report.status.pending == 3

    still = pipeline.send(d.settings, now=SEND_NOW + timedelta(minutes=30))
    assert still.sent == 0 and "hourly limit" in still.stopped
    after = pipeline.send(d.settings, now=SEND_NOW + timedelta(hours=1, minutes=1))
    assert after.sent == 3
    assert_each_once(smtp_sink, [f"reader{n}@example.org" for n in range(1, 9)])


def test_dry_run_writes_eml_files_and_touches_neither_outbox_nor_server(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=3)

    report = pipeline.send(d.settings, now=SEND_NOW, dry_run=True)

    folder = Path(report.dry_run_dir)
    assert folder == d.root / "state" / "dry-run" / "2026-11-24"
    files = sorted(folder.iterdir())
    assert [f.name for f in files] == ["000001-1.eml", "000002-2.eml", "000003-3.eml"]
    import email
    import email.policy

    message = email.message_from_bytes(files[0].read_bytes(), policy=email.policy.default)
    assert message["To"].addresses[0].addr_spec == "reader1@example.org"
    assert smtp_sink.messages == []
    assert pipeline.delivery_status(d.settings) == []  # no outbox rows yet

    real = pipeline.send(d.settings, now=SEND_NOW)
    assert real.sent == 3


def test_test_address_gets_one_message_and_the_outbox_is_left_alone(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=3)

    report = pipeline.send(d.settings, now=SEND_NOW, test_address="Editor@Example.org")

    assert report.test_address == "editor@example.org"
    assert smtp_sink.recipients() == {"editor@example.org": 1}
    assert pipeline.delivery_status(d.settings) == []


def test_send_before_publish_says_to_publish_first(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    site = make_site(extra=smtp_settings(smtp_sink))
    with pytest.raises(DeliveryError, match=r"no issue to send yet.*publisher publish"):
        pipeline.send(site.settings(), now=SEND_NOW)

    d = delivery_site(make_site, smtp_sink)
    (d.settings.output_dir / d.issue.folder / "email.html").unlink()
    with pytest.raises(DeliveryError) as info:
        pipeline.send(d.settings, now=SEND_NOW)
    assert "email.html not found" in str(info.value)
    assert "run `publisher publish` first" in str(info.value)


def test_the_token_in_a_received_message_unsubscribes_its_reader(
    make_site: SiteFactory, smtp_sink: SmtpSink
) -> None:
    d = delivery_site(make_site, smtp_sink, subscribers=2)
    pipeline.send(d.settings, now=SEND_NOW)
    message = smtp_sink.by_recipient()["reader2@example.org"][0].parsed()
    https = links(message["List-Unsubscribe"])[0]

    result = pipeline.unsubscribe(d.settings, https, now=SEND_NOW)  # the whole link works too
    assert (result.email, result.already) == ("reader2@example.org", False)
    token = https.rpartition("token=")[2]
    assert pipeline.unsubscribe(d.settings, token, now=SEND_NOW).already

    forged = token[:-1] + ("A" if token[-1] != "A" else "B")
    with pytest.raises(DeliveryError, match="matches no subscriber"):
        pipeline.unsubscribe(d.settings, forged, now=SEND_NOW)
    with pytest.raises(DeliveryError, match="not an unsubscribe token"):
        pipeline.unsubscribe(d.settings, "hello", now=SEND_NOW)


def test_subscribers_add_remove_and_reactivate(site: Site) -> None:
    settings: Settings = site.settings()
    jane, created = pipeline.add_subscriber(
        settings, " Jane@Example.org ", now=SEND_NOW, name="Jane"
    )
    assert created and jane.email == "jane@example.org" and jane.status == "active"
    assert pipeline.add_subscriber(settings, "jane@example.org", now=SEND_NOW)[1] is False

    pipeline.remove_subscriber(settings, "JANE@example.org", now=SEND_NOW)
    with pytest.raises(DeliveryError, match=r"is unsubscribed.*--reactivate"):
        pipeline.add_subscriber(settings, "jane@example.org", now=SEND_NOW)
    again, _ = pipeline.add_subscriber(settings, "jane@example.org", now=SEND_NOW, reactivate=True)
    assert again.status == "active"

    with pytest.raises(DeliveryError, match="not a valid address"):
        pipeline.add_subscriber(settings, "jane@", now=SEND_NOW)
    pipeline.remove_subscriber(settings, "jane@example.org", now=SEND_NOW, erase=True)
    assert pipeline.list_subscribers(settings) == ([], {})


def test_import_reports_bad_lines_imports_the_rest_and_is_idempotent(
    site: Site, tmp_path: Path
) -> None:
    settings = site.settings()
    path = tmp_path / "people.csv"
    path.write_text(
        "email,name\njane@example.org,Jane\nbroken,Bob\nJANE@example.org,Dup\nkim@example.org,\n",
        encoding="utf-8",
    )

    first = pipeline.import_subscribers(settings, path, now=SEND_NOW)
    assert (first.new, first.unchanged) == (2, 1)
    assert [p.where for p in first.problems] == [f"{path}:3"]
    second = pipeline.import_subscribers(settings, path, now=SEND_NOW)
    assert (second.new, second.unchanged, len(second.problems)) == (0, 3, 1)

    out = tmp_path / "out.csv"
    assert pipeline.export_subscribers(settings, out) == 2
    assert (
        out.read_text(encoding="utf-8").splitlines()[1].startswith("jane@example.org,Jane,active")
    )
