"""Cleaning: visible text of HTML, shortening, characters XML forbids."""

from __future__ import annotations

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
