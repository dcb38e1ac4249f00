"""Subscribe with double opt-in over real HTTP: the mails, confirm links, and every abuse case."""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage

import httpx
import pytest

from publisher.delivery.tokens import make_confirm_token, make_token
from publisher.model import SubscriberStatus
from publisher.store import Store
from tests.delivery_support import TOKEN_KEY
from tests.server_support import LiveServer, Served

KEY = TOKEN_KEY.encode()
NOWISH = datetime.now(UTC)
LINK = re.compile(r"(http://127\.0\.0\.1:\d+/confirm\?token=[0-9A-Za-z._-]+)")


def confirm_link(message: EmailMessage) -> str:
    body = message.get_body(("plain",))
    assert body is not None
    found = LINK.findall(body.get_content())
    assert len(found) == 1
    return str(found[0])


def changed_last(token: str) -> str:
    """The token with its last character changed (to one it surely is not)."""
    return token[:-1] + ("B" if token.endswith("A") else "A")


def add(served: Served, email: str, status: SubscriberStatus) -> int:
    with Store.open(served.settings.database_url) as store:
        subscriber, _ = store.add_subscriber(email, "", now=datetime.now(UTC), status=status)
        return subscriber.id


# ---------------------------------------------------------------- the happy path


def test_subscribing_stores_a_pending_address_and_mails_a_confirmation_link(
    served: Served,
) -> None:
    response = served.subscribe("Jane@Example.org")

    assert response.status_code == 200
    assert "Check your inbox" in response.text
    assert "jane@example.org" in response.text
    assert response.headers["cache-control"] == "no-store"
    subscriber = served.subscriber("jane@example.org")
    assert subscriber is not None and subscriber.status == "pending"
    [mail] = served.mails(1)
    assert served.sink.messages[0].rcpt_tos == ("jane@example.org",)
    assert mail["To"] == "jane@example.org"
    assert mail["From"] == "Test Dispatch <desk@news.example.org>"
    assert mail["Subject"] == "Confirm your subscription to Test Dispatch"
    assert mail["Auto-Submitted"] == "auto-generated"
    assert mail["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    assert "Precedence" not in mail  # a single answer to a request, not list mail
    assert mail["Message-ID"].endswith("@news.example.org>")
    # Not on the list yet: no list headers (RFC 2369 / 8058) on the confirmation.
    for header in ("List-Unsubscribe", "List-Unsubscribe-Post", "List-Id"):
        assert header not in mail
    assert confirm_link(mail).startswith(served.url + "confirm?token=")
    html = mail.get_body(("html",))
    assert html is not None and confirm_link(mail).replace("&", "&amp;") in html.get_content()


def test_the_confirmation_is_plain_7bit_mime_with_short_lines(served: Served) -> None:
    served.subscribe("jane@example.org")
    served.mails(1)
    data = served.sink.messages[0].data

    assert data.isascii()
    assert max(len(line) for line in data.split(b"\r\n")) <= 78
    mail = served.sink.parsed()[0]
    assert mail.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in mail.iter_parts()] == ["text/plain", "text/html"]
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in mail.iter_parts())


