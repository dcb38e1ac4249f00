"""`collect` with upstream feeds: stored once, edited in place, polled politely, failures told."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from click.testing import CliRunner
from pytest_httpserver import HTTPServer

from publisher.cli import cli
from publisher.errors import ConfigError
from publisher.model import Article, CollectReport, Issue
from publisher.pipeline import collect
from publisher.store import Store
from tests.conftest import FEEDS_DATA, Site, feed_requests, serve_feed

NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)


def feed_settings(*feeds: dict[str, Any], **sources: Any) -> str:
    """A [sources] section and one [[sources.feeds]] table per feed, as TOML text."""
    lines = ["", "[sources]", "parse_processes = 1", "max_age_days = 0"]
    lines += [f"{key} = {value!r}" for key, value in sources.items()]
    for feed in feeds:
        lines.append("[[sources.feeds]]")
        for key, value in feed.items():
            rendered = (
                "[" + ", ".join(f'"{v}"' for v in value) + "]"
                if isinstance(value, list)
                else f'"{value}"'
                if isinstance(value, str)
                else str(value)
            )
            lines.append(f"{key} = {rendered}")
    return "\n".join(lines) + "\n"


def run(site: Site, now: datetime = NOW) -> CollectReport:
    return collect(site.settings(), now=now)


def stored(site: Site) -> list[Article]:
    with Store.open(site.settings().database_url) as store:
        return list(store.iter_articles("feed"))


def rss(*items: str, title: str = "Harbour Notes") -> bytes:
    body = "".join(items)
    return (
        f'<?xml version="1.0" encoding="utf-8"?><rss version="2.0"><channel><title>{title}'
        f"</title><link>https://harbour.example.org/</link><description>d</description>{body}"
        "</channel></rss>"
    ).encode()


def item(guid: str, title: str, text: str, link: str | None = None, date: str = "") -> str:
    link_xml = f"<link>{link}</link>" if link else ""
    date_xml = f"<pubDate>{date}</pubDate>" if date else ""
    return (
        f'<item><guid isPermaLink="false">{guid}</guid><title>{title}</title>{link_xml}'
        f"{date_xml}<description>{text}</description></item>"
    )


@pytest.fixture
def harbour_site(make_site: Callable[..., Site], feed_server: HTTPServer) -> Site:
    serve_feed(feed_server, "/harbour.xml", (FEEDS_DATA / "rss2.xml").read_bytes())
    url = feed_server.url_for("/harbour.xml")
    return make_site(extra=feed_settings({"url": url, "name": "Harbour Notes"}))


# ---------------------------------------------------------------------------- storing


def test_a_site_that_only_follows_feeds_needs_no_articles_folder(harbour_site: Site) -> None:
    harbour_site.articles.rmdir()
    report = run(harbour_site)
    assert (report.new, report.feed_new, report.failed) == (0, 3, 0)


def test_entries_are_stored_as_articles_crediting_feed_and_author(harbour_site: Site) -> None:
    report = run(harbour_site)

    assert (report.feeds_polled, report.feed_new, report.feeds_failed) == (1, 3, 0)
    assert report.problems == ()
    articles = {a.title: a for a in stored(harbour_site)}
    ferry = articles["Ferry timetable changes for winter"]
    assert ferry.source_kind == "feed"
    assert ferry.source == harbour_site.settings().sources.feeds[0].url
    assert ferry.url == "https://harbour.example.org/notes/ferry-winter"  # the permalink
    assert ferry.publication == "Harbour Notes"
    assert ferry.author == "Ines Berg"
    assert ferry.slug == "ferry-timetable-changes-for-winter"
    assert ferry.date == datetime(2026, 11, 21, 8, 30, tzinfo=UTC)
    assert ferry.collected_at == NOW
    assert ferry.tags == ("ferry", "timetable")
    assert "<b>21:40</b>" in ferry.content_html
    assert ferry.summary == "The last evening ferry leaves earlier from December."
    lighthouse = articles["Lighthouse open day"]
    assert lighthouse.summary == "Climb the 120 steps on Sunday."  # from its only text
    # An entry without a date is dated when it was first seen; without a link, it points
    # at the feed's site.
    assert articles["Quay works finished"].date == NOW
    assert articles["Quay works finished"].url == "https://harbour.example.org/"


def test_a_304_leaves_every_stored_row_untouched(
    harbour_site: Site, feed_server: HTTPServer
) -> None:
    run(harbour_site)
    before = [asdict(a) for a in stored(harbour_site)]

    report = run(harbour_site, NOW + timedelta(hours=2))

    assert report.feeds_polled == 1
    assert report.feeds_not_modified == 1
    assert (report.feed_new, report.feed_updated, report.feed_unchanged) == (0, 0, 0)
    assert [asdict(a) for a in stored(harbour_site)] == before
    second = feed_requests(feed_server, "/harbour.xml")[1]
    assert second.headers.get("If-None-Match")


def test_a_feed_is_not_polled_again_before_its_minimum_interval(
    harbour_site: Site, feed_server: HTTPServer
) -> None:
    run(harbour_site)

    soon = run(harbour_site, NOW + timedelta(minutes=10))
    later = run(harbour_site, NOW + timedelta(minutes=31))

    assert (soon.feeds_polled, soon.feeds_not_due) == (0, 1)
    assert (later.feeds_polled, later.feeds_not_due) == (1, 0)
    assert len(feed_requests(feed_server, "/harbour.xml")) == 2


def test_an_edited_entry_is_updated_in_place_and_never_new_again(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    document = {
        "body": rss(item("a1", "Harbour lights", "Lights on at six.", "https://h.example/a1"))
    }
    serve_feed(feed_server, "/feed.xml", lambda: document["body"])
    site = make_site(
        extra=feed_settings({"url": feed_server.url_for("/feed.xml"), "name": "Harbour"})
    )
    run(site)
    (original,) = stored(site)
    with Store.open(site.settings().database_url) as store:
        store.save_issue(Issue(1, "2026-11-24", NOW, "Issue 1", (original.id,)))
        assert store.unissued_articles() == []

    document["body"] = rss(
        item("a1", "Harbour lights return", "Lights on at seven.", "https://h.example/a1")
    )
    report = run(site, NOW + timedelta(hours=1))

    assert (report.feed_new, report.feed_updated) == (0, 1)
    (edited,) = stored(site)
    assert (edited.id, edited.slug, edited.collected_at) == (
        original.id,
        original.slug,
        original.collected_at,
    )
    assert edited.title == "Harbour lights return"
    assert "seven" in edited.content_html
    assert edited.updated == NOW + timedelta(hours=1)
    with Store.open(site.settings().database_url) as store:
        assert store.unissued_articles() == []  # not "new" again: it is in issue 1


def test_a_feed_rewriting_all_its_ids_but_not_its_links_adds_nothing(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    links = [f"https://h.example/post/{n}" for n in range(3)]
    document = {"body": rss(*(item(f"old-{n}", f"Post {n}", "Text.", links[n]) for n in range(3)))}
    serve_feed(feed_server, "/feed.xml", lambda: document["body"])
    site = make_site(
        extra=feed_settings({"url": feed_server.url_for("/feed.xml"), "name": "Harbour"})
    )
    run(site)
    ids_before = sorted(a.id for a in stored(site))

    document["body"] = rss(*(item(f"new-{n}", f"Post {n}", "Text.", links[n]) for n in range(3)))
    rewritten = run(site, NOW + timedelta(hours=1))
    document["body"] = rss(*(item(f"new-{n}", f"Post {n}", "Text.", None) for n in range(3)))
    links_gone = run(site, NOW + timedelta(hours=2))

    assert rewritten.feed_new == 0 and rewritten.feed_unchanged == 3
    # Once re-keyed, the new ids alone recognise the entries.
    assert links_gone.feed_new == 0
    assert sorted(a.id for a in stored(site)) == ids_before


def test_an_entry_is_stored_once_across_polls_and_feeds_keep_their_own_ids(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    body = rss(item("same-guid", "Shared story", "Text.", "https://h.example/s"))
    serve_feed(feed_server, "/one.xml", body, validators=False)
    serve_feed(feed_server, "/two.xml", body + b" ", validators=False)
    site = make_site(
        extra=feed_settings(
            {"url": feed_server.url_for("/one.xml"), "name": "One"},
            {"url": feed_server.url_for("/two.xml"), "name": "Two"},
        )
    )

    first = run(site)
    again = run(site, NOW + timedelta(hours=1))

    assert first.feed_new == 2  # same guid in two feeds: two articles, two ids
    articles = stored(site)
    assert len({a.id for a in articles}) == 2
    assert {a.publication for a in articles} == {"One", "Two"}
    assert sorted(a.slug for a in articles) == ["shared-story", "shared-story-2"]
    assert again.feed_new == 0 and len(stored(site)) == 2


def test_include_exclude_and_max_age_leave_entries_out(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    old = "Mon, 02 Nov 2026 08:00:00 GMT"
    recent = "Sun, 22 Nov 2026 08:00:00 GMT"
    serve_feed(
        feed_server,
        "/feed.xml",
        rss(
            item("1", "Tram news", "Line 4 returns.", date=recent),
            item("2", "Tram sponsored post", "Buy tickets.", date=recent),
            item("3", "Bakery opens", "Fresh bread.", date=recent),
            item("4", "Old tram story", "From the archive.", date=old),
            item("5", "Tramway history", "Not the word tram alone.", date=recent),
        ),
    )
    site = make_site(
        extra=feed_settings(
            {
                "url": feed_server.url_for("/feed.xml"),
                "name": "City",
                "include": ["tram"],
                "exclude": ["sponsored"],
                "max_age_days": 14,
            }
        )
    )

    report = run(site)

    assert {a.title for a in stored(site)} == {"Tram news", "Tramway history"}
    assert (report.feed_new, report.feed_skipped) == (2, 3)


# ---------------------------------------------------------------------------- moved, gone, failing


def test_a_permanent_redirect_updates_the_stored_url_and_the_report_says_so(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    new_url = feed_server.url_for("/new.xml")
    feed_server.expect_request("/old.xml").respond_with_data(
        "", status=301, headers={"Location": new_url}
    )
    serve_feed(feed_server, "/new.xml", (FEEDS_DATA / "rss2.xml").read_bytes())
    old_url = feed_server.url_for("/old.xml")
    site = make_site(extra=feed_settings({"url": old_url, "name": "Harbour"}))

    report = run(site)
    again = run(site, NOW + timedelta(hours=1))

    with Store.open(site.settings().database_url) as store:
        state = store.feed_states()[old_url]
    assert state.current_url == new_url
    (moved,) = [p for p in report.problems if "moved permanently" in p.message]
    assert moved.severity == "warning"
    assert str(moved).startswith(f'feed "Harbour" ({old_url}): moved permanently to {new_url}')
    assert len(feed_requests(feed_server, "/old.xml")) == 1  # the second poll went to new.xml
    assert again.feeds_not_modified == 1 and again.problems == ()

    # The editor follows the advice: the feed keeps its articles, nothing is new.
    site.settings_path.write_text(
        site.settings_path.read_text().replace(old_url, new_url), encoding="utf-8"
    )
    renamed = run(site, NOW + timedelta(hours=2))
    assert renamed.feed_new == 0 and renamed.feeds_not_modified == 1
    assert {a.source for a in stored(site)} == {new_url}


def test_410_disables_the_feed_and_says_so_on_every_run(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data("gone", status=410)
    url = feed_server.url_for("/feed.xml")
    site = make_site(extra=feed_settings({"url": url, "name": "Old blog"}))

    report = run(site)
    later = run(site, NOW + timedelta(days=3))

    (gone,) = report.problems
    assert gone.severity == "error"
    assert str(gone) == (
        f'feed "Old blog" ({url}): HTTP 410 Gone: the feed was removed for good; publisher '
        "stops polling it; remove it from settings.toml (a new url there is polled afresh)"
    )
    assert (later.feeds_polled, later.feeds_not_due) == (0, 0)
    (reminder,) = later.problems
    assert reminder.severity == "warning"
    assert "answered 410 Gone on 2026-11-24 06:00 UTC" in reminder.message
    assert len(feed_requests(feed_server, "/feed.xml")) == 1


def test_a_failing_feed_is_one_report_line_and_the_others_are_stored(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    feed_server.expect_request("/broken.xml").respond_with_data("oops", status=500)
    serve_feed(feed_server, "/good.xml", (FEEDS_DATA / "atom.xml").read_bytes())
    broken = feed_server.url_for("/broken.xml")
    site = make_site(
        extra=feed_settings(
            {"url": broken, "name": "Broken"},
            {"url": feed_server.url_for("/good.xml"), "name": "Tram"},
        )
    )

    report = run(site)

    assert report.feeds_failed == 1 and report.failed == 1
    assert report.feed_new == 2
    (line,) = report.problems
    assert str(line) == (
        f'feed "Broken" ({broken}): HTTP 500 Internal Server Error; nothing to do if it '
        "passes: publisher tries again later with growing pauses; next try after "
        "2026-11-24 06:15 UTC"
    )


def test_a_password_in_a_feed_url_never_shows_in_the_report(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    feed_server.expect_request("/private.xml").respond_with_data("no", status=403)
    url = feed_server.url_for("/private.xml").replace("://", "://reader:s3cret@")
    site = make_site(extra=feed_settings({"url": url, "name": "Private"}))

    report = run(site)

    (line,) = report.problems
    assert "s3cret" not in str(line)
    assert str(line).startswith('feed "Private" (http://reader:***@127.0.0.1:')
    (request,) = feed_requests(feed_server, "/private.xml")
    assert request.authorization is not None and request.authorization.password == "s3cret"


def test_a_failing_feed_backs_off_more_with_each_failure_then_recovers(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    outcome = {"status": 503}

    def handler(_request: Any) -> Any:
        from werkzeug import Response

        if outcome["status"] != 200:
            return Response("busy", status=outcome["status"])
        return Response((FEEDS_DATA / "rss2.xml").read_bytes(), content_type="application/rss+xml")

    feed_server.expect_request("/feed.xml").respond_with_handler(handler)
    url = feed_server.url_for("/feed.xml")
    site = make_site(extra=feed_settings({"url": url, "name": "Flaky"}))

    def state() -> Any:
        with Store.open(site.settings().database_url) as store:
            return store.feed_states()[url]

    run(site)  # failure 1: 15 minutes
    assert state().next_attempt == NOW + timedelta(minutes=15)
    assert run(site, NOW + timedelta(minutes=14)).feeds_polled == 0
    run(site, NOW + timedelta(minutes=15))  # failure 2: 30 minutes
    assert (state().failures, state().next_attempt) == (2, NOW + timedelta(minutes=45))
    outcome["status"] = 200
    recovered = run(site, NOW + timedelta(minutes=45))

    assert recovered.feed_new == 3 and recovered.problems == ()
    assert (state().failures, state().next_attempt, state().last_error) == (0, None, None)


def test_retry_after_decides_the_next_poll(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data(
        "slow down", status=429, headers={"Retry-After": "10800"}
    )
    url = feed_server.url_for("/feed.xml")
    site = make_site(extra=feed_settings({"url": url, "name": "Busy"}))

    report = run(site)
    early = run(site, NOW + timedelta(hours=2, minutes=59))

    (line,) = report.problems
    assert "asks to wait until 2026-11-24 09:00 UTC" in line.message
    assert early.feeds_polled == 0 and early.feeds_not_due == 1
    assert run(site, NOW + timedelta(hours=3)).feeds_polled == 1


def test_ill_formed_xml_is_stored_with_a_warning(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    serve_feed(feed_server, "/feed.xml", (FEEDS_DATA / "ill-formed.xml").read_bytes())
    url = feed_server.url_for("/feed.xml")
    site = make_site(extra=feed_settings({"url": url, "name": "Market"}))

    report = run(site)

    assert report.feed_new == 2 and report.failed == 0
    (warning,) = report.problems
    assert warning.severity == "warning"
    assert str(warning).startswith(f'feed "Market" ({url}): ill-formed XML')


# ---------------------------------------------------------------------------- CLI and settings


def test_the_cli_summary_shows_the_feed_figures(harbour_site: Site) -> None:
    result = CliRunner().invoke(
        cli, ["--settings", str(harbour_site.settings_path), "collect", "--now", NOW.isoformat()]
    )

    assert result.exit_code == 0, result.output
    assert "Collected from upstream feeds" in result.output
    row = [line for line in result.output.splitlines() if "│" in line][-1]
    assert [cell.strip() for cell in row.split("│")[1:-1]] == [
        "1",
        "0",
        "0",
        "0",
        "3",
        "0",
        "0",
        "0",
    ]


def test_the_cli_prints_a_failing_feed_on_one_line_and_exits_1(
    make_site: Callable[..., Site], feed_server: HTTPServer
) -> None:
    feed_server.expect_request("/feed.xml").respond_with_data("missing", status=404)
    url = feed_server.url_for("/feed.xml")
    site = make_site(extra=feed_settings({"url": url, "name": "Lost"}))

    result = CliRunner().invoke(
        cli, ["--settings", str(site.settings_path), "collect", "--now", NOW.isoformat()]
    )

    assert result.exit_code == 1
    assert (
        f'error: feed "Lost" ({url}): HTTP 404 Not Found; check the feed\'s url in '
        "settings.toml; next try after 2026-11-24 06:15 UTC"
    ) in result.output.replace("\n", "")


def test_unknown_feed_keys_and_bad_urls_are_all_reported_by_name(
    make_site: Callable[..., Site],
) -> None:
    site = make_site(
        extra=feed_settings(
            {"url": "https://a.example/feed", "name": "A", "colour": "red"},
            {"url": "ftp://b.example/feed", "name": "B"},
        )
    )

    with pytest.raises(ConfigError) as caught:
        site.settings()

    message = str(caught.value)
    assert "[sources] feeds.0.colour: unknown key; allowed: url, name, include, exclude" in message
    assert "[sources] feeds.1.url: must be an absolute http(s) URL" in message


def test_repeated_feed_urls_are_refused(make_site: Callable[..., Site]) -> None:
    site = make_site(
        extra=feed_settings(
            {"url": "https://a.example/feed", "name": "A"},
            {"url": "https://a.example/feed", "name": "A again"},
        )
    )

    with pytest.raises(ConfigError) as caught:
        site.settings()

    assert "https://a.example/feed is listed twice" in str(caught.value)
