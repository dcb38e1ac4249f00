"""Parse one upstream feed document (RSS, Atom or JSON Feed) into sanitized entries."""

from __future__ import annotations

import hashlib
import html
import json
import re
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urljoin, urlsplit

from publisher.errors import SourceError
from publisher.sources.clean import html_to_text, normalize_text, sanitize_html, shorten

TITLE_MAX = 200
SUMMARY_MAX = 300
JSON_FEED_VERSION_PREFIX = "https://jsonfeed.org/version/1"
HTML_TYPES = {"text/html", "application/xhtml+xml", "html", "xhtml"}
WHITESPACE = re.compile(r"\s+")
_PARAGRAPH_BREAK = re.compile(r"\n\s*\n")
NOT_A_FEED_HINT = "check the feed's url in settings.toml; it must serve RSS, Atom or JSON Feed"
BLOCK_TAG = re.compile(r"<(?:p|div|ul|ol|dl|h[1-6]|blockquote|pre|table|figure|hr)\b", re.I)


@dataclass(frozen=True, slots=True)
class FeedEntry:
    """One upstream entry, cleaned: HTML sanitized, links absolute, text normalised."""

    identity: str  # the entry's id, else its link, else a hash of title and date
    link: str | None  # absolute http(s) URL of the original article
    link_is_unique: bool  # no other entry of the document has this link: it may identify it
    title: str
    content_html: str
    summary: str  # plain text
    author: str | None
    published: datetime | None  # aware, UTC
    updated: datetime | None  # aware, UTC
    tags: tuple[str, ...]
    fingerprint: str  # hash of what upstream wrote (not of our cleaning): an edit changes it


@dataclass(frozen=True, slots=True)
class ParsedFeed:
    """A feed document's entries in document order, and what was odd about it."""

    format: str  # feedparser's version ("rss20", "atom10", ...) or "json1"
    title: str | None
    entries: tuple[FeedEntry, ...]
    warnings: tuple[str, ...] = ()
    link: str | None = None  # the site the feed belongs to (absolute http(s))


def parse_feed(body: bytes, url: str, content_type: str | None = None) -> ParsedFeed:
    """Read a feed document fetched from `url`; raise SourceError when nothing is usable.

    Relative links resolve against xml:base, else `url`. Ill-formed XML that can still be
    read gives its entries and a warning.
    """
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    if mime.endswith("json") or body.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"{":
        return parse_json_feed(body, url)
    # feedparser (and chardet with it) loads only where XML is parsed: the polling process
    # hands documents to parse workers and need not carry it.
    from publisher.sources.feed_xml import parse_xml_feed

    return parse_xml_feed(body, url, content_type)


# ---------------------------------------------------------------------------- JSON Feed


def parse_json_feed(body: bytes, url: str) -> ParsedFeed:
    """JSON Feed 1.0 or 1.1 (https://jsonfeed.org/version/1.1); SourceError when unusable."""
    try:
        doc = json.loads(body)
    except (ValueError, RecursionError) as exc:
        raise SourceError(
            f"not valid JSON ({str(exc).splitlines()[0][:200]})", hint=NOT_A_FEED_HINT
        ) from None
    if not isinstance(doc, dict):
        raise SourceError("not a JSON Feed (the document is not an object)", hint=NOT_A_FEED_HINT)
    version = doc.get("version")
    if not isinstance(version, str) or not version.startswith(JSON_FEED_VERSION_PREFIX):
        raise SourceError(
            f"not a JSON Feed (version {version!r}, expected {JSON_FEED_VERSION_PREFIX}.x)",
            hint=NOT_A_FEED_HINT,
        )
    items = doc.get("items")
    if not isinstance(items, list):
        raise SourceError("JSON Feed without an 'items' list", hint=NOT_A_FEED_HINT)
    base = http_url(urljoin(url, _string(doc.get("home_page_url")))) or url
    feed_author = _json_author(doc)
    warnings: list[str] = []
    links: Counter[str | None] = Counter(
        _json_link(item, base) for item in items if isinstance(item, dict)
    )
    entries: list[FeedEntry] = []
    for number, item in enumerate(items, start=1):
        if not isinstance(item, dict):
            warnings.append(f"item {number} is not an object; skipped")
            continue
        entry = _json_entry(item, base, feed_author, links, number, warnings)
        if entry is not None:
            entries.append(entry)
    title = WHITESPACE.sub(" ", normalize_text(_string(doc.get("title")))).strip()
    home = (
        http_url(urljoin(url, _string(doc.get("home_page_url"))))
        if doc.get("home_page_url")
        else None
    )
    return finish_feed("json1", title or None, entries, warnings, home)


