"""Upstream feeds over real HTTP on loopback: conditional GET, redirects, failures, parsing."""

from __future__ import annotations

import gzip
import re
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from publisher import __version__
from publisher.settings import SourcesSettings
from publisher.sources.feeds import POOL_MIN_FEEDS, FeedRequest, FeedResult, poll_feeds
from tests.conftest import FEEDS_DATA, feed_requests, serve_feed

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
AGENT = f"publisher/{__version__} (+https://news.example.org/)"


def poll(
    server: HTTPServer, path: str, previous: FeedResult | None = None, **options: Any
) -> FeedResult:
    """Poll one feed the way collect does; `previous` supplies the last poll's validators."""
    url = server.url_for(path)
    request = FeedRequest(url=url, name="Test feed", fetch_url=url)
    if previous is not None:
        request = FeedRequest(
            url=url,
            name="Test feed",
            fetch_url=previous.moved_to or url,
            etag=previous.etag,
            last_modified=previous.last_modified,
            body_hash=previous.body_hash,
        )
    sources = SourcesSettings(**{"parse_processes": 1, **options})
    (result,) = poll_feeds([request], sources, agent=AGENT, now=NOW)
    return result


def data(name: str) -> bytes:
    return (FEEDS_DATA / name).read_bytes()


def hrefs(fragment: str) -> list[str]:
    return re.findall(r'(?:href|src)="([^"]*)"', fragment)


# ---------------------------------------------------------------------------- conditional GET


def test_200_then_304_stores_validators_and_parses_nothing_the_second_time(
    feed_server: HTTPServer,
) -> None:
    serve_feed(feed_server, "/feed.xml", data("rss2.xml"))

    first = poll(feed_server, "/feed.xml")
    second = poll(feed_server, "/feed.xml", previous=first)

    assert first.status == "fetched"
    assert first.document is not None
    assert [e.title for e in first.document.entries] == [
        "Ferry timetable changes for winter",
        "Lighthouse open day",
        "Quay works finished",
    ]
    assert first.etag and first.last_modified == "Sun, 22 Nov 2026 08:00:00 GMT"
    assert second.status == "not_modified"
    assert second.http_status == 304
    assert second.document is None  # nothing was parsed
    assert second.etag == first.etag
    conditional = feed_requests(feed_server, "/feed.xml")[1]
    assert conditional.headers["If-None-Match"] == first.etag
    assert conditional.headers["If-Modified-Since"] == first.last_modified


def test_a_server_without_validators_sending_the_same_body_is_not_parsed_again(
    feed_server: HTTPServer,
) -> None:
    serve_feed(feed_server, "/feed.xml", data("rss2.xml"), validators=False)

    first = poll(feed_server, "/feed.xml")
    second = poll(feed_server, "/feed.xml", previous=first)

    assert first.document is not None and first.etag is None
    assert second.http_status == 200
    assert second.status == "not_modified"
    assert second.document is None


def test_requests_name_the_tool_its_version_and_the_site(feed_server: HTTPServer) -> None:
    serve_feed(feed_server, "/feed.xml", data("rss2.xml"))

    poll(feed_server, "/feed.xml")

    (request,) = feed_requests(feed_server, "/feed.xml")
    assert request.headers["User-Agent"] == "publisher/0.1.0 (+https://news.example.org/)"
    assert "gzip" in request.headers["Accept-Encoding"]
    assert request.headers["Accept"].startswith("application/rss+xml")


# ---------------------------------------------------------------------------- redirects


@pytest.mark.parametrize("status", [301, 308])
def test_a_permanent_redirect_is_followed_and_reported_with_the_new_address(
    feed_server: HTTPServer, status: int
) -> None:
    feed_server.expect_request("/old.xml").respond_with_data(
        "", status=status, headers={"Location": feed_server.url_for("/new.xml")}
    )
    serve_feed(feed_server, "/new.xml", data("rss2.xml"))

    result = poll(feed_server, "/old.xml")

    assert result.status == "fetched"
    assert result.moved_to == feed_server.url_for("/new.xml")
    assert result.document is not None and len(result.document.entries) == 3


