"""The site over real HTTP: media types, 304s, gzip, security headers, nothing outside issues/."""

from __future__ import annotations

import gzip
import os
import socket
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime, parsedate_to_datetime

import feedparser
import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.server.static import StaticSite, accepts_gzip
from tests.delivery_support import TOKEN_KEY
from tests.server_support import Served, Template, serve_copy
from tests.smtp_sink import SmtpSink

ISSUE = "2026-11-24"


@pytest.fixture(scope="module")
def served(served_template: Template, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """One server for this module (starting one costs a quarter second): these tests only
    read, or change files no other test here depends on."""
    with pytest.MonkeyPatch.context() as env:
        env.setenv("PUBLISHER_TOKEN_KEY", TOKEN_KEY)
        sink = SmtpSink().start()
        target = tmp_path_factory.mktemp("static") / "site"
        served = serve_copy(served_template, target, sink, {})
        yield served
        served.close()
        sink.stop()


def raw_request(served: Served, target: str, method: str = "GET") -> tuple[int, bytes]:
    """Send the request line as is: httpx would tidy `..` and `//` away before sending."""
    port = int(served.url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
        sock.sendall(
            f"{method} {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode(
                "latin-1"
            )
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    return int(data.split(b" ", 2)[1]), data


@pytest.mark.parametrize(
    ("path", "media_type", "file"),
    [
        ("feed.xml", "application/rss+xml; charset=utf-8", "feed.xml"),
        ("atom.xml", "application/atom+xml; charset=utf-8", "atom.xml"),
        ("issues.xml", "application/atom+xml; charset=utf-8", "issues.xml"),
        ("feed.json", "application/feed+json", "feed.json"),
        ("", "text/html; charset=utf-8", "index.html"),
        ("index.html", "text/html; charset=utf-8", "index.html"),
        (f"{ISSUE}/", "text/html; charset=utf-8", f"{ISSUE}/index.html"),
        (f"{ISSUE}/issue.json", "application/json", f"{ISSUE}/issue.json"),
        (f"{ISSUE}/email.txt", "text/plain; charset=utf-8", f"{ISSUE}/email.txt"),
        (f"{ISSUE}/email.eml", "message/rfc822", f"{ISSUE}/email.eml"),
        ("style.css", "text/css; charset=utf-8", "style.css"),
    ],
)
def test_every_file_comes_with_its_media_type_and_exact_bytes(
    served: Served, path: str, media_type: str, file: str
) -> None:
    response = served.client().get(path, headers={"Accept-Encoding": "identity"})

    assert response.status_code == 200
    assert response.headers["content-type"] == media_type
    assert "content-encoding" not in response.headers
    assert response.content == (served.settings.output_dir / file).read_bytes()


def test_the_feeds_read_back_in_a_feed_reader_over_http(served: Served) -> None:
    client = served.client()
    for path, version in (("feed.xml", "rss20"), ("atom.xml", "atom10")):
        parsed = feedparser.parse(client.get(path).content)
        assert parsed.version == version
        assert not parsed.bozo
        assert len(parsed.entries) == 6


def test_an_etag_answers_304_with_no_body_and_the_same_validators(served: Served) -> None:
    client = served.client()
    first = client.get("feed.xml", headers={"Accept-Encoding": "identity"})
    etag = first.headers["etag"]

    again = client.get("feed.xml", headers={"If-None-Match": etag, "Accept-Encoding": "identity"})

    assert again.status_code == 304
    assert again.content == b""
    assert again.headers["etag"] == etag
    assert again.headers["last-modified"] == first.headers["last-modified"]
    # Weak comparison, a list of tags, and "*" all match too (RFC 9110 13.1.2).
    for header in (f"W/{etag}", f'"other", {etag}', "*"):
        assert client.get("feed.xml", headers={"If-None-Match": header}).status_code == 304
    assert client.get("feed.xml", headers={"If-None-Match": '"other"'}).status_code == 200


def test_if_modified_since_answers_304_unless_the_file_is_newer(served: Served) -> None:
    client = served.client()
    modified = client.get("atom.xml").headers["last-modified"]
    earlier = format_datetime(parsedate_to_datetime(modified) - timedelta(seconds=1), usegmt=True)

    assert client.get("atom.xml", headers={"If-Modified-Since": modified}).status_code == 304
    assert client.get("atom.xml", headers={"If-Modified-Since": earlier}).status_code == 200
    assert client.get("atom.xml", headers={"If-Modified-Since": "yesterday"}).status_code == 200
    # If-None-Match wins over If-Modified-Since when both are sent.
    both = {"If-Modified-Since": modified, "If-None-Match": '"old"'}
    assert client.get("atom.xml", headers=both).status_code == 200


def test_a_changed_file_is_served_anew_and_its_old_etag_no_longer_matches(served: Served) -> None:
    client = served.client()
    feed = served.settings.output_dir / "feed.xml"
    old = client.get("feed.xml", headers={"Accept-Encoding": "identity"})
    # publish replaces feeds with os.replace: a new file (inode) at the same name.
    temp = feed.with_name(".feed.xml.tmp")
    temp.write_bytes(feed.read_bytes().replace(b"Test Dispatch", b"Test Dispatch, renamed"))
    os.replace(temp, feed)

    new = client.get(
        "feed.xml", headers={"If-None-Match": old.headers["etag"], "Accept-Encoding": "identity"}
    )

    assert new.status_code == 200
    assert b"Test Dispatch, renamed" in new.content
    assert new.headers["etag"] != old.headers["etag"]


def test_text_is_gzipped_for_clients_that_accept_it_and_varies_by_accept_encoding(
    served: Served,
) -> None:
    client = served.client()
    on_disk = (served.settings.output_dir / "feed.xml").read_bytes()
    with client.stream("GET", "feed.xml", headers={"Accept-Encoding": "gzip"}) as response:
        wire = b"".join(response.iter_raw())

    assert response.headers["content-encoding"] == "gzip"
    assert response.headers["vary"] == "Accept-Encoding"
    assert gzip.decompress(wire) == on_disk
    assert len(wire) < len(on_disk) / 2
    plain = client.get("feed.xml", headers={"Accept-Encoding": "identity"})
    # Each representation has its own strong ETag, and either one revalidates.
    assert response.headers["etag"] != plain.headers["etag"]
    for etag in (response.headers["etag"], plain.headers["etag"]):
        conditional = {"If-None-Match": etag, "Accept-Encoding": "gzip"}
        assert client.get("feed.xml", headers=conditional).status_code == 304


@pytest.mark.parametrize(
    ("accept", "gzipped"),
    [("gzip", True), ("br, gzip;q=0.5", True), ("*", True), ("gzip;q=0", False),
     ("identity", False), ("*;q=0", False), ("deflate", False)],
)  # fmt: skip
def test_accept_encoding_is_honoured_including_q_zero(
    served: Served, accept: str, gzipped: bool
) -> None:
    response = served.client().get("atom.xml", headers={"Accept-Encoding": accept})

    assert (response.headers.get("content-encoding") == "gzip") is gzipped


def test_head_sends_the_headers_of_get_without_a_body(served: Served) -> None:
    client = served.client()
    get = client.get("feed.json", headers={"Accept-Encoding": "identity"})
    head = client.head("feed.json", headers={"Accept-Encoding": "identity"})

    assert head.status_code == 200
    assert head.content == b""
    for name in ("content-type", "content-length", "etag", "last-modified"):
        assert head.headers[name] == get.headers[name]


def test_a_folder_without_its_slash_redirects_relatively_and_others_methods_are_refused(
    served: Served,
) -> None:
    client = served.client()
    redirect = client.get(ISSUE)

    assert redirect.status_code == 301
    assert redirect.headers["location"] == f"{ISSUE}/"  # relative: right behind a path prefix
    refused = client.post("feed.xml", content=b"x")
    assert refused.status_code == 405
    assert refused.headers["allow"] == "GET, HEAD"


def test_pages_carry_security_headers_and_the_email_page_may_keep_its_inline_styles(
    served: Served,
) -> None:
    client = served.client()
    page = client.get(f"{ISSUE}/")
    email = client.get(f"{ISSUE}/email.html")

    csp = page.headers["content-security-policy"]
    assert "default-src 'none'" in csp
    assert "style-src 'self';" in csp
    assert "script-src" not in csp  # no script may run at all
    assert page.headers["x-content-type-options"] == "nosniff"
    assert page.headers["referrer-policy"] == "same-origin"
    assert "style-src 'self' 'unsafe-inline'" in email.headers["content-security-policy"]
    assert "set-cookie" not in page.headers


def test_an_unknown_path_gets_a_themed_404_page(served: Served) -> None:
    response = served.client().get("2026-11-30/")

    assert response.status_code == 404
    assert response.headers["content-type"] == "text/html; charset=utf-8"
    assert "Page not found" in response.text
    assert 'href="style.css"' in response.text


SECRET = "THIS-IS-SETTINGS-TOML"


TRAVERSALS = (
    "/../settings.toml",
    "/%2e%2e/settings.toml",
    "/%2E%2E/%2E%2E/etc/passwd",
    f"/{ISSUE}/../../settings.toml",
    f"/{ISSUE}/%2e%2e/%2e%2e/settings.toml",
    "/..%2fsettings.toml",
    "/..%5csettings.toml",
    "//etc/passwd",
    "/%00/settings.toml",
    "/./index.html",
    "/state/test.db",
    "/%2e%2e%2fstate/test.db",
)


def test_no_request_reaches_a_file_outside_the_output_folder(served: Served) -> None:
    settings_file = served.root / "settings.toml"
    settings_file.write_text(settings_file.read_text() + f"# {SECRET}\n")

    for target in TRAVERSALS:
        status, data = raw_request(served, target)

        assert status in (400, 404), target
        assert SECRET.encode() not in data, target
        assert b"SQLite format" not in data, target


def test_a_symlink_out_of_the_output_folder_is_not_followed(served: Served) -> None:
    output = served.settings.output_dir
    (served.root / "settings.toml").write_text(f"# {SECRET}\n")
    (output / "leak.txt").symlink_to(served.root / "settings.toml")
    (output / "outside").symlink_to(served.root)
    (output / "latest").symlink_to(output / ISSUE)  # inside: fine
    client = served.client()

    assert client.get("leak.txt").status_code == 404
    assert client.get("outside/settings.toml").status_code == 404
    assert SECRET not in client.get("outside/").text
    assert client.get("latest/email.txt").status_code == 200


def test_hidden_files_and_publish_leftovers_are_not_served(served: Served) -> None:
    output = served.settings.output_dir
    (output / ".env").write_text("TOKEN=secret\n")
    leftover = output / f".{ISSUE}.tmp-abc"
    leftover.mkdir()
    (leftover / "index.html").write_text("<p>half written</p>")
    client = served.client()

    assert client.get(".env").status_code == 404
    assert client.get(f".{ISSUE}.tmp-abc/index.html").status_code == 404


def test_a_slow_client_does_not_hold_up_others(served: Served) -> None:
    # A client that sends half a request and stalls must not block the event loop.
    port = int(served.url.rsplit(":", 1)[1].strip("/"))
    with socket.create_connection(("127.0.0.1", port), timeout=5) as stalled:
        stalled.sendall(b"GET /feed.xml HTTP/1.1\r\nHost: 127.0.0.1\r\n")
        # The client's 10 s timeout would fail this if the server waited for the stalled one.
        response = served.client().get("feed.xml")
        assert response.status_code == 200


def test_last_modified_is_the_files_time_in_http_date_form(served: Served) -> None:
    feed = served.settings.output_dir / "issues.xml"
    moment = datetime(2026, 11, 24, 7, 30, 15, tzinfo=UTC)
    os.utime(feed, (moment.timestamp(), moment.timestamp()))

    response = served.client().get("issues.xml")

    assert response.headers["last-modified"] == "Tue, 24 Nov 2026 07:30:15 GMT"


# ---------------------------------------------------------------- path rules, on their own


@pytest.fixture(scope="module")
def jail(tmp_path_factory: pytest.TempPathFactory) -> StaticSite:
    base = tmp_path_factory.mktemp("jail")
    root = base / "issues"
    (root / ISSUE).mkdir(parents=True)
    (root / "index.html").write_text("archive")
    (root / ISSUE / "index.html").write_text("issue")
    (base / "secret.txt").write_text("secret")
    (root / "escape").symlink_to(base)
    return StaticSite(root, lambda status: b"", 0)


@given(st.text(max_size=60).map(lambda s: "/" + s))
def test_no_path_resolves_outside_the_root(jail: StaticSite, path: str) -> None:
    found = jail.resolve(path)

    if isinstance(found, tuple):
        assert found[0].is_relative_to(jail.root)
        assert ".." not in found[0].parts


@given(
    st.lists(st.sampled_from(["..", ".", "", ISSUE, "escape", "secret.txt", "index.html", "%2e"]),
             max_size=6)
)  # fmt: skip
def test_no_combination_of_dangerous_segments_escapes(jail: StaticSite, parts: list[str]) -> None:
    found = jail.resolve("/" + "/".join(parts))

    if isinstance(found, tuple):
        assert found[0].read_text() in ("archive", "issue")


@pytest.mark.parametrize(
    ("header", "ok"),
    [("gzip", True), ("GZIP;Q=1", True), ("x-gzip", True), ("gzip;q=0.0", False),
     ("gzip;q=nonsense", False), ("*;q=0.1", True), ("br;q=1, *;q=0", False), ("", False)],
)  # fmt: skip
def test_accepts_gzip(header: str, ok: bool) -> None:
    assert accepts_gzip(header) is ok


@given(st.text(max_size=100))
def test_accepts_gzip_takes_any_header_text(header: str) -> None:
    assert accepts_gzip(header) in (True, False)


def test_oversized_headers_and_request_lines_are_refused(served: Served) -> None:
    port = int(served.url.rsplit(":", 1)[1].strip("/"))

    def send(data: bytes) -> int:
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock:
            sock.sendall(data)
            reply = sock.recv(65536)
        return int(reply.split(b" ", 2)[1])

    huge_header = b"GET / HTTP/1.1\r\nHost: x\r\nX-Fill: " + b"a" * 70_000 + b"\r\n\r\n"
    huge_line = b"GET /" + b"a" * 70_000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"

    assert send(huge_header) == 431
    assert send(huge_line) == 414
