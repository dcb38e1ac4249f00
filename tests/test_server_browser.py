"""A real browser (Debian's chromium, driven by Playwright) on the served site, as a reader."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any, cast

import pytest

from tests.conftest import ROOT
from tests.server_support import Served

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip(
        f"{CHROMIUM} is missing: `make browser` installs Debian's chromium (apt-get, as root)",
        allow_module_level=True,
    )
sync_api = pytest.importorskip(
    "playwright.sync_api", reason="the playwright package is missing: pip install -e '.[dev]'"
)

ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
# Screenshots stay after the run for a person to look at (git-ignored).
OUTPUT = ROOT / "test-output" / "browser"
ISSUE = "2026-11-24"


@pytest.fixture(scope="module")
def browser() -> Iterator[sync_api.Browser]:
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=ARGS)
        yield browser
        browser.close()


class Watch:
    """What the browser complains about: console errors (CSP violations among them) and
    requests that failed, except the favicon no theme ships."""

    def __init__(self, page: sync_api.Page) -> None:
        self.problems: list[str] = []
        page.on("console", self._console)
        page.on("requestfailed", lambda r: self.problems.append(f"failed: {r.url}"))
        page.on("response", self._response)

    def _console(self, message: sync_api.ConsoleMessage) -> None:
        where = str(message.location.get("url", ""))
        if message.type in ("error", "warning") and not where.endswith("/favicon.ico"):
            self.problems.append(f"console {message.type}: {message.text} ({where})")

    def _response(self, response: sync_api.Response) -> None:
        # Only the favicon may be missing; the server's own pages answer 4xx on purpose.
        expected = ("/favicon.ico", "/confirm", "/unsubscribe")
        if response.status >= 400 and not any(e in response.url for e in expected):
            self.problems.append(f"{response.status}: {response.url}")


def test_a_reader_subscribes_confirms_and_unsubscribes_without_javascript(
    browser: sync_api.Browser, served: Served
) -> None:
    context = browser.new_context(java_script_enabled=False, viewport={"width": 375, "height": 800})
    page = context.new_page()
    watch = Watch(page)
    expect = sync_api.expect

    # The archive page's form.
    page.goto(served.url)
    expect(page.locator("#subscribe-website")).not_to_be_in_viewport()  # the honeypot
    page.get_by_label("Email address").fill("reader@example.org")
    page.get_by_role("button", name="Subscribe").click()
    expect(page.get_by_role("heading", name="Check your inbox")).to_be_visible()
    pending = served.subscriber("reader@example.org")
    assert pending is not None and pending.status == "pending"

    # The confirmation mail's link.
    [confirm] = served.mail_links(0)
    page.goto(confirm)
    expect(page.get_by_role("heading", name="You are subscribed")).to_be_visible()
    page.screenshot(path=OUTPUT / "confirmed-375.png", full_page=True)
    active = served.subscriber("reader@example.org")
    assert active is not None and active.status == "active"

    # The welcome's unsubscribe link opens a page with one button.
    [unsubscribe] = served.mail_links(1)
    assert "/unsubscribe?token=" in unsubscribe
    page.goto(unsubscribe)
    expect(page.get_by_role("heading", name="Unsubscribe?")).to_be_visible()
    page.screenshot(path=OUTPUT / "unsubscribe-375.png", full_page=True)
    assert page.get_by_role("button").count() == 1
    page.get_by_role("button", name="Unsubscribe").click()
    expect(page.get_by_role("heading", name="You are unsubscribed")).to_be_visible()
    gone = served.subscriber("reader@example.org")
    assert gone is not None and gone.status == "unsubscribed"

    assert watch.problems == []
    assert context.cookies() == []
    context.close()


@pytest.mark.parametrize("width", [375, 1280])
def test_the_archive_and_an_issue_fit_the_screen_and_satisfy_their_csp(
    browser: sync_api.Browser, served: Served, width: int
) -> None:
    OUTPUT.mkdir(parents=True, exist_ok=True)
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    watch = Watch(page)

    for name, path in (("archive", ""), ("issue", f"{ISSUE}/"), ("subscribe", "subscribe")):
        page.goto(served.url + path)
        shot = OUTPUT / f"{name}-{width}.png"
        page.screenshot(path=shot, full_page=True)

        assert shot.stat().st_size > 5_000, shot  # a page was drawn
        overflow = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
        assert overflow[0] <= overflow[1], (name, width, overflow)
        # style.css applied under the CSP: the body is the theme's column, not the default.
        assert page.evaluate("getComputedStyle(document.body).maxWidth") == "672px"

    assert watch.problems == []
    context.close()


WCAG = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]


@pytest.mark.parametrize("scheme", ["light", "dark"])
def test_every_page_passes_axe_accessibility_checks(
    browser: sync_api.Browser, served: Served, scheme: str
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    served.subscribe("reader@example.org")
    [confirm] = served.mail_links(0)
    assert served.client().get(confirm).status_code == 200
    [unsubscribe] = served.mail_links(1)
    pages = {
        "archive": served.url,
        "issue": f"{served.url}{ISSUE}/",
        "article": f"{served.url}{ISSUE}/harbour-lights-return.html",
        "subscribe": f"{served.url}subscribe",
        "confirmed": confirm,
        "unsubscribe": unsubscribe,
        "email": f"{served.url}{ISSUE}/email.html",
        "not found": f"{served.url}no/such/page",
    }
    # The theme has a dark palette too: its contrast is checked as well.
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, color_scheme=cast(Any, scheme)
    )
    page = context.new_page()
    axe = Axe()
    found = {}
    for name, url in pages.items():
        page.goto(url)
        # A mail client frames the digest with its own landmarks: axe's best practices
        # about landmarks (one <main>, all content in regions) are for whole pages only.
        tags = WCAG if name == "email" else [*WCAG, "best-practice"]
        results = axe.run(page, options={"runOnly": {"type": "tag", "values": tags}})
        found[name] = [
            f"{v['id']} ({v['impact']}) x{len(v['nodes'])}: {v['nodes'][0]['html'][:120]}"
            for v in results.response["violations"]
        ]
    context.close()
    assert found == {name: [] for name in pages}


@pytest.mark.parametrize(("width", "column"), [(375, 375), (1024, 600)])
def test_the_digest_fits_a_phone_and_keeps_a_600_px_column_on_a_desktop(
    browser: sync_api.Browser, served: Served, width: int, column: int
) -> None:
    # Chromium stands in for the WebKit of Apple Mail and iOS Mail, which honour @media too.
    context = browser.new_context(viewport={"width": width, "height": 900})
    page = context.new_page()
    page.goto(f"{served.url}{ISSUE}/email.html")
    page.screenshot(path=OUTPUT / f"email-{width}.png", full_page=True)

    overflow = page.evaluate("[document.scrollingElement.scrollWidth, window.innerWidth]")
    assert overflow[0] <= overflow[1], overflow
    box = page.locator("table.container").bounding_box()
    assert box is not None and box["width"] == column
    context.close()