def test_a_temporary_redirect_is_followed_but_the_address_stays(feed_server: HTTPServer) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data(
        "", status=302, headers={"Location": feed_server.url_for("/today.xml")}
    )
    serve_feed(feed_server, "/today.xml", data("rss2.xml"))

    result = poll(feed_server, "/feed.xml")

    assert result.status == "fetched"
    assert result.moved_to is None


def test_only_the_permanent_hops_before_a_temporary_one_move_the_feed(
    feed_server: HTTPServer,
) -> None:
    feed_server.expect_request("/a.xml").respond_with_data(
        "", status=301, headers={"Location": feed_server.url_for("/b.xml")}
    )
    feed_server.expect_request("/b.xml").respond_with_data(
        "", status=302, headers={"Location": feed_server.url_for("/c.xml")}
    )
    serve_feed(feed_server, "/c.xml", data("rss2.xml"))

    result = poll(feed_server, "/a.xml")

    assert result.moved_to == feed_server.url_for("/b.xml")


def test_a_redirect_without_a_location_is_a_failure(feed_server: HTTPServer) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data("moved", status=301)

    result = poll(feed_server, "/feed.xml")

    assert result.status == "failed"
    assert result.error == "HTTP 301 Moved Permanently"
    assert result.moved_to is None


# ---------------------------------------------------------------------------- HTTP failures


def test_410_gone_says_the_feed_is_removed_and_what_to_do(feed_server: HTTPServer) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data("gone", status=410)

    result = poll(feed_server, "/feed.xml")

    assert result.status == "gone"
    assert result.error is not None and result.error.startswith("HTTP 410 Gone")
    assert "stops polling" in result.error
    assert result.hint is not None and "remove it from settings.toml" in result.hint


@pytest.mark.parametrize(
    ("status", "said", "advice"),
    [
        (404, "HTTP 404 Not Found", "check the feed's url in settings.toml"),
        (500, "HTTP 500 Internal Server Error", "tries again later"),
        (403, "HTTP 403 Forbidden", "refuses publisher"),
    ],
)
def test_an_error_status_is_a_failure_naming_the_status_and_what_to_do(
    feed_server: HTTPServer, status: int, said: str, advice: str
) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data("no", status=status)

    result = poll(feed_server, "/feed.xml")

    assert result.status == "failed"
    assert result.error == said
    assert result.hint is not None and advice in result.hint
    assert result.document is None


@pytest.mark.parametrize("status", [429, 503])
def test_retry_after_in_seconds_or_as_a_date_is_honoured(
    feed_server: HTTPServer, status: int
) -> None:
    feed_server.expect_request("/seconds.xml").respond_with_data(
        "busy", status=status, headers={"Retry-After": "7200"}
    )
    later = format_datetime(NOW + timedelta(hours=5), usegmt=True)
    feed_server.expect_request("/date.xml").respond_with_data(
        "busy", status=status, headers={"Retry-After": later}
    )

    in_seconds = poll(feed_server, "/seconds.xml")
    as_date = poll(feed_server, "/date.xml")

    assert in_seconds.status == as_date.status == "failed"
    assert in_seconds.retry_after == NOW + timedelta(hours=2)
    assert as_date.retry_after == NOW + timedelta(hours=5)
    assert (
        in_seconds.error is not None and "asks to wait until 2026-11-24 08:00" in in_seconds.error
    )


