"""Parsing feed documents: feedparser with one cleaning pass after it, and JSON Feed."""

from __future__ import annotations

import io
import json
import re
import unicodedata
from datetime import datetime
from typing import Any

import feedparser
import feedparser.api
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from publisher.errors import SourceError
from publisher.sources.feed_parse import parse_feed, parse_json_feed
from tests.conftest import FEEDS_DATA


def data(name: str) -> bytes:
    return (FEEDS_DATA / name).read_bytes()


def hrefs(fragment: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]*)"', fragment)


@pytest.mark.parametrize("name", ["rss2.xml", "atom.xml", "latin1.xml", "ill-formed.xml"])
def test_our_single_cleaning_pass_links_the_same_as_feedparsers_own(name: str) -> None:
    """Sanitizer and resolver off in feedparser, nh3 after: the same links as feedparser's."""
    base = "https://feeds.example.org/dir/feed.xml"
    ours = parse_feed(data(name), base, "application/xml")
    theirs = feedparser.parse(
        io.BytesIO(data(name)), response_headers={"content-location": base}
    ).entries

    assert len(ours.entries) == len(theirs)
    for entry, reference in zip(ours.entries, theirs, strict=True):
        values = [c["value"] for c in reference.get("content", [])] or [reference.get("summary")]
        expected = [
            h for h in hrefs(values[0] or "") if h.startswith(("http:", "https:", "mailto:"))
        ]
        assert hrefs(entry.content_html) == expected
        assert entry.link == reference.get("link")


def test_buffered_expat_reads_the_same_entries_as_feedparsers_default(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def entries() -> list[Any]:
        return [
            parse_feed(data(name), "https://feeds.example.org/", "application/xml").entries
            for name in ("rss2.xml", "atom.xml", "latin1.xml", "ill-formed.xml")
        ]

    buffered = entries()
    monkeypatch.setattr(feedparser.api, "PREFERRED_XML_PARSERS", ["drv_libxml2"])
    assert entries() == buffered


# ---------------------------------------------------------------------------- identity


def test_an_entry_is_identified_by_its_id_else_its_link_else_title_and_date() -> None:
    document = parse_feed(data("rss2.xml"), "https://harbour.example.org/feed.xml")

    with_id, with_link, bare = document.entries
    assert with_id.identity == "harbour-note-101"
    assert with_link.identity == "https://harbour.example.org/notes/lighthouse-open-day"
    assert bare.identity.startswith("sha256:") and bare.link is None
    assert parse_feed(data("rss2.xml"), "https://elsewhere.example/").entries[2] == bare


def test_entries_sharing_one_link_are_not_identified_by_it() -> None:
    items = "".join(
        f'<item><guid isPermaLink="false">n{n}</guid><title>Note {n}</title>'
        "<link>https://x.example/</link></item>"
        for n in range(3)
    )
    body = f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()

    document = parse_feed(body, "https://x.example/feed.xml")

    assert [e.identity for e in document.entries] == ["n0", "n1", "n2"]
    assert not any(e.link_is_unique for e in document.entries)


def test_an_id_repeated_in_one_document_is_kept_once() -> None:
    items = "".join(f"<item><guid>same</guid><title>Version {n}</title></item>" for n in range(2))
    body = f'<rss version="2.0"><channel><title>T</title>{items}</channel></rss>'.encode()

    document = parse_feed(body, "https://x.example/feed.xml")

    assert [e.title for e in document.entries] == ["Version 0"]
    assert document.warnings == ("1 entries repeat an earlier entry's id; kept the first",)


# ---------------------------------------------------------------------------- JSON Feed, any input

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=12), children, max_size=5)
    ),
    max_leaves=20,
)
item_keys = st.sampled_from(
    ["id", "url", "external_url", "title", "content_html", "content_text", "summary",
     "date_published", "date_modified", "author", "authors", "tags"]
)  # fmt: skip


@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
@given(
    version=st.sampled_from(
        ["https://jsonfeed.org/version/1", "https://jsonfeed.org/version/1.1", "2", None]
    ),
    items=st.lists(st.dictionaries(item_keys, json_values, max_size=8) | json_values, max_size=5),
    extra=st.dictionaries(st.text(max_size=10), json_values, max_size=3),
)
def test_json_feed_reader_takes_any_json_without_crashing(
    version: str | None, items: list[Any], extra: dict[str, Any]
) -> None:
    doc = {**extra, "version": version, "items": items}
    body = json.dumps(doc).encode()
    try:
        parsed = parse_json_feed(body, "https://feeds.example.org/feed.json")
    except SourceError as exc:
        assert str(exc)  # a one-line reason
        assert version is None or not version.startswith("https://jsonfeed.org/version/1")
        return
    assert len(parsed.entries) <= len(items)
    for entry in parsed.entries:
        assert entry.identity and entry.title
        assert entry.link is None or entry.link.startswith(("http://", "https://"))
        assert "<script" not in entry.content_html


item_text = st.text(
    alphabet=st.characters(blacklist_categories=("Cs", "Cc", "Cn")), min_size=1, max_size=40
).filter(lambda t: t == " ".join(t.split()))


@settings(max_examples=100)
@given(
    items=st.lists(
        st.fixed_dictionaries(
            {
                "id": st.uuids().map(str),
                "title": item_text,
                "content_text": item_text,
                "date_published": st.datetimes(
                    min_value=datetime(2000, 1, 1), max_value=datetime(2090, 1, 1)
                ).map(lambda d: d.replace(microsecond=0).isoformat() + "Z"),
            }
        ),
        max_size=6,
        unique_by=lambda item: item["id"],
    )
)
def test_json_feed_items_keep_their_ids_titles_dates_and_text(items: list[dict[str, str]]) -> None:
    body = json.dumps({"version": "https://jsonfeed.org/version/1.1", "items": items}).encode()

    parsed = parse_json_feed(body, "https://feeds.example.org/feed.json")

    assert [e.identity for e in parsed.entries] == [i["id"] for i in items]
    for item, entry in zip(items, parsed.entries, strict=True):
        assert entry.title == unicodedata.normalize("NFC", item["title"])
        assert entry.summary == unicodedata.normalize("NFC", item["content_text"])
        assert entry.published == datetime.fromisoformat(item["date_published"])
