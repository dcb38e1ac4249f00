"""`publish`: a whole dated issue, atomic and deterministic, with feeds, images and manifest."""

from __future__ import annotations

import hashlib
import json
import shutil
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

import feedparser
import pytest

from publisher.errors import WriteError
from publisher.pipeline import collect, publish
from publisher.store import Store
from tests.conftest import DATA, NOW, Site

MORNING = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)  # 07:00 in Berlin


def fill(site: Site) -> None:
    site.write(
        "harbour.md", "# Harbour lights return\n\n![The quay](img/quay.png)\n\nCrews cheered.\n"
    )
    (site.articles / "img").mkdir()
    shutil.copy(DATA / "quay.png", site.articles / "img" / "quay.png")
    site.write("ferry.txt", "By Tomás Ibáñez\nThe night ferry runs all winter.\n")
    site.write(
        "market.html",
        '<h1>Market moves indoors</h1><p onclick="x()">Stalls <img src="gone.jpg"> '
        '<a href="javascript:alert(1)">map</a></p><script>alert(2)</script>',
    )


def output_files(root: Path) -> dict[str, bytes]:
    return {
        str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()
    }


def test_publish_writes_a_whole_dated_issue_and_the_site_files(site: Site) -> None:
    fill(site)
    settings = site.settings()
    collect(settings, now=NOW)
    report = publish(settings, now=MORNING)

    assert report.issue is not None
    assert (report.issue.number, report.issue.folder) == (1, "2026-11-24")
    issues = site.root / "issues"
    folder = issues / "2026-11-24"
    names = set(output_files(folder))
    assert {"index.html", "email.html", "email.txt", "issue.json"} <= names
    assert {"harbour-lights-return.html", "market-moves-indoors.html"} <= names
    assert "harbour-lights-return/quay.png" in names  # the image, under a stable name
    assert (folder / "harbour-lights-return/quay.png").read_bytes() == (
        DATA / "quay.png"
    ).read_bytes()
    assert {"feed.xml", "atom.xml", "feed.json", "issues.xml", "index.html", "style.css"} <= set(
        p.name for p in issues.iterdir()
    )

    # A missing image is a warning naming the article and the path; the issue still went out.
    assert [str(p) for p in report.problems] == [
        "articles/market.html: image 'gone.jpg' not found; the issue publishes without it; "
        "put the file beside the article"
    ]
    email = (folder / "email.html").read_text(encoding="utf-8")
    assert 'src="https://news.example.org/2026-11-24/harbour-lights-return/quay.png"' in email
    assert 'alt="The quay"' in email
    assert "gone.jpg" not in email

    # The manifest names every other file with its sha256.
    manifest = json.loads((folder / "issue.json").read_text(encoding="utf-8"))
    assert manifest["number"] == 1 and manifest["folder"] == "2026-11-24"
    assert [a["url"] for a in manifest["articles"]] == [
        f"https://news.example.org/2026-11-24/{a['slug']}.html" for a in manifest["articles"]
    ]
    files = output_files(folder)
    del files["issue.json"]
    assert manifest["files"] == {n: hashlib.sha256(d).hexdigest() for n, d in files.items()}


def test_feeds_on_disk_read_back_in_feedparser(site: Site) -> None:
    fill(site)
    collect(site.settings(), now=NOW)
    publish(site.settings(), now=MORNING)
    issues = site.root / "issues"
    for name in ("feed.xml", "atom.xml"):
        parsed = feedparser.parse((issues / name).read_bytes())
        assert parsed.bozo == 0, (name, parsed.get("bozo_exception"))
        links = {e.link for e in parsed.entries}
        assert "https://news.example.org/2026-11-24/harbour-lights-return.html" in links
        assert len(parsed.entries) == 3
    feed = json.loads((issues / "feed.json").read_text(encoding="utf-8"))
    assert len(feed["items"]) == 3
    issues_feed = feedparser.parse((issues / "issues.xml").read_bytes())
    assert [e.link for e in issues_feed.entries] == ["https://news.example.org/2026-11-24/"]


def test_hostile_html_never_reaches_any_output(site: Site) -> None:
    fill(site)
    collect(site.settings(), now=NOW)
    publish(site.settings(), now=MORNING)
    for name, data in output_files(site.root / "issues").items():
        text = data.decode("utf-8", errors="replace").lower()
        for bad in ("<script", "onclick", "javascript:", "alert("):
            assert bad not in text, (name, bad)


