"""The `publisher` command line: thin commands over the use cases in pipeline/, with rich output."""

from __future__ import annotations

import csv
import gc
import logging
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, NoReturn, cast
from zoneinfo import ZoneInfo

import click
from rich.console import Console
from rich.logging import RichHandler
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeRemainingColumn
from rich.table import Table
from rich.text import Text

from publisher import __version__
from publisher.errors import ConfigError, PublisherError
from publisher.model import (
    CollectReport,
    DeliveryStatus,
    LockHolder,
    Problem,
    PublishReport,
    SendReport,
    SubscriberStatus,
)
from publisher.settings import Settings, load_settings

PROGRESS_AFTER_SECONDS = 1.0

EPILOG = """\b
Examples:
  publisher build                        collect, then publish the next issue
  publisher collect                      read new and changed files in articles/
  publisher publish --dry-run            show what the next issue would hold
  publisher publish --now 2026-11-24T07:00:00+01:00
                                         publish as of that moment (reproducible)
  publisher publish --rebuild            regenerate every issue and feed from the store
  publisher subscribers import list.csv  add subscribers (columns: email[,name])
  publisher send                         deliver the newest issue, exactly once each
  publisher status                       what was sent, what waits, what failed
  publisher run                          collect, publish and send on the schedule
  publisher serve                        the site, with subscribe and unsubscribe
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


# --- scheduling (issue 6)
wait_option = click.option(
    "--wait",
    is_flag=True,
    help="If another process is publishing or sending, wait for it instead of exiting.",
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

    Drop article files into articles/, then run `publisher build`: it collects
    them into the store and publishes the next issue into issues/ (web pages,
    feeds and the email digest), printing where everything is.
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


@cli.command()
@now_option
@click.option("--dry-run", is_flag=True, help="Plan and render, but write and record nothing.")
@click.option(
    "--rebuild", is_flag=True, help="Regenerate every published issue and feed from the store."
)
@wait_option
@click.pass_obj
def publish(obj: Context, now: datetime, dry_run: bool, rebuild: bool, wait: bool) -> None:
    """Publish the articles collected since the last issue as a new dated issue.

    Writes issues/<date>/ (web version, article pages, email.html, email.txt,
    email.eml, issue.json) and refreshes feed.xml, atom.xml, feed.json,
    issues.xml and the archive page. A published issue folder is never
    rewritten, except by --rebuild.
    """
    settings = obj.settings()
    with _exclusive(obj, settings, "publish", wait=wait, skip=dry_run):
        _publish_and_show(obj, settings, now, dry_run=dry_run, rebuild=rebuild)


@cli.command()
@now_option
@wait_option
@click.pass_obj
def build(obj: Context, now: datetime, wait: bool) -> None:
    """Collect, then publish: what `make demo` and a daily cron job run.

    Files that fail to collect are reported and left out; the rest is
    published, and the exit status is 1.
    """
    settings = obj.settings()
    with _progress(obj.err, "Collecting") as progress:
        report = _run(obj, lambda: collect_articles(settings, now, progress))
    _print_problems(obj.err, report.problems)
    _print_collect_table(obj.out, report, settings)
    with _exclusive(obj, settings, "publish", wait=wait):
        _publish_and_show(obj, settings, now, dry_run=False, rebuild=False)
    if report.failed:
        sys.exit(1)


def collect_articles(settings: Settings, now: datetime, progress: Any) -> CollectReport:
    from publisher.pipeline import collect as run_collect

    return run_collect(settings, now=now, progress=progress)


def _publish_and_show(
    obj: Context, settings: Settings, now: datetime, *, dry_run: bool, rebuild: bool
) -> None:
    from publisher.pipeline import publish as run_publish

    report: PublishReport = _run(
        obj, lambda: run_publish(settings, now=now, dry_run=dry_run, rebuild=rebuild)
    )
    _print_problems(obj.err, report.problems)
    out = obj.out
    output = _shown_path(settings.output_dir)
    if rebuild:
        verb = "Would rebuild" if dry_run else "Rebuilt"
        out.print(f"{verb} {report.rebuilt} issue folders and the site files in {output}/")
    elif report.issue is None:
        out.print(
            "Nothing new to publish: every collected article is in an issue already. "
            "Add files to articles/ and run `publisher build`."
        )
    else:
        issue = report.issue
        table = Table(
            title=("Would publish" if dry_run else "Published") + f" issue #{issue.number}",
            title_justify="left",
        )
        for column in ("folder", "articles", "digest", "title"):
            table.add_column(column)
        table.add_row(issue.folder, str(len(issue.article_ids)), report.digest_form, issue.title)
        out.print(table)
        if not dry_run:
            folder = f"{output}/{issue.folder}"
            out.print(f"  web version   {folder}/index.html")
            out.print(f"  email digest  {folder}/email.html  (plain text: email.txt)")
            out.print(f"  test message  {folder}/email.eml")
    if not dry_run:
        out.print(f"  feeds         {output}/feed.xml  atom.xml  feed.json  issues.xml")
        out.print(f"  archive       {output}/index.html")


def _shown_path(path: Path) -> str:
    """A path relative to the working folder when it lies below it, else absolute."""
    try:
        return str(path.relative_to(Path.cwd()))
    except ValueError:
        return str(path)


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
    finally:
        # The interpreter's last garbage collection walks every object the libraries made at
        # import, ~50 ms of every command. Everything is written and closed by now; atexit
        # handlers and finalizers still run, only that walk is skipped.
        gc.freeze()


# ---------------------------------------------------------------- delivery (issue 5)

SEND_EPILOG = """\b
Examples:
  publisher send                   send the newest issue to every active subscriber
  publisher send 12                send (or go on sending) issue #12
  publisher send --dry-run         write the messages as .eml files under state/dry-run/
  publisher send --test me@example.org
                                   one message to yourself; the outbox is not touched
  publisher send --retry-failed 12 queue issue #12's failed recipients again and send

