"""RSS 2.0, Atom 1.0 and JSON Feed 1.1 of the latest articles, and an Atom feed of the issues."""

from __future__ import annotations

import contextlib
import html
import json
import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from feedgen.ext.base import BaseEntryExtension
from feedgen.feed import FeedGenerator
from lxml import etree

from publisher.errors import RenderError
from publisher.model import Article, IssueSummary, PublishedArticle
from publisher.settings import Settings
from publisher.sources.clean import html_to_text, shorten, strip_xml_forbidden

RSS_FILE = "feed.xml"
ATOM_FILE = "atom.xml"
JSON_FEED_FILE = "feed.json"
ISSUES_FILE = "issues.xml"

# Fixed on purpose: feedgen's default Atom generator carries feedgen's version, which would
# change every feed byte-for-byte on a library upgrade although nothing was published.
GENERATOR = "publisher"
RSS_DOCS = "https://www.rssboard.org/rss-specification"
JSON_FEED_VERSION = "https://jsonfeed.org/version/1.1"
SUMMARY_FALLBACK_LENGTH = 300
UNTITLED = "Untitled"

# XML white space, plus NEL (U+0085), a line break that readers would otherwise show as "…".
_SPACE = re.compile("[ \t\n\r\x85]+")
# The other C1 controls, which XML 1.0 (section 2.2) asks authors to avoid: in real text they
# are mis-decoded Windows-1252, and readers show them as other characters (\x80 as "€").
_DISCOURAGED = re.compile("[\x7f-\x84\x86-\x9f]")
# RSS Best Practices Profile, "Character Data": in elements holding plain text, "&", "<" and
# ">" are best written as hexadecimal character references, which aggregators that wrongly
# decode entities twice still show as written. lxml writes named entities; we swap them in
# those elements only (their text never holds a raw "<", so the match cannot run past it).
_RSS_PLAIN_TEXT = re.compile(rb"(<(title|dc:creator|category|source)(?: [^>]*)?>)([^<]*)(</\2>)")
_NAMED_TO_HEX = {b"&amp;": b"&#x26;", b"&lt;": b"&#x3C;", b"&gt;": b"&#x3E;"}
_NAMED_ENTITY = re.compile(rb"&(?:amp|lt|gt);")


def render_rss(settings: Settings, articles: Sequence[PublishedArticle], now: datetime) -> bytes:
    """feed.xml: RSS 2.0 following the RSS Advisory Board's Best Practices Profile."""
    site = settings.site
    items = list(articles)[: settings.feeds.max_items]
    fg = FeedGenerator()
    fg.load_extension("dc", atom=False, rss=True)
    fg.title(_site_title(settings))
    # feedgen takes the channel <link> from the last link given: the home page goes last.
    fg.link(href=feed_url(settings, RSS_FILE), rel="self", type="application/rss+xml")
    fg.link(href=site.url, rel="alternate")
    fg.description(_line(site.description) or _site_title(settings))
    fg.language(site.language)
    fg.docs(RSS_DOCS)
    fg.generator(GENERATOR)
    if site.email:
        # The profile wants an e-mail address here, optionally followed by a name in parentheses.
        fg.managingEditor(f"{_line(site.email)} ({_site_author(settings)})")
    fg.lastBuildDate(_newest((_changed(p.article) for p in items), now))
    for published in items:
        article = published.article
        fe = fg.add_entry(order="append")
        fe.title(_title(article))
        fe.link(href=_line(published.url), rel="alternate")
        if published.is_local:
            fe.guid(_line(published.url), permalink=True)
        else:
            # The original link belongs to someone else and may move; our tag URI does not.
            fe.guid(article_tag_uri(settings, article), permalink=False)
            fe.source(url=_line(article.source), title=_source_title(published))
        # description is HTML in RSS: the plain-text summary is escaped into it.
        fe.description(html.escape(_summary(article), quote=False))
        fe.content(_body_html(published))
        fe.pubDate(_utc(article.date))
        fe.dc.dc_creator(_author_name(settings, article))
        for tag in _tags(article):
            fe.category(term=tag)
    return _hex_escape_plain_text(fg.rss_str(pretty=True))


