"""Cleaning: visible text, shortening, forbidden characters, links resolved while sanitizing."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

from hypothesis import given
from hypothesis import strategies as st

from publisher.sources.clean import html_to_text, sanitize_html, shorten, strip_xml_forbidden


def test_html_to_text_spaces_blocks_but_not_inline_tags() -> None:
    html = "<p>See <a href='x'>this</a>.</p><p>Next&nbsp;one &amp; <em>more</em></p><li>x</li>"
    assert html_to_text(html) == "See this. Next one & more x"  # no-break space folds too


def test_shorten_cuts_at_a_word_with_an_ellipsis() -> None:
    assert shorten("one two three four", 100) == "one two three four"
    assert shorten("one two three four", 12) == "one two…"


def test_h1_inside_an_article_becomes_h2() -> None:
    assert sanitize_html("<h1>Big</h1><p>x</p>") == "<h2>Big</h2><p>x</p>"


@given(st.text())
def test_stripped_text_has_no_character_xml_forbids(text: str) -> None:
    cleaned = strip_xml_forbidden(text)
    assert all(
        ch in "\t\n\r"
        or 0x20 <= ord(ch) <= 0xD7FF
        or 0xE000 <= ord(ch) <= 0xFFFD
        or ord(ch) > 0xFFFF
        for ch in cleaned
    )


BASE = "https://feeds.example.org/blog/feed.xml"

path_part = st.text(alphabet="abcXYZ019-._~%/?#=&", max_size=20)
relative = st.one_of(
    path_part,
    path_part.map(lambda p: "/" + p),
    path_part.map(lambda p: "../" + p),
    path_part.map(lambda p: "./" + p),
    path_part.map(lambda p: "//cdn.example.net/" + p),
)


def href(fragment: str) -> str | None:
    found = re.search(r'href="([^"]*)"', fragment)
    return found.group(1).replace("&amp;", "&") if found else None


@given(relative)
def test_relative_links_resolve_exactly_as_urljoin_does(value: str) -> None:
    cleaned = sanitize_html(f'<a href="{value}">x</a>', base_url=BASE)

    # The attribute is HTML: character references ("&#0", "&amp;") mean what they decode to.
    assert href(cleaned) == urljoin(BASE, html.unescape(value))


@given(st.sampled_from(["javascript:alert(1)", "data:text/html,x", "vbscript:x", "jAvAsCrIpT:x"]))
def test_unsafe_schemes_lose_the_link_whatever_the_base(value: str) -> None:
    for base in (BASE, "javascript:alert(2)//"):
        cleaned = sanitize_html(f'<a href="{value}">x</a><img src="/i.png">', base_url=base)
        assert href(cleaned) is None
        assert "javascript:" not in cleaned.lower() and "data:" not in cleaned


def test_without_a_base_links_stay_as_written() -> None:
    assert sanitize_html('<a href="/x">x</a>') == '<a href="/x" rel="noopener noreferrer">x</a>'