\b
Each message is recorded as sent the moment the server accepts it, so a crash, a
Ctrl-C or a dead server loses nothing: run the command again and it goes on.
Temporary refusals (4xx) are retried later with growing waits; run `publisher send`
again (from cron or the scheduler) to deliver them once due.
Needs $PUBLISHER_TOKEN_KEY (see [delivery] token_key_env) and, with a login,
$PUBLISHER_SMTP_PASSWORD (see [smtp] password_env).
"""


@cli.command(epilog=SEND_EPILOG)
@click.argument("issue", type=int, required=False)
@click.option("--dry-run", is_flag=True, help="Write the messages as .eml files; send nothing.")
@click.option(
    "--test",
    "test_address",
    metavar="ADDRESS",
    help="Send one message to ADDRESS only; the outbox is left alone.",
)
@click.option(
    "--retry-failed",
    "retry_issue",
    type=int,
    metavar="ISSUE",
    help="Queue the failed recipients of ISSUE again, then send it.",
)
@now_option
@wait_option
@click.option(
    "--shared",
    is_flag=True,
    help="PostgreSQL: join a send under way as one more worker instead of waiting for it.",
)
@click.pass_obj
def send(
    obj: Context,
    issue: int | None,
    dry_run: bool,
    test_address: str | None,
    retry_issue: int | None,
    now: datetime,
    wait: bool,
    shared: bool,
) -> None:
    """Deliver an issue's digest to the subscribers (the newest issue by default).

    Every active subscriber gets the issue exactly once; the summary shows where the
    issue stands. The exit status is 1 if a recipient failed or the run had to stop.
    """
    from publisher import pipeline

    if retry_issue is not None and issue is not None and retry_issue != issue:
        raise click.UsageError(f"ISSUE {issue} and --retry-failed {retry_issue} disagree")
    if dry_run and test_address:
        raise click.UsageError("use --dry-run or --test, not both")
    settings = obj.settings()
    if shared and settings.database_url.startswith("sqlite"):
        raise click.UsageError(
            "--shared needs a PostgreSQL store; on SQLite one send runs at a time"
        )
    alone = not (dry_run or test_address or shared)  # workers share the outbox's row claims
    with (
        _exclusive(obj, settings, "send", wait=wait, skip=not alone),
        _progress(obj.err, "Writing" if dry_run else "Sending") as progress,
    ):
        report = _run(
            obj,
            lambda: pipeline.send(
                settings,
                now=now,
                issue_number=retry_issue if retry_issue is not None else issue,
                dry_run=dry_run,
                test_address=test_address,
                retry_failed=retry_issue is not None,
                progress=progress,
            ),
        )
    _print_send_report(obj, report)
    if report.stopped or report.failed:
        sys.exit(1)


def _print_send_report(obj: Context, report: SendReport) -> None:
    out = obj.out
    if report.test_address:
        out.print(f"Sent issue #{report.issue_number} to {report.test_address} (test only).")
        return
    if report.dry_run_dir:
        out.print(f"Wrote {report.written} message(s) to {report.dry_run_dir}/ (nothing sent).")
        return
    if report.queued or report.requeued:
        out.print(
            f"Queued {report.queued} new recipient(s)"
            + (f", {report.requeued} failed again" if report.requeued else "")
            + f" for issue #{report.issue_number}."
        )
    out.print(
        f"This run: {report.sent} sent, {report.deferred} deferred, "
        f"{report.failed} failed, {report.skipped} skipped."
    )
    if report.stopped:
        obj.err.print("stopped: ", style="bold red", end="")
        obj.err.print(report.stopped, markup=False, highlight=False, soft_wrap=True)
    if report.status is not None:
        _print_delivery_table(out, [report.status])


def _state_label(status: DeliveryStatus) -> str:
    if status.finished:
        return "[green]finished[/]"
    if status.failed:
        return f"[red]{status.failed} failed[/]: publisher status --failed {status.issue_number}"
    if status.deferred:
        when = status.next_attempt_at
        return f"[yellow]retrying[/] from {when:%Y-%m-%d %H:%M} UTC" if when else "retrying"
    return "in progress" if status.total else "not sent"


def _print_delivery_table(console: Console, statuses: list[DeliveryStatus]) -> None:
    table = Table(title="Delivery", title_justify="left")
    table.add_column("issue", justify="right")
    table.add_column("title", overflow="ellipsis", max_width=40)
    for column in ("sent", "pending", "deferred", "failed", "skipped"):
        table.add_column(column, justify="right")
    table.add_column("state")
    for s in statuses:
        table.add_row(
            f"#{s.issue_number}",
            Text(s.title),
            str(s.sent),
            str(s.pending),
            f"[yellow]{s.deferred}[/]" if s.deferred else "0",
            f"[red]{s.failed}[/]" if s.failed else "0",
            str(s.skipped),
            _state_label(s),
        )
    console.print(table)
    for s in statuses:
        if s.latest_errors:
            console.print(f"Latest errors of #{s.issue_number}:")
            for line in s.latest_errors:
                console.print(f"  {line}", markup=False, highlight=False, soft_wrap=True)


STATUS_EPILOG = """\b
Examples:
  publisher status                 sent / pending / deferred / failed per issue
  publisher status --failed 12     every failed recipient of #12 with the server's reply
  publisher status --failed 12 --csv > failed.csv
