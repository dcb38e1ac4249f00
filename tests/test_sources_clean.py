"""Sanitizing incoming HTML with links made absolute against a base URL in the same pass."""

from __future__ import annotations

import re
from urllib.parse import urljoin

from hypothesis import given
from hypothesis import strategies as st

from publisher.sources.clean import sanitize_html

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

    assert href(cleaned) == urljoin(BASE, value)


@given(st.sampled_from(["javascript:alert(1)", "data:text/html,x", "vbscript:x", "jAvAsCrIpT:x"]))
def test_unsafe_schemes_lose_the_link_whatever_the_base(value: str) -> None:
    for base in (BASE, "javascript:alert(2)//"):
        cleaned = sanitize_html(f'<a href="{value}">x</a><img src="/i.png">', base_url=base)
        assert href(cleaned) is None
        assert "javascript:" not in cleaned.lower() and "data:" not in cleaned


def test_without_a_base_links_stay_as_written() -> None:
    assert sanitize_html('<a href="/x">x</a>') == '<a href="/x" rel="noopener noreferrer">x</a>'