def test_nothing_new_means_no_issue_and_a_second_issue_that_day_gets_suffix(site: Site) -> None:
    fill(site)
    collect(site.settings(), now=NOW)
    first = publish(site.settings(), now=MORNING)
    nothing = publish(site.settings(), now=MORNING + timedelta(hours=1))
    assert nothing.issue is None
    site.write("late.txt", "Late news\nSomething happened after the morning issue.\n")
    collect(site.settings(), now=MORNING + timedelta(hours=2))
    second = publish(site.settings(), now=MORNING + timedelta(hours=3))
    assert second.issue is not None and first.issue is not None
    assert (second.issue.number, second.issue.folder) == (2, "2026-11-24-2")
    assert set(second.issue.article_ids).isdisjoint(first.issue.article_ids)
    archive = (site.root / "issues" / "index.html").read_text(encoding="utf-8")
    assert archive.index('href="2026-11-24-2/') < archive.index('href="2026-11-24/')  # newest first


def test_same_store_and_clock_give_byte_identical_output(
    make_site: Callable[..., Site], tmp_path: Path
) -> None:
    outputs = []
    for name in ("one", "two"):
        site = make_site()
        fill(site)
        collect(site.settings(), now=NOW)
        publish(site.settings(), now=MORNING)
        outputs.append(output_files(site.root / "issues"))
        shutil.move(site.root, tmp_path / name)
    assert outputs[0].keys() == outputs[1].keys()
    for name in outputs[0]:
        assert outputs[0][name] == outputs[1][name], name


def test_dry_run_writes_and_records_nothing(site: Site) -> None:
    fill(site)
    collect(site.settings(), now=NOW)
    report = publish(site.settings(), now=MORNING, dry_run=True)
    assert report.issue is not None and report.dry_run
    assert not (site.root / "issues").exists()
    with Store.open(site.settings().database_url) as store:
        assert store.get_issue() is None


def test_rebuild_regenerates_every_issue_from_the_store(site: Site) -> None:
    fill(site)
    collect(site.settings(), now=NOW)
    publish(site.settings(), now=MORNING)
    folder = site.root / "issues" / "2026-11-24"
    before = output_files(folder)
    (folder / "email.html").write_text("damaged", encoding="utf-8")
    (site.articles / "img" / "quay.png").unlink()  # its published copy is still there
    report = publish(site.settings(), now=MORNING + timedelta(days=3), rebuild=True)
    assert report.rebuilt == 1 and report.issue is None
    assert output_files(folder) == before


def test_a_folder_left_by_a_crashed_run_is_replaced_a_foreign_one_refused(site: Site) -> None:
    fill(site)
    collect(site.settings(), now=NOW)
    orphan = site.root / "issues" / "2026-11-24"
    orphan.mkdir(parents=True)
    (orphan / "index.html").write_text("half of a crashed run", encoding="utf-8")
    assert publish(site.settings(), now=MORNING).issue is not None
    assert "half of a crashed run" not in (orphan / "index.html").read_text(encoding="utf-8")

    site.write("next.txt", "Next\nAnother article for tomorrow.\n")
    collect(site.settings(), now=NOW)
    foreign = site.root / "issues" / "2026-11-25"
    foreign.mkdir()
    (foreign / "issue.json").write_text('{"number": 9}', encoding="utf-8")
    with pytest.raises(WriteError, match="holds issue #9, which the store does not know"):
        publish(site.settings(), now=MORNING + timedelta(days=1))
    assert (foreign / "issue.json").read_text(encoding="utf-8") == '{"number": 9}'


def test_names_from_outside_input_stay_inside_issues(site: Site) -> None:
    site.write("evil.md", "---\nslug: ../../../etc/passwd\n---\n# Evil\n\n![x](../../secret.png)\n")
    (site.root / "secret.png").write_bytes((DATA / "quay.png").read_bytes())
    collect(site.settings(), now=NOW)
    report = publish(site.settings(), now=MORNING)
    issues = site.root / "issues"
    written = [p.resolve() for p in issues.rglob("*")]
    assert all(p.is_relative_to(issues.resolve()) for p in written)
    assert (issues / "2026-11-24" / "etc-passwd.html").is_file()
    assert [p.message for p in report.problems] == [
        "image '../../secret.png' lies outside articles/; refused"
    ]


