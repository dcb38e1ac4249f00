"""The `publisher` command line: thin commands over pipeline.py, with rich output."""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table

from publisher import __version__
from publisher.errors import ConfigError, PublisherError
from publisher.model import CollectReport, Problem
from publisher.settings import Settings, load_settings

PROGRESS_AFTER_SECONDS = 1.0

EPILOG = """\b
Examples:
  publisher collect                      read new and changed files in articles/
  publisher --settings site.toml collect use another settings file
  publisher -v collect                   also show what happens, file by file

\b
Settings come from settings.toml (or --settings FILE, or $PUBLISHER_SETTINGS);
any key can be overridden with PUBLISHER_<SECTION>__<KEY>, e.g.
PUBLISHER_SITE__URL=https://news.example.org/.
"""


@dataclass
class Context:
    settings_path: Path
    debug: bool
    out: Console
    err: Console

    def settings(self) -> Settings:
        return load_settings(self.settings_path)


def _parse_now(_ctx: click.Context, _param: click.Parameter, value: str | None) -> datetime:
    if value is None:
        return datetime.now(UTC)
    try:
        moment = datetime.fromisoformat(value)
    except ValueError:
        raise click.BadParameter(
            f"{value!r} is not ISO 8601, e.g. 2026-11-24T07:00:00+01:00"
        ) from None
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


now_option = click.option(
    "--now",
    metavar="ISO",
    callback=_parse_now,
    help="Pretend it is this moment (ISO 8601), for reproducible runs.",
)


@click.group(epilog=EPILOG, context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--settings",
    "settings_path",
    type=click.Path(dir_okay=False, path_type=Path),
    default="settings.toml",
    envvar="PUBLISHER_SETTINGS",
    show_default=True,
    help="The settings file.",
)
@click.option("-v", "--verbose", count=True, help="Show log lines (-vv for debug detail).")
@click.option("--debug", is_flag=True, help="Show the full traceback when something fails.")
@click.version_option(__version__, prog_name="publisher")
@click.pass_context
def cli(ctx: click.Context, settings_path: Path, verbose: int, debug: bool) -> None:
    """Turn the articles you drop into articles/ into feeds, a dated site and an email digest.

    Start with `publisher collect`, which reads every new or changed article file
    into the store and prints what it found.
    """
    err = Console(stderr=True)
    level = logging.DEBUG if verbose > 1 or debug else logging.INFO if verbose else logging.WARNING
    logging.basicConfig(
        level=level,
        format="%(message)s",
        handlers=[RichHandler(console=err, show_path=False, markup=False)],
    )
    ctx.obj = Context(settings_path, debug, Console(), err)


@cli.command()
@now_option
@click.pass_obj
def collect(obj: Context, now: datetime) -> None:
    """Read new and changed article files, then the upstream feeds that are due.

    Files in the articles folder (.txt, .md, .html) are read only when their size
    or modification time changed, then only when their content changed. Feeds
    listed under [[sources.feeds]] are polled with conditional GET, at most every
    min_interval_minutes. A broken file or feed is reported on one line and the
    rest go on; the exit status is 1 if any file or feed failed.
    """
    settings = obj.settings()
    with _progress(obj.err, "Collecting") as progress:
        report = _run(obj, lambda: collect_articles(settings, now, progress))
    _print_problems(obj.err, report.problems)
    _print_collect_table(obj.out, report, settings)
    if settings.sources.feeds:
        _print_feeds_table(obj.out, report)
    if report.failed:
        sys.exit(1)


def collect_articles(settings: Settings, now: datetime, progress: Any) -> CollectReport:
    from publisher.pipeline import collect as run_collect

    return run_collect(settings, now=now, progress=progress)


def _run(obj: Context, work: Callable[[], Any]) -> Any:
    try:
        return work()
    except PublisherError:
        raise
    except KeyboardInterrupt:
        obj.err.print("interrupted; what was stored is kept, run the command again to go on")
        sys.exit(130)


@contextmanager
def _progress(console: Console, label: str) -> Iterator[Callable[[int, int], None]]:
    """A progress callback that shows a bar only on a terminal, and only once work is slow."""
    started = time.monotonic()
    bar: Progress | None = None
    task = None

    def update(done: int, total: int) -> None:
        nonlocal bar, task
        if bar is None:
            if not console.is_terminal or time.monotonic() - started < PROGRESS_AFTER_SECONDS:
                return
            bar = Progress(
                f"[bold]{label}",
                BarColumn(),
                MofNCompleteColumn(),
                TimeRemainingColumn(),
                console=console,
                transient=True,
            )
            bar.start()
            task = bar.add_task(label, total=total)
        assert task is not None
        bar.update(task, completed=done, total=total)

    try:
        yield update
    finally:
        if bar is not None:
            bar.stop()


def _print_problems(console: Console, problems: tuple[Problem, ...]) -> None:
    for problem in problems:
        style = "red" if problem.severity == "error" else "yellow"
        console.print(f"{problem.severity}: ", style=style, end="")
        console.print(str(problem), markup=False, highlight=False, soft_wrap=True)


def _print_collect_table(console: Console, report: CollectReport, settings: Settings) -> None:
    table = Table(title=f"Collected from {settings.articles.dir}/", title_justify="left")
    for column in ("new", "updated", "unchanged", "source missing", "failed"):
        table.add_column(column, justify="right")
    table.add_row(
        str(report.new),
        str(report.updated),
        str(report.unchanged),
        str(len(report.source_missing)),
        f"[red]{report.failed}[/]" if report.failed else "0",
    )
    console.print(table)


def _print_feeds_table(console: Console, report: CollectReport) -> None:
    table = Table(title="Collected from upstream feeds", title_justify="left")
    columns = ("polled", "not modified", "failed", "waiting", "new", "updated", "unchanged")
    for column in (*columns, "skipped"):
        table.add_column(column, justify="right")
    table.add_row(
        str(report.feeds_polled),
        str(report.feeds_not_modified),
        f"[red]{report.feeds_failed}[/]" if report.feeds_failed else "0",
        str(report.feeds_not_due),
        str(report.feed_new),
        str(report.feed_updated),
        str(report.feed_unchanged),
        str(report.feed_skipped),
    )
    table.caption = "waiting: not due yet (min interval, backoff or Retry-After); skipped: filtered"
    console.print(table)


def _fail(err: Console, exc: PublisherError, debug: bool) -> NoReturn:
    if debug:
        err.print_exception()
    err.print("error: ", style="bold red", end="")
    err.print(str(exc), markup=False, highlight=False, soft_wrap=True)
    sys.exit(2 if isinstance(exc, ConfigError) else 1)


def main() -> None:
    """Entry point: errors we expect become one line and an exit status, not a traceback."""
    try:
        cli.main(standalone_mode=False)
    except click.exceptions.Abort:
        sys.exit(130)
    except click.ClickException as exc:
        exc.show()
        sys.exit(exc.exit_code)
    except PublisherError as exc:
        debug = "--debug" in sys.argv
        _fail(Console(stderr=True), exc, debug)
