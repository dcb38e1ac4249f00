"""Unsubscribe tokens: made and checked under the secret, never forgeable or reusable."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.delivery.tokens import (
    check_confirm_token,
    check_token,
    confirm_token_parts,
    load_key,
    make_confirm_token,
    make_token,
    message_id_tag,
    token_subscriber,
)
from publisher.errors import DeliveryError
from tests.conftest import Site

KEY = b"a-secret-of-enough-length"


def test_a_token_names_its_subscriber_and_checks_under_the_same_key() -> None:
    token = make_token(KEY, 42, "jane@example.org")

    assert token_subscriber(token) == 42
    assert check_token(KEY, token, 42, "jane@example.org")


def test_a_token_is_url_safe_and_short() -> None:
    token = make_token(KEY, 123456, "jane@example.org")

    assert len(token) < 40
    assert all(c.isalnum() or c in "._-" for c in token)


@pytest.mark.parametrize(
    ("key", "subscriber_id", "email"),
    [
        (b"another-secret-of-length", 42, "jane@example.org"),  # other key
        (KEY, 43, "jane@example.org"),  # another subscriber
        (KEY, 42, "john@example.org"),  # id reused by another address
    ],
)
def test_a_token_fails_for_another_key_subscriber_or_address(
    key: bytes, subscriber_id: int, email: str
) -> None:
    token = make_token(KEY, 42, "jane@example.org")

    assert not check_token(key, token, subscriber_id, email)


def test_changing_the_id_in_a_token_does_not_unsubscribe_someone_else() -> None:
    token = make_token(KEY, 42, "jane@example.org")
    forged = "43" + token[2:]

    assert token_subscriber(forged) == 43
    assert not check_token(KEY, forged, 43, "other@example.org")


@given(st.text(max_size=80))
def test_any_text_is_either_a_wellformed_token_or_refused(text: str) -> None:
    subscriber_id = token_subscriber(text)

    assert subscriber_id is None or subscriber_id > 0
    assert not check_token(KEY, text, subscriber_id or 1, "jane@example.org")


def test_message_id_tags_are_stable_per_message_and_differ_between_messages() -> None:
    one = message_id_tag(KEY, "list.example.org", 3, 42)

    assert one == message_id_tag(KEY, "list.example.org", 3, 42)
    assert one != message_id_tag(KEY, "list.example.org", 4, 42)
    assert one != message_id_tag(KEY, "list.example.org", 3, 43)
    assert one != message_id_tag(KEY, "other.example.org", 3, 42)


def test_the_key_comes_from_the_variable_the_settings_name(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_TOKEN_KEY", "s" * 32)

    assert load_key(site.settings()) == b"s" * 32


def test_a_missing_key_says_which_variable_to_set(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBLISHER_TOKEN_KEY", raising=False)

    with pytest.raises(DeliveryError) as info:
        load_key(site.settings())
    assert "PUBLISHER_TOKEN_KEY is not set" in str(info.value)
    assert "token_key_env" in str(info.value)


def test_a_short_key_is_refused_without_showing_it(
    site: Site, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUBLISHER_TOKEN_KEY", "hunter2")

    with pytest.raises(DeliveryError) as info:
        load_key(site.settings())
    assert "shorter than 16" in str(info.value)
    assert "hunter2" not in str(info.value)


# ---------------------------------------------------------------- server (issue 7): confirm links

ISSUED = datetime(2026, 11, 24, 6, 0, 0, 250_000, tzinfo=UTC)


def test_a_confirm_token_names_who_and_when_to_the_millisecond() -> None:
    token = make_confirm_token(KEY, 42, "jane@example.org", ISSUED)

    assert confirm_token_parts(token) == (42, ISSUED)
    assert check_confirm_token(KEY, token, 42, "jane@example.org")
    assert all(c.isalnum() or c in "._-" for c in token)


@pytest.mark.parametrize(
    ("key", "subscriber_id", "email"),
    [(b"another-secret-of-length", 42, "jane@example.org"), (KEY, 43, "jane@example.org"),
     (KEY, 42, "john@example.org")],
)  # fmt: skip
def test_a_confirm_token_fails_for_another_key_subscriber_or_address(
    key: bytes, subscriber_id: int, email: str
) -> None:
    token = make_confirm_token(KEY, 42, "jane@example.org", ISSUED)

    assert not check_confirm_token(key, token, subscriber_id, email)


def test_a_changed_time_or_a_token_of_the_other_kind_does_not_check() -> None:
    token = make_confirm_token(KEY, 42, "jane@example.org", ISSUED)
    sid, stamp, mac = token.split(".")
    later = f"{sid}.{int(stamp) + 86_400_000}.{mac}"  # "issued a day later": a longer life

    assert not check_confirm_token(KEY, later, 42, "jane@example.org")
    assert token_subscriber(token) is None  # not an unsubscribe token
    assert confirm_token_parts(make_token(KEY, 42, "jane@example.org")) is None


@given(st.text(max_size=80))
def test_any_text_is_a_confirm_token_only_if_we_made_it(text: str) -> None:
    parts = confirm_token_parts(text)
    if parts is not None:
        assert not check_confirm_token(KEY, text, parts[0], "jane@example.org") or (
            text.strip() == make_confirm_token(KEY, parts[0], "jane@example.org", parts[1])
        )
