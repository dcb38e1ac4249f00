"""Cleaning: visible text, shortening, forbidden characters, links resolved while sanitizing."""

from __future__ import annotations

import html
import re
from urllib.parse import urljoin

import pytest
from hypothesis import example, given
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


BASE = "https://feeds.example.org/blog/feed.xml"


def xml_allows(text: str) -> bool:
    return all(
        ch in "\t\n\r"
        or 0x20 <= ord(ch) <= 0xD7FF
        or 0xE000 <= ord(ch) <= 0xFFFD
        or ord(ch) > 0xFFFF
        for ch in text
    )


@given(st.text())
def test_stripped_text_has_no_character_xml_forbids(text: str) -> None:
    assert xml_allows(strip_xml_forbidden(text))


# Character references to what XML forbids, as a hostile feed would write them.
forbidden_reference = st.sampled_from(["&#1;", "&#x1F;", "&#8;", "&#xB;", "&#0;", "&#xFFFE;"])
hostile_piece = st.one_of(
    forbidden_reference,
    st.text(max_size=5),
    st.sampled_from(["java", "script:", "&", "#1;", "\x01"]),
)


@given(
    st.lists(hostile_piece, max_size=8).map("".join), st.sampled_from([None, "https://ex.org/d/"])
)
@example("&\x01#1;", None)  # a reference that only appears once the raw character is gone
def test_sanitized_html_never_holds_a_character_xml_forbids(written: str, base: str | None) -> None:
    # Our feeds are XML: one such character from upstream would make them unreadable.
    fragment = f'<p title="{written}">{written}</p><a href="{written}">x</a><img src="{written}">'
    assert xml_allows(sanitize_html(fragment, base_url=base))


@given(st.sampled_from([None, BASE]))
def test_a_reference_inside_a_scheme_never_makes_a_script_link(base: str | None) -> None:
    for written in ("java&#1;script:alert(1)", "java&#x9;script:alert(1)", "jav&#0;ascript:x"):
        cleaned = sanitize_html(f'<a href="{written}">x</a><img src="{written}">', base_url=base)
        assert "javascript:" not in cleaned.lower()


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


def test_a_link_that_is_no_url_is_dropped_quietly(capsys: pytest.CaptureFixture[str]) -> None:
    for base in (None, BASE):
        assert sanitize_html('<a href="//[x">x</a>', base_url=base) == "<a>x</a>"
    assert capsys.readouterr().err == ""  # nothing printed by nh3 about our filter


def test_without_a_base_links_stay_as_written() -> None:
    assert sanitize_html('<a href="/x">x</a>') == '<a href="/x" rel="noopener noreferrer">x</a>'


link_attribute = st.sampled_from(
    ['href="https://ex.org/a"', 'href="/b"', 'href="javascript:x()"', 'href="//[x"',
     'title="rel=&quot;noopener noreferrer&quot; href=x>"', 'name="top"', 'onclick="x()"',
     'rel="nofollow"', 'HREF="mailto:desk@ex.org"', "href"]
)  # fmt: skip


@given(st.lists(link_attribute, max_size=4), st.sampled_from([None, BASE]))
def test_a_link_has_rel_exactly_when_it_has_a_url(attributes: list[str], base: str | None) -> None:
    # HTML forbids rel on an <a> without href: such a page fails the W3C checker.
    cleaned = sanitize_html(f"<p><a {' '.join(attributes)}>text</a> after</p>", base_url=base)

    tag = re.search(r"<a\b[^>]*>", cleaned)
    assert tag is not None and "text</a> after" in cleaned  # the text always stays
    has_href = ' href="' in tag.group()
    assert (' rel="noopener noreferrer"' in tag.group()) == has_href
    # Of repeated attributes HTML keeps the first; an empty href is a link to the page itself.
    first = next((a for a in attributes if a.lower().partition("=")[0] == "href"), None)
    assert has_href == (
        first is not None
        and (
            first == "href" or first.lower().startswith(('href="https', 'href="/b', 'href="mailto'))
        )
    )
