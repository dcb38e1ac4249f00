"""The feeds as a reader sees them: read back with feedparser, lxml and json, never by eye."""

from __future__ import annotations

import html
import json
import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from pathlib import Path
from typing import Any

import feedparser
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from lxml import etree

from publisher.errors import RenderError
from publisher.model import IssueSummary, PublishedArticle
from publisher.render.feeds import (
    render_atom,
    render_issues_feed,
    render_json_feed,
    render_rss,
)
from publisher.settings import Settings, SiteSettings
from publisher.sources.clean import strip_xml_forbidden
from tests.factories import (
    BASE_TIME,
    make_article,
    make_issue_content,
    make_published,
    make_upstream_article,
)

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
LATER = NOW + timedelta(days=30, hours=5)
HOST = "news.example.org"
SITE = f"https://{HOST}/"
NS = {
    "atom": "http://www.w3.org/2005/Atom",
    "content": "http://purl.org/rss/1.0/modules/content/",
    "dc": "http://purl.org/dc/elements/1.1/",
}
RFC_822 = re.compile(
    r"^(Mon|Tue|Wed|Thu|Fri|Sat|Sun), \d{2} (Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec)"
    r" \d{4} \d{2}:\d{2}:\d{2} [+-]\d{4}$"
)
RFC_3339 = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?(Z|[+-]\d{2}:\d{2})$")
XML_FEEDS = {"feed.xml": render_rss, "atom.xml": render_atom}
ARTICLE_FEEDS = {**XML_FEEDS, "feed.json": render_json_feed}


def make_settings(**site: Any) -> Settings:
    fields: dict[str, Any] = {
        "title": "Test Dispatch",
        "url": SITE,
        "description": "Tests.",
        "author": "Desk",
        "email": "desk@news.example.org",
        **site,
    }
    return Settings(site=SiteSettings(**fields))


def sample_articles() -> tuple[PublishedArticle, ...]:
    """Newest first, as the caller hands them over: tricky text, tags, an edit, an upstream."""
    return make_published(
        [
            make_upstream_article(5, tags=("shipping",)),
            make_article(
                4,
                title='Tides & <storms>: "the harbour" \u2019s week \U0001f6a2',
                summary="Fish & chips < 5 \u20ac; \u201cquoted\u201d.",
                content_html='<p>Fish &amp; chips &lt; 5\u00a0\u20ac, <em>said</em> "Ana".</p>',
                tags=("harbour", "weather & tides"),
            ),
            make_article(3, updated=BASE_TIME + timedelta(days=2)),
            make_article(2, author=None),
        ]
    )


def tag_uri(when: datetime, specific: str) -> str:
    return f"tag:{HOST},{when.astimezone(UTC):%Y-%m-%d}:{specific}"


def parsed(data: bytes) -> Any:
    result = feedparser.parse(data)
    assert result.bozo == 0, result.get("bozo_exception")
    return result


def shown(text: str) -> str:
    """The documented normalisation of plain text in every feed (see feeds._line): no
    characters XML forbids, no C1 controls, runs of line breaks, tabs and spaces (NEL too) as
    one space, trimmed."""
    text = re.sub("[\x7f-\x84\x86-\x9f]", "", strip_xml_forbidden(text))
    return re.sub("[ \t\n\r\x85]+", " ", text).strip()


def feedparser_sees(text: str) -> str:
    """feedparser "repairs" text that reads as UTF-8 mis-decoded as Latin-1 (mixin.py,
    pop): 'Ã©' comes back as 'é'. Only all-Latin-1 text that also decodes as UTF-8 is hit."""
    try:
        return text.encode("iso-8859-1").decode("utf-8")
    except (UnicodeEncodeError, UnicodeDecodeError):
        return text


def body_of(item: PublishedArticle) -> str:
    """What the feeds carry as the body: the HTML, plus a credit line for upstream articles."""
    article = item.article
    if item.is_local:
        return article.content_html
    link = html.escape(item.url)
    return (
        f'{article.content_html}\n<p>First published in <a href="{link}">'
        f"{article.publication}</a>.</p>"
    )


