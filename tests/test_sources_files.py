"""Article files: the plain form, Markdown and HTML, front matter, bad input."""

from __future__ import annotations

import codecs
import re
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from publisher.errors import SourceError
from publisher.model import ParsedArticle
from publisher.sources.files import (
    parse_article,
    parse_plain_blocks,
    title_from_file_name,
    title_from_lede,
)

UTC_ZONE = ZoneInfo("UTC")
BERLIN = ZoneInfo("Europe/Berlin")


def test_shared_corpus_article_reads_like_an_editor_expects(shared_dir: Path) -> None:
    path = shared_dir / "corpus" / "articles" / "000_a294275c7f261648.txt"
    article = parse_article(path.name, path.read_bytes(), UTC_ZONE)

    assert article.author == "Ahmed Kamel"
    assert article.publication == "Egypt Daily News"
    assert article.content_html.count("<p>") == 11
    headings = re.findall(r"<h2>(.*?)</h2>", article.content_html)
    assert headings == [
        "Ankara and Cairo in Focus",
        "Turkey’s Position and International Role",
        "Challenges to a Fragile Truce",
        "Regional Diplomacy and Broader Engagement",
        "Looking Ahead",
    ]
    assert "“genocidal”—a charge" in article.content_html
    assert "000_a294275c7f261648" not in article.title
    assert 20 <= len(article.title) <= 120
    assert article.title.startswith("Cairo and Ankara are set to take another step")


# --------------------------------------------------------------------------- the plain form


def parse_text(name: str, text: str) -> ParsedArticle:
    return parse_article(name, text.encode("utf-8"), BERLIN)


@pytest.mark.parametrize(
    ("byline", "author", "publication"),
    [
        ("Maren Holt – The Harbour Post", "Maren Holt", "The Harbour Post"),
        ("Maren Holt — The Harbour Post", "Maren Holt", "The Harbour Post"),
        ("Maren Holt - The Harbour Post", "Maren Holt", "The Harbour Post"),
        ("By Maren Holt", "Maren Holt", None),
        ("By Zoë Ångström – Nordic Notes", "Zoë Ångström", "Nordic Notes"),
    ],
)
def test_bylines(byline: str, author: str, publication: str | None) -> None:
    article = parse_text("x.txt", f"{byline}\nThe first paragraph says what happened.\n")
    assert (article.author, article.publication) == (author, publication)
    assert byline not in article.content_html
    assert article.content_html == "<p>The first paragraph says what happened.</p>"


def test_plain_without_byline_and_with_blank_lines() -> None:
    article = parse_text(
        "notes.txt",
        "The council met on Tuesday.\n\n\nIt decided nothing.\n\n"
        "Budget Talks\n\nThey resume in May.\n",
    )
    assert article.author is None
    assert article.content_html == (
        "<p>The council met on Tuesday.</p>\n<p>It decided nothing.</p>\n"
        "<h2>Budget Talks</h2>\n<p>They resume in May.</p>"
    )


def test_title_line_before_the_byline_is_the_title() -> None:
    article = parse_text(
        "0042_deadbeefcafe1234.txt",
        "Harbour Lights Return\nBy Maren Holt\nThe lights came back on.\nMore text here.\n",
    )
    assert article.title == "Harbour Lights Return"
    assert article.author == "Maren Holt"
    assert "Harbour Lights Return" not in article.content_html


def test_short_lines_are_headings_only_when_a_paragraph_follows() -> None:
    blocks = parse_plain_blocks(
        "Opening paragraph of the piece.\nTwo Short Lines\nIn A Row\nA paragraph.\nThe End\n"
    )
    kinds = [(b.kind, b.text) for b in blocks]
    assert kinds == [
        ("paragraph", "Opening paragraph of the piece."),
        ("paragraph", "Two Short Lines"),
        ("heading", "In A Row"),
        ("paragraph", "A paragraph."),
        ("paragraph", "The End"),
    ]


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("spring-garden-notes.txt", "Spring garden notes"),
        ("2026-11-24_council_budget.txt", "Council budget"),
        ("000_a294275c7f261648.txt", None),
        ("3f2a9c1e-77b0-4c1e-9d7a-2b1f0e9c8d7a.txt", None),
        ("IMG_20261124.txt", None),
        ("x.txt", None),
    ],
)
def test_titles_from_file_names(name: str, expected: str | None) -> None:
    assert title_from_file_name(name.rsplit(".", 1)[0]) == expected


