"""Unsubscribe tokens: an HMAC of the subscriber under a secret from the environment."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from datetime import UTC, datetime

from publisher.errors import DeliveryError
from publisher.settings import Settings

MIN_KEY_LENGTH = 16
_MAC_LENGTH = 22  # base64url characters: 132 bits
_TOKEN = re.compile(rf"^([1-9][0-9]{{0,17}})\.([A-Za-z0-9_-]{{{_MAC_LENGTH}}})$")


def load_key(settings: Settings) -> bytes:
    """The signing secret, from the environment variable the settings name."""
    name = settings.delivery.token_key_env
    secret = settings.secret(name)
    if secret is None:
        raise DeliveryError(
            f"the environment variable {name} is not set",
            where="[delivery] token_key_env",
            hint="set it to a long random secret (python -c 'import secrets; "
            "print(secrets.token_urlsafe(32))') and keep it: a new one voids every link sent",
        )
    if len(secret) < MIN_KEY_LENGTH:
        raise DeliveryError(
            f"the secret in {name} is shorter than {MIN_KEY_LENGTH} characters",
            where="[delivery] token_key_env",
            hint="use a long random value",
        )
    return secret.encode()


def _mac(key: bytes, purpose: str, *parts: object) -> str:
    message = "\x00".join([purpose, *(str(p) for p in parts)]).encode()
    digest = hmac.new(key, message, hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).decode()[:_MAC_LENGTH]


def make_token(key: bytes, subscriber_id: int, email: str) -> str:
    """`<id>.<mac>`: URL-safe, names the subscriber, and only we can make it."""
    return f"{subscriber_id}.{_mac(key, 'unsubscribe', subscriber_id, email)}"


def token_subscriber(token: str) -> int | None:
    """The subscriber id a well-formed token names (not yet checked), else None."""
    match = _TOKEN.match(token.strip())
    return int(match.group(1)) if match else None


def check_token(key: bytes, token: str, subscriber_id: int, email: str) -> bool:
    """True when `token` was made for this subscriber; compared in constant time."""
    expected = make_token(key, subscriber_id, email)
    return hmac.compare_digest(expected.encode(), token.strip().encode("utf-8", "replace"))


def message_id_tag(key: bytes, list_id: str, issue_number: int, subscriber_id: int) -> str:
    """An unguessable, stable part of a Message-ID: a retry of a message keeps its id."""
    return _mac(key, "message-id", list_id, issue_number, subscriber_id)[:16]


# --- server (issue 7): confirmation links for the double opt-in

_CONFIRM_TOKEN = re.compile(
    rf"^([1-9][0-9]{{0,17}})\.([1-9][0-9]{{0,14}})\.([A-Za-z0-9_-]{{{_MAC_LENGTH}}})$"
)


def make_confirm_token(key: bytes, subscriber_id: int, email: str, issued: datetime) -> str:
    """`<id>.<issued, Unix milliseconds>.<mac>`: says who asked and when; only we can make it.

    Signed under another purpose than unsubscribe tokens, so neither stands in for the other.
    """
    stamp = int(issued.timestamp() * 1000)
    return f"{subscriber_id}.{stamp}.{_mac(key, 'confirm', subscriber_id, email, stamp)}"


def confirm_token_parts(token: str) -> tuple[int, datetime] | None:
    """(subscriber id, when it was issued) of a well-formed token (not yet checked), else None."""
    match = _CONFIRM_TOKEN.match(token.strip())
    if match is None:
        return None
    try:
        issued = datetime.fromtimestamp(int(match.group(2)) / 1000, UTC)
    except (OverflowError, OSError, ValueError):
        return None
    return int(match.group(1)), issued


def check_confirm_token(key: bytes, token: str, subscriber_id: int, email: str) -> bool:
    """True when `token` was made by us for this subscriber; compared in constant time."""
    parts = confirm_token_parts(token)
    if parts is None or parts[0] != subscriber_id:
        return False
    expected = make_confirm_token(key, subscriber_id, email, parts[1])
    return hmac.compare_digest(expected.encode(), token.strip().encode("utf-8", "replace"))