def expected_author(item: PublishedArticle) -> str:
    return item.article.author or "Desk"


def as_utc(struct: Any) -> datetime:
    return datetime(*struct[:6], tzinfo=UTC)


def same_html(a: str, b: str) -> bool:
    """Equal as HTML fragments: feedparser re-serializes what it sanitizes."""
    parse = etree.HTMLParser()

    def norm(fragment: str) -> bytes:
        tree = etree.fromstring(f"<div>{fragment}</div>", parse)
        return etree.tostring(tree, method="c14n")

    return norm(a) == norm(b)


# --- reading the feeds back -----------------------------------------------------------------


def test_rss_read_back_recovers_every_title_link_date_body_and_author() -> None:
    items = sample_articles()
    feed = parsed(render_rss(make_settings(), items, NOW))

    assert feed.version == "rss20"
    assert feed.feed.title == "Test Dispatch"
    assert feed.feed.link == SITE
    assert len(feed.entries) == len(items)
    for entry, item in zip(feed.entries, items, strict=True):
        article = item.article
        assert entry.title == article.title
        assert entry.link == item.url
        assert as_utc(entry.published_parsed) == article.date
        assert same_html(entry.content[0].value, body_of(item))
        assert html.unescape(entry.summary) == article.summary
        assert entry.author == expected_author(item)
        assert [t.term for t in entry.get("tags", [])] == list(article.tags)


def test_atom_read_back_recovers_every_title_link_date_body_and_author() -> None:
    items = sample_articles()
    feed = parsed(render_atom(make_settings(), items, NOW))

    assert feed.version == "atom10"
    assert feed.feed.id == f"{SITE}atom.xml"
    assert feed.feed.author_detail == {"name": "Desk", "email": "desk@news.example.org"}
    links = {link.rel: link.href for link in feed.feed.links}
    assert links == {"self": f"{SITE}atom.xml", "alternate": SITE}
    for entry, item in zip(feed.entries, items, strict=True):
        article = item.article
        assert entry.id == tag_uri(article.collected_at, article.id)
        assert entry.title == article.title
        assert [(link.rel, link.href) for link in entry.links] == [("alternate", item.url)]
        assert as_utc(entry.published_parsed) == article.date
        assert as_utc(entry.updated_parsed) == (article.updated or article.date)
        assert entry.content[0].type == "text/html"
        assert same_html(entry.content[0].value, body_of(item))
        assert entry.summary == article.summary
        assert entry.author_detail.name == expected_author(item)
        assert [t.term for t in entry.get("tags", [])] == list(article.tags)


def test_json_feed_read_back_recovers_every_title_link_date_body_and_author() -> None:
    # feedparser 6.0 (the newest release) reads no JSON Feed: json and the 1.1 spec's fields do.
    items = sample_articles()
    feed = json.loads(render_json_feed(make_settings(), items, NOW))

    assert feed["title"] == "Test Dispatch"
    for got, item in zip(feed["items"], items, strict=True):
        article = item.article
        assert got["id"] == tag_uri(article.collected_at, article.id)
        assert got["title"] == article.title
        assert got["url"] == item.url
        assert got["content_html"] == body_of(item)
        assert got["summary"] == article.summary
        assert datetime.fromisoformat(got["date_published"]) == article.date
        assert datetime.fromisoformat(got["date_modified"]) == (article.updated or article.date)
        assert got["authors"] == [{"name": expected_author(item)}]
        assert got.get("tags", []) == list(article.tags)


def test_issues_feed_links_each_issue_web_version_newest_first() -> None:
    issues = [make_issue(n) for n in (1, 3, 2)]  # any order in, newest first out
    feed = parsed(render_issues_feed(make_settings(), issues, NOW))

    assert feed.version == "atom10"
    assert feed.feed.id == f"{SITE}issues.xml"
    assert [link.href for link in feed.feed.links if link.rel == "self"] == [f"{SITE}issues.xml"]
    by_number = sorted(issues, key=lambda i: i.number, reverse=True)
    for entry, issue in zip(feed.entries, by_number, strict=True):
        assert entry.id == tag_uri(issue.published_at, f"issue-{issue.number}")
        assert entry.title == issue.title
        assert [(link.rel, link.type, link.href) for link in entry.links] == [
            ("alternate", "text/html", issue.url)
        ]
        assert as_utc(entry.updated_parsed) == issue.published_at
        body = entry.content[0].value
        for title in issue.article_titles:
            assert html.escape(title, quote=False) in body
        assert f'href="{issue.url}"' in body
    assert as_utc(feed.feed.updated_parsed) == by_number[0].published_at