def test_title_from_a_long_lede_is_cut_at_a_clause_break() -> None:
    lede = (
        "The regional transport board voted on Thursday to keep the night ferry to the islands "
        "running all winter, after months of campaigning by islanders who depend on it. More."
    )
    title = title_from_lede(lede)
    assert title == (
        "The regional transport board voted on Thursday to keep the night ferry to the islands "
        "running all winter"
    )
    assert title_from_lede("Short and sweet. Then more.") == "Short and sweet"
    no_breaks = "word " * 60
    assert len(title_from_lede(no_breaks)) <= 120
    assert title_from_lede(no_breaks).endswith("…")


# --------------------------------------------------------------------------- Markdown and HTML


def test_markdown_with_yaml_front_matter() -> None:
    article = parse_text(
        "post.md",
        """\
---
title: "Café Ümlaut: a review"
author: Søren Ångström
date: 2026-11-20
tags: [food, reviews]
summary: Worth the wait.
slug: cafe-umlaut
url: https://example.org/cafe
draft: true
---
# A heading that is not the title here

Some *emphasis* and [a link](https://example.org/x).
""",
    )
    assert article.title == "Café Ümlaut: a review"
    assert article.author == "Søren Ångström"
    assert article.date == datetime(2026, 11, 20, tzinfo=BERLIN)
    assert article.tags == ("food", "reviews")
    assert article.summary == "Worth the wait."
    assert (article.slug, article.url, article.draft) == (
        "cafe-umlaut",
        "https://example.org/cafe",
        True,
    )
    assert "<em>emphasis</em>" in article.content_html
    assert 'href="https://example.org/x"' in article.content_html


def test_markdown_h1_becomes_the_title_and_leaves_the_body() -> None:
    article = parse_text("a.md", "# A winter reading list\n\nFive books for long evenings.\n")
    assert article.title == "A winter reading list"
    assert article.content_html.strip() == "<p>Five books for long evenings.</p>"
    assert article.summary == "Five books for long evenings."


def test_key_value_header_front_matter() -> None:
    article = parse_text(
        "lanes.html",
        "Title: Three new bike lanes\nAuthor: Priya Raman\nDate: 2026-11-18T07:30:00+01:00\n"
        "Tags: city, transport\n\n<p>The city opened three lanes.</p>\n",
    )
    assert article.title == "Three new bike lanes"
    assert article.author == "Priya Raman"
    assert article.date == datetime(2026, 11, 18, 6, 30, tzinfo=UTC)
    assert article.tags == ("city", "transport")


HOSTILE = """\
<html><head><title>Market day</title><script>steal()</script></head><body>
<p onclick="track()" onmouseover="x()">Stalls <a href="javascript:alert(1)">map</a>
<a href="https://example.org/ok" onclick="y()">ok</a></p>
<img src="x.png" onerror="alert(2)" alt="stalls">
<iframe src="https://evil.example/"></iframe><style>body{display:none}</style>
<svg onload="alert(3)"></svg><form action="https://evil.example/"><input name=p></form>
</body></html>
"""


@pytest.mark.parametrize("name", ["hostile.html", "hostile.md"])
def test_hostile_html_is_sanitized(name: str) -> None:
    article = parse_text(name, HOSTILE)
    out = article.content_html.lower()
    for bad in ("<script", "steal()", "onclick", "onmouseover", "onerror", "onload", "javascript:",
                "<iframe", "<style", "display:none", "<svg", "<form", "<input"):  # fmt: skip
        assert bad not in out, bad
    assert (
        '<a href="https://example.org/ok" rel="noopener noreferrer">ok</a>' in article.content_html
    )
    assert 'alt="stalls"' in article.content_html


def test_html_document_title_comes_from_title_tag() -> None:
    article = parse_text("m.html", HOSTILE)
    assert article.title == "Market day"


