"""The subscribe use cases without HTTP: states, confirmation outcomes, the mails' headers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default

import pytest

from publisher.errors import DeliveryError, RenderError
from publisher.model import SubscriberStatus
from publisher.pipeline import Subscriptions, confirm, subscribe
from publisher.settings import Settings
from publisher.store import Store
from tests.conftest import Site
from tests.delivery_support import PUBLISHED, confirm_token, delivery_site, urls_in_parts
from tests.smtp_sink import SmtpSink

NOW = PUBLISHED + timedelta(days=1)


@pytest.fixture
def settings(make_site: Callable[..., Site], smtp_sink: SmtpSink, token_key: str) -> Settings:
    return delivery_site(make_site, smtp_sink).settings


def parsed(data: bytes) -> EmailMessage:
    message = message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    return message


def with_status(settings: Settings, email: str, status: SubscriberStatus) -> None:
    with Store.open(settings.database_url) as store:
        store.add_subscriber(email, "", now=PUBLISHED, status=status)


@pytest.mark.parametrize(
    ("before", "mailed"),
    [(None, True), ("pending", True), ("unsubscribed", True), ("bounced", True),
     ("active", False)],
)  # fmt: skip
def test_subscribe_mails_everyone_not_on_the_list_and_changes_no_status(
    settings: Settings, before: SubscriberStatus | None, mailed: bool
) -> None:
    if before is not None:
        with_status(settings, "jane@example.org", before)

    with Subscriptions(settings) as subscriptions:
        result = subscriptions.subscribe(" Jane@EXAMPLE.org ", now=NOW)
        after = subscriptions.store.get_subscriber(email="jane@example.org")

    assert result.email == "jane@example.org"
    assert result.before == before
    assert (result.notice is not None) is mailed
    assert after is not None and after.status == (before or "pending")


def test_the_confirmation_link_confirms_once_and_welcomes_once(settings: Settings) -> None:
    with Subscriptions(settings) as subscriptions:
        asked = subscriptions.subscribe("jane@example.org", now=NOW)
        assert asked.notice is not None
        body = parsed(asked.notice.data).get_body(("plain",))
        assert body is not None
        token = body.get_content().split("confirm?token=")[1].split()[0]

        first = subscriptions.confirm(token, now=NOW + timedelta(hours=1))
        second = subscriptions.confirm(token, now=NOW + timedelta(hours=2))

    assert (first.outcome, second.outcome) == ("confirmed", "already")
    assert first.notice is not None and first.notice.kind == "welcome"
    assert second.notice is None


@pytest.mark.parametrize(
    ("age", "outcome"),
    [(timedelta(hours=47, minutes=59), "confirmed"), (timedelta(hours=48, seconds=1), "expired"),
     (timedelta(minutes=-4), "confirmed"), (timedelta(minutes=-6), "invalid")],
)  # fmt: skip
def test_a_link_works_for_the_ttl_and_not_from_the_future(
    settings: Settings, age: timedelta, outcome: str
) -> None:
    with Subscriptions(settings) as subscriptions:
        notice = subscriptions.subscribe("jane@example.org", now=NOW).notice
        token = confirm_token(notice)

        assert subscriptions.confirm(token, now=NOW + age).outcome == outcome


def test_two_clicks_at_once_send_one_welcome(settings: Settings) -> None:
    with Subscriptions(settings) as subscriptions:
        notice = subscriptions.subscribe("jane@example.org", now=NOW).notice
        token = confirm_token(notice)
        results = []
        gate = threading.Barrier(8)

        def click() -> None:
            gate.wait()
            results.append(subscriptions.confirm(token, now=NOW))

        threads = [threading.Thread(target=click) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()

    assert sorted(r.outcome for r in results) == ["already"] * 7 + ["confirmed"]
    assert sum(r.notice is not None for r in results) == 1


def test_the_welcome_links_the_latest_issue_and_carries_one_click_headers(
    settings: Settings,
) -> None:
    with Subscriptions(settings) as subscriptions:
        notice = subscriptions.subscribe("jane@example.org", now=NOW).notice
        token = confirm_token(notice)
        welcome = subscriptions.confirm(token, now=NOW).notice
    assert welcome is not None

    message = parsed(welcome.data)
    text = message.get_body(("plain",))
    assert text is not None
    assert "https://news.example.org/2026-11-24/" in text.get_content()
    assert message["List-Id"].endswith("<test-dispatch.news.example.org>")
    assert message["List-Unsubscribe"].startswith("<https://news.example.org/unsubscribe?token=")
    assert "mailto:desk@news.example.org?subject=unsubscribe" in message["List-Unsubscribe"]
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # List mail like the digest: no vacation or out-of-office replies to the sender.
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Precedence"] == "bulk"
    assert message["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    assert text.get_content().splitlines()[0] == "Hello,"


def test_subscribe_and_confirm_send_their_mails_through_smtp(
    settings: Settings, smtp_sink: SmtpSink
) -> None:
    subscribe(settings, "jane@example.org", now=NOW)
    [asked] = smtp_sink.parsed()
    body = asked.get_body(("plain",))
    assert body is not None
    token = body.get_content().split("confirm?token=")[1].split()[0]

    result = confirm(settings, token, now=NOW)

    assert result.outcome == "confirmed"
    assert [m["Subject"] for m in smtp_sink.parsed()] == [
        "Confirm your subscription to Test Dispatch",
        "Welcome to Test Dispatch",
    ]
    assert smtp_sink.messages[1].mail_from == "desk@news.example.org"


def test_a_missing_signing_key_stops_the_server_at_start(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBLISHER_TOKEN_KEY")

    with pytest.raises(DeliveryError, match="PUBLISHER_TOKEN_KEY is not set"):
        Subscriptions(settings)


def test_a_theme_mail_without_its_subject_line_is_named(
    make_site: Callable[..., Site], smtp_sink: SmtpSink, token_key: str
) -> None:
    site = delivery_site(make_site, smtp_sink).site
    theme = site.root / "theme"
    theme.mkdir()
    (theme / "confirm_email.txt").write_text("Please confirm: {{ confirm_url }}\n")
    site.settings_path.write_text(
        site.settings_path.read_text().replace(
            'email = "desk', 'theme_dir = "theme"\nemail = "desk'
        )
    )

    with (
        Subscriptions(site.settings()) as subscriptions,
        pytest.raises(RenderError, match=r"confirm_email\.txt: the first line must be 'Subject: "),
    ):
        subscriptions.subscribe("jane@example.org", now=NOW)


def statuses(subscriptions: Subscriptions) -> dict[str, str]:
    return {s.email: s.status for s in subscriptions.store.iter_subscribers()}


def test_a_sign_up_nobody_confirms_is_deleted_once_its_link_has_expired(
    settings: Settings,
) -> None:
    for email, status in [("ann@example.org", "active"), ("ulf@example.org", "unsubscribed"),
                          ("bo@example.org", "bounced")]:  # fmt: skip
        with_status(settings, email, status)  # long before: never deleted, whatever their age
    with Subscriptions(settings) as subscriptions:
        subscriptions.subscribe("jane@example.org", now=NOW)
        subscriptions.subscribe("bob@example.org", now=NOW + timedelta(hours=47))
        assert "jane@example.org" in statuses(subscriptions)  # her link still works

        subscriptions.subscribe("carol@example.org", now=NOW + timedelta(hours=49))

        assert statuses(subscriptions) == {
            "ann@example.org": "active",
            "ulf@example.org": "unsubscribed",
            "bo@example.org": "bounced",
            "bob@example.org": "pending",
            "carol@example.org": "pending",
        }


def test_asking_again_keeps_a_sign_up_as_long_as_its_newest_link(settings: Settings) -> None:
    with Subscriptions(settings) as subscriptions:
        subscriptions.subscribe("jane@example.org", now=NOW)
        again = subscriptions.subscribe("jane@example.org", now=NOW + timedelta(hours=40))
        subscriptions.subscribe("bob@example.org", now=NOW + timedelta(hours=60))

        assert statuses(subscriptions)["jane@example.org"] == "pending"
        late = subscriptions.confirm(confirm_token(again.notice), now=NOW + timedelta(hours=61))
    assert late.outcome == "confirmed"


def test_the_link_of_a_deleted_sign_up_says_expired_and_a_forged_one_invalid(
    settings: Settings,
) -> None:
    with Subscriptions(settings) as subscriptions:
        token = confirm_token(subscriptions.subscribe("jane@example.org", now=NOW).notice)
        later = NOW + timedelta(hours=50)
        subscriptions.subscribe("bob@example.org", now=later)  # deletes jane's sign-up
        assert subscriptions.store.get_subscriber(email="jane@example.org") is None

        expired = subscriptions.confirm(token, now=later)
        # Another's id with a fresh time but no valid signature: nothing to do with expiry.
        bob = subscriptions.store.get_subscriber(email="bob@example.org")
        assert bob is not None
        forged = f"{bob.id}.{int(later.timestamp() * 1000)}.{'A' * 22}"
        invalid = subscriptions.confirm(forged, now=later)

    assert (expired.outcome, expired.notice) == ("expired", None)
    assert invalid.outcome == "invalid"


def test_both_parts_of_each_notice_carry_the_same_urls_as_often(settings: Settings) -> None:
    # Spam filters compare the alternatives (rspamd scores an odd URL count over both).
    with Subscriptions(settings) as subscriptions:
        asked = subscriptions.subscribe("jane@example.org", now=NOW)
        confirmed = subscriptions.confirm(confirm_token(asked.notice), now=NOW)
    assert confirmed.notice is not None

    for notice in (asked.notice, confirmed.notice):
        assert notice is not None
        in_html, in_text = urls_in_parts(notice.data)
        assert in_html == in_text
        assert len(in_text) >= 2  # the confirm or unsubscribe link and the site
