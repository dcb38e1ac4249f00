"""Shared fixtures: a site in a temporary folder with real files and a real SQLite store."""

from __future__ import annotations

import hashlib
import os
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from pytest_httpserver import HTTPServer
from werkzeug import Request, Response

from publisher.settings import Settings, load_settings
from tests.postgres_server import postgres_bin, postgres_server

if TYPE_CHECKING:
    from publisher.store import Store
    from tests.server_support import Served, Template

ROOT = Path(__file__).resolve().parent.parent
SHARED = ROOT.parent / "shared"
DATA = Path(__file__).resolve().parent / "data"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)

SETTINGS_TEMPLATE = """\
[site]
title = "Test Dispatch"
url = "https://news.example.org/"
description = "Tests."
timezone = "Europe/Berlin"
author = "Desk"
email = "desk@news.example.org"

[articles]
dir = "articles"
max_bytes = {max_bytes}

[store]
path = "state/test.db"

[output]
dir = "issues"
"""


@dataclass
class Site:
    """A throwaway site: settings.toml, articles/, state/ and issues/ under one folder."""

    root: Path
    settings_path: Path

    @property
    def articles(self) -> Path:
        return self.root / "articles"

    def settings(self) -> Settings:
        return load_settings(self.settings_path, environ={})

    def use_database(self, url: str) -> None:
        """Keep the store in the database at `url` instead of state/test.db."""
        text = self.settings_path.read_text(encoding="utf-8")
        assert 'path = "state/test.db"' in text
        self.settings_path.write_text(
            text.replace('path = "state/test.db"', f'url = "{url}"'), encoding="utf-8"
        )

    def write(self, name: str, content: str | bytes) -> Path:
        path = self.articles / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(textwrap.dedent(content).lstrip("\n"), encoding="utf-8")
        return path


@pytest.fixture
def make_site(tmp_path: Path) -> Callable[..., Site]:
    def make(max_bytes: int = 1_000_000, extra: str = "") -> Site:
        root = tmp_path / "site"
        (root / "articles").mkdir(parents=True, exist_ok=True)
        settings_path = root / "settings.toml"
        settings_path.write_text(
            SETTINGS_TEMPLATE.format(max_bytes=max_bytes) + extra, encoding="utf-8"
        )
        return Site(root, settings_path)

    return make


@pytest.fixture
def site(make_site: Callable[..., Site]) -> Site:
    return make_site()


@pytest.fixture
def shared_dir() -> Path:
    """../shared beside the project: the corpus and schemas; tests skip where it is absent."""
    if not SHARED.is_dir():
        pytest.skip(f"{SHARED} is absent: the shared corpus and schemas come with the workspace")
    return SHARED


@pytest.fixture(scope="session")
def _postgres_session() -> Iterator[str | None]:
    url = os.environ.get("PUBLISHER_TEST_POSTGRES_URL", "")
    bin_dir = postgres_bin()
    if url or bin_dir is None:
        yield url or None
        return
    with postgres_server(bin_dir) as started:
        yield started


@pytest.fixture
def postgres_url(_postgres_session: str | None) -> str:
    """A scratch PostgreSQL database the store tests may empty: PUBLISHER_TEST_POSTGRES_URL
    (postgresql+psycopg://...) when set, else a throwaway server these tests start (`make
    test` installs Debian's PostgreSQL when missing); they skip where there is neither."""
    pytest.importorskip("psycopg")
    if _postgres_session is None:
        pytest.skip(
            "no PostgreSQL here: install it (apt-get install postgresql) or set "
            "PUBLISHER_TEST_POSTGRES_URL to run the store tests on PostgreSQL too"
        )
    return _postgres_session