# --------------------------------------------------------------------------- bad input


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "empty file"),
        (b"   \n\t\n", "empty file (only white space)"),
        (b"Caf\xe9 au lait\n", "not valid UTF-8: byte 0xE9 at offset 3; save the file as UTF-8"),
        (b"\xef\xbb\xbfOK\n\xff\n", "not valid UTF-8: byte 0xFF at offset 6"),
        (b"---\ntitle: [unclosed\n---\nbody\n", "line 2: malformed front matter"),
        (b"---\ntitle: x\nbody\n", "line 1: front matter opened with '---' is never closed"),
        (b"---\ntitle: T\nauthro: me\n---\nbody\n", "line 3: unknown front matter key 'authro'"),
        (b"Title: T\nAuthro: me\n\nbody\n", "line 2: unknown front matter key 'Authro'"),
        (b"---\ndate: next tuesday\n---\nbody\n", "line 2: front matter date: 'next tuesday'"),
        (b"---\ndraft: maybe\n---\nbody\n", "line 2: front matter draft: 'maybe' is not true"),
        (b"---\nurl: /local\n---\nbody\n", "not an absolute http(s) URL"),
        (b"---\n- a\n- b\n---\nbody\n", "front matter must be 'key: value' lines"),
        (b"---\ntitle: T\n---\n\n", "front matter but no article text"),
        (b"<script>only()</script>", "no article text left after cleaning"),
    ],
)
def test_bad_input_gives_one_clear_line(data: bytes, message: str) -> None:
    name = "bad.html" if data.startswith(b"<") else "bad.txt"
    with pytest.raises(SourceError) as caught:
        parse_article(name, data, BERLIN)
    text = str(caught.value)
    assert message in text
    assert "\n" not in text


def test_other_encodings_with_a_bom_are_read() -> None:
    text = "By Zoë Brontë\nUne île, un café — «voilà».\n"
    for data in (
        codecs.BOM_UTF8 + text.encode("utf-8"),
        codecs.BOM_UTF16_LE + text.encode("utf-16-le"),
        codecs.BOM_UTF16_BE + text.encode("utf-16-be"),
    ):
        article = parse_article("x.txt", data, BERLIN)
        assert article.author == "Zoë Brontë"
        assert article.content_html == "<p>Une île, un café — «voilà».</p>"


def test_characters_xml_forbids_are_stripped() -> None:
    article = parse_text("x.txt", "By A\x00mira Khan\nBell\x07 rang\x1b at noon.\ufffe\n")
    assert article.author == "Amira Khan"
    assert article.content_html == "<p>Bell rang at noon.</p>"


# --------------------------------------------------------------------------- properties


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_plain_parser_puts_every_line_in_exactly_one_block(text: str) -> None:
    blocks = parse_plain_blocks(text)
    lines = [line.strip() for line in text.split("\n") if line.strip()]
    assert [b.text for b in blocks] == lines
    assert [b.line for b in blocks] == sorted({b.line for b in blocks})


@settings(max_examples=300, deadline=None)
@given(
    st.lists(
        st.text(st.characters(exclude_categories=("Cs",)), max_size=120), min_size=1, max_size=12
    ).map("\n".join),
    st.sampled_from(["a.txt", "a.md", "a.html", "0001_abcdef123456.txt"]),
)
def test_parse_article_never_raises_anything_but_source_error(text: str, name: str) -> None:
    try:
        article = parse_article(name, text.encode("utf-8"), BERLIN)
    except SourceError as exc:
        assert "\n" not in str(exc)
        return
    assert article.title
    assert len(article.title) <= 120
    assert "<script" not in article.content_html.lower()


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=400))
def test_any_bytes_either_parse_or_fail_with_a_source_error(data: bytes) -> None:
    try:
        article = parse_article("fuzz.txt", data, BERLIN)
    except SourceError as exc:
        assert "\n" not in str(exc)
        return
    # Whatever came in, what goes out is text XML can carry.
    forbidden = {chr(c) for c in range(32) if chr(c) not in "\t\n\r"}
    assert not forbidden & set(article.content_html + article.title + article.summary)