def make_issue(number: int) -> IssueSummary:
    content = make_issue_content(
        number,
        articles=[make_article(number * 10 + i) for i in (1, 2)],
        folder=f"2026-11-{10 + number:02d}",
    )
    return replace(content.summary, published_at=datetime(2026, 11, 10 + number, 6, 0, tzinfo=UTC))


def test_issues_feed_keeps_only_the_latest_max_items_issues() -> None:
    settings = make_settings().model_copy(
        update={"feeds": make_settings().feeds.model_copy(update={"max_items": 2})}
    )
    feed = parsed(render_issues_feed(settings, [make_issue(n) for n in range(1, 6)], NOW))
    assert [e.id.rsplit(":", 1)[1] for e in feed.entries] == ["issue-5", "issue-4"]


# --- standards ------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["atom.xml", "issues.xml"])
def test_atom_feeds_validate_against_rfc_4287_schema(shared_dir: Path, name: str) -> None:
    schema = etree.RelaxNG(etree.parse(str(shared_dir / "schema" / "atom.rng")))
    settings = make_settings()
    data = (
        render_atom(settings, sample_articles(), NOW)
        if name == "atom.xml"
        else render_issues_feed(settings, [make_issue(1), make_issue(2)], NOW)
    )
    doc = etree.fromstring(data)
    assert schema.validate(doc), schema.error_log
    # The Schematron rule RELAX NG cannot check: an author on the feed or on every entry.
    assert doc.find("atom:author/atom:name", NS) is not None
    for entry in doc.iterfind("atom:entry", NS):
        assert entry.find("atom:author/atom:name", NS) is not None


def test_rss_follows_the_best_practices_profile() -> None:
    items = sample_articles()
    channel = etree.fromstring(render_rss(make_settings(), items, NOW)).find("channel")
    assert channel is not None

    assert channel.findtext("title") == "Test Dispatch"
    assert channel.findtext("link") == SITE
    assert channel.findtext("description") == "Tests."
    assert channel.findtext("language") == "en"
    assert channel.findtext("docs") == "https://www.rssboard.org/rss-specification"
    assert channel.findtext("generator") == "publisher"
    assert channel.findtext("managingEditor") == "desk@news.example.org (Desk)"
    (self_link,) = channel.findall("atom:link", NS)
    assert self_link.attrib == {
        "href": f"{SITE}feed.xml",
        "rel": "self",
        "type": "application/rss+xml",
    }
    newest = max(i.article.updated or i.article.date for i in items)
    assert rfc_822(channel.findtext("lastBuildDate")) == newest

    for element, item in zip(channel.iterfind("item"), items, strict=True):
        article = item.article
        assert element.findtext("link") == item.url
        guid = element.find("guid")
        assert guid is not None
        if item.is_local:
            assert (guid.text, guid.get("isPermaLink")) == (item.url, "true")
        assert rfc_822(element.findtext("pubDate")) == article.date
        assert element.findtext("content:encoded", namespaces=NS) == body_of(item)
        assert element.findtext("description") == html.escape(article.summary, quote=False)
        # `author` must be an e-mail address in RSS; names go in dc:creator.
        assert element.find("author") is None
        assert [c.text for c in element.iterfind("dc:creator", NS)] == [expected_author(item)]
        assert [c.text for c in element.iterfind("category")] == list(article.tags)


def rfc_822(text: str | None) -> datetime:
    assert text is not None and RFC_822.match(text), text
    return parsedate_to_datetime(text)