def test_a_refused_connection_is_a_failure_not_an_abort(feed_server: HTTPServer) -> None:
    request = FeedRequest(
        url="http://127.0.0.1:9/feed.xml", name="Dead", fetch_url="http://127.0.0.1:9/feed.xml"
    )
    serve_feed(feed_server, "/feed.xml", data("rss2.xml"))
    alive = feed_server.url_for("/feed.xml")

    results = list(
        poll_feeds(
            [request, FeedRequest(url=alive, name="Alive", fetch_url=alive)],
            SourcesSettings(parse_processes=1),
            agent=AGENT,
            now=NOW,
        )
    )

    by_name = {r.request.name: r for r in results}
    assert by_name["Dead"].status == "failed"
    assert by_name["Dead"].error is not None and "cannot fetch" in by_name["Dead"].error
    assert by_name["Alive"].status == "fetched"


# ---------------------------------------------------------------------------- slow servers


def sleeping(seconds: float, body: bytes) -> Any:
    def handler(_request: Request) -> Response:
        time.sleep(seconds)
        return Response(body, content_type="application/rss+xml")

    return handler


def test_a_server_that_does_not_answer_in_time_is_a_timeout(feed_server: HTTPServer) -> None:
    feed_server.expect_request("/feed.xml").respond_with_handler(sleeping(1.0, data("rss2.xml")))

    result = poll(feed_server, "/feed.xml", read_timeout=0.2)

    assert result.status == "failed"
    assert result.error == "no answer within 0.2 s"
    assert result.hint is not None and "sources.read_timeout" in result.hint


def test_a_server_trickling_bytes_is_cut_off_at_the_total_timeout(feed_server: HTTPServer) -> None:
    def trickle(_request: Request) -> Response:
        def chunks() -> Iterator[bytes]:
            for _ in range(20):
                yield b"<!-- still here -->\n"
                time.sleep(0.1)

        return Response(chunks(), content_type="application/rss+xml")

    feed_server.expect_request("/feed.xml").respond_with_handler(trickle)

    result = poll(feed_server, "/feed.xml", read_timeout=1.0, total_timeout=0.5)

    assert result.status == "failed"
    assert result.error is not None and "took over 0.5 s" in result.error


def test_a_slow_feed_does_not_hold_up_the_others(feed_server: HTTPServer) -> None:
    feed_server.expect_request("/slow.xml").respond_with_handler(sleeping(0.8, data("rss2.xml")))
    serve_feed(feed_server, "/fast.xml", data("atom.xml"), "application/atom+xml")
    slow, fast = feed_server.url_for("/slow.xml"), feed_server.url_for("/fast.xml")

    results = list(
        poll_feeds(
            [FeedRequest(slow, "Slow", slow), FeedRequest(fast, "Fast", fast)],
            SourcesSettings(parse_processes=1, concurrency=2),
            agent=AGENT,
            now=NOW,
        )
    )

    # Results come as they are ready: the fast feed, asked second, is done first.
    assert [r.request.name for r in results] == ["Fast", "Slow"]
    assert all(r.status == "fetched" for r in results)


# ---------------------------------------------------------------------------- body size


def test_a_body_declared_over_the_limit_is_refused(feed_server: HTTPServer) -> None:
    serve_feed(feed_server, "/feed.xml", data("rss2.xml"))

    result = poll(feed_server, "/feed.xml", max_bytes=500)

    assert result.status == "failed"
    assert result.error is not None and "over sources.max_bytes (500)" in result.error
    assert result.hint is not None and "raise sources.max_bytes" in result.hint


def test_a_streamed_body_over_the_limit_is_cut_off(feed_server: HTTPServer) -> None:
    def endless(_request: Request) -> Response:
        return Response(
            (b"<!-- padding padding padding -->" * 64 for _ in range(1000)),
            content_type="application/rss+xml",
        )

    feed_server.expect_request("/feed.xml").respond_with_handler(endless)

    result = poll(feed_server, "/feed.xml", max_bytes=100_000)

    assert result.status == "failed"
    assert result.error is not None and "over sources.max_bytes (100,000)" in result.error


