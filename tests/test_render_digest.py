"""The email digest, the web pages, the archive and the theme (publisher.render.digest)."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit

import cssutils
import html5lib
import jinja2
import lxml.html
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from publisher.errors import ConfigError, RenderError
from publisher.model import (
    PLACEHOLDER_GREETING,
    PLACEHOLDER_RECIPIENT,
    PLACEHOLDER_UNSUBSCRIBE_URL,
    IssueContent,
    IssueSummary,
)
from publisher.render.digest import (
    EMAIL_SIZE_LIMIT,
    default_theme_dir,
    make_environment,
    render_archive,
    render_assets,
    render_digest,
    render_issue_pages,
)
from publisher.settings import Settings, SiteSettings
from publisher.sources.clean import sanitize_html
from tests.delivery_support import urls_in
from tests.factories import (
    SITE_URL,
    make_article,
    make_feed_article,
    make_issue_content,
    make_long_article,
)

Golden = Callable[[str, str | bytes], None]

HOSTILE = [
    "<script>alert(1)</script>",
    '"><img src=x onerror=alert(1)>',
    "</title><svg onload=alert(1)>",
]
PLACEHOLDERS = (PLACEHOLDER_GREETING, PLACEHOLDER_UNSUBSCRIBE_URL, PLACEHOLDER_RECIPIENT)


def make_settings(base: Path, **site: str) -> Settings:
    fields = {
        "title": "Test Dispatch",
        "url": SITE_URL,
        "description": "Tests.",
        "timezone": "Europe/Berlin",
        "author": "Desk",
    }
    fields.update(site)
    return Settings(site=SiteSettings(**fields), base_dir=base, source_file=base / "settings.toml")


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return make_settings(tmp_path)


@pytest.fixture
def env(settings: Settings) -> jinja2.Environment:
    return make_environment(settings)


def golden_content() -> IssueContent:
    """A small, varied issue: rich local HTML, an upstream article, a default author."""
    lead = make_article(
        1,
        title="Harbour lights return after forty years",
        summary="The old lanterns on the north quay were lit again on Friday, and half the town "
        "came down to the water to watch.",
        content_html=(
            "<p>The old lanterns on the north quay were lit again on Friday, and half the town "
            'came down to the water to watch. <a href="https://example.org/quay">The quay '
            "society</a> raised the money over two winters.</p>\n"
            "<h2>What was restored</h2>\n"
            "<ul><li>Twelve lanterns, re-glazed</li><li>The iron posts, rust and all</li></ul>\n"
            "<blockquote><p>“We wanted them to look exactly as our grandparents remember.”"
            "</p></blockquote>\n"
            '<p><img src="https://news.example.org/2026-11-24/lanterns.jpg" alt="Lanterns at '
            'dusk" width="1200" height="800"></p>\n'
            "<p>Café Nord stays open late all week.</p>"
        ),
        author="Maren Holt",
        publication="Harbour Gazette",
    )
    upstream = make_feed_article(2, title="Ferry timetable changes in December")
    desk = make_article(
        3,
        title="Winter reading list",
        author=None,
        date=datetime(2026, 11, 22, 23, 30, tzinfo=UTC),  # 23 November in Berlin
        content_html="<p>Five books for long evenings.</p>",
        summary="Five books for long evenings.",
    )
    content = make_issue_content(7, [lead, upstream, desk])
    return content


def parse(html: str | bytes) -> lxml.html.HtmlElement:
    return lxml.html.document_fromstring(html)


def strict_html5(page: bytes) -> None:
    """Parse with html5lib in strict mode: any HTML5 parse error raises."""
    html5lib.HTMLParser(strict=True, namespaceHTMLElements=False).parse(page)


# -- the digest ------------------------------------------------------------------------------


def test_digest_matches_golden_files(env: jinja2.Environment, settings: Settings, golden: Golden):
    digest = render_digest(env, settings, golden_content())
    assert digest.subject == "Test Dispatch #7: Harbour lights return after forty years"
    assert digest.form == "full"
    golden("digest/email.html", digest.html)
    golden("digest/email.txt", digest.text)


def test_email_keeps_only_media_queries_and_pseudo_classes_in_style(
    env: jinja2.Environment, settings: Settings
):
    doc = parse(render_digest(env, settings, golden_content()).html)
    styles = doc.xpath("//style")
    assert len(styles) == 1
    sheet = cssutils.parseString(styles[0].text, validate=False)
    media = [rule for rule in sheet if rule.type == rule.MEDIA_RULE]
    plain = [rule for rule in sheet if rule.type == rule.STYLE_RULE]
    others = [rule for rule in sheet if rule.type not in (rule.MEDIA_RULE, rule.STYLE_RULE)]
    assert others == []
    for rule in plain:  # only what cannot be inlined: :hover, :focus, ...
        for selector in rule.selectorList:
            assert ":" in selector.selectorText, selector.selectorText
    # The phone layout survives with !important, so it beats the inlined widths.
    assert [m.media.mediaText for m in media] == ["(max-width: 620px)"]
    assert "width: 100% !important" in media[0].cssText
    # ... and the plain rules were inlined: the column is 600 px wide on a desktop.
    (container,) = doc.xpath("//table[contains(@class, 'container')]")
    assert "width:600px" in container.get("style")
    assert container.get("width") == "600"


def test_email_has_no_link_or_script_and_only_absolute_urls(
    env: jinja2.Environment, settings: Settings
):
    html = render_digest(env, settings, golden_content()).html
    doc = parse(html)
    assert doc.xpath("//link | //script") == []
    urls = [(el.tag, el.get("href") or el.get("src")) for el in doc.xpath("//*[@href or @src]")]
    assert urls, "the digest links somewhere"
    for tag, url in urls:
        if url == PLACEHOLDER_UNSUBSCRIBE_URL:
            continue
        parts = urlsplit(url)
        assert parts.scheme in ("https", "http") and parts.netloc, (tag, url)
    assert len(html.encode()) < EMAIL_SIZE_LIMIT


def test_email_links_the_web_version_and_every_article(env: jinja2.Environment, settings: Settings):
    content = golden_content()
    digest = render_digest(env, settings, content)
    doc = parse(digest.html)
    (view,) = doc.xpath("//a[contains(., 'View this issue in your browser')]")
    assert view.get("href") == "https://news.example.org/2026-11-24/"
    hrefs = set(doc.xpath("//a/@href"))
    for item in content.articles:
        assert item.url in hrefs
    assert "https://upstream.example.net/posts/2" in hrefs  # upstream: the original article
    assert "From Upstream Weekly" in doc.text_content()


def test_preheader_is_hidden_and_comes_first(env: jinja2.Environment, settings: Settings):
    digest = render_digest(env, settings, golden_content())
    body = parse(digest.html).body
    first = next(el for el in body if isinstance(el.tag, str))  # skip the comment
    assert first.get("class") == "preheader"
    style = first.get("style").replace(" ", "")
    assert "display:none" in style and "max-height:0" in style and "overflow:hidden" in style
    assert digest.preheader.startswith("The old lanterns on the north quay were lit again")
    assert len(digest.preheader) <= 100
    assert first.text_content().startswith(digest.preheader)


def test_preheader_falls_back_to_the_titles(env: jinja2.Environment, settings: Settings):
    content = make_issue_content(articles=[make_article(1, summary=""), make_article(2)])
    digest = render_digest(env, settings, content)
    assert digest.preheader == "Article number 1: harbour news · Article number 2: harbour news"


def test_placeholders_sit_exactly_where_delivery_expects_them(
    env: jinja2.Environment, settings: Settings
):
    digest = render_digest(env, settings, golden_content())
    doc = parse(digest.html)
    assert digest.html.count(PLACEHOLDER_GREETING) == 1
    (greeting,) = doc.xpath("//p[contains(@class, 'greeting')]")
    assert greeting.text_content() == PLACEHOLDER_GREETING
    # The unsubscribe link: its address and its visible text, in the footer, once.
    assert digest.html.count(PLACEHOLDER_UNSUBSCRIBE_URL) == 2
    (link,) = doc.xpath(f"//a[@href='{PLACEHOLDER_UNSUBSCRIBE_URL}']")
    assert link.text_content() == PLACEHOLDER_UNSUBSCRIBE_URL
    assert link.xpath("ancestor::td[contains(@class, 'footer')]")

    lines = digest.text.splitlines()
    assert lines[0] == PLACEHOLDER_GREETING
    assert digest.text.count(PLACEHOLDER_GREETING) == 1
    assert digest.text.count(PLACEHOLDER_UNSUBSCRIBE_URL) == 1
    assert lines[-1].endswith(PLACEHOLDER_UNSUBSCRIBE_URL)


def test_placeholder_lookalikes_in_articles_are_not_filled_in_later(
    env: jinja2.Environment, settings: Settings
):
    sneaky = make_article(
        1,
        title=f"Win {PLACEHOLDER_UNSUBSCRIBE_URL}",
        summary=f"{PLACEHOLDER_GREETING} and {PLACEHOLDER_RECIPIENT}",
        content_html=f"<p>{PLACEHOLDER_RECIPIENT}</p>",
        author="%%%GREETING%%%",
    )
    digest = render_digest(env, settings, make_issue_content(articles=[sneaky]))
    for body in (digest.html, digest.text):
        assert body.count(PLACEHOLDER_GREETING) == 1
        assert PLACEHOLDER_RECIPIENT not in body
    assert digest.html.count(PLACEHOLDER_UNSUBSCRIBE_URL) == 2
    assert digest.text.count(PLACEHOLDER_UNSUBSCRIBE_URL) == 1
    assert "Win %\u200c%UNSUBSCRIBE_URL%\u200c%" in digest.text  # still readable


def test_long_issue_falls_back_to_summaries_under_gmails_limit(
    env: jinja2.Environment, settings: Settings
):
    content = make_issue_content(articles=[make_long_article(i) for i in range(1, 61)])
    full_size = sum(len(item.article.content_html) for item in content.articles)
    assert full_size > EMAIL_SIZE_LIMIT  # the full form cannot fit
    digest = render_digest(env, settings, content)
    assert digest.form == "summary"
    assert len(digest.html.encode()) < EMAIL_SIZE_LIMIT
    assert "<!-- digest form: summary -->" in digest.html
    doc = parse(digest.html)
    more = {a.get("href") for a in doc.xpath("//p[contains(@class, 'more')]/a")}
    assert more == {item.url for item in content.articles}
    assert doc.xpath("//p[contains(@class, 'more')]/a/text()")[0] == "Read more"
    assert "Part two of 1" not in digest.html  # article bodies left out
    for item in content.articles:
        assert f"Read more: {item.url}" in digest.text
        assert item.article.summary in digest.html


def test_huge_issue_falls_back_to_titles_with_links(env: jinja2.Environment, settings: Settings):
    summary = "A long summary sentence. " * 30
    articles = [make_long_article(i, summary=summary) for i in range(1, 121)]
    content = make_issue_content(articles=articles)
    digest = render_digest(env, settings, content)
    assert digest.form == "titles"
    assert len(digest.html.encode()) < EMAIL_SIZE_LIMIT
    doc = parse(digest.html)
    hrefs = doc.xpath("//ul[contains(@class, 'titles')]/li/a/@href")
    assert hrefs == [item.url for item in content.articles]
    assert doc.xpath("//p[contains(@class, 'summary')] | //div[contains(@class, 'content')]") == []
    for item in content.articles:
        assert item.url in digest.text


REPEATS = (
    '<p><a href="https://example.org/x">A link</a>, <a href="https://example.org/x">the same'
    '</a> and <img src="https://example.org/p.jpg" alt="a photo"> twice: '
    '<a href="https://example.org/x"><img src="https://example.org/p.jpg" alt="a photo"></a></p>'
)


@pytest.mark.parametrize("case", ["full", "full, repeated links", "summary", "titles"])
def test_the_text_part_links_what_the_html_part_links_as_often(
    env: jinja2.Environment, settings: Settings, case: str
):
    # Spam filters compare the alternatives: rspamd scores an odd count of URLs (pictures
    # too) over both parts (URI_COUNT_ODD), which a URL only one of them has makes likely.
    long_summary = "A long summary sentence. " * 30
    content = {
        "full": golden_content,
        "full, repeated links": lambda: make_issue_content(
            articles=[make_article(1, content_html=REPEATS)]
        ),
        "summary": lambda: make_issue_content(
            articles=[make_long_article(i) for i in range(1, 61)]
        ),
        "titles": lambda: make_issue_content(
            articles=[make_long_article(i, summary=long_summary) for i in range(1, 121)]
        ),
    }[case]()
    digest = render_digest(env, settings, content)
    assert digest.form == case.partition(",")[0]

    in_html, in_text = urls_in(digest.html, digest.text)
    assert in_text == in_html
    # No URL in the text ends in punctuation a reader's mail program could take for its own.
    assert not [url for url in in_text if url[-1] in ".,;:)"]


def test_email_text_has_every_link_and_wrapped_lines(env: jinja2.Environment, settings: Settings):
    content = golden_content()
    text = render_digest(env, settings, content).text
    assert content.summary.url in text
    for item in content.articles:
        assert item.url in text
    assert "https://example.org/quay" in text  # a link inside an article body
    assert "The quay society [1]" in text
    for line in text.splitlines():
        assert len(line.encode()) <= 998
        if len(line) > 78:  # only an unbreakable word (a URL) may overflow
            assert " " not in line.strip() or "://" in line, line
    assert "<" not in text.replace("<script>", "")  # no markup leaks into the text part


def test_email_text_never_has_a_line_over_998_octets(env: jinja2.Environment, settings: Settings):
    endless = "https://example.org/" + "é" * 3000
    article = make_article(1, content_html=f'<p>See <a href="{endless}">here</a>.</p>')
    text = render_digest(env, settings, make_issue_content(articles=[article])).text
    assert max(len(line.encode()) for line in text.splitlines()) <= 998
    assert "".join(text.splitlines()).count("é") == 3000  # split, not cut short


def test_dates_are_shown_in_the_sites_time_zone(env: jinja2.Environment, settings: Settings):
    digest = render_digest(env, settings, golden_content())
    assert "By Desk · 23 November 2026" in digest.text  # 23:30 UTC on the 22nd
    utc = make_settings(settings.base_dir, timezone="UTC")
    again = render_digest(make_environment(utc), utc, golden_content())
    assert "By Desk · 22 November 2026" in again.text


# -- hostile text ----------------------------------------------------------------------------


def live_markup(html: str | bytes) -> list[str]:
    """Elements or attributes an attacker would want, parsed as a browser would."""
    doc = html5lib.parse(html, treebuilder="lxml", namespaceHTMLElements=False)
    found = [el.tag for el in doc.iter() if el.tag in ("script", "svg", "iframe")]
    found += [
        f"{el.tag}@{name}"
        for el in doc.iter()
        if isinstance(el.tag, str)
        for name in el.attrib
        if name.startswith("on")
    ]
    found += [f"img[src={el.get('src')}]" for el in doc.iter("img") if el.get("src") == "x"]
    return found


@pytest.mark.parametrize("payload", HOSTILE)
@pytest.mark.parametrize("field", ["title", "author", "summary", "publication"])
def test_hostile_text_is_escaped_everywhere(
    env: jinja2.Environment, settings: Settings, field: str, payload: str
):
    article = make_article(1, **{field: payload})
    content = make_issue_content(articles=[article, make_feed_article(2, **{field: payload})])
    if field == "title":
        content = replace(content, summary=replace(content.summary, title=payload))
    digest = render_digest(env, settings, content)
    pages = render_issue_pages(env, settings, content)
    archive = render_archive(env, settings, [content.summary])
    outputs = {"email.html": digest.html, "archive": archive, **pages}
    for name, html in outputs.items():
        assert live_markup(html) == [], name
    # The text is still there, shown as text, not dropped.
    shown = parse(digest.html).text_content()
    if field != "summary":  # the full digest shows bodies, not summaries
        assert payload in shown
    assert payload in parse(pages["index.html"]).text_content() or field == "summary"
    # email.txt is text/plain: the payload is shown verbatim, neither stripped nor escaped.
    if field != "summary":
        assert payload in digest.text


def test_hostile_article_html_never_reaches_an_output(env: jinja2.Environment, settings: Settings):
    raw = (
        "<p>Fine <b>bold</b></p><script>alert(1)</script>"
        '<img src="https://x.example/a.png" onerror="alert(1)">'
        '<a href="javascript:alert(1)">click</a>'
        '<p style="position:fixed" onclick="steal()">styled</p><iframe src="https://evil"></iframe>'
    )
    article = make_article(1, content_html=sanitize_html(raw))  # as every source stores it
    content = make_issue_content(articles=[article])
    digest = render_digest(env, settings, content)
    pages = render_issue_pages(env, settings, content)
    for html in (digest.html, *pages.values()):
        assert live_markup(html) == []
        assert "javascript:" not in (html if isinstance(html, str) else html.decode())
        assert "Fine" in parse(html).text_content()
    assert b"style=" not in pages["index.html"]
    assert "alert" not in digest.text


@hsettings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    title=st.text(
        st.characters(blacklist_categories=("Cs", "Cc", "Zl", "Zp"), blacklist_characters="%"),
        min_size=1,
        max_size=60,
    ).filter(lambda t: t.strip())
)
def test_any_title_reads_back_exactly(tmp_path_factory: pytest.TempPathFactory, title: str):
    settings = make_settings(tmp_path_factory.getbasetemp())
    env = make_environment(settings)
    content = make_issue_content(articles=[make_article(1, title=title)])
    digest = render_digest(env, settings, content)
    expected = " ".join(title.split())
    (link,) = parse(digest.html).xpath("//h2[contains(@class, 'article-title')]/a")
    assert " ".join(link.text_content().split()) == expected
    page = render_issue_pages(env, settings, content)["article-1.html"]
    doc = html5lib.parse(page, treebuilder="lxml", namespaceHTMLElements=False)
    assert " ".join(doc.find(".//h1").xpath("string()").split()) == expected
    assert expected in " ".join(digest.text.split())


# -- the web pages ---------------------------------------------------------------------------


def all_pages(env: jinja2.Environment, settings: Settings) -> dict[str, bytes]:
    content = golden_content()
    pages = {f"issue/{k}": v for k, v in render_issue_pages(env, settings, content).items()}
    pages["archive"] = render_archive(env, settings, [content.summary])
    return pages


@pytest.mark.parametrize(
    ("language", "shown"),
    [("en", "24 November 2026"), ("de", "24. November 2026"),
     ("pt-BR", "24 de novembro de 2026"), ("en-US", "November 24, 2026")],
)  # fmt: skip
def test_dates_are_written_in_the_sites_language(tmp_path: Path, language: str, shown: str):
    # A theme can translate its own words; the month names come from the language setting.
    local = make_settings(tmp_path, language=language)
    env = make_environment(local)
    content = golden_content()  # published 07:00 on 24 November in Berlin

    digest = render_digest(env, local, content)
    page = render_issue_pages(env, local, content)["index.html"].decode()

    assert f"Issue 7 · {shown}" in digest.html
    assert f"Issue 7 · {shown}" in digest.text
    assert f">{shown}</time>" in page


def test_a_language_without_known_dates_is_one_clear_error(tmp_path: Path):
    with pytest.raises(ConfigError) as caught:
        make_environment(make_settings(tmp_path, language="qq"))
    assert "[site] language: no dates known for 'qq'" in str(caught.value)


def test_time_elements_carry_at_most_three_digits_of_a_second(
    env: jinja2.Environment, settings: Settings
):
    # Real runs publish at the clock's time; HTML's datetime syntax allows 1-3 fraction digits.
    content = golden_content()
    moment = datetime(2026, 11, 24, 6, 0, 5, 123456, tzinfo=UTC)
    content = replace(
        content,
        summary=replace(content.summary, published_at=moment),
        articles=tuple(
            replace(item, article=replace(item.article, date=moment)) for item in content.articles
        ),
    )
    pages = render_issue_pages(env, settings, content)
    pages["archive"] = render_archive(env, settings, [content.summary])

    for name, page in pages.items():
        stamps = re.findall(rb'<time datetime="([^"]+)"', page)
        assert stamps and set(stamps) == {b"2026-11-24T07:00:05+01:00"}, name


def test_every_page_is_valid_html5_with_feeds_and_a_subscribe_form(
    env: jinja2.Environment, settings: Settings
):
    for name, page in all_pages(env, settings).items():
        strict_html5(page)
        doc = parse(page)
        assert page.startswith(b"<!doctype html>\n"), name
        assert doc.get("lang") == "en"
        assert doc.xpath("//meta[@charset='utf-8']"), name
        assert doc.xpath("//meta[@name='viewport']/@content") == [
            "width=device-width, initial-scale=1"
        ]
        alternates = {
            (link.get("type"), link.get("href"))
            for link in doc.xpath("//head/link[@rel='alternate']")
        }
        assert alternates == {
            ("application/rss+xml", f"{SITE_URL}feed.xml"),
            ("application/atom+xml", f"{SITE_URL}atom.xml"),
            ("application/feed+json", f"{SITE_URL}feed.json"),
            ("application/atom+xml", f"{SITE_URL}issues.xml"),
        }
        (form,) = doc.xpath("//form")
        assert form.get("method") == "post"
        assert form.get("action") == f"{SITE_URL}subscribe"
        assert form.xpath(".//input[@type='email' and @name='email']")
        (honeypot,) = form.xpath(".//input[@name='website']")
        assert honeypot.xpath("ancestor::*[@aria-hidden='true' and contains(@class, 'hp')]")


def test_pages_need_no_inline_script_or_style(env: jinja2.Environment, settings: Settings):
    css = render_assets(env, settings)["style.css"].decode()
    assert ".subscribe .hp {" in css  # the honeypot is hidden by the stylesheet
    assert "@media" in css
    for name, page in all_pages(env, settings).items():
        doc = parse(page)
        assert doc.xpath("//script | //style | //*[@style]") == [], name
        events = [a for el in doc.iter() for a in el.attrib if a.startswith("on")]
        assert events == [], name
        stylesheets = doc.xpath("//link[@rel='stylesheet']/@href")
        assert stylesheets == (["style.css"] if name == "archive" else ["../style.css"])


def test_web_version_has_every_article_in_full_and_no_placeholders(
    env: jinja2.Environment, settings: Settings
):
    content = golden_content()
    pages = render_issue_pages(env, settings, content)
    assert sorted(pages) == ["article-1.html", "article-3.html", "index.html"]  # upstream: none
    index = pages["index.html"]
    doc = parse(index)
    assert doc.xpath("//h1/text()") == [content.summary.title]
    text = doc.text_content()
    assert "Café Nord stays open late all week." in text
    assert "Upstream body 2." in text
    assert "Five books for long evenings." in text
    titles = doc.xpath("//section[contains(@class, 'entry')]/h2/a")
    assert [(a.text, a.get("href")) for a in titles] == [
        ("Harbour lights return after forty years", "article-1.html"),
        ("Ferry timetable changes in December", "https://upstream.example.net/posts/2"),
        ("Winter reading list", "article-3.html"),
    ]
    assert "From Upstream Weekly" in " ".join(text.split())
    for page in pages.values():
        assert b"%%" not in page


def test_article_page_has_title_byline_date_content_and_ways_back(
    env: jinja2.Environment, settings: Settings
):
    page = render_issue_pages(env, settings, golden_content())["article-1.html"]
    doc = parse(page)
    assert doc.xpath("//h1/text()") == ["Harbour lights return after forty years"]
    (byline,) = doc.xpath("//p[contains(@class, 'byline')]")
    assert " ".join(byline.text_content().split()) == (
        "By Maren Holt, Harbour Gazette · 20 November 2026"
    )
    assert byline.xpath(".//time/@datetime") == ["2026-11-20T10:00:00+01:00"]
    assert doc.xpath("//div[contains(@class, 'content')]//img/@alt") == ["Lanterns at dusk"]
    back = doc.xpath("//nav[contains(@class, 'pager')]/a/@href")
    assert back == ["index.html", "../index.html"]
    assert doc.xpath("//link[@rel='canonical']/@href") == [
        "https://news.example.org/2026-11-24/article-1.html"
    ]


def test_archive_lists_every_issue_newest_first(env: jinja2.Environment, settings: Settings):
    def summary(number: int, day: int) -> IssueSummary:
        return IssueSummary(
            number=number,
            folder=f"2026-11-{day:02d}",
            published_at=datetime(2026, 11, day, 6, 0, tzinfo=UTC),
            title=f"Test Dispatch #{number}",
            url=f"{SITE_URL}2026-11-{day:02d}/",
            article_titles=(f"Story A of {number}", f"Story B of {number}"),
        )

    page = render_archive(env, settings, [summary(1, 3), summary(3, 17), summary(2, 10)])
    strict_html5(page)
    doc = parse(page)
    entries = doc.xpath("//ol[contains(@class, 'issues')]/li")
    assert [e.xpath("h2/a/text()")[0] for e in entries] == [
        "Test Dispatch #3",
        "Test Dispatch #2",
        "Test Dispatch #1",
    ]
    assert entries[0].xpath("h2/a/@href") == ["2026-11-17/index.html"]
    assert entries[0].xpath(".//time/text()") == ["17 November 2026"]
    assert entries[2].xpath(".//ul/li/text()") == ["Story A of 1", "Story B of 1"]
    empty = parse(render_archive(env, settings, []))
    assert "No issues yet" in empty.text_content()


def test_a_slug_that_would_overwrite_the_issue_page_is_refused(
    env: jinja2.Environment, settings: Settings
):
    content = make_issue_content(articles=[make_article(1, slug="index", source="index.md")])
    with pytest.raises(RenderError, match=r"^index\.md: article slug 'index'"):
        render_issue_pages(env, settings, content)


# -- themes ----------------------------------------------------------------------------------


def test_default_theme_ships_every_template():
    names = {p.name for p in default_theme_dir().iterdir()}
    expected = {"base.html", "issue.html", "article.html", "archive.html", "email.html"}
    assert expected | {"email.txt", "email.css", "style.css"} <= names


def test_theme_dir_overrides_one_template_and_keeps_the_rest(tmp_path: Path):
    theme = tmp_path / "mytheme"
    theme.mkdir()
    (theme / "article.html").write_text(
        '{% extends "base.html" %}{% block main %}<h1 class="mine">{{ item.article.title }}'
        "</h1>{% endblock %}",
        encoding="utf-8",
    )
    (theme / "style.css").write_text("body { color: teal; }\n", encoding="utf-8")
    default_settings = make_settings(tmp_path)
    themed_settings = make_settings(tmp_path, theme_dir="mytheme")
    content = golden_content()
    default = render_issue_pages(make_environment(default_settings), default_settings, content)
    themed_env = make_environment(themed_settings)
    themed = render_issue_pages(themed_env, themed_settings, content)
    assert parse(themed["article-1.html"]).xpath("//h1[@class='mine']/text()") == [
        "Harbour lights return after forty years"
    ]
    assert b"<form" in themed["article-1.html"]  # base.html still comes from the default theme
    assert themed["index.html"] == default["index.html"]
    assert render_assets(themed_env, themed_settings) == {"style.css": b"body { color: teal; }\n"}


def test_theme_templates_are_autoescaped_too(tmp_path: Path):
    theme = tmp_path / "theme"
    theme.mkdir()
    (theme / "article.html").write_text("<h1>{{ item.article.title }}</h1>\n", encoding="utf-8")
    settings = make_settings(tmp_path, theme_dir=str(theme))
    content = make_issue_content(articles=[make_article(1, title=HOSTILE[0])])
    page = render_issue_pages(make_environment(settings), settings, content)["article-1.html"]
    assert page == b"<h1>&lt;script&gt;alert(1)&lt;/script&gt;</h1>\n"


def test_template_syntax_error_names_the_file_and_line(tmp_path: Path):
    theme = tmp_path / "theme"
    theme.mkdir()
    (theme / "email.html").write_text("<p>\nfine\n{% if %}\n</p>\n", encoding="utf-8")
    settings = make_settings(tmp_path, theme_dir="theme")
    with pytest.raises(RenderError) as caught:
        render_digest(make_environment(settings), settings, golden_content())
    message = str(caught.value)
    assert message.startswith(f"{theme / 'email.html'}:3: ")
    assert "\n" not in message
    assert "theme_dir" in message  # says what to do


def test_undefined_variable_names_the_file_and_line(tmp_path: Path):
    theme = tmp_path / "theme"
    theme.mkdir()
    (theme / "macros.html").write_text(
        "{% macro byline(item, site) %}\n<p>{{ item.article.no_such_field }}</p>\n{% endmacro %}\n",
        encoding="utf-8",
    )
    settings = make_settings(tmp_path, theme_dir="theme")
    with pytest.raises(RenderError) as caught:
        render_issue_pages(make_environment(settings), settings, golden_content())
    message = str(caught.value)
    assert message.startswith(f"{theme / 'macros.html'}:2: ")
    assert "no_such_field" in message
    assert "\n" not in message


def test_missing_theme_dir_is_a_settings_error(tmp_path: Path):
    settings = make_settings(tmp_path, theme_dir="nowhere")
    with pytest.raises(ConfigError, match=r"\[site\] theme_dir: folder .*nowhere not found"):
        make_environment(settings)


def test_rendering_twice_gives_identical_bytes(env: jinja2.Environment, settings: Settings):
    first = render_digest(env, settings, golden_content())
    again_env = make_environment(settings)
    second = render_digest(again_env, settings, golden_content())
    assert first == second
    assert render_issue_pages(env, settings, golden_content()) == render_issue_pages(
        again_env, settings, golden_content()
    )


def test_shipped_email_css_uses_only_media_and_plain_rules():
    sheet = cssutils.parseString(
        (default_theme_dir() / "email.css").read_text(encoding="utf-8"), validate=False
    )
    kinds = {rule.typeString for rule in sheet if rule.type != rule.COMMENT}
    assert kinds == {"STYLE_RULE", "MEDIA_RULE"}
    assert not re.search(r"@import|url\(", sheet.cssText.decode())


def test_wide_images_are_scaled_to_the_email_column(env: jinja2.Environment, settings: Settings):
    content = golden_content()
    (img,) = parse(render_digest(env, settings, content).html).xpath("//img")
    assert (img.get("width"), img.get("height")) == ("536", "357")  # 1200x800, same ratio
    assert "max-width:100%" in img.get("style")
    (page_img,) = parse(render_issue_pages(env, settings, content)["index.html"]).xpath("//img")
    assert (page_img.get("width"), page_img.get("height")) == ("1200", "800")  # CSS scales it


def test_a_deferred_module_runs_only_when_first_used(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # How premailer's unused `import requests` is kept off the publish path.
    import sys

    from publisher.render.digest import _import_lazily

    (tmp_path / "deferred_probe.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('ran').touch()\nVALUE = 42\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "deferred_probe", raising=False)
    _import_lazily("deferred_probe")
    import deferred_probe  # type: ignore[import-not-found]

    assert not (tmp_path / "ran").exists()
    assert deferred_probe.VALUE == 42
    assert (tmp_path / "ran").exists()
    assert sys.modules["deferred_probe"] is not deferred_probe  # the real module took its place
    assert sys.modules["deferred_probe"].VALUE == 42
    monkeypatch.delitem(sys.modules, "deferred_probe")