def test_rss_writes_markup_characters_in_plain_text_as_hex_references() -> None:
    # The profile's advice for plain text: &#x26; &#x3C; &#x3E;, not &amp; &lt; &gt;.
    items = make_published([make_article(1, title="Q & <A>", tags=("a&b",))])
    data = render_rss(make_settings(title="Salt & <Pepper>"), items, NOW)
    assert b"<title>Salt &#x26; &#x3C;Pepper&#x3E;</title>" in data
    assert b"<title>Q &#x26; &#x3C;A&#x3E;</title>" in data
    assert b"<category>a&#x26;b</category>" in data
    assert parsed(data).entries[0].title == "Q & <A>"


def test_json_feed_has_the_required_fields_of_version_1_1() -> None:
    items = sample_articles()
    feed = json.loads(render_json_feed(make_settings(), items, NOW))

    assert feed["version"] == "https://jsonfeed.org/version/1.1"
    assert feed["home_page_url"] == SITE
    assert feed["feed_url"] == f"{SITE}feed.json"
    assert feed["description"] == "Tests."
    assert feed["language"] == "en"
    assert feed["authors"] == [{"name": "Desk", "url": "mailto:desk@news.example.org"}]
    ids = [item["id"] for item in feed["items"]]
    assert len(set(ids)) == len(items)
    for item in feed["items"]:
        assert isinstance(item["id"], str) and item["id"].startswith(f"tag:{HOST},")
        assert "content_html" in item
        for key in ("date_published", "date_modified"):
            assert RFC_3339.match(item[key]), item[key]


def test_ids_stay_the_same_when_an_article_is_edited_or_moves() -> None:
    article = make_article(7)
    edited = replace(
        article,
        title="A new title",
        content_html="<p>Rewritten.</p>",
        date=article.date + timedelta(days=3),
        updated=article.date + timedelta(days=4),
    )
    settings = make_settings()
    before = make_published([article], folder="2026-11-24")
    after = make_published([make_article(8), edited], folder="2026-12-01")

    old = parsed(render_atom(settings, before, NOW)).entries[0].id
    new = parsed(render_atom(settings, after, LATER)).entries[1].id
    assert old == new == tag_uri(article.collected_at, article.id)
    old_json = json.loads(render_json_feed(settings, before, NOW))["items"][0]["id"]
    new_json = json.loads(render_json_feed(settings, after, LATER))["items"][1]["id"]
    assert old_json == new_json == tag_uri(article.collected_at, article.id)


def test_ids_of_a_site_on_an_international_domain_are_ascii() -> None:
    article = make_article(1)
    data = render_json_feed(make_settings(url="https://b\u00fccher.example/"), (), NOW)
    assert json.loads(data)["feed_url"] == "https://b\u00fccher.example/feed.json"
    items = make_published([article])
    feed = json.loads(
        render_json_feed(make_settings(url="https://b\u00fccher.example/"), items, NOW)
    )
    assert feed["items"][0]["id"] == f"tag:xn--bcher-kva.example,2026-11-20:{article.id}"


def test_upstream_article_links_its_original_and_credits_its_source() -> None:
    article = make_upstream_article(1)
    items = make_published([article])
    settings = make_settings()

    rss = etree.fromstring(render_rss(settings, items, NOW)).find("channel/item")
    assert rss is not None
    assert rss.findtext("link") == article.url
    guid = rss.find("guid")
    assert guid is not None
    assert (guid.text, guid.get("isPermaLink")) == (
        tag_uri(article.collected_at, article.id),
        "false",
    )
    source = rss.find("source")
    assert source is not None
    assert (source.get("url"), source.text) == (article.source, "The Upstream Gazette")
    assert rss.findtext("dc:creator", namespaces=NS) == "Ines Carvalho"

    atom = parsed(render_atom(settings, items, NOW)).entries[0]
    assert atom.link == article.url
    assert atom.author == "Ines Carvalho"
    assert atom.source.title == "The Upstream Gazette"
    assert [(link.rel, link.href) for link in atom.source.links] == [("self", article.source)]

    item = json.loads(render_json_feed(settings, items, NOW))["items"][0]
    assert item["url"] == item["external_url"] == article.url
    assert item["authors"] == [{"name": "Ines Carvalho"}]

    # Readers show the body, not <source>: the credit is written there too.
    for name, render in ARTICLE_FEEDS.items():
        body = body_text(name, render(settings, items, NOW))
        assert "First published in" in body and "The Upstream Gazette" in body
        assert "Desk" not in body