"""


@cli.command(epilog=STATUS_EPILOG)
@click.option(
    "--failed", "failed_issue", type=int, metavar="ISSUE", help="List ISSUE's failed recipients."
)
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV instead of a table.")
@click.option("--limit", default=10, show_default=True, help="How many issues to show.")
@click.pass_obj
def status(obj: Context, failed_issue: int | None, as_csv: bool, limit: int) -> None:
    """Show how the delivery of each issue stands.

    An issue is "finished" only when nothing is pending, deferred or failed.
    """
    from publisher import pipeline

    settings = obj.settings()
    if failed_issue is not None:
        rows = pipeline.failed_deliveries(settings, failed_issue)
        if as_csv:
            writer = csv.writer(sys.stdout, lineterminator="\n")
            writer.writerow(("email", "reply", "attempts", "last_attempt_at", "message_id"))
            for f in rows:
                when = f.last_attempt_at.isoformat() if f.last_attempt_at else ""
                writer.writerow((f.email, f.reply, f.attempts, when, f.message_id))
            return
        table = Table(title=f"Failed recipients of #{failed_issue}", title_justify="left")
        for column in ("email", "reply", "attempts", "last attempt"):
            table.add_column(column)
        for f in rows:
            when = f"{f.last_attempt_at:%Y-%m-%d %H:%M}" if f.last_attempt_at else ""
            table.add_row(Text(f.email), Text(f.reply), str(f.attempts), when)
        obj.out.print(table)
        return
    statuses = pipeline.delivery_status(settings, limit=limit)
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(("issue", "title", "sent", "pending", "deferred", "failed", "skipped"))
        for s in statuses:
            writer.writerow(
                (s.issue_number, s.title, s.sent, s.pending, s.deferred, s.failed, s.skipped)
            )
        return
    if not statuses:
        obj.out.print("No issue has been sent yet; see `publisher send --help`.")
    else:
        _print_delivery_table(obj.out, statuses)
    _print_schedule_status(obj, settings)  # issue 6


@cli.command()
@click.argument("token")
@now_option
@click.pass_obj
def unsubscribe(obj: Context, token: str, now: datetime) -> None:
    """Apply an unsubscribe TOKEN (the part after token= in a link, or the whole link).

    \b
    Example:
      publisher unsubscribe 42.Xq3v9TgJ1mO0bq2wYbqS1A
    """
    from publisher import pipeline

    result = pipeline.unsubscribe(obj.settings(), token, now=now)
    verb = "was already unsubscribed" if result.already else "is unsubscribed"
    obj.out.print(f"{result.email} {verb}.", markup=False, highlight=False)


SUBSCRIBERS_EPILOG = """\b
Examples:
  publisher subscribers add jane@example.org --name "Jane Doe"
  publisher subscribers remove jane@example.org        (kept as unsubscribed)
  publisher subscribers remove jane@example.org --erase  (forgotten entirely)
  publisher subscribers list --status bounced
  publisher subscribers import people.csv   (columns: email[,name]; a header row is optional)
  publisher subscribers export all.csv