def test_a_gzip_bomb_counts_its_unpacked_size(feed_server: HTTPServer) -> None:
    bomb = gzip.compress(b"<rss>" + b" " * 5_000_000)
    feed_server.expect_request("/feed.xml").respond_with_data(
        bomb, headers={"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"}
    )

    result = poll(feed_server, "/feed.xml", max_bytes=1_000_000)

    assert len(bomb) < 10_000
    assert result.status == "failed"
    assert result.error is not None and "over sources.max_bytes" in result.error


# ---------------------------------------------------------------------------- documents


def test_gzip_encoded_feeds_are_read(feed_server: HTTPServer) -> None:
    def gzipped(request: Request) -> Response:
        assert "gzip" in request.headers.get("Accept-Encoding", "")
        return Response(
            gzip.compress(data("rss2.xml")),
            headers={"Content-Encoding": "gzip", "Content-Type": "application/rss+xml"},
        )

    feed_server.expect_request("/feed.xml").respond_with_handler(gzipped)

    result = poll(feed_server, "/feed.xml")

    assert result.status == "fetched"
    assert result.document is not None
    assert result.document.title == "Harbour Notes"
    assert len(result.document.entries) == 3


def test_invalid_xml_that_feedparser_can_read_keeps_its_entries_with_a_warning(
    feed_server: HTTPServer,
) -> None:
    serve_feed(feed_server, "/feed.xml", data("ill-formed.xml"))

    result = poll(feed_server, "/feed.xml")

    assert result.status == "fetched"
    assert result.document is not None
    assert [e.title for e in result.document.entries] == [
        "Apples are back & cheap",
        "Cheese stall moves",
    ]
    (warning,) = result.document.warnings
    assert warning.startswith("ill-formed XML (line 6:")
    assert "ask the feed's publisher to fix it" in warning


@pytest.mark.parametrize(
    ("body", "content_type", "said"),
    [
        (b"\x00\x01\x02 this is no feed", "application/octet-stream", "not an RSS, Atom or JSON"),
        (b"<?xml version='1.0'?><note><to>x</to></note>", "text/xml", "not an RSS, Atom or JSON"),
        (b"{ not json", "application/feed+json", "not valid JSON"),
        (b'{"version": "1", "items": []}', "application/json", "not a JSON Feed"),
        (FEEDS_DATA.joinpath("not-a-feed.html").read_bytes(), "text/html", "an HTML page"),
    ],
)
def test_an_unreadable_document_is_a_failure_saying_why(
    feed_server: HTTPServer, body: bytes, content_type: str, said: str
) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data(body, content_type=content_type)

    result = poll(feed_server, "/feed.xml")

    assert result.status == "failed"
    assert result.error is not None and said in result.error
    assert result.hint is not None and "settings.toml" in result.hint
    assert result.etag is None  # a failed parse never turns the next poll into a 304


def test_script_and_event_handlers_in_content_are_removed(feed_server: HTTPServer) -> None:
    serve_feed(feed_server, "/feed.xml", data("atom.xml"), "application/atom+xml")

    result = poll(feed_server, "/feed.xml")

    assert result.document is not None
    entry = result.document.entries[0]
    assert "Night trams run again on" in entry.content_html
    for bad in ("<script", "alert(", "onerror", "onclick", "javascript:"):
        assert bad not in entry.content_html
    assert entry.title == "Night trams return"  # an HTML title becomes its text


def test_relative_links_resolve_against_the_feed_url_and_xml_base(
    feed_server: HTTPServer,
) -> None:
    serve_feed(feed_server, "/news/feed.xml", data("rss2.xml"))
    serve_feed(feed_server, "/tram.atom", data("atom.xml"), "application/atom+xml")

    rss = poll(feed_server, "/news/feed.xml").document
    atom = poll(feed_server, "/tram.atom").document

    assert rss is not None and atom is not None
    # RSS has no xml:base: relative links in content resolve against where the feed was read.
    assert hrefs(rss.entries[0].content_html) == [
        feed_server.url_for("/timetables/winter.pdf"),
        feed_server.url_for("/news/images/ferry.jpg"),
    ]
    # Atom: the feed's xml:base, overridden by an entry's own.
    assert atom.entries[0].link == "https://tram.example.net/blog/posts/night-trams"
    assert hrefs(atom.entries[0].content_html) == [
        "https://tram.example.net/blog/lines/4",
        "https://tram.example.net/blog/x.png",
    ]
    assert atom.entries[1].link == "https://media.example.net/tram/depot.html"
    assert hrefs(atom.entries[1].content_html) == [
        "https://media.example.net/tram/gallery/",
        "https://media.example.net/img/depot-1.jpg",
    ]