def body_text(name: str, data: bytes) -> str:
    if name == "feed.json":
        return str(json.loads(data)["items"][0]["content_html"])
    return str(parsed(data).entries[0].content[0].value)


def test_upstream_article_without_author_is_credited_to_its_source_not_to_us() -> None:
    items = make_published([make_upstream_article(1, author=None)])
    settings = make_settings()
    assert parsed(render_atom(settings, items, NOW)).entries[0].author == "The Upstream Gazette"
    assert parsed(render_rss(settings, items, NOW)).entries[0].author == "The Upstream Gazette"


def test_local_article_without_author_is_credited_to_the_site_author() -> None:
    items = make_published([make_article(1, author=None)])
    entry = parsed(render_atom(make_settings(), items, NOW)).entries[0]
    assert entry.author_detail == {"name": "Desk", "email": "desk@news.example.org"}


def test_site_without_author_credits_the_site_title() -> None:
    items = make_published([make_article(1, author=None)])
    settings = make_settings(author="", email="")
    assert parsed(render_atom(settings, items, NOW)).entries[0].author == "Test Dispatch"
    assert parsed(render_rss(settings, items, NOW)).entries[0].author == "Test Dispatch"


# --- determinism ----------------------------------------------------------------------------

ALL_FEEDS: dict[str, Callable[[Settings, Any, datetime], bytes]] = {
    **ARTICLE_FEEDS,
    "issues.xml": render_issues_feed,
}


def test_blank_site_title_and_author_fall_back_on_the_host() -> None:
    settings = make_settings(title=" \t ", author="", email="", description="", language="")
    items = make_published([make_article(1, author=None)])
    for name in ("feed.xml", "atom.xml"):
        feed = parsed(ALL_FEEDS[name](settings, items, NOW))
        assert (feed.feed.title, feed.entries[0].author) == (HOST, HOST)
    assert (
        parsed(render_issues_feed(settings, [make_issue(1)], NOW)).feed.title == f"{HOST}: issues"
    )
    data = json.loads(render_json_feed(settings, items, NOW))
    assert (data["title"], data["authors"]) == (HOST, [{"name": HOST}])
    assert "language" not in data and "description" not in data


def feed_input(name: str) -> Any:
    return [make_issue(1), make_issue(2)] if name == "issues.xml" else sample_articles()


@pytest.mark.parametrize("name", ALL_FEEDS)
def test_same_input_gives_identical_bytes_whatever_the_clock(name: str) -> None:
    render, data = ALL_FEEDS[name], feed_input(name)
    settings = make_settings()
    first = render(settings, data, NOW)
    assert render(settings, data, NOW) == first
    assert render(settings, list(data), LATER) == first


def test_feed_date_is_the_newest_entry_change_not_the_clock() -> None:
    # Article 1 is the oldest by date but was edited after every other was published.
    edited_at = BASE_TIME + timedelta(days=5)
    items = make_published([make_article(3), make_article(2), make_article(1, updated=edited_at)])
    settings = make_settings()
    assert as_utc(parsed(render_atom(settings, items, NOW)).feed.updated_parsed) == edited_at
    lbd = etree.fromstring(render_rss(settings, items, NOW)).findtext("channel/lastBuildDate")
    assert rfc_822(lbd) == edited_at


def test_empty_feeds_are_dated_now_and_still_well_formed() -> None:
    settings = make_settings()
    for name, render in ALL_FEEDS.items():
        data = render(settings, [], NOW)
        if name == "feed.json":
            assert json.loads(data)["items"] == []
            continue
        feed = parsed(data)
        assert feed.entries == []
        assert as_utc(feed.feed.updated_parsed) == NOW