"""


@cli.group(epilog=SUBSCRIBERS_EPILOG)
def subscribers() -> None:
    """Manage the subscriber list in the store.

    Addresses are checked (syntax only, no DNS) and stored in lower case.
    """


@subscribers.command("add")
@click.argument("email")
@click.option("--name", default="", help="The name used in the greeting.")
@click.option("--reactivate", is_flag=True, help="Bring back someone who unsubscribed or bounced.")
@now_option
@click.pass_obj
def subscribers_add(obj: Context, email: str, name: str, reactivate: bool, now: datetime) -> None:
    """Add EMAIL as an active subscriber."""
    from publisher import pipeline

    subscriber, created = pipeline.add_subscriber(
        obj.settings(), email, now=now, name=name, reactivate=reactivate
    )
    verb = "added" if created else "is active again" if reactivate else "was already subscribed"
    obj.out.print(f"{subscriber.email} {verb}.", markup=False, highlight=False)


@subscribers.command("remove")
@click.argument("email")
@click.option("--erase", is_flag=True, help="Delete them and their delivery records for good.")
@now_option
@click.pass_obj
def subscribers_remove(obj: Context, email: str, erase: bool, now: datetime) -> None:
    """Unsubscribe EMAIL (or erase every trace of it with --erase)."""
    from publisher import pipeline

    subscriber = pipeline.remove_subscriber(obj.settings(), email, now=now, erase=erase)
    verb = "erased" if erase else "unsubscribed"
    obj.out.print(f"{subscriber.email} {verb}.", markup=False, highlight=False)


@subscribers.command("list")
@click.option(
    "--status",
    "status_filter",
    type=click.Choice(["pending", "active", "unsubscribed", "bounced"]),
    help="Only subscribers with this status.",
)
@click.option("--limit", default=100, show_default=True, help="Show at most this many.")
@click.pass_obj
def subscribers_list(obj: Context, status_filter: str | None, limit: int) -> None:
    """List subscribers (use `export` for all of them)."""
    from publisher import pipeline

    status_value = cast("SubscriberStatus | None", status_filter)
    shown, counts = pipeline.list_subscribers(obj.settings(), status=status_value, limit=limit)
    table = Table(title="Subscribers", title_justify="left")
    for column in ("email", "name", "status", "since", "bounces"):
        table.add_column(column)
    for s in shown:
        table.add_row(
            Text(s.email), Text(s.name), s.status, f"{s.created_at:%Y-%m-%d}", str(s.bounce_count)
        )
    obj.out.print(table)
    total = sum(counts.values())
    summary = ", ".join(f"{n} {k}" for k, n in sorted(counts.items())) or "none"
    obj.out.print(f"{total} subscriber(s): {summary}.")


@subscribers.command("import")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@now_option
@click.pass_obj
def subscribers_import(obj: Context, file: Path, now: datetime) -> None:
    """Add every address in a CSV FILE; bad rows are reported by line, the rest imported.

    Running it twice changes nothing: addresses already known keep their status, so
    someone who unsubscribed is never signed up again by an import.
    """
    from publisher import pipeline

    settings = obj.settings()
    report = _run(obj, lambda: pipeline.import_subscribers(settings, file, now=now))
    _print_problems(obj.err, report.problems)
    table = Table(title=f"Imported from {file}", title_justify="left")
    for column in ("new", "already known", "bad rows"):
        table.add_column(column, justify="right")
    bad = len(report.problems)
    table.add_row(str(report.new), str(report.unchanged), f"[red]{bad}[/]" if bad else "0")
    obj.out.print(table)
    if bad:
        sys.exit(1)


@subscribers.command("export")
@click.argument("file", type=click.Path(dir_okay=False, path_type=Path))
@click.pass_obj
def subscribers_export(obj: Context, file: Path) -> None:
    """Write every subscriber (any status) to a CSV FILE."""
    from publisher import pipeline

    count = pipeline.export_subscribers(obj.settings(), file)
    obj.out.print(f"Wrote {count} subscriber(s) to {file}.", markup=False, highlight=False)


# ---------------------------------------------------------------- server (issue 7)

SERVE_EPILOG = """\b
Examples:
  publisher serve                        listen on [server] host and port (127.0.0.1:8000)
  publisher serve --port 8080
  publisher serve --host 0.0.0.0         listen on every interface (prefer a reverse proxy)