def test_a_parallel_rebuild_reproduces_every_issue_byte_for_byte(site: Site) -> None:
    from publisher.pipeline import PARALLEL_REBUILD_MIN

    for day in range(PARALLEL_REBUILD_MIN + 1):
        moment = MORNING + timedelta(days=day)
        site.write(f"day-{day}.txt", f"Day {day} news\nSomething happened on day {day}.\n")
        collect(site.settings(), now=moment)
        assert publish(site.settings(), now=moment).issue is not None
    issues = site.root / "issues"
    before = output_files(issues)
    for folder in issues.iterdir():
        if folder.is_dir():
            (folder / "index.html").write_text("damaged", encoding="utf-8")
    report = publish(site.settings(), now=MORNING + timedelta(days=30), rebuild=True)
    assert report.rebuilt == PARALLEL_REBUILD_MIN + 1
    assert output_files(issues) == before


def test_a_rebuild_that_fails_leaves_the_whole_site_as_it_was_and_no_temp(
    site: Site,
) -> None:
    from publisher.errors import RenderError
    from publisher.pipeline import PARALLEL_REBUILD_MIN
    from publisher.write import TEMP_PREFIX

    days = max(PARALLEL_REBUILD_MIN + 1, 16)  # a dozen finish rendering before the last fails
    for day in range(days):
        moment = MORNING + timedelta(days=day)
        site.write(f"day-{day}.txt", f"Day {day} news\nSomething happened on day {day}.\n")
        collect(site.settings(), now=moment)
        assert publish(site.settings(), now=moment).issue is not None
    issues = site.root / "issues"
    before = output_files(issues)
    # A new theme whose article page breaks on the last issue only, which a worker renders:
    # every issue before it rendered fine in the new theme, and none of them may show it.
    theme = site.root / "theme"
    theme.mkdir()
    (theme / "article.html").write_text(
        f"{{% if item.article.title == 'Day {days - 1} news' %}}{{{{ no_such_value }}}}"
        "{% endif %}new theme\n"
    )
    settings = site.settings()
    settings = settings.model_copy(
        update={"site": settings.site.model_copy(update={"theme_dir": str(theme)})}
    )
    with pytest.raises(RenderError, match="no_such_value"):
        publish(settings, now=MORNING + timedelta(days=30), rebuild=True)
    assert output_files(issues) == before
    assert not [p.name for p in issues.iterdir() if p.name.startswith(TEMP_PREFIX)]


def test_email_eml_is_the_whole_message_a_test_recipient_would_get(site: Site) -> None:
    import email
    from email import policy

    from publisher.model import PLACEHOLDER_RECIPIENT, PLACEHOLDER_UNSUBSCRIBE_URL

    fill(site)
    collect(site.settings(), now=NOW)
    publish(site.settings(), now=MORNING)
    raw = (site.root / "issues/2026-11-24/email.eml").read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b"")  # CRLF only
    assert max(len(line) for line in raw.split(b"\r\n")) <= 998
    message = email.message_from_bytes(raw, policy=policy.default)
    assert message.get_content_type() == "multipart/alternative"
    assert [p.get_content_type() for p in message.iter_parts()] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in message.iter_parts())
    assert message["Subject"] == "Test Dispatch #1: Market moves indoors"
    assert message["From"].addresses[0].addr_spec == "desk@news.example.org"
    assert message["Date"].datetime == MORNING
    assert message["Message-ID"].startswith("<") and message["Message-ID"].endswith(">")
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    assert message["To"] == PLACEHOLDER_RECIPIENT  # filled in per subscriber
    text, html = (p.get_content() for p in message.iter_parts())
    assert PLACEHOLDER_UNSUBSCRIBE_URL in text and PLACEHOLDER_UNSUBSCRIBE_URL in html
    assert "https://news.example.org/2026-11-24/harbour-lights-return.html" in text
    # The HTML part is email.html as written (CSS inlined once, at publish), in CRLF lines.
    written = (site.root / "issues/2026-11-24/email.html").read_text(encoding="utf-8")
    assert html.replace("\r\n", "\n") == written


def test_the_archive_lists_a_few_titles_per_issue_and_issues_xml_all(site: Site) -> None:
    for n in range(8):
        site.write(
            f"story-{n}.md", f"---\ndate: 2026-11-2{n % 3}\n---\n# Story number {n}\n\nText.\n"
        )
    collect(site.settings(), now=NOW)
    publish(site.settings(), now=MORNING)
    archive = (site.root / "issues" / "index.html").read_text(encoding="utf-8")
    assert archive.count("<li>Story number ") == 5
    assert '<a href="2026-11-24/index.html">and 3 more</a>' in archive
    issues_feed = feedparser.parse((site.root / "issues" / "issues.xml").read_bytes())
    listed = issues_feed.entries[0].summary + issues_feed.entries[0].get("content", [{}])[0].get(
        "value", ""
    )
    assert all(f"Story number {n}" in listed for n in range(8))
