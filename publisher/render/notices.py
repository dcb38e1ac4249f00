"""Subscribing's mails (confirmation, welcome) and the server's own pages, from the theme."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jinja2

from publisher.errors import RenderError
from publisher.model import IssueSummary
from publisher.render.digest import page_context, render_template
from publisher.settings import Settings


@dataclass(frozen=True, slots=True)
class MailText:
    """A mail's subject and its two bodies."""

    subject: str
    text: str
    html: str


def render_confirm_mail(
    env: jinja2.Environment, settings: Settings, *, confirm_url: str, ttl_hours: float
) -> MailText:
    """confirm_email.txt / .html: the link that makes a pending address active."""
    return _mail(
        env,
        "confirm_email",
        site=settings.site,
        confirm_url=confirm_url,
        ttl_hours=format_hours(ttl_hours),
    )


def render_welcome_mail(
    env: jinja2.Environment,
    settings: Settings,
    *,
    greeting: str,
    latest: IssueSummary | None,
    unsubscribe_url: str,
) -> MailText:
    """welcome_email.txt / .html: sent once an address is confirmed; links the latest issue."""
    return _mail(
        env,
        "welcome_email",
        site=settings.site,
        greeting=greeting,
        latest=latest,
        archive_url=settings.site.url,
        unsubscribe_url=unsubscribe_url,
    )


def render_page(
    env: jinja2.Environment, settings: Settings, name: str, *, path: str, **context: Any
) -> bytes:
    """One of the server's pages (page_*.html), which extend base.html like the site's pages.

    `path` is the page's place below site.url ("subscribe"); the server answers at the
    site's root, so links to the stylesheet and the archive are relative to it.
    """
    common = page_context(settings, root="")
    html = render_template(
        env, name, **common, canonical=f"{settings.site.url}{path}", page_path=path, **context
    )
    return html.encode("utf-8")


def _mail(env: jinja2.Environment, name: str, **context: Any) -> MailText:
    """The .txt template starts with a `Subject:` line and a blank line, then the body."""
    raw = render_template(env, f"{name}.txt", **context)
    head, blank, body = raw.replace("\r\n", "\n").partition("\n\n")
    if not blank or not head.startswith("Subject:") or "\n" in head:
        raise RenderError(
            "the first line must be 'Subject: ...', followed by a blank line",
            where=f"{name}.txt",
            hint="see the default theme's template",
        )
    subject = " ".join(head.removeprefix("Subject:").split())
    if not subject:
        raise RenderError("the Subject line is empty", where=f"{name}.txt")
    html = render_template(env, f"{name}.html", subject=subject, **context)
    return MailText(subject=subject, text=body.lstrip("\n"), html=html)


def format_hours(value: float) -> str:
    """48.0 -> "48", 0.5 -> "0.5"."""
    return str(int(value)) if value == int(value) else f"{value:g}"
