"""`collect`: incremental, idempotent, one transaction per file, broken files isolated."""

from __future__ import annotations

import os
from collections.abc import Callable
from datetime import timedelta

import pytest

from publisher.model import Article
from publisher.pipeline import collect
from publisher.store import Store
from tests.conftest import NOW, Site

PLAIN = "By Maren Holt\nThe harbour lights came back on.\nCrews lined the quay to watch.\n"


def stored(site: Site) -> dict[str, Article]:
    with Store.open(site.settings().database_url) as store:
        return {a.source: a for a in store.iter_articles()}


def test_first_run_stores_every_file_and_a_second_run_changes_nothing(site: Site) -> None:
    site.write("harbour-lights.txt", PLAIN)
    site.write("notes/cafe.md", "---\ntitle: Café\ndate: 2026-11-20\n---\nCoffee.\n")
    site.write("lanes.html", "<h1>Bike lanes</h1><p>Three new lanes.</p>")

    first = collect(site.settings(), now=NOW)
    assert (first.new, first.updated, first.unchanged, first.failed) == (3, 0, 0, 0)
    articles = stored(site)
    assert set(articles) == {"harbour-lights.txt", "notes/cafe.md", "lanes.html"}
    assert articles["harbour-lights.txt"].date == NOW  # no date given: first collected
    assert articles["notes/cafe.md"].date.isoformat() == "2026-11-19T23:00:00+00:00"

    second = collect(site.settings(), now=NOW + timedelta(hours=1))
    assert (second.new, second.updated, second.unchanged, second.failed) == (0, 0, 3, 0)
    assert stored(site) == articles


def test_unchanged_size_and_mtime_means_the_file_is_not_read_again(site: Site) -> None:
    path = site.write("a.txt", PLAIN)
    collect(site.settings(), now=NOW)
    before = os.stat(path)
    # Same size, same mtime, different bytes: only a re-read could notice.
    path.write_text(PLAIN.replace("lights", "LIGHTS"), encoding="utf-8")
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns))
    report = collect(site.settings(), now=NOW)
    assert report.unchanged == 1
    assert "LIGHTS" not in stored(site)["a.txt"].content_html


def test_touched_but_identical_file_is_unchanged_and_its_stat_remembered(site: Site) -> None:
    path = site.write("a.txt", PLAIN)
    collect(site.settings(), now=NOW)
    os.utime(path, ns=(1_800_000_000_000_000_000, 1_800_000_000_000_000_000))
    assert collect(site.settings(), now=NOW).unchanged == 1
    with Store.open(site.settings().database_url) as store:
        assert store.file_states()["a.txt"].mtime_ns == 1_800_000_000_000_000_000


def test_an_edit_updates_the_article_keeping_id_slug_and_date(site: Site) -> None:
    path = site.write("a.txt", "Harbour Lights\n" + PLAIN)
    collect(site.settings(), now=NOW)
    original = stored(site)["a.txt"]
    path.write_text("Harbour Lights Are Back\n" + PLAIN + "A third paragraph.\n", encoding="utf-8")
    later = NOW + timedelta(days=1)
    report = collect(site.settings(), now=later)
    assert (report.new, report.updated) == (0, 1)
    edited = stored(site)["a.txt"]
    assert (edited.id, edited.slug, edited.date) == (original.id, "harbour-lights", original.date)
    assert edited.title == "Harbour Lights Are Back"
    assert edited.updated == later
    assert "A third paragraph." in edited.content_html


def test_slugs_are_unique_and_a_front_matter_slug_change_is_refused(site: Site) -> None:
    site.write("one.md", "# Same title\n\nFirst.\n")
    site.write("two.md", "# Same title\n\nSecond.\n")
    collect(site.settings(), now=NOW)
    assert sorted(a.slug for a in stored(site).values()) == ["same-title", "same-title-2"]

    site.write("one.md", "---\nslug: brand-new\n---\n# Same title\n\nFirst, edited.\n")
    report = collect(site.settings(), now=NOW)
    assert stored(site)["one.md"].slug == "same-title"
    assert [p.message for p in report.problems] == [
        "slug stays 'same-title': a published permalink never changes"
    ]


def test_a_deleted_file_keeps_its_article_and_is_reported(site: Site) -> None:
    path = site.write("gone.txt", PLAIN)
    collect(site.settings(), now=NOW)
    path.unlink()
    report = collect(site.settings(), now=NOW)
    assert report.source_missing == ("gone.txt",)
    assert [str(p) for p in report.problems] == [
        "articles/gone.txt: source missing: the file is gone; its article and permalink stay"
    ]
    assert report.failed == 0
    article = stored(site)["gone.txt"]
    assert article.source_missing and "harbour lights" in article.content_html
    # Reported once as a warning, counted on later runs; back when the file comes back.
    assert collect(site.settings(), now=NOW).problems == ()
    site.write("gone.txt", PLAIN)
    collect(site.settings(), now=NOW)
    assert not stored(site)["gone.txt"].source_missing


def test_broken_files_cost_one_line_each_and_the_rest_goes_in(
    make_site: Callable[..., Site],
) -> None:
    small = make_site(max_bytes=2000)
    small.write("good.txt", PLAIN)
    small.write("empty.txt", b"")
    small.write("latin1.txt", "Caf\xe9".encode("latin-1"))
    small.write("huge.txt", "word " * 1000)
    small.write("front.md", "---\ntitle: [\n---\nbody\n")
    small.write("keys.md", "---\ntitel: typo\n---\nbody\n")
    outside = small.root / "secret.txt"
    outside.write_text("not an article\n", encoding="utf-8")
    (small.articles / "link.txt").symlink_to(outside)
    (small.articles / ".hidden.txt").write_text("editor swap file", encoding="utf-8")

    report = collect(small.settings(), now=NOW)
    assert report.new == 1
    lines = sorted(str(p) for p in report.problems)
    assert len(lines) == report.failed == 6
    expected = [
        "articles/empty.txt: empty file (0 bytes)",
        "articles/front.md: line 2: malformed front matter",
        "articles/huge.txt: file is 5,000 bytes, over articles.max_bytes (2,000)",
        "articles/keys.md: line 2: unknown front matter key 'titel'",
        "articles/latin1.txt: not valid UTF-8: byte 0xE9 at offset 3",
        "articles/link.txt: symlink points outside articles/",
    ]
    for line, start in zip(lines, expected, strict=True):
        assert line.startswith(start), line
        assert "\n" not in line
    # Nothing half-written: only the good file is in the store.
    assert set(stored(small)) == {"good.txt"}

    # Fixing a file lets it in on the next run.
    small.write("empty.txt", PLAIN)
    assert collect(small.settings(), now=NOW).new == 1


def test_missing_articles_folder_is_one_clear_error(site: Site) -> None:
    site.articles.rmdir()
    from publisher.errors import SourceError

    with pytest.raises(SourceError, match="articles folder not found; create it"):
        collect(site.settings(), now=NOW)