def render_atom(settings: Settings, articles: Sequence[PublishedArticle], now: datetime) -> bytes:
    """atom.xml: Atom 1.0 (RFC 4287) with the full HTML of every article."""
    items = list(articles)[: settings.feeds.max_items]
    fg = _atom_feed(settings, ATOM_FILE, _site_title(settings))
    fg.updated(_newest((_changed(p.article) for p in items), now))
    for published in items:
        article = published.article
        fe = fg.add_entry(order="append")
        fe.id(article_tag_uri(settings, article))
        fe.title(_title(article))
        fe.updated(_changed(article))
        fe.published(_utc(article.date))
        fe.author(_entry_author(settings, article))
        fe.link(href=_line(published.url), rel="alternate")
        fe.summary(_summary(article))
        fe.content(_body_html(published), type="html")
        for tag in _tags(article):
            fe.category(term=tag)
        if not published.is_local:
            fe.extras.source(_source_title(published), _line(article.source))
    return fg.atom_str(pretty=True)  # type: ignore[no-any-return]


def render_json_feed(
    settings: Settings, articles: Sequence[PublishedArticle], now: datetime
) -> bytes:
    """feed.json: JSON Feed 1.1. `now` is unused: the feed carries no feed-level date."""
    del now  # same signature as the other feeds; JSON Feed has no feed-level timestamp
    site = settings.site
    feed: dict[str, Any] = {
        "version": JSON_FEED_VERSION,
        "title": _site_title(settings),
        "home_page_url": site.url,
        "feed_url": feed_url(settings, JSON_FEED_FILE),
    }
    if site.description:
        feed["description"] = _line(site.description)
    if site.language:
        feed["language"] = site.language
    site_author: dict[str, str] = {"name": _site_author(settings)}
    if site.email:
        site_author["url"] = f"mailto:{_line(site.email)}"
    feed["authors"] = [site_author]
    feed["items"] = [_json_item(settings, p) for p in list(articles)[: settings.feeds.max_items]]
    text = json.dumps(feed, ensure_ascii=False, indent=2) + "\n"
    return text.encode("utf-8")


def render_issues_feed(settings: Settings, issues: Sequence[IssueSummary], now: datetime) -> bytes:
    """issues.xml: an Atom feed with one entry per issue, linking the issue's web version.

    Newest issue first whatever the order given, at most `feeds.max_items` of them, so the
    feed's size follows the setting and not the length of the archive.
    """
    newest_first = sorted(issues, key=lambda i: (i.number, i.published_at), reverse=True)
    entries = newest_first[: settings.feeds.max_items]
    fg = _atom_feed(settings, ISSUES_FILE, f"{_site_title(settings)}: issues")
    fg.updated(_newest((_utc(i.published_at) for i in entries), now))
    site_person = _site_person(settings)
    for issue in entries:
        fe = fg.add_entry(order="append")
        fe.id(tag_uri(settings, issue.published_at, f"issue-{issue.number}"))
        fe.title(_line(issue.title) or f"Issue {issue.number}")
        fe.updated(_utc(issue.published_at))
        fe.published(_utc(issue.published_at))
        fe.author(site_person)
        fe.link(href=_line(issue.url), rel="alternate")
        fe.extras.link_type = "text/html"
        titles = [t for t in (_line(t) for t in issue.article_titles) if t]
        if titles:
            fe.summary("In this issue: " + "; ".join(titles))
        fe.content(_issue_html(issue.url, titles), type="html")
    return fg.atom_str(pretty=True)  # type: ignore[no-any-return]


def feed_url(settings: Settings, name: str) -> str:
    """Absolute URL of one of the site-wide feeds, e.g. `feed_url(s, "atom.xml")`."""
    return f"{settings.site.url}{name}"


