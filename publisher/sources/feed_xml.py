"""Read RSS and Atom documents with feedparser into sanitized entries."""

from __future__ import annotations

import calendar
import io
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from xml.sax.expatreader import ExpatParser

import feedparser
import feedparser.api

from publisher.errors import SourceError
from publisher.sources.clean import html_to_text, normalize_text, sanitize_html, shorten
from publisher.sources.feed_parse import (
    BLOCK_TAG,
    HTML_TYPES,
    NOT_A_FEED_HINT,
    SUMMARY_MAX,
    WHITESPACE,
    FeedEntry,
    ParsedFeed,
    build_entry,
    finish_feed,
    http_url,
    lead_text,
    text_to_html,
)


class _BufferedExpatParser(ExpatParser):
    """Expat handing over each run of text in one call instead of one call per entity.

    feedparser's per-call bookkeeping dominates its time on entity-escaped HTML content;
    buffering halves the parse time and gives the same result.
    """

    def reset(self) -> None:
        super().reset()
        parser: Any = getattr(self, "_parser")  # noqa: B009 (not in the type stubs)
        parser.buffer_text = True
        parser.buffer_size = 1 << 20


def create_parser(*args: Any, **kwargs: Any) -> ExpatParser:
    """The xml.sax driver hook: feedparser asks for its preferred parsers by module name."""
    return _BufferedExpatParser(*args, **kwargs)


if __name__ not in feedparser.api.PREFERRED_XML_PARSERS:
    feedparser.api.PREFERRED_XML_PARSERS.insert(0, __name__)


def parse_xml_feed(body: bytes, url: str, content_type: str | None) -> ParsedFeed:
    headers = {"content-location": url}
    if content_type:
        headers["content-type"] = content_type
    # Sanitizing and resolving happen once, below, with nh3: feedparser's own passes are
    # its slowest part and would be repeated work.
    result = feedparser.parse(
        io.BytesIO(body),
        sanitize_html=False,
        resolve_relative_uris=False,
        response_headers=headers,
    )
    version: str = result.get("version") or ""
    raw_entries: list[Any] = result.get("entries") or []
    warnings: list[str] = []
    exc = result.get("bozo_exception")
    # A feed served as text/plain or without a type is common and harmless: no warning.
    if result.get("bozo") and not isinstance(exc, feedparser.NonXMLContentType):
        problem = _describe_bozo(exc)
        if not version and not raw_entries:
            raise SourceError(_not_a_feed(body, problem), hint=NOT_A_FEED_HINT)
        warnings.append(f"{problem}; kept what could be read, ask the feed's publisher to fix it")
    elif not version:
        raise SourceError(_not_a_feed(body, ""), hint=NOT_A_FEED_HINT)
    feed: Mapping[str, Any] = result.get("feed") or {}
    feed_author = _person(feed.get("author_detail"), feed.get("author"))
    links = Counter(http_url(entry.get("link")) for entry in raw_entries)
    entries: list[FeedEntry] = []
    for raw in raw_entries:
        entry = _xml_entry(raw, url, feed_author, links)
        if entry is not None:
            entries.append(entry)
    title = _plain(feed.get("title_detail"), feed.get("title"))
    return finish_feed(version, title or None, entries, warnings, http_url(feed.get("link")))


def _not_a_feed(body: bytes, problem: str) -> str:
    head = body[:2048].lower()
    if b"<html" in head or b"<!doctype html" in head:
        return (
            "the address serves an HTML page, not a feed (the page's "
            '<link rel="alternate"> names its feed)'
        )
    return "not an RSS, Atom or JSON feed" + (f" ({problem})" if problem else "")


def _describe_bozo(exc: object) -> str:
    if isinstance(exc, feedparser.CharacterEncodingOverride):
        return f"the declared character encoding is wrong; read as best as possible ({exc})"
    line = getattr(exc, "getLineNumber", None)
    where = f"line {line()}: " if callable(line) else ""
    message = getattr(exc, "getMessage", None)
    text = message() if callable(message) else str(exc)
    return f"ill-formed XML ({where}{text})"


def _xml_entry(
    raw: Mapping[str, Any], base: str, feed_author: str | None, links: Counter[str | None]
) -> FeedEntry | None:
    link = http_url(raw.get("link"))
    contents: list[Mapping[str, Any]] = list(raw.get("content") or [])
    summary_detail: Mapping[str, Any] | None = raw.get("summary_detail")
    body_detail = next(
        (c for c in contents if str(c.get("type", "")).lower() in HTML_TYPES),
        contents[0] if contents else summary_detail,
    )
    content_html = ""
    if body_detail is not None:
        content_html = _to_html(body_detail, base)
    summary = ""
    if contents and summary_detail is not None:
        summary = shorten(lead_text(_to_html(summary_detail, base)), SUMMARY_MAX)
    title = _plain(raw.get("title_detail"), raw.get("title"))
    published = _struct_time(raw.get("published_parsed"))
    # dict.get: FeedParserDict maps a missing `updated` to `published` with a warning.
    updated = _struct_time(dict.get(raw, "updated_parsed")) if isinstance(raw, dict) else None
    author = _person(raw.get("author_detail"), raw.get("author")) or feed_author
    tags = tuple(
        dict.fromkeys(
            normalize_text(str(tag.get("term") or "")).strip()
            for tag in raw.get("tags") or []
            if str(tag.get("term") or "").strip()
        )
    )
    return build_entry(
        raw_id=raw.get("id"),
        link=link,
        links=links,
        title=title,
        content_html=content_html,
        summary=summary,
        author=author,
        published=published,
        updated=updated,
        tags=tags,
        as_written=(raw.get("title"), [c.get("value") for c in contents], raw.get("summary")),
    )


def _to_html(detail: Mapping[str, Any], base: str) -> str:
    value = str(detail.get("value") or "")
    kind = str(detail.get("type") or "text/html").lower()
    if kind not in HTML_TYPES:
        return text_to_html(value)
    cleaned = sanitize_html(value, base_url=str(detail.get("base") or base)).strip()
    # RSS descriptions are often bare text: give them a paragraph like any other body.
    return cleaned if not cleaned or BLOCK_TAG.search(cleaned) else f"<p>{cleaned}</p>"


def _plain(detail: Mapping[str, Any] | None, value: object) -> str:
    text = str(value or "")
    if detail is not None and str(detail.get("type", "")).lower() in HTML_TYPES:
        text = html_to_text(text)
    return WHITESPACE.sub(" ", normalize_text(text)).strip()


def _person(detail: Mapping[str, Any] | None, fallback: object) -> str | None:
    name = (detail or {}).get("name") or fallback
    if not isinstance(name, str):
        return None
    return WHITESPACE.sub(" ", normalize_text(name)).strip() or None


def _struct_time(value: object) -> datetime | None:
    if value is None:
        return None
    try:
        return datetime.fromtimestamp(calendar.timegm(value), UTC)  # type: ignore[arg-type]
    except (TypeError, ValueError, OverflowError, OSError):
        return None