\b
Serves the output folder (issues/) with its feeds, and takes the subscribe form:
POST /subscribe sends a confirmation mail, GET /confirm?token=... makes the address
active and sends a welcome, /unsubscribe?token=... shows a one-button page and takes
one-click unsubscribes (RFC 8058). Needs $PUBLISHER_TOKEN_KEY (see [delivery]
token_key_env) and the [smtp] settings to send mail. Stop it with Ctrl-C.
"""


@cli.command(epilog=SERVE_EPILOG)
@click.option("--host", help="Address to listen on (default: [server] host).")
@click.option("--port", type=click.IntRange(0, 65535), help="Port (default: [server] port).")
@click.pass_obj
def serve(obj: Context, host: str | None, port: int | None) -> None:
    """Serve the site, and subscribe / confirm / unsubscribe, until stopped."""
    from publisher import server

    settings = obj.settings()

    def ready(url: str) -> None:
        shown = _shown_path(settings.output_dir)
        obj.out.print(f"Serving {shown}/ at {url} (Ctrl-C stops)", markup=False, highlight=False)
        obj.out.file.flush()  # a service manager reading a pipe should see it now

    server.serve(settings, host=host, port=port, ready=ready)


# ---------------------------------------------------------------- scheduling (issue 6)


@contextmanager
def _exclusive(
    obj: Context, settings: Settings, name: str, *, wait: bool, skip: bool = False
) -> Iterator[None]:
    """Hold the store's `name` lock around a command, as the scheduler's job does; a dry
    run or a test message (which change nothing) goes without it."""
    if skip:
        yield
        return
    from publisher import pipeline

    def tell(holder: LockHolder) -> None:
        obj.err.print(f"waiting for {holder.describe()} ...", markup=False, highlight=False)

    with pipeline.exclusive(settings, name, purpose=f"publisher {name}", wait=wait, on_wait=tell):
        yield


RUN_EPILOG = """\b
Examples:
  publisher run                 collect, publish and send as [schedule] in settings.toml says
  publisher run --once          run each job whose time has come, then exit (for cron)
  publisher run --wait          stand by while another `publisher run` holds the store,
                                and take over when it stops