def _json_entry(
    item: Mapping[str, Any],
    base: str,
    feed_author: str | None,
    links: Counter[str | None],
    number: int,
    warnings: list[str],
) -> FeedEntry | None:
    raw_id = item.get("id")
    if isinstance(raw_id, int | float) and not isinstance(raw_id, bool):
        raw_id = str(raw_id)  # JSON Feed 1.0 readers accept numeric ids as strings
    link = _json_link(item, base)
    item_base = link or base
    content_html = _string(item.get("content_html"))
    content_text = _string(item.get("content_text"))
    if content_html:
        body = sanitize_html(content_html, base_url=item_base)
    elif content_text:
        body = text_to_html(content_text)
    else:
        body = ""
    title = WHITESPACE.sub(" ", normalize_text(_string(item.get("title")))).strip()
    if not title and not lead_text(body):
        warnings.append(f"item {number} has neither title nor content; skipped")
        return None
    summary = shorten(normalize_text(_string(item.get("summary"))), SUMMARY_MAX)
    published = _rfc3339(item.get("date_published"), number, warnings)
    updated = _rfc3339(item.get("date_modified"), number, warnings)
    author = _json_author(item) or feed_author
    raw_tags = item.get("tags")
    tags = tuple(
        dict.fromkeys(
            normalize_text(tag).strip()
            for tag in (raw_tags if isinstance(raw_tags, list) else [])
            if isinstance(tag, str) and tag.strip()
        )
    )
    return build_entry(
        raw_id=raw_id,
        link=link,
        links=links,
        title=title,
        content_html=body,
        summary=summary,
        author=author,
        published=published,
        updated=updated,
        tags=tags,
        as_written=(item.get("title"), [content_html, content_text], item.get("summary")),
    )


def _json_link(item: Mapping[str, Any], base: str) -> str | None:
    for key in ("url", "external_url"):
        value = _string(item.get(key)).strip()
        if value:
            return http_url(urljoin(base, value))
    return None


def _json_author(obj: Mapping[str, Any]) -> str | None:
    authors = obj.get("authors")  # 1.1
    candidates = authors if isinstance(authors, list) else [obj.get("author")]  # 1.0
    for author in candidates:
        if isinstance(author, dict) and isinstance(author.get("name"), str):
            name = WHITESPACE.sub(" ", normalize_text(author["name"])).strip()
            if name:
                return name
    return None


def _rfc3339(value: object, number: int, warnings: list[str]) -> datetime | None:
    if value is None:
        return None
    if isinstance(value, str):
        try:
            moment = datetime.fromisoformat(value.strip())
        except ValueError:
            pass
        else:
            if moment.tzinfo is None:
                moment = moment.replace(tzinfo=UTC)
            return moment.astimezone(UTC)
    warnings.append(f"item {number}: date {str(value)[:40]!r} is not RFC 3339; ignored")
    return None


def _string(value: object) -> str:
    return value if isinstance(value, str) else ""


# ---------------------------------------------------------------------------- both


def http_url(value: object) -> str | None:
    if not isinstance(value, str):
        return None
    text = value.strip()
    try:
        parts = urlsplit(text)
    except ValueError:
        return None
    return text if parts.scheme in ("http", "https") and parts.netloc else None


def lead_text(fragment: str, limit: int = 4 * SUMMARY_MAX) -> str:
    """The visible text at the start of an HTML fragment: enough for a summary or a title."""
    head = fragment[:limit]
    if len(fragment) > limit:
        head = head[: head.rfind("<")] if head.rfind("<") > head.rfind(">") else head
    return html_to_text(head)


def text_to_html(text: str) -> str:
    paragraphs = (p.strip() for p in _PARAGRAPH_BREAK.split(normalize_text(text)))
    return "\n".join(
        "<p>" + html.escape(p, quote=False).replace("\n", "<br>") + "</p>" for p in paragraphs if p
    )


def build_entry(
    *,
    raw_id: object,
    link: str | None,
    links: Counter[str | None],
    title: str,
    content_html: str,
    summary: str,
    author: str | None,
    published: datetime | None,
    updated: datetime | None,
    tags: tuple[str, ...],
    as_written: tuple[object, list[object], object],
) -> FeedEntry:
    """One entry from its cleaned fields; `links` counts each link in the document, and
    `as_written` is the title, bodies and summary as upstream wrote them (for the fingerprint)."""
    written_title, written_bodies, written_summary = as_written
    upstream = [
        written_title,
        written_bodies,
        written_summary,
        link,
        author,
        published.isoformat() if published else None,
        list(tags),
    ]
    text = lead_text(content_html)
    if not title:
        title = shorten(text, 80) or "Untitled"
    identity = (raw_id if isinstance(raw_id, str) else "").strip() or link
    if not identity:
        moment = published or updated
        seed = f"{title}\n{moment.isoformat() if moment else ''}"
        identity = "sha256:" + hashlib.sha256(seed.encode()).hexdigest()
    digest = hashlib.sha256()
    for part in upstream:
        written = "\x1e".join(map(str, part)) if isinstance(part, list) else str(part)
        digest.update(written.encode("utf-8", "surrogatepass") + b"\x1f")
    fingerprint = digest.hexdigest()
    return FeedEntry(
        identity=identity,
        link=link,
        link_is_unique=link is not None and links[link] == 1,
        title=shorten(title, TITLE_MAX),
        content_html=content_html,
        summary=summary or shorten(text, SUMMARY_MAX),
        author=author,
        published=published,
        updated=updated,
        tags=tags,
        fingerprint=fingerprint,
    )


def finish_feed(
    fmt: str,
    title: str | None,
    entries: list[FeedEntry],
    warnings: list[str],
    link: str | None,
) -> ParsedFeed:
    # An id repeated within one document is one entry: keep the first, as readers do.
    seen: set[str] = set()
    kept: list[FeedEntry] = []
    for entry in entries:
        if entry.identity not in seen:
            seen.add(entry.identity)
            kept.append(entry)
    if len(kept) < len(entries):
        warnings.append(
            f"{len(entries) - len(kept)} entries repeat an earlier entry's id; kept the first"
        )
    return ParsedFeed(fmt, title, tuple(kept), tuple(warnings), link)