def test_naive_datetime_is_refused_with_a_clear_error() -> None:
    items = make_published([make_article(1, date=datetime(2026, 11, 20, 8, 0))])
    with pytest.raises(RenderError, match="naive datetime 2026-11-20T08:00:00"):
        render_atom(make_settings(), items, NOW)


def test_dates_are_written_in_utc_whatever_zone_they_come_in() -> None:
    from zoneinfo import ZoneInfo

    berlin = datetime(2026, 11, 20, 10, 30, tzinfo=ZoneInfo("Europe/Berlin"))
    items = make_published([make_article(1, date=berlin)])
    rss = etree.fromstring(render_rss(make_settings(), items, NOW))
    assert rss.findtext("channel/item/pubDate") == "Fri, 20 Nov 2026 09:30:00 +0000"
    item = json.loads(render_json_feed(make_settings(), items, NOW))["items"][0]
    assert item["date_published"] == "2026-11-20T09:30:00+00:00"


# --- golden files ---------------------------------------------------------------------------


@pytest.mark.parametrize("name", ALL_FEEDS)
def test_feed_matches_golden_file(name: str, golden: Callable[[str, bytes], None]) -> None:
    golden(f"feeds/{name}", ALL_FEEDS[name](make_settings(), feed_input(name), NOW))


# --- outside text ---------------------------------------------------------------------------

TRICKY = [
    "Quotes \"double\" and 'single' & <tags>",
    "Emoji \U0001f6a2\U0001f30a and \u00e9\u0301 and \u202eRTL",
    "Forbidden\x00\x01\x0b\x0c\x1f\ufffe\uffff\ud800 characters",
    "  lots \t of\r\n white   space  ",
    "]]> <![CDATA[ x ]]> &amp; &#x26; &lt;script&gt;",
]


@pytest.mark.parametrize("title", TRICKY)
def test_tricky_titles_come_out_well_formed_and_round_trip(title: str) -> None:
    check_round_trip(title, "Summary & <more>")


# st.text() leaves out lone surrogates; outside text may still carry them.
ANY_TEXT = st.text() | st.text(st.characters(exclude_categories=[]))


@given(title=ANY_TEXT, summary=ANY_TEXT)
@hsettings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
def test_any_text_yields_well_formed_feeds_whose_title_round_trips(
    title: str, summary: str
) -> None:
    check_round_trip(title, summary)


def check_round_trip(title: str, summary: str) -> None:
    # Settings come from TOML, which holds no lone surrogates: pydantic refuses them.
    site_title = "Site " + re.sub("[\ud800-\udfff]", "", title)
    settings = make_settings(title=site_title)
    lede = "The lede of article 1."
    want_title = shown(title) or lede  # an empty title falls back on the lede
    want_summary = shown(summary) or lede
    article = make_article(
        1, title=title, summary=summary, content_html=f"<p>{lede}</p>", tags=(title,)
    )
    items = make_published([article])

    rss_data = render_rss(settings, items, NOW)
    rss = parsed(rss_data)
    channel = etree.fromstring(rss_data).find("channel")
    assert channel is not None
    assert channel.findtext("title") == shown(site_title)
    assert channel.findtext("item/title") == want_title
    assert channel.findtext("item/description") == html.escape(want_summary, quote=False)
    if not re.search("[<&]", title):
        # RSS cannot say whether a title is text or HTML, and feedparser guesses HTML when it
        # sees markup or entity-like text; plain titles it must return exactly.
        assert rss.entries[0].title == feedparser_sees(want_title)
    assert html.unescape(rss.entries[0].summary) == feedparser_sees(want_summary)

    atom = parsed(render_atom(settings, items, NOW))
    assert atom.feed.title == feedparser_sees(shown(site_title))
    assert atom.entries[0].title == feedparser_sees(want_title)
    assert atom.entries[0].summary == feedparser_sees(want_summary)

    item = json.loads(render_json_feed(settings, items, NOW))["items"][0]
    assert (item["title"], item["summary"]) == (want_title, want_summary)

    issue = replace(make_issue(1), title=title, article_titles=(title,))
    issues = parsed(render_issues_feed(settings, [issue], NOW))
    assert issues.entries[0].title == feedparser_sees(shown(title) or "Issue 1")
