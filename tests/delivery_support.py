"""Helpers for delivery tests: a site with a published issue, subscribers, settings for a sink."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default
from pathlib import Path

import lxml.html

from publisher.model import PLACEHOLDER_UNSUBSCRIBE_URL, Issue, Notice
from publisher.settings import Settings
from publisher.store import Store
from tests.conftest import Site
from tests.smtp_sink import SmtpSink

TOKEN_KEY = "test-secret-key-0123456789abcdef"
PUBLISHED = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
SEND_NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)

EMAIL_HTML = """\
<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>{title}</title></head>
<body style="margin:0;padding:0">
<p style="font-family:Georgia,serif">%%GREETING%%</p>
<h1 style="font-size:24px">Harbour lights return – “Grüße” from the quay</h1>
<p style="color:#333;line-height:1.5">{body}</p>
<p style="font-size:12px">Sent to %%RECIPIENT%%.
<a href="%%UNSUBSCRIBE_URL%%" style="color:#666">Unsubscribe</a></p>
</body></html>
"""
EMAIL_TEXT = """\
%%GREETING%%

Harbour lights return – “Grüße” from the quay

{body}

Sent to %%RECIPIENT%%. Unsubscribe: %%UNSUBSCRIBE_URL%%
"""


def smtp_settings(sink: SmtpSink, **extra: object) -> str:
    """A [smtp] and [delivery] block pointing at the sink."""
    smtp = {
        "host": sink.host,
        "port": sink.port,
        "security": "none",
        "timeout": 5.0,
        "connections": 2,
    }
    delivery: dict[str, object] = {
        "from_address": "Test Dispatch <desk@news.example.org>",
        "retry_base": 600.0,
        "max_attempts": 3,
        "bounce_threshold": 1,
    }
    for key, value in extra.items():
        section, _, name = key.partition("__")
        (smtp if section == "smtp" else delivery)[name] = value
    return "\n[smtp]\n" + _toml(smtp) + "\n[delivery]\n" + _toml(delivery)


def _toml(values: dict[str, object]) -> str:
    lines = []
    for key, value in values.items():
        if isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        elif isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


@dataclass
class DeliverySite:
    site: Site
    settings: Settings
    issue: Issue

    @property
    def root(self) -> Path:
        return self.site.root


def publish_issue(
    settings: Settings,
    number: int = 1,
    *,
    title: str = "Test Dispatch #1: Harbour lights return",
    body: str = "The lamps on the quay are lit again. " * 40,
    folder: str | None = None,
) -> Issue:
    """What `publisher publish` leaves behind: the issue in the store, its email on disk."""
    folder = folder or f"2026-11-{23 + number:02d}"
    issue = Issue(number, folder, PUBLISHED, title, ())
    with Store.open(settings.database_url) as store:
        store.save_issue(issue)
    target = settings.output_dir / folder
    target.mkdir(parents=True, exist_ok=True)
    (target / "email.html").write_text(EMAIL_HTML.format(title=title, body=body), encoding="utf-8")
    (target / "email.txt").write_text(EMAIL_TEXT.format(body=body), encoding="utf-8")
    return issue


def add_subscribers(settings: Settings, count: int, *, start: int = 1) -> list[str]:
    """`count` active subscribers reader1@example.org ...; returns their addresses."""
    addresses = [f"reader{n}@example.org" for n in range(start, start + count)]
    with Store.open(settings.database_url) as store:
        store.import_subscribers(
            ((a, f"Reader {n}") for n, a in enumerate(addresses, start=start)), now=PUBLISHED
        )
    return addresses


def delivery_site(
    make_site: Callable[..., Site], sink: SmtpSink, subscribers: int = 0, **extra: object
) -> DeliverySite:
    site = make_site(extra=smtp_settings(sink, **extra))
    settings = site.settings()
    issue = publish_issue(settings)
    if subscribers:
        add_subscribers(settings, subscribers)
    return DeliverySite(site, settings, issue)


def mail_body(data: bytes, kind: str) -> str:
    """The decoded text of a message's "plain" or "html" part."""
    message = message_from_bytes(data, policy=default)
    assert isinstance(message, EmailMessage)
    body = message.get_body((kind,))
    assert body is not None
    content: str = body.get_content()
    return content


def confirm_token(notice: Notice | None) -> str:
    """The token of the confirmation link in a confirmation mail."""
    assert notice is not None
    return mail_body(notice.data, "plain").split("confirm?token=")[1].split()[0]


# A URL in plain text, or the unsubscribe placeholder a rendered digest holds in its place.
_TEXT_URL = re.compile(rf"https?://\S+|{re.escape(PLACEHOLDER_UNSUBSCRIBE_URL)}")


def urls_in(page: str, text: str) -> tuple[Counter[str], Counter[str]]:
    """Every URL of an HTML part (links and pictures) and of its text part, counted."""
    in_html = Counter(
        str(url) for url in lxml.html.document_fromstring(page).xpath("//a/@href | //img/@src")
    )
    return in_html, Counter(_TEXT_URL.findall(text))


def urls_in_parts(data: bytes) -> tuple[Counter[str], Counter[str]]:
    """urls_in() of a whole mail's two parts."""
    return urls_in(mail_body(data, "html"), mail_body(data, "plain"))