\b
One log line per job run says what it did. SIGTERM or Ctrl-C stops it cleanly: the
article or message in hand is finished and recorded, and it exits 0; the next start goes
on where it stopped. A run missed while it was down is made up once at the start if it is
at most [schedule] misfire_grace_time late, and skipped with a log line if it is later.
`publisher status` shows each job's last and next run.
"""


@cli.command(epilog=RUN_EPILOG)
@click.option("--once", is_flag=True, help="Run every job that is due now, then exit.")
@click.option(
    "--wait",
    is_flag=True,
    help="If another `publisher run` holds the store, wait and take over when it stops.",
)
@click.pass_obj
def run(obj: Context, once: bool, wait: bool) -> None:
    """Collect, publish and send on the schedule in settings.toml ([schedule]).

    One `publisher run` works a store at a time; a second one exits naming the first
    (pid, host, since when). The exit status of --once is 1 if a job failed.
    """
    from publisher.scheduler import Runner

    settings = obj.settings()
    _log_job_lines(obj.err)
    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        if stop.is_set():
            os.write(2, b"second signal: exiting at once\n")
            os._exit(130)
        # Set from a thread: Event.set() inside a signal handler can deadlock with a wait.
        threading.Thread(target=stop.set, name="stop").start()

    def tell(holder: LockHolder) -> None:
        logging.getLogger("publisher.scheduler").info("waiting for %s", holder.describe())

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    try:
        failed = Runner(settings, stop).run(once=once, wait=wait, on_wait=tell)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    if once and failed:
        sys.exit(1)


def _log_job_lines(err: Console) -> None:
    """`run` logs one line per job: plain timestamped lines for journald and cron mail, the
    rich handler on a terminal. APScheduler's INFO chatter shows only with -v, and its
    executor's missed-run warning never (the scheduler logs a clearer line)."""
    root = logging.getLogger()
    if not err.is_terminal:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(
            logging.Formatter("%(asctime)s %(levelname)s %(message)s", "%Y-%m-%d %H:%M:%S")
        )
        root.handlers = [handler]
    if root.level > logging.INFO:
        logging.getLogger("publisher.scheduler").setLevel(logging.INFO)
    logging.getLogger("apscheduler.executors").setLevel(logging.ERROR)


def _when(moment: datetime | None, zone: ZoneInfo) -> str:
    return "" if moment is None else f"{moment.astimezone(zone):%Y-%m-%d %H:%M}"


def _print_schedule_status(obj: Context, settings: Settings) -> None:
    from publisher import pipeline

    status = pipeline.schedule_status(settings)
    if not any(job.schedule or job.last for job in status.jobs):
        return
    zone = settings.schedule_zone
    table = Table(title=f"Schedule ({status.zone})", title_justify="left")
    for column in ("job", "schedule", "last run"):
        table.add_column(column, no_wrap=True)
    table.add_column("result", ratio=1)  # the one column that wraps on a narrow terminal
    table.add_column("next run", no_wrap=True)
    styles = {"ok": "green", "failed": "red", "missed": "yellow", "stopped": "yellow"}
    for job in status.jobs:
        last = job.last
        if last is None:
            when, result = "never", Text("")
        else:
            when = _when(last.finished_at or last.started_at or last.scheduled_for, zone)
            result = Text(last.outcome, style=styles.get(last.outcome, ""))
            if last.summary:
                result.append(f": {last.summary}")
        table.add_row(
            job.job,
            Text(job.schedule or "not scheduled"),
            when,
            result,
            _when(job.next_run, zone) or ("-" if not job.schedule else "at the next start"),
        )
    obj.out.print(table)
    runner = next((h for h in status.locks if h.name == "scheduler"), None)
    line = f"running: {runner.describe()}" if runner else "not running"
    obj.out.print(f"publisher run: {line}", markup=False, highlight=False)
    for holder in status.locks:
        if holder.name != "scheduler":
            obj.out.print(f"{holder.name} lock: {holder.describe()}", markup=False, highlight=False)