def test_a_feed_in_latin_1_reads_its_accents(feed_server: HTTPServer) -> None:
    serve_feed(feed_server, "/feed.xml", data("latin1.xml"), "application/rss+xml")

    result = poll(feed_server, "/feed.xml")

    assert result.document is not None
    (entry,) = result.document.entries
    assert result.document.title == "Café Notizen"
    assert entry.title == "Schöne Grüße aus dem Café"
    assert "Der Käsekuchen ist zurück © 2026." in entry.content_html
    assert result.document.warnings == ()


def test_a_feed_whose_server_declares_the_wrong_charset_is_read_with_a_warning(
    feed_server: HTTPServer,
) -> None:
    serve_feed(feed_server, "/feed.xml", data("latin1.xml"), "application/rss+xml; charset=utf-8")

    result = poll(feed_server, "/feed.xml")

    assert result.status == "fetched"
    assert result.document is not None
    assert result.document.entries[0].title == "Schöne Grüße aus dem Café"
    assert any("encoding" in w for w in result.document.warnings)


def test_a_json_feed_is_read_with_links_made_absolute(feed_server: HTTPServer) -> None:
    serve_feed(feed_server, "/feed.json", data("feed.json"), "application/feed+json")

    result = poll(feed_server, "/feed.json")

    assert result.status == "fetched"
    assert result.document is not None
    first, second = result.document.entries
    assert (first.identity, first.title, first.author) == (
        "bulletin-7",
        "Winter reading list",
        "Mira Holm",
    )
    assert first.tags == ("books", "winter")
    assert first.published == datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
    assert first.updated == datetime(2026, 11, 23, 11, 0, tzinfo=UTC)
    assert hrefs(first.content_html) == ["https://library.example.com/lists/winter"]
    assert "track()" not in first.content_html
    assert first.summary == "Twelve books for long evenings."
    # JSON Feed 1.0 allowed a numeric id; the url is relative to home_page_url.
    assert second.identity == "8"
    assert second.link == "https://library.example.com/bulletin/8"
    assert second.author == "Library Team"  # the feed's author when the item names none
    assert second.content_html == (
        "<p>Opening hours change on holidays.</p>\n<p>The reading room closes at 16:00.</p>"
    )


def test_many_feeds_parse_in_worker_processes_the_same_as_in_this_one(
    feed_server: HTTPServer,
) -> None:
    names = ["rss2.xml", "atom.xml", "latin1.xml", "feed.json"]
    for name in names:
        serve_feed(feed_server, f"/{name}", data(name), "application/xml")
    # Enough feeds for publisher to start worker processes (POOL_MIN_FEEDS).
    copies = range(POOL_MIN_FEEDS // len(names))
    urls = {f"{n}-{name}": feed_server.url_for(f"/{name}") for n in copies for name in names}
    requests = [FeedRequest(f"{url}?{key}", key, url) for key, url in urls.items()]

    def documents(processes: int) -> dict[str, Any]:
        sources = SourcesSettings(parse_processes=processes)
        results = poll_feeds(requests, sources, agent=AGENT, now=NOW)
        return {r.request.name: r.document for r in results}

    in_workers = documents(2)
    assert documents(1) == in_workers
    assert all(doc is not None and doc.entries for doc in in_workers.values())