@pytest.fixture
def postgres_store(postgres_url: str) -> Iterator[Store]:
    """A store on the scratch PostgreSQL database, every table emptied first."""
    from publisher.store import Store, metadata

    with Store.open(postgres_url) as store:
        with store.engine.begin() as conn:
            tables = ", ".join(table.name for table in metadata.sorted_tables)
            conn.exec_driver_sql(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")
        yield store


GOLDEN = Path(__file__).resolve().parent / "golden"


@pytest.fixture
def golden() -> Callable[[str, str | bytes], None]:
    """Compare rendered output with tests/golden/NAME.

    `make golden` (PUBLISHER_UPDATE_GOLDEN=1) rewrites the files instead; review the git diff.
    """

    def check(name: str, actual: str | bytes) -> None:
        data = actual.encode() if isinstance(actual, str) else actual
        path = GOLDEN / name
        if os.environ.get("PUBLISHER_UPDATE_GOLDEN"):
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            return
        assert path.exists(), f"{path} is missing: run `make golden` and review the diff"
        assert data == path.read_bytes(), f"{name} differs from its golden file; see git diff"

    return check


# ---------------------------------------------------------------- delivery (issue 5)
# Imported here, not at the top, so this block merges as one piece.

from tests.smtp_sink import SmtpSink  # noqa: E402


@pytest.fixture
def smtp_sink() -> Iterator[SmtpSink]:
    """A real SMTP server on 127.0.0.1 (random port) that records and can misbehave."""
    sink = SmtpSink().start()
    yield sink
    sink.stop()


@pytest.fixture
def token_key(monkeypatch: pytest.MonkeyPatch) -> str:
    """The unsubscribe-token secret, in the environment variable the settings name."""
    from tests.delivery_support import TOKEN_KEY

    monkeypatch.setenv("PUBLISHER_TOKEN_KEY", TOKEN_KEY)
    return TOKEN_KEY


# ---------------------------------------------------------------------------- upstream feeds

FEEDS_DATA = DATA / "feeds"


@pytest.fixture(scope="session")
def _feed_server_session() -> Iterator[HTTPServer]:
    # Threaded: a test's slow or sleeping handler must not hold up the other requests.
    server = HTTPServer(host="127.0.0.1", port=0, threaded=True)
    server.start()
    yield server
    server.clear()
    server.stop()


@pytest.fixture
def feed_server(_feed_server_session: HTTPServer) -> Iterator[HTTPServer]:
    """A real HTTP server on loopback for upstream feeds; no handler survives a test."""
    _feed_server_session.clear()
    yield _feed_server_session
    _feed_server_session.clear()


def serve_feed(
    server: HTTPServer,
    path: str,
    body: bytes | Callable[[], bytes],
    content_type: str = "application/rss+xml; charset=utf-8",
    *,
    validators: bool = True,
) -> None:
    """Serve `body` at `path` the way a well-behaved feed server does.

    With `validators`, it sends an ETag and Last-Modified and answers a matching
    conditional GET with 304. `body` may be a callable, read on every request, so a test
    can change the feed between polls.
    """

    def handler(request: Request) -> Response:
        data = body() if callable(body) else body
        headers = {"Content-Type": content_type}
        if validators:
            etag = '"' + hashlib.sha256(data).hexdigest()[:16] + '"'
            last_modified = "Sun, 22 Nov 2026 08:00:00 GMT"
            headers |= {"ETag": etag, "Last-Modified": last_modified}
            if request.headers.get("If-None-Match") == etag:
                return Response(status=304, headers={"ETag": etag})
        return Response(data, status=200, headers=headers)

    server.expect_request(path).respond_with_handler(handler)


def feed_requests(server: HTTPServer, path: str) -> list[Request]:
    """The requests the server got for `path`, oldest first."""
    return [request for request, _ in server.log if request.path == path]


# ---------------------------------------------------------------- server (issue 7)


@pytest.fixture(scope="session")
def served_template(tmp_path_factory: pytest.TempPathFactory) -> Template:
    """The sample articles published once, for a site URL on a loopback port of this session."""
    from tests.server_support import publish_template

    return publish_template(tmp_path_factory.mktemp("served") / "site")


@pytest.fixture
def serve_site(
    served_template: Template, tmp_path: Path, smtp_sink: SmtpSink, token_key: str
) -> Iterator[Callable[..., Served]]:
    """Start `publisher serve`'s app under uvicorn over a copy of the site; [server] keys as
    keyword arguments (TOML text for lists)."""
    from tests.server_support import serve_copy

    running: list[Served] = []

    def start(**server: object) -> Served:
        served = serve_copy(served_template, tmp_path / f"site{len(running)}", smtp_sink, server)
        running.append(served)
        return served

    yield start
    for served in running:
        served.close()


@pytest.fixture
def served(serve_site: Callable[..., Served]) -> Served:
    return serve_site()
