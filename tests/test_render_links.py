"""Links and images in published HTML: absolute, alt text everywhere, missing images dropped."""

from __future__ import annotations

from publisher.render.links import local_image_refs, publish_html

BASE = "https://n.example.org/2026-11-24/harbour.html"


def test_relative_image_refs_are_found_once_in_order() -> None:
    html = (
        '<p><img src="img/a.jpg" alt="A"><img src="https://cdn.example/x.png">'
        '<img src="b.png"><img src="img/a.jpg"></p>'
    )
    assert local_image_refs(html) == ["img/a.jpg", "b.png"]


def test_images_point_at_published_urls_and_get_alt_text() -> None:
    html = '<p><img src="img/a.jpg" alt="Quay at dusk"><img src="b.png"><img src="gone.png"></p>'
    out = publish_html(
        html,
        BASE,
        {
            "img/a.jpg": "https://n.example.org/2026-11-24/harbour/a.jpg",
            "b.png": "https://n.example.org/2026-11-24/harbour/b.png",
            "gone.png": None,
        },
        "Harbour lights return",
    )
    assert out == (
        '<p><img src="https://n.example.org/2026-11-24/harbour/a.jpg" alt="Quay at dusk">'
        '<img src="https://n.example.org/2026-11-24/harbour/b.png" alt="Harbour lights return">'
        "</p>"
    )


def test_relative_links_become_absolute_and_others_stay() -> None:
    html = (
        '<a href="other.html">o</a> <a href="/about">a</a> <a href="#notes">n</a> '
        '<a href="https://x.example/">x</a> <a href="mailto:e@x.example">m</a>'
    )
    out = publish_html(html, BASE, {}, "T")
    assert 'href="https://n.example.org/2026-11-24/other.html"' in out
    assert 'href="https://n.example.org/about"' in out
    assert 'href="#notes"' in out
    assert 'href="https://x.example/"' in out
    assert 'href="mailto:e@x.example"' in out


def test_alt_text_from_a_title_with_quotes_is_escaped() -> None:
    out = publish_html('<img src="https://c.example/p.png">', BASE, {}, 'The "best" <crêpes>')
    assert out == '<img src="https://c.example/p.png" alt="The &quot;best&quot; &lt;crêpes&gt;">'
