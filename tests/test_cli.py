"""The command line as a user runs it: a real subprocess on a real site folder."""

from __future__ import annotations

import io
import os
import subprocess
import sys

import pytest
from rich.console import Console

from publisher import cli
from tests.conftest import ROOT, Site

PLAIN = "By Maren Holt\nThe harbour lights came back on.\n"


def run(site: Site, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    return subprocess.run(
        [sys.executable, "-m", "publisher", "--settings", str(site.settings_path), *args],
        capture_output=True,
        text=True,
        env={**env, "COLUMNS": "200"},
        cwd=site.root,
        timeout=60,
        check=False,
    )


def test_help_teaches_with_examples() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "publisher", "--help"], capture_output=True, text=True, check=True
    )
    assert "Examples:" in result.stdout
    assert "publisher collect" in result.stdout
    assert "PUBLISHER_<SECTION>__<KEY>" in result.stdout


def test_collect_prints_a_summary_table_and_exits_zero(site: Site) -> None:
    site.write("a.txt", PLAIN)
    site.write("b.md", "# B\n\nBody.\n")
    result = run(site, "collect", "--now", "2026-11-24T07:00:00+01:00")
    assert result.returncode == 0, result.stderr
    header, values = [line for line in result.stdout.splitlines() if "│" in line or "┃" in line]
    assert [c.strip() for c in header.strip("┃").split("┃")] == [
        "new", "updated", "unchanged", "source missing", "failed"
    ]  # fmt: skip
    assert [c.strip() for c in values.strip("│").split("│")] == ["2", "0", "0", "0", "0"]
    again = run(site, "collect")
    assert "│   0 │       0 │         2 │" in again.stdout


def test_a_broken_file_is_one_line_on_stderr_and_exit_status_one(site: Site) -> None:
    site.write("good.txt", PLAIN)
    site.write("bad.txt", "Caf\xe9 au lait\n".encode("latin-1"))
    result = run(site, "collect")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.strip()]
    assert errors == [
        "error: articles/bad.txt: not valid UTF-8: byte 0xE9 at offset 3; "
        "save the file as UTF-8 and collect again"
    ]
    assert "Traceback" not in result.stderr
    assert "│   1 │" in result.stdout  # the good file still went in


def test_settings_errors_exit_two_without_traceback(site: Site) -> None:
    site.settings_path.write_text('[site]\ntitle = "T"\nurl = "nope"\n', encoding="utf-8")
    result = run(site, "collect")
    assert result.returncode == 2
    assert result.stderr.startswith(f"error: {site.settings_path}: [site] url: must be")
    assert "Traceback" not in result.stderr
    debug = run(site, "--debug", "collect")
    assert "Traceback" in debug.stderr


def test_the_bundled_demo_settings_collect_the_sample_articles(tmp_path) -> None:  # type: ignore[no-untyped-def]
    # Point the shipped settings at a temporary store so the test leaves the checkout alone.
    env = {**os.environ, "PUBLISHER_STORE__PATH": str(tmp_path / "demo.db"), "COLUMNS": "200"}
    result = subprocess.run(
        [sys.executable, "-m", "publisher", "collect"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    samples = len(list((ROOT / "articles").iterdir()))
    assert samples >= 6
    assert f"│ {samples:>3} │" in result.stdout


def test_progress_bar_appears_only_on_a_terminal_once_work_is_slow(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    terminal = io.StringIO()
    with cli._progress(
        Console(file=terminal, force_terminal=True, width=100), "Collecting"
    ) as update:
        update(1, 10)  # under a second: no bar yet
        assert terminal.getvalue() == ""
        monkeypatch.setattr(cli, "PROGRESS_AFTER_SECONDS", 0.0)
        update(3, 10)
    assert "Collecting" in terminal.getvalue()
    assert "3/10" in terminal.getvalue()

    piped = io.StringIO()
    with cli._progress(Console(file=piped, force_terminal=False), "Collecting") as update:
        update(3, 10)
    assert piped.getvalue() == ""


def test_build_prints_where_things_are_then_nothing_new(site: Site) -> None:
    site.write("a.txt", PLAIN)
    first = run(site, "build", "--now", "2026-11-24T07:00:00+01:00")
    assert first.returncode == 0, first.stderr
    assert "Published issue #1" in first.stdout
    assert "web version   issues/2026-11-24/index.html" in first.stdout
    assert "email digest  issues/2026-11-24/email.html" in first.stdout
    assert "feeds         issues/feed.xml  atom.xml  feed.json  issues.xml" in first.stdout
    assert (site.root / "issues/2026-11-24/email.html").is_file()

    second = run(site, "build", "--now", "2026-11-24T08:00:00+01:00")
    assert second.returncode == 0
    assert "Nothing new to publish" in second.stdout

    dry = run(site, "publish", "--dry-run")
    assert "Nothing new to publish" in dry.stdout