def tag_uri(settings: Settings, when: datetime, specific: str) -> str:
    """A tag URI (RFC 4151) minted under the site's host on the day `when` (UTC)."""
    host = urlsplit(settings.site.url).hostname or ""
    with contextlib.suppress(UnicodeError):  # else keep it as written: still stable and unique
        host = host.encode("idna").decode("ascii")  # a URI is ASCII: bücher.example -> xn--...
    return f"tag:{host},{_utc(when).date().isoformat()}:{specific}"


def article_tag_uri(settings: Settings, article: Article) -> str:
    """The id an article keeps forever in every feed: minted the day it was first collected."""
    return tag_uri(settings, article.collected_at, article.id)


# --- shared pieces -------------------------------------------------------------------------


def _atom_feed(settings: Settings, file_name: str, title: str) -> Any:
    site = settings.site
    fg = FeedGenerator()
    self_url = feed_url(settings, file_name)
    fg.id(self_url)  # the feed's own URL: derived from settings only, never from the clock
    fg.title(title)
    if site.description:
        fg.subtitle(_line(site.description))
    fg.language(site.language)
    fg.author(_site_person(settings))
    fg.link(href=self_url, rel="self", type="application/atom+xml")
    fg.link(href=site.url, rel="alternate", type="text/html")
    fg.generator(GENERATOR)
    fg.register_extension("extras", _NoFeedExtension, _AtomEntryExtras, atom=True, rss=False)
    return fg


def _json_item(settings: Settings, published: PublishedArticle) -> dict[str, Any]:
    article = published.article
    item: dict[str, Any] = {
        "id": article_tag_uri(settings, article),
        "url": _line(published.url),
    }
    if not published.is_local:
        item["external_url"] = _line(article.url or published.url)
    item["title"] = _title(article)
    item["content_html"] = _body_html(published)
    item["summary"] = _summary(article)
    item["date_published"] = _rfc3339(article.date)
    item["date_modified"] = _rfc3339(_changed(article))
    item["authors"] = [{"name": _author_name(settings, article)}]
    tags = _tags(article)
    if tags:
        item["tags"] = list(tags)
    return item


def _line(text: str) -> str:
    """One line of plain text, as a feed reader will show it.

    Characters XML forbids and C1 controls are dropped, runs of line breaks, tabs and spaces
    become one space, and white space at either end goes (readers such as feedparser trim it
    anyway). Other spaces inside, such as a no-break space, stay as written.
    """
    if text.isascii() and text.isprintable() and "  " not in text:
        return text.strip()  # nothing the expressions below would change; a feed has thousands
    return _SPACE.sub(" ", _DISCOURAGED.sub("", strip_xml_forbidden(text))).strip()


def _title(article: Article) -> str:
    # Every format needs a title a reader can show: fall back on the lede, as sources do.
    return _line(article.title) or _lede(article) or UNTITLED


def _summary(article: Article) -> str:
    return _line(article.summary) or _lede(article) or _title(article)


def _lede(article: Article) -> str:
    text = _line(html_to_text(strip_xml_forbidden(article.content_html)))
    return shorten(text, SUMMARY_FALLBACK_LENGTH)


def _tags(article: Article) -> list[str]:
    seen: dict[str, None] = {}
    for tag in article.tags:
        clean = _line(tag)
        if clean:
            seen.setdefault(clean, None)
    return list(seen)


def _site_title(settings: Settings) -> str:
    # The settings refuse an empty title but not a blank one; every feed format needs one.
    return _line(settings.site.title) or urlsplit(settings.site.url).hostname or settings.site.url


def _site_author(settings: Settings) -> str:
    return _line(settings.site.author) or _site_title(settings)


def _site_person(settings: Settings) -> dict[str, str]:
    person = {"name": _site_author(settings)}
    if settings.site.email:
        person["email"] = _line(settings.site.email)
    return person


def _author_name(settings: Settings, article: Article) -> str:
    """Who wrote it: the article's author; for an upstream article, else its source feed."""
    if article.author and _line(article.author):
        return _line(article.author)
    if article.source_kind == "feed":
        # Never put our own desk's name on someone else's article.
        return _source_name(article)
    return _site_author(settings)


