"""Unsubscribe over real HTTP: the one-button page and RFC 8058 one-click POSTs."""

from __future__ import annotations

import re
from datetime import UTC, datetime

import pytest

from publisher.delivery.tokens import make_token
from publisher.pipeline import send
from publisher.store import Store
from tests.delivery_support import TOKEN_KEY
from tests.server_support import Served

KEY = TOKEN_KEY.encode()
ONE_CLICK = {"List-Unsubscribe": "One-Click"}


def active(served: Served, email: str = "jane@example.org") -> str:
    """An active subscriber; returns their unsubscribe token."""
    with Store.open(served.settings.database_url) as store:
        subscriber, _ = store.add_subscriber(email, "Jane", now=datetime.now(UTC))
    return make_token(KEY, subscriber.id, email)


def status(served: Served, email: str = "jane@example.org") -> str:
    subscriber = served.subscriber(email)
    assert subscriber is not None
    return subscriber.status


def test_the_link_opens_a_one_button_page_that_changes_nothing_yet(served: Served) -> None:
    token = active(served)

    page = served.client().get("unsubscribe", params={"token": token})

    assert page.status_code == 200
    assert "jane@example.org" in page.text
    assert page.text.count("<form") == 1  # the button; no subscribe form here
    assert f'<form class="unsubscribe" method="post" action="unsubscribe?token={token}">' in (
        page.text
    )
    assert '<input type="hidden" name="List-Unsubscribe" value="One-Click">' in page.text
    assert page.text.count("<button") == 1
    assert status(served) == "active"  # a link scanner opening it unsubscribes no one


def test_one_click_unsubscribes_at_once_without_cookie_or_origin(served: Served) -> None:
    token = active(served)

    # As a mailbox provider sends it: no Origin, no cookie, form-encoded (RFC 8058 section 3.2).
    response = served.client().post("unsubscribe", params={"token": token}, data=ONE_CLICK)

    assert response.status_code == 200
    assert "You are unsubscribed" in response.text
    assert "set-cookie" not in response.headers
    assert status(served) == "unsubscribed"


def test_one_click_is_idempotent(served: Served) -> None:
    token = active(served)
    client = served.client()
    first = client.post("unsubscribe", params={"token": token}, data=ONE_CLICK)
    moment = served.subscriber("jane@example.org")

    again = client.post("unsubscribe", params={"token": token}, data=ONE_CLICK)

    assert (first.status_code, again.status_code) == (200, 200)
    assert "You are unsubscribed" in again.text
    assert served.subscriber("jane@example.org") == moment  # not even unsubscribed_at moved
    page = client.get("unsubscribe", params={"token": token})
    assert page.status_code == 200
    assert "<button" not in page.text.split("<main>")[1].split("</main>")[0]


def test_one_click_as_multipart_form_data_works_too(served: Served) -> None:
    token = active(served)

    response = served.client().post(
        "unsubscribe", params={"token": token}, files={"List-Unsubscribe": (None, "One-Click")}
    )

    assert response.request.headers["content-type"].startswith("multipart/form-data")
    assert response.status_code == 200
    assert status(served) == "unsubscribed"


def test_one_click_without_a_content_type_works_too(served: Served) -> None:
    token = active(served)

    response = served.client().post(
        "unsubscribe", params={"token": token}, content=b"List-Unsubscribe=One-Click"
    )

    assert response.status_code == 200
    assert status(served) == "unsubscribed"


@pytest.mark.parametrize(
    "body", [{}, {"List-Unsubscribe": "Yes"}, {"unsubscribe": "One-Click"}], ids=repr
)
def test_a_post_without_the_one_click_body_unsubscribes_no_one(
    served: Served, body: dict[str, str]
) -> None:
    token = active(served)

    response = served.client().post("unsubscribe", params={"token": token}, data=body)

    assert response.status_code == 400
    assert status(served) == "active"


@pytest.mark.parametrize(
    "token",
    ["", "garbage", "1.AAAAAAAAAAAAAAAAAAAAAA", make_token(b"another-key-of-length", 1, "x@y.org")],
    ids=["empty", "garbage", "zero-mac", "other-key"],
)
def test_a_bad_token_gets_a_clear_page_and_unsubscribes_no_one(served: Served, token: str) -> None:
    active(served)
    client = served.client()

    page = client.get("unsubscribe", params={"token": token})
    post = client.post("unsubscribe", params={"token": token}, data=ONE_CLICK)

    assert page.status_code == post.status_code == 400
    assert "This unsubscribe link does not work" in page.text
    assert "desk@news.example.org" in page.text  # whom to write to instead
    assert status(served) == "active"


def test_the_token_of_one_subscriber_never_unsubscribes_another(served: Served) -> None:
    jane = active(served, "jane@example.org")
    active(served, "john@example.org")
    john_id = served.subscriber("john@example.org")
    assert john_id is not None
    forged = f"{john_id.id}.{jane.split('.')[1]}"

    response = served.client().post("unsubscribe", params={"token": forged}, data=ONE_CLICK)

    assert response.status_code == 400
    assert status(served, "john@example.org") == "active"


def test_the_list_unsubscribe_link_of_a_delivered_issue_works_here(served: Served) -> None:
    active(served)
    report = send(served.settings, now=datetime.now(UTC))
    assert report.sent == 1
    [message] = served.sink.parsed()
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    url = re.findall(r"<(http[^>]+)>", message["List-Unsubscribe"])[0]
    assert url.startswith(served.url + "unsubscribe?token=")

    # What a mail program does on "unsubscribe": POST the body to the header's URL.
    response = served.client().post(url, data=ONE_CLICK)

    assert response.status_code == 200
    assert status(served) == "unsubscribed"


def test_the_button_on_the_page_posts_what_one_click_posts(served: Served) -> None:
    token = active(served)
    client = served.client()
    page = client.get("unsubscribe", params={"token": token})
    action = re.findall(r'<form class="unsubscribe" method="post" action="([^"]+)">', page.text)[0]
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]+)">', page.text))

    # The form, submitted as a browser would (relative action, from this page, same origin).
    response = client.post(
        action.replace("&amp;", "&"), data=fields, headers={"Origin": served.origin}
    )

    assert fields == ONE_CLICK
    assert response.status_code == 200
    assert status(served) == "unsubscribed"