def test_following_the_link_makes_the_address_active_and_sends_a_welcome(served: Served) -> None:
    client = served.client()
    served.subscribe("jane@example.org", client=client)
    link = confirm_link(served.mails(1)[0])

    page = client.get(link)

    assert page.status_code == 200
    assert "You are subscribed" in page.text
    assert f'href="{served.url}2026-11-24/"' in page.text  # the latest issue
    subscriber = served.subscriber("jane@example.org")
    assert subscriber is not None and subscriber.status == "active"
    assert subscriber.confirmed_at is not None
    welcome = served.mails(2)[1]
    assert welcome["Subject"] == "Welcome to Test Dispatch"
    text = welcome.get_body(("plain",))
    assert text is not None
    assert f"{served.url}2026-11-24/" in text.get_content()
    # The welcome is list mail: one-click unsubscribe headers pointing at this server.
    assert welcome["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.findall(r"<(http[^>]+)>", welcome["List-Unsubscribe"])[0]
    assert (
        url == f"{served.url}unsubscribe?token={make_token(KEY, subscriber.id, subscriber.email)}"
    )


def test_following_the_link_again_changes_nothing_and_sends_nothing(served: Served) -> None:
    client = served.client()
    served.subscribe("jane@example.org", client=client)
    link = confirm_link(served.mails(1)[0])
    assert client.get(link).status_code == 200
    served.mails(2)
    first = served.subscriber("jane@example.org")

    replay = client.get(link)

    assert replay.status_code == 200
    assert "You are subscribed" in replay.text
    assert served.subscriber("jane@example.org") == first
    served.no_more_mail(2)


def test_an_expired_link_is_refused_and_a_fresh_one_can_be_asked_for(served: Served) -> None:
    subscriber_id = add(served, "jane@example.org", "pending")
    old = datetime.now(UTC) - timedelta(hours=48, minutes=1)
    token = make_confirm_token(KEY, subscriber_id, "jane@example.org", old)
    client = served.client()

    page = client.get("confirm", params={"token": token})

    assert page.status_code == 400
    assert "This link has expired" in page.text
    assert 'action="http' in page.text  # the subscribe form, to get a new link
    subscriber = served.subscriber("jane@example.org")
    assert subscriber is not None and subscriber.status == "pending"
    served.no_more_mail(0, wait=0.1)


def test_sign_ups_that_expired_while_the_server_was_down_go_when_it_starts(
    served: Served,
) -> None:
    served.server.stop()
    with Store.open(served.settings.database_url) as store:
        for email, hours in (("stale@example.org", 49), ("fresh@example.org", 1)):
            moment = datetime.now(UTC) - timedelta(hours=hours)
            store.add_subscriber(email, "", now=moment, status="pending")

    port = int(served.url.rsplit(":", 1)[1].strip("/"))
    served.server = LiveServer(served.settings, port).start()

    assert served.subscriber("stale@example.org") is None
    fresh = served.subscriber("fresh@example.org")
    assert fresh is not None and fresh.status == "pending"


def test_a_link_still_within_its_time_works(serve_site: Callable[..., Served]) -> None:
    served = serve_site(confirm_ttl_hours=2)
    subscriber_id = add(served, "jane@example.org", "pending")
    recent = datetime.now(UTC) - timedelta(hours=1, minutes=50)
    token = make_confirm_token(KEY, subscriber_id, "jane@example.org", recent)

    assert served.client().get("confirm", params={"token": token}).status_code == 200
    subscriber = served.subscriber("jane@example.org")
    assert subscriber is not None and subscriber.status == "active"


@pytest.mark.parametrize(
    "forge",
    [
        lambda sid, email: "",
        lambda sid, email: "garbage",
        lambda sid, email: make_confirm_token(b"another-key-of-some-length", sid, email, NOWISH),
        lambda sid, email: make_confirm_token(KEY, sid, "mallory@example.org", NOWISH),
        lambda sid, email: make_confirm_token(KEY, sid + 1, email, NOWISH),
        lambda sid, email: make_token(KEY, sid, email),  # an unsubscribe token is no confirmation
        lambda sid, email: changed_last(make_confirm_token(KEY, sid, email, NOWISH)),
        lambda sid, email: make_confirm_token(KEY, sid, email, NOWISH + timedelta(days=1)),
    ],
    ids=["empty", "garbage", "other-key", "other-address", "other-id", "unsubscribe-token",
         "changed-mac", "from-the-future"],
)  # fmt: skip
def test_a_forged_or_mangled_link_activates_no_one(
    served: Served, forge: Callable[[int, str], str]
) -> None:
    subscriber_id = add(served, "jane@example.org", "pending")

    page = served.client().get(
        "confirm", params={"token": forge(subscriber_id, "jane@example.org")}
    )

    assert page.status_code == 400
    assert "This link does not work" in page.text
    subscriber = served.subscriber("jane@example.org")
    assert subscriber is not None and subscriber.status == "pending"


def test_a_link_made_before_an_unsubscribe_cannot_bring_the_address_back(served: Served) -> None:
    client = served.client()
    served.subscribe("jane@example.org", client=client)
    link = confirm_link(served.mails(1)[0])
    client.get(link)
    subscriber = served.subscriber("jane@example.org")
    assert subscriber is not None
    unsubscribe = client.post(
        "unsubscribe",
        params={"token": make_token(KEY, subscriber.id, subscriber.email)},
        data={"List-Unsubscribe": "One-Click"},
    )
    assert unsubscribe.status_code == 200

    page = client.get(link)

    assert page.status_code == 400
    assert "This link has expired" in page.text
    after = served.subscriber("jane@example.org")
    assert after is not None and after.status == "unsubscribed"


def test_someone_who_unsubscribed_can_subscribe_again_through_a_new_link(
    serve_site: Callable[..., Served],
) -> None:
    served = serve_site(confirm_resend_minutes=0)
    add(served, "jane@example.org", "unsubscribed")

    served.subscribe("jane@example.org")
    still = served.subscriber("jane@example.org")
    assert still is not None and still.status == "unsubscribed"  # until they confirm
    served.client().get(confirm_link(served.mails(1)[0]))

    back = served.subscriber("jane@example.org")
    assert back is not None and back.status == "active"


def test_get_subscribe_shows_the_form(served: Served) -> None:
    page = served.client().get("subscribe")

    assert page.status_code == 200
    assert f'<form method="post" action="{served.url}subscribe">' in page.text
    assert 'name="website"' in page.text


# ---------------------------------------------------------------- no address enumeration


def answer(served: Served, email: str) -> tuple[int, str, list[str]]:
    response = served.subscribe(email)
    names = sorted(k for k in response.headers if k != "date")
    return response.status_code, response.text.replace(email, "ADDRESS"), names


def test_the_answer_is_the_same_for_a_new_a_pending_an_active_and_a_gone_address(
    served: Served,
) -> None:
    # Same length, so nothing but the address could differ.
    add(served, "pend@example.org", "pending")
    add(served, "actv@example.org", "active")
    add(served, "gone@example.org", "unsubscribed")

    emails = ("newx@example.org", "pend@example.org", "actv@example.org", "gone@example.org")
    answers = {email: answer(served, email) for email in emails}

    assert len(set(map(repr, answers.values()))) == 1, answers
    # ...but only those not yet on the list get a confirmation.
    served.mails(3)
    served.no_more_mail(3)
    assert sorted(r for m in served.sink.messages for r in m.rcpt_tos) == [
        "gone@example.org",
        "newx@example.org",
        "pend@example.org",
    ]
    active = served.subscriber("actv@example.org")
    assert active is not None and active.status == "active"


# ---------------------------------------------------------------- abuse


def test_the_honeypot_gets_the_usual_page_but_nothing_is_stored_or_sent(served: Served) -> None:
    normal = answer(served, "real@example.org")
    bot = served.subscribe("bots@example.org", website="http://spam.example")

    assert bot.status_code == 200
    assert bot.text.replace("bots@example.org", "ADDRESS") == normal[1]
    assert served.subscriber("bots@example.org") is None
    served.mails(1)
    served.no_more_mail(1)


@pytest.mark.parametrize(
    "headers",
    [
        {},  # neither Origin nor Referer
        {"Origin": "https://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port is another origin
        {"Referer": "https://evil.example/page.html"},
    ],
    ids=["none", "foreign", "null", "other-port", "foreign-referer"],
)
def test_a_post_from_another_site_is_refused(served: Served, headers: dict[str, str]) -> None:
    response = served.subscribe("jane@example.org", headers=headers)

    assert response.status_code == 403
    assert "Not sent from this site" in response.text
    assert served.subscriber("jane@example.org") is None


def test_a_referer_from_our_own_pages_stands_in_for_a_missing_origin(served: Served) -> None:
    response = served.subscribe("jane@example.org", headers={"Referer": served.url + "2026-11-24/"})

    assert response.status_code == 200
    assert served.subscriber("jane@example.org") is not None


def test_allowed_origins_lets_another_site_host_the_form(serve_site: Callable[..., Served]) -> None:
    served = serve_site(allowed_origins='["https://www.example.org"]')

    ok = served.subscribe("jane@example.org", headers={"Origin": "https://WWW.example.org"})
    refused = served.subscribe("john@example.org", headers={"Origin": "https://example.org"})

    assert (ok.status_code, refused.status_code) == (200, 403)


def test_the_rate_limit_stops_one_client_and_says_when_to_come_back(
    serve_site: Callable[..., Served],
) -> None:
    served = serve_site(subscribe_limit=3, rate_window=3600)
    statuses = [served.subscribe(f"reader{n}@example.org").status_code for n in range(3)]

    blocked = served.subscribe("reader9@example.org")

    assert statuses == [200, 200, 200]
    assert blocked.status_code == 429
    assert "Too many requests" in blocked.text
    assert 1100 <= int(blocked.headers["retry-after"]) <= 1200  # one request back in 20 min
    assert served.subscriber("reader9@example.org") is None


def test_behind_a_trusted_proxy_each_forwarded_client_has_its_own_limit(
    serve_site: Callable[..., Served],
) -> None:
    served = serve_site(subscribe_limit=1)  # 127.0.0.1 is a trusted proxy by default

    def via(client_ip: str, email: str) -> int:
        headers = {"Origin": served.origin, "X-Forwarded-For": client_ip}
        return served.subscribe(email, headers=headers).status_code

    assert via("203.0.113.7", "a@example.org") == 200
    assert via("203.0.113.7", "b@example.org") == 429
    assert via("198.51.100.2", "c@example.org") == 200
    # A client cannot escape by prepending its own X-Forwarded-For: the proxy appends.
    assert via("192.0.2.1, 198.51.100.2", "d@example.org") == 429


def test_without_trusted_proxies_forwarded_headers_are_ignored(
    serve_site: Callable[..., Served],
) -> None:
    served = serve_site(subscribe_limit=1, trusted_proxies="[]")
    first = {"Origin": served.origin, "X-Forwarded-For": "203.0.113.7"}
    second = {"Origin": served.origin, "X-Forwarded-For": "198.51.100.2"}

    assert served.subscribe("a@example.org", headers=first).status_code == 200
    assert served.subscribe("b@example.org", headers=second).status_code == 429


def test_one_address_gets_one_confirmation_per_resend_interval(served: Served) -> None:
    for _ in range(3):
        assert served.subscribe("jane@example.org").status_code == 200

    served.mails(1)
    served.no_more_mail(1)


def test_mail_per_hour_caps_confirmations_for_everyone_together(
    serve_site: Callable[..., Served],
) -> None:
    served = serve_site(mail_per_hour=2)
    pages = {served.subscribe(f"reader{n}@example.org").status_code for n in range(4)}

    assert pages == {200}
    served.mails(2)
    served.no_more_mail(2)
    late = served.subscriber("reader3@example.org")
    assert late is not None and late.status == "pending"  # can ask again later


def test_a_body_over_the_limit_is_refused_before_it_is_read(
    serve_site: Callable[..., Served],
) -> None:
    served = serve_site(max_body_bytes=512)
    client = served.client()
    big = {"email": "jane@example.org", "website": "", "padding": "x" * 600}

    declared = client.post("subscribe", data=big, headers={"Origin": served.origin})

    def chunks() -> object:
        yield b"email=jane%40example.org&padding="
        for _ in range(10):
            yield b"x" * 100

    streamed = client.post(
        "subscribe",
        content=chunks(),  # type: ignore[arg-type]
        headers={"Origin": served.origin, "Content-Type": "application/x-www-form-urlencoded"},
    )

    assert declared.status_code == 413
    assert "Too large" in declared.text
    assert streamed.status_code == 413
    assert "content-length" not in streamed.request.headers  # it was chunked
    assert served.subscriber("jane@example.org") is None


def test_a_body_that_is_not_a_form_is_refused(served: Served) -> None:
    response = served.client().post(
        "subscribe", json={"email": "jane@example.org"}, headers={"Origin": served.origin}
    )

    assert response.status_code == 415
    assert served.subscriber("jane@example.org") is None


@pytest.mark.parametrize("email", ["", "jane", "jane@", "<script>@example.org", "a@b@c.org"])
def test_a_bad_address_is_named_and_nothing_is_stored(served: Served, email: str) -> None:
    response = served.subscribe(email)

    assert response.status_code == 400
    assert "Check the address" in response.text
    assert "<script>@" not in response.text  # escaped when echoed
    with Store.open(served.settings.database_url) as store:
        assert store.count_subscribers() == {}


def test_a_dead_smtp_server_loses_the_mail_but_not_the_subscriber(
    served: Served, caplog: pytest.LogCaptureFixture
) -> None:
    served.sink.stop()
    caplog.set_level(logging.WARNING, logger="publisher.server.app")

    response = served.subscribe("jane@example.org")

    assert response.status_code == 200
    subscriber = served.subscriber("jane@example.org")
    assert subscriber is not None and subscriber.status == "pending"
    served.server.stop()  # waits for the sender thread to finish
    [record] = [r for r in caplog.records if "not sent" in r.getMessage()]
    assert f"subscriber #{subscriber.id}" in record.getMessage()
    assert "jane@example.org" not in record.getMessage()
    assert TOKEN_KEY not in caplog.text


def test_the_pages_set_no_cookie_and_need_no_script(served: Served) -> None:
    client: httpx.Client = served.client()
    pages = [served.subscribe("jane@example.org", client=client), client.get("subscribe")]

    for page in pages:
        assert "set-cookie" not in page.headers
        assert "<script" not in page.text
        assert "style=" not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