def _entry_author(settings: Settings, article: Article) -> dict[str, str]:
    name = _author_name(settings, article)
    if article.source_kind == "file" and name == _site_author(settings):
        return _site_person(settings)
    return {"name": name}


def _source_name(article: Article) -> str:
    return (
        _line(article.publication or "")
        or urlsplit(article.url or article.source).hostname
        or _line(article.source)
    )


def _source_title(published: PublishedArticle) -> str:
    return _source_name(published.article)


def _body_html(published: PublishedArticle) -> str:
    """The article's sanitized HTML; an upstream article ends with a line crediting its source.

    Most readers show neither RSS <source> nor atom:source, so the credit is also in the text.
    """
    body = strip_xml_forbidden(published.article.content_html)
    if published.is_local:
        return body
    name = html.escape(_source_name(published.article), quote=False)
    link = html.escape(_line(published.url), quote=True)
    return f'{body}\n<p>First published in <a href="{link}">{name}</a>.</p>'


def _issue_html(url: str, titles: Sequence[str]) -> str:
    items = "".join(f"<li>{html.escape(t, quote=False)}</li>" for t in titles)
    listing = f"<ul>{items}</ul>" if items else ""
    link = html.escape(_line(url), quote=True)
    return f'{listing}<p><a href="{link}">Read the issue</a></p>'


def _utc(when: datetime) -> datetime:
    if when.tzinfo is None:
        raise RenderError(
            f"naive datetime {when.isoformat()} given to a feed",
            hint="pass aware datetimes (UTC) so feeds do not depend on the machine's time zone",
        )
    # RSS dates carry whole seconds only; cut everywhere so the three feeds agree.
    return when.astimezone(UTC).replace(microsecond=0)


def _rfc3339(when: datetime) -> str:
    return _utc(when).isoformat()


def _changed(article: Article) -> datetime:
    return _utc(article.updated or article.date)


def _newest(dates: Iterable[datetime], now: datetime) -> datetime:
    """The feed's own date: its newest entry's, so an unchanged feed keeps unchanged bytes."""
    return max(dates, default=None) or _utc(now)


def _hex_escape_plain_text(xml: bytes) -> bytes:
    def swap(match: re.Match[bytes]) -> bytes:
        text = _NAMED_ENTITY.sub(lambda m: _NAMED_TO_HEX[m.group(0)], match.group(3))
        return match.group(1) + text + match.group(4)

    return _RSS_PLAIN_TEXT.sub(swap, xml)


class _NoFeedExtension(BaseEntryExtension):  # type: ignore[misc]  # feedgen is untyped
    """feedgen wants a feed-level class for every extension; ours adds only entry elements."""


class _AtomEntryExtras(BaseEntryExtension):  # type: ignore[misc]  # feedgen is untyped
    """What feedgen 1.0 leaves out of an Atom entry, put back when the entry is written.

    - FeedEntry.atom_entry() drops the rel and type of entry links (it reads them off the new
      element instead of the link data); a missing rel means "alternate" (RFC 4287 4.2.7.2),
      but we say so, as a reader of the file expects;
    - FeedEntry.source() writes the upstream feed's URL as a rel="alternate" link, which
      would claim the feed XML is the source's web page; the feed's own URL is rel="self".
    """

    def __init__(self) -> None:
        self.link_type = ""
        self._source_title = ""
        self._source_feed = ""

    def source(self, title: str, feed_url: str) -> None:
        """atom:source (RFC 4287 4.2.11): the upstream feed this entry was copied from."""
        self._source_title = title
        self._source_feed = feed_url

    def extend_atom(self, entry: Any) -> Any:
        # feedgen builds Atom elements without a namespace under a root that declares the
        # Atom default namespace; ours follow suit so they serialize as Atom elements.
        for link in entry.iterfind("link"):
            if "rel" not in link.attrib:
                link.set("rel", "alternate")
                if self.link_type:
                    link.set("type", self.link_type)
        if self._source_title:
            source = etree.SubElement(entry, "source")
            etree.SubElement(source, "title").text = self._source_title
            if self._source_feed:
                etree.SubElement(source, "link", rel="self", href=self._source_feed)
        return entry
