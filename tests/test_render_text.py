"""Plain text for the email's text/plain part (publisher.render.text)."""

from __future__ import annotations

import html

from hypothesis import given
from hypothesis import strategies as st

from publisher.render.text import heading, html_to_text, limit_line_octets, wrap


def test_paragraphs_headings_and_links_become_readable_text():
    text = html_to_text(
        "<h2>Opening hours</h2>"
        '<p>The <a href="https://example.org/library">library</a> opens at nine; '
        '<a href="https://example.org/library">its site</a> has the rest. '
        'Write to <a href="mailto:desk@example.org">desk@example.org</a> or see '
        '<a href="https://example.org/">https://example.org/</a>.</p>'
    )
    assert text == (
        "Opening hours\n"
        "-------------\n"
        "\n"
        "The library [1] opens at nine; its site [2] has the rest. Write to\n"
        "desk@example.org or see https://example.org/.\n"
        "\n"
        "[1] https://example.org/library\n"
        "[2] https://example.org/library"
    )


def test_lists_quotes_code_tables_and_images():
    text = html_to_text(
        "<ul><li>Bread</li><li>Milk<ol start='3'><li>whole</li><li>oat</li></ol></li></ul>"
        "<blockquote><p>Said the baker.</p></blockquote>"
        "<pre>  two  spaces\n    kept</pre>"
        "<table><tr><th>Day</th><th>Open</th></tr><tr><td>Mon</td><td>9-5</td></tr></table>"
        '<p>Look<br>here: <img src="https://example.org/a.png" alt="A map"> <img src="b.png"></p>'
        "<hr><p>End</p>"
    )
    assert text == (
        "- Bread\n"
        "- Milk\n"
        "  3. whole\n"
        "  4. oat\n"
        "\n"
        "> Said the baker.\n"
        "\n"
        "  two  spaces\n"
        "    kept\n"
        "\n"
        "Day | Open\n"
        "Mon | 9-5\n"
        "\n"
        "Look\n"
        "here: [A map] [1] [image] [2]\n"
        "\n"
        "* * *\n"
        "\n"
        "End\n"
        "\n"
        "[1] https://example.org/a.png\n"
        "[2] b.png"
    )


def test_long_list_items_wrap_under_their_bullet():
    text = html_to_text("<ol><li>" + "word " * 30 + "</li></ol>")
    lines = text.splitlines()
    assert lines[0].startswith("1. word")
    assert all(line.startswith("   word") for line in lines[1:])
    assert max(len(line) for line in lines) <= 78


def test_empty_and_markup_only_fragments_give_empty_text():
    assert html_to_text("") == ""
    assert html_to_text("<p> </p><div></div><!-- note -->") == ""


def test_heading_is_underlined_as_wide_as_its_text():
    assert heading("Harbour news") == "Harbour news\n============"
    long = heading("word " * 30)
    assert long.splitlines()[-1] == "=" * max(len(line) for line in long.splitlines()[:-1])


def test_wrap_keeps_long_urls_whole():
    url = "https://example.org/" + "a" * 100
    assert wrap(f"see {url} now") == f"see\n{url}\nnow"


def test_limit_line_octets_splits_only_overlong_lines():
    assert limit_line_octets("short\nlines") == "short\nlines"
    line = "€" * 400  # 1,200 octets
    out = limit_line_octets(f"a\n{line}\nb")
    parts = out.split("\n")
    assert parts[0] == "a" and parts[-1] == "b"
    assert all(len(p.encode()) <= 998 for p in parts)
    assert "".join(parts[1:-1]) == line


words = st.text(st.characters(categories=("L", "N")), min_size=1, max_size=30)
urls = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=200).map(
    lambda path: f"https://example.org/{path}"
)


@given(
    st.lists(
        st.tuples(
            st.lists(words, min_size=1, max_size=40),
            st.one_of(st.none(), urls),
            st.one_of(st.none(), urls),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_every_word_link_and_picture_survives_and_lines_stay_short(paragraphs):
    source = "".join(
        f"<p>{html.escape(' '.join(ws))}"
        + (f' <a href="{html.escape(url)}">link</a>' if url else "")
        + (f' <img src="{html.escape(picture)}" alt="photo">' if picture else "")
        + "</p>"
        for ws, url, picture in paragraphs
    )
    text = html_to_text(source)
    flat = text.split()
    for ws, url, picture in paragraphs:
        for word in ws:
            assert word in flat
        for address in (url, picture):
            if address:
                assert address in flat  # whole: a URL is never broken across lines
    for line in text.splitlines():
        assert len(line.encode()) <= 998
        if len(line) > 78:  # only a word that cannot fit on any line may overflow
            assert max(len(word) for word in line.split()) > 70, line


def test_wrap_never_breaks_at_a_no_break_space() -> None:
    assert wrap("aaaa 10\xa0km bbbb", width=8) == "aaaa\n10\xa0km\nbbbb"
    assert wrap("one two three", width=7, first="* ", rest="  ") == "* one\n  two\n  three"
