"""The use cases (collect, publish): the only module that imports the stages and wires them."""

from __future__ import annotations

import hashlib
import itertools
import json
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from pathlib import Path, PurePosixPath
from typing import Any
from urllib.parse import parse_qs, urlsplit

from jinja2 import Environment
from slugify import slugify

from publisher.delivery.addresses import (
    clean_name,
    normalise_email,
    read_subscriber_csv,
    write_subscriber_csv,
)
from publisher.delivery.dkim import load_signer
from publisher.delivery.message import (
    ListIdentity,
    MessageFactory,
    build_template,
    list_identity,
    render_eml,
)
from publisher.delivery.outbox import OutboxRun, Tally
from publisher.delivery.pacing import RateLimiter
from publisher.delivery.smtp import Connection, smtp_password
from publisher.delivery.tokens import check_token, load_key, token_subscriber
from publisher.errors import DeliveryError, SourceError, WriteError
from publisher.locks import HeldLock, hold
from publisher.model import (
    Article,
    CollectReport,
    DeliveryBacklog,
    DeliveryStatus,
    Digest,
    FailedDelivery,
    ImportReport,
    Issue,
    IssueContent,
    IssueSummary,
    JobRun,
    JobStatus,
    LockHolder,
    OutboxItem,
    Problem,
    PublishedArticle,
    PublishReport,
    ScheduleStatus,
    SendReport,
    Subscriber,
    SubscriberStatus,
    UnsubscribeResult,
    article_id,
    unique_slug,
)
from publisher.plan import plan_issue
from publisher.render.digest import (
    make_environment,
    render_archive,
    render_assets,
    render_digest,
    render_issue_pages,
)
from publisher.render.feeds import render_atom, render_issues_feed, render_json_feed, render_rss
from publisher.render.links import local_image_refs, publish_html
from publisher.settings import Settings
from publisher.sources.files import (
    ArticleFile,
    parse_article,
    read_article_bytes,
    read_image,
    scan_article_files,
)
from publisher.store import FileState, Store
from publisher.write import remove_stale_temp, write_issue, write_site_files

log = logging.getLogger(__name__)

Progress = Callable[[int, int], None]  # (done, total)


def collect(
    settings: Settings,
    *,
    now: datetime,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> CollectReport:
    """Read every new or changed article file into the store; one transaction per file.

    A set `stop` ends the run after the file in hand; the rest is read next time.
    """
    root = settings.articles_dir
    if not root.is_dir():
        raise SourceError(
            "articles folder not found",
            where=str(root),
            hint="create it, or set articles.dir in the settings",
        )
    with Store.open(settings.database_url) as store:
        return _collect_files(store, settings, now, progress, stop)


def _collect_files(
    store: Store,
    settings: Settings,
    now: datetime,
    progress: Progress | None,
    stop: threading.Event | None = None,
) -> CollectReport:
    files, refused = scan_article_files(settings.articles_dir)
    shown = settings.articles.dir.rstrip("/")
    problems = [Problem(f"{shown}/{key}", message) for key, message in refused]
    states = store.file_states()
    taken: set[str] | None = None  # loaded on the first new article only
    new = updated = unchanged = 0
    for done, file in enumerate(files, start=1):
        if stop is not None and stop.is_set():
            break  # issue 6: stopping; files not read yet are read by the next run
        state = states.get(file.key)
        where = f"{shown}/{file.key}"
        if (
            state
            and not state.missing
            and (state.size, state.mtime_ns) == (file.size, file.mtime_ns)
        ):
            unchanged += 1
        else:
            try:
                outcome = _collect_one(store, settings, file, state, now, taken)
            except SourceError as exc:
                problems.append(Problem(where, str(exc)))
            except Exception as exc:  # a parser bug must not stop the batch
                log.debug("unexpected error reading %s", where, exc_info=True)
                problems.append(
                    Problem(where, f"unexpected {type(exc).__name__}: {exc}; please report it")
                )
            else:
                kind, warnings, taken = outcome
                log.info("%s: %s", where, kind)
                problems.extend(Problem(where, w, "warning") for w in warnings)
                new += kind == "new"
                updated += kind == "updated"
                unchanged += kind == "unchanged"
        if progress is not None:
            progress(done, len(files))

    present = {file.key for file in files}
    gone = {key: state for key, state in states.items() if key not in present}
    newly_gone = [state.article_id for state in gone.values() if not state.missing]
    store.set_source_missing(newly_gone, True)
    problems.extend(
        Problem(
            f"{shown}/{key}",
            "source missing: the file is gone; its article and permalink stay",
            "warning",
        )
        for key, state in sorted(gone.items())
        if not state.missing
    )
    return CollectReport(
        new=new,
        updated=updated,
        unchanged=unchanged,
        source_missing=tuple(sorted(gone)),
        problems=tuple(problems),
    )


def _collect_one(
    store: Store,
    settings: Settings,
    file: ArticleFile,
    state: FileState | None,
    now: datetime,
    taken: set[str] | None,
) -> tuple[str, list[str], set[str] | None]:
    data = read_article_bytes(file, settings.articles.max_bytes)
    digest = hashlib.sha256(data).hexdigest()
    if state is not None and state.content_hash == digest:
        store.record_file_seen(state.article_id, file.size, file.mtime_ns)
        return "unchanged", [], taken
    parsed = parse_article(file.path.name, data, settings.zone)
    warnings = list(parsed.warnings)
    if state is None:
        if taken is None:
            taken = store.slugs()
        slug = unique_slug(parsed.slug or parsed.title, taken)
        taken.add(slug)
        kind, date, collected_at, changed = "new", parsed.date or now, now, None
    else:
        slug = state.slug
        if parsed.slug and slugify(parsed.slug) != slug:
            warnings.append(f"slug stays {slug!r}: a published permalink never changes")
        kind, date, collected_at, changed = (
            "updated",
            parsed.date or state.date,
            state.collected_at,
            now,
        )
    article = Article(
        id=state.article_id if state else article_id("file", file.key),
        slug=slug,
        title=parsed.title,
        content_html=parsed.content_html,
        summary=parsed.summary,
        date=date,
        collected_at=collected_at,
        source_kind="file",
        source=file.key,
        author=parsed.author,
        publication=parsed.publication,
        updated=changed,
        url=parsed.url,
        tags=parsed.tags,
        draft=parsed.draft,
    )
    store.save_article(article, size=file.size, mtime_ns=file.mtime_ns, content_hash=digest)
    return kind, warnings, taken


# ---------------------------------------------------------------------------- publish


def publish(
    settings: Settings, *, now: datetime, dry_run: bool = False, rebuild: bool = False
) -> PublishReport:
    """Plan the next issue, render everything in memory, then write it; refresh feeds and archive.

    With `rebuild`, every issue folder is regenerated from the store instead (nothing new is
    planned). With `dry_run`, nothing is written or recorded.
    """
    output = settings.output_dir
    problems: list[Problem] = []
    issue: Issue | None = None
    digest_form = ""
    rebuilt = 0
    with Store.open(settings.database_url) as store:
        env = make_environment(settings)
        if not dry_run:
            remove_stale_temp(output)
        if rebuild:
            jobs = []
            for old, _titles in reversed(store.issues_with_titles()):
                by_id = store.articles_by_id(list(old.article_ids))
                jobs.append((old, [by_id[aid] for aid in old.article_ids if aid in by_id]))
            for old, files, issue_problems in _render_issues(settings, env, jobs):
                problems.extend(issue_problems)
                if not dry_run:
                    write_issue(output, old.folder, files, replace=True)
                rebuilt += 1
        else:
            plan = plan_issue(store.unissued_articles(), store.get_issue(), now, settings)
            if plan is not None:
                issue = plan.to_issue()
                files, digest_form = _render_issue(settings, env, issue, plan.articles, problems)
                if not dry_run:
                    write_issue(output, issue.folder, files, replace=_is_orphan(output, issue))
                    store.save_issue(issue)
        site = _render_site(store, settings, env, now)
        changed = sorted(site) if dry_run else write_site_files(output, site)
    return PublishReport(
        issue=issue,
        site_files_changed=tuple(changed),
        rebuilt=rebuilt,
        digest_form=digest_form,
        dry_run=dry_run,
        problems=tuple(problems),
    )


def _is_orphan(output: Path, issue: Issue) -> bool:
    """A folder with the planned name that the store does not know: left by a crashed run?"""
    target = output / issue.folder
    if not target.exists():
        return False
    try:
        number = json.loads((target / "issue.json").read_text(encoding="utf-8")).get("number")
    except (OSError, ValueError):
        number = None
    if number in (None, issue.number):
        return True  # written, then the run died before the store recorded it
    raise WriteError(
        f"holds issue #{number}, which the store does not know",
        where=str(target),
        hint="the store and the output folder disagree (was the store replaced?); "
        "move the folder away or run `publisher publish --rebuild`",
    )


def _render_issue(
    settings: Settings,
    env: Environment,
    issue: Issue,
    articles: Sequence[Article],
    problems: list[Problem],
) -> tuple[dict[str, bytes], str]:
    """Every file of one issue folder, in memory; images read from beside the articles."""
    images: dict[str, bytes] = {}
    published = []
    for article in articles:
        wanted = _image_names(article) if article.source_kind == "file" else {}
        present: set[str] = set()
        for ref, name in wanted.items():
            data = _read_image(settings, article, ref, name, issue.folder, problems)
            if data is not None:
                images[name] = data
                present.add(name)
        published.append(_published(settings, article, issue.folder, present.__contains__))
    titles = tuple(p.article.title for p in published)
    content = IssueContent(summary=_summary(settings, issue, titles), articles=tuple(published))
    digest = render_digest(env, settings, content)
    files = dict(render_issue_pages(env, settings, content))
    files.update(images)
    files["email.html"] = digest.html.encode("utf-8")
    files["email.txt"] = digest.text.encode("utf-8")
    files["email.eml"] = render_eml(settings, issue, digest)
    files["issue.json"] = _manifest(content, files)
    return files, digest.form


# Below this many issues a rebuild renders in-process: starting workers would cost more.
PARALLEL_REBUILD_MIN = 8
_worker_env: Environment | None = None  # one Jinja2 environment per rebuild worker process


def _render_issues(
    settings: Settings, env: Environment, jobs: list[tuple[Issue, list[Article]]]
) -> Iterator[tuple[Issue, dict[str, bytes], list[Problem]]]:
    """Render many issues, in order, on every core: rendering is pure, writing stays here."""
    workers = min(os.cpu_count() or 1, 4)
    if workers < 2 or len(jobs) < PARALLEL_REBUILD_MIN:
        for issue, articles in jobs:
            yield (issue, *_render_issue_job(settings, env, issue, articles))
        return
    with ProcessPoolExecutor(workers, initializer=_init_worker, initargs=(settings,)) as pool:
        results = pool.map(_render_issue_in_worker, jobs, [settings] * len(jobs), chunksize=4)
        for (issue, _articles), (files, issue_problems) in zip(jobs, results, strict=True):
            yield issue, files, issue_problems


def _init_worker(settings: Settings) -> None:
    global _worker_env  # per-process state of a pool worker, set once at its start
    _worker_env = make_environment(settings)


def _render_issue_in_worker(
    job: tuple[Issue, list[Article]], settings: Settings
) -> tuple[dict[str, bytes], list[Problem]]:
    assert _worker_env is not None
    return _render_issue_job(settings, _worker_env, *job)


def _render_issue_job(
    settings: Settings, env: Environment, issue: Issue, articles: list[Article]
) -> tuple[dict[str, bytes], list[Problem]]:
    problems: list[Problem] = []
    files, _form = _render_issue(settings, env, issue, articles, problems)
    return files, problems


def _image_names(article: Article) -> dict[str, str]:
    """Relative image src -> its stable name in the issue folder, `<slug>/<file name>`."""
    names: dict[str, str] = {}
    for ref in local_image_refs(article.content_html):
        base = PurePosixPath(ref.split("?", 1)[0].split("#", 1)[0]).name
        stem, suffix = PurePosixPath(base).stem, PurePosixPath(base).suffix.lower()
        stem = slugify(stem) or "image"
        name, n = f"{article.slug}/{stem}{suffix}", 2
        while name in names.values():
            name, n = f"{article.slug}/{stem}-{n}{suffix}", n + 1
        names[ref] = name
    return names


def _read_image(
    settings: Settings,
    article: Article,
    ref: str,
    name: str,
    folder: str,
    problems: list[Problem],
) -> bytes | None:
    try:
        return read_image(settings.articles_dir, article.source, ref, settings.articles.max_bytes)
    except SourceError as exc:
        # On --rebuild the article's file may be gone while its published copy remains.
        published = settings.output_dir / folder / name
        if published.is_file():
            return published.read_bytes()
        problems.append(
            Problem(f"{settings.articles.dir.rstrip('/')}/{article.source}", str(exc), "warning")
        )
        return None


def _published(
    settings: Settings, article: Article, folder: str, has_image: Callable[[str], bool]
) -> PublishedArticle:
    """The article as readers see it: absolute links, images at their published URLs."""
    site = settings.site.url
    if article.source_kind == "file":
        url = f"{site}{folder}/{article.slug}.html"
        images = {
            ref: f"{site}{folder}/{name}" if has_image(name) else None
            for ref, name in _image_names(article).items()
        }
    else:
        url = article.url or f"{site}{folder}/"
        images = {}
    html = publish_html(article.content_html, url, images, article.title)
    return PublishedArticle(replace(article, content_html=html), folder, url)


@dataclass(frozen=True)
class _ImageOnDisk:
    """Whether an already published issue folder holds an image (it may have been missing)."""

    folder: Path

    def __call__(self, name: str) -> bool:
        return (self.folder / name).is_file()


def _summary(settings: Settings, issue: Issue, titles: tuple[str, ...]) -> IssueSummary:
    return IssueSummary(
        number=issue.number,
        folder=issue.folder,
        published_at=issue.published_at,
        title=issue.title,
        url=f"{settings.site.url}{issue.folder}/",
        article_titles=titles,
    )


def _manifest(content: IssueContent, files: dict[str, bytes]) -> bytes:
    summary = content.summary
    manifest = {
        "number": summary.number,
        "folder": summary.folder,
        "title": summary.title,
        "published_at": summary.published_at.isoformat(),
        "url": summary.url,
        "articles": [
            {"id": p.article.id, "slug": p.article.slug, "title": p.article.title, "url": p.url}
            for p in content.articles
        ],
        "files": {name: hashlib.sha256(data).hexdigest() for name, data in sorted(files.items())},
    }
    return (json.dumps(manifest, indent=2, ensure_ascii=False) + "\n").encode("utf-8")


def _render_site(
    store: Store, settings: Settings, env: Environment, now: datetime
) -> dict[str, bytes]:
    """Feeds, archive and theme assets for the issues/ root; cost follows feed size."""
    latest = [
        _published(settings, article, folder, _ImageOnDisk(settings.output_dir / folder))
        for article, folder in store.published_articles(settings.feeds.max_items)
    ]
    summaries = [_summary(settings, i, titles) for i, titles in store.issues_with_titles()]
    files = {
        "feed.xml": render_rss(settings, latest, now),
        "atom.xml": render_atom(settings, latest, now),
        "feed.json": render_json_feed(settings, latest, now),
        "issues.xml": render_issues_feed(settings, summaries[: settings.feeds.max_items], now),
        "index.html": render_archive(env, settings, summaries),
    }
    files.update(render_assets(env, settings))
    return files


# ---------------------------------------------------------------- delivery (issue 5)


def add_subscriber(
    settings: Settings, email: str, *, now: datetime, name: str = "", reactivate: bool = False
) -> tuple[Subscriber, bool]:
    """Add an active subscriber; returns (subscriber, created).

    Someone who unsubscribed or bounced comes back only with `reactivate` (they asked to).
    """
    address = _checked_address(email)
    with Store.open(settings.database_url) as store:
        subscriber, created = store.add_subscriber(address, clean_name(name), now=now)
        if created or subscriber.status == "active":
            return subscriber, created
        if subscriber.status in ("unsubscribed", "bounced") and not reactivate:
            raise DeliveryError(
                f"{address} is {subscriber.status}",
                hint="add --reactivate only if they asked to receive the newsletter again",
            )
        store.set_subscriber_status(subscriber.id, "active", now=now)
        return _must_get(store, subscriber.id), False


def remove_subscriber(
    settings: Settings, email: str, *, now: datetime, erase: bool = False
) -> Subscriber:
    """Unsubscribe someone (kept, so an import never brings them back), or erase them."""
    address = _checked_address(email)
    with Store.open(settings.database_url) as store:
        subscriber = store.get_subscriber(email=address)
        if subscriber is None:
            raise DeliveryError(
                f"{address} is not a subscriber", hint="see `publisher subscribers list`"
            )
        if erase:
            store.delete_subscriber(subscriber.id)
        elif subscriber.status != "unsubscribed":
            store.set_subscriber_status(subscriber.id, "unsubscribed", now=now)
        return subscriber


def list_subscribers(
    settings: Settings, *, status: SubscriberStatus | None = None, limit: int = 100
) -> tuple[list[Subscriber], dict[str, int]]:
    """The first `limit` subscribers (with `status`), and how many there are of each status."""
    with Store.open(settings.database_url) as store:
        shown = list(itertools.islice(store.iter_subscribers(status), limit))
        return shown, store.count_subscribers()


def import_subscribers(settings: Settings, path: Path, *, now: datetime) -> ImportReport:
    """Add every good row of a CSV file as an active subscriber; each bad row is a problem.

    Idempotent: addresses already in the store (whatever their status) are left alone.
    """
    problems: list[Problem] = []
    rows = 0

    def good_rows() -> Iterator[tuple[str, str]]:
        nonlocal rows
        for row in read_subscriber_csv(path):
            if isinstance(row, Problem):
                problems.append(row)
            else:
                rows += 1
                yield row.email, row.name

    with Store.open(settings.database_url) as store:
        new = store.import_subscribers(good_rows(), now=now)
    return ImportReport(new=new, unchanged=rows - new, problems=tuple(problems))


def export_subscribers(settings: Settings, path: Path) -> int:
    """Write every subscriber to a CSV file (streamed); returns how many."""
    with Store.open(settings.database_url) as store:
        return write_subscriber_csv(path, store.iter_subscribers())


def unsubscribe(settings: Settings, token: str, *, now: datetime) -> UnsubscribeResult:
    """Apply an unsubscribe token (or a whole unsubscribe link)."""
    if "token=" in token:
        token = parse_qs(urlsplit(token.strip()).query).get("token", [""])[0]
    subscriber_id = token_subscriber(token)
    if subscriber_id is None:
        raise DeliveryError(
            "not an unsubscribe token",
            hint="copy the whole token: the part after token= in the link",
        )
    key = load_key(settings)
    with Store.open(settings.database_url) as store:
        subscriber = store.get_subscriber(subscriber_id=subscriber_id)
        if subscriber is None or not check_token(key, token, subscriber.id, subscriber.email):
            # One answer for both: a token never tells whether an id exists.
            raise DeliveryError(
                "this token matches no subscriber", hint="it may have been mistyped or cut short"
            )
        already = subscriber.status == "unsubscribed"
        if not already:
            store.set_subscriber_status(subscriber.id, "unsubscribed", now=now)
        return UnsubscribeResult(email=subscriber.email, already=already)


def send(
    settings: Settings,
    *,
    now: datetime,
    issue_number: int | None = None,
    dry_run: bool = False,
    test_address: str | None = None,
    retry_failed: bool = False,
    progress: Progress | None = None,
    clock: Callable[[], datetime] | None = None,
    stop: threading.Event | None = None,
) -> SendReport:
    """Deliver an issue (the newest by default) to every active subscriber, exactly once.

    The first run creates the issue's outbox rows; every run sends the rows that are due and
    records each outcome as it happens, so a crashed or stopped run just resumes.
    `dry_run` writes .eml files instead; `test_address` sends one message and leaves the
    outbox alone; `retry_failed` queues the failed rows again first. A set `stop` ends the
    run once the messages in hand are sent and recorded; the rest stays queued.
    """
    clock = clock or _running_clock(now)
    with Store.open(settings.database_url) as store:
        issue = _issue_to_send(store, issue_number)
        digest = _read_digest(settings, issue)
        identity = list_identity(settings)
        key = load_key(settings)
        factory = MessageFactory(
            settings,
            identity,
            build_template(identity, digest),
            issue.number,
            key,
            load_signer(settings, identity.domain),
        )
        if test_address is not None:
            return _send_test(settings, issue, factory, identity, test_address, clock)
        if dry_run:
            return _dry_run(settings, store, issue, factory, now, progress)
        requeued = store.requeue_failed(issue.number, now=now) if retry_failed else 0
        queued = store.enqueue_issue(issue.number, now=now)
        password = smtp_password(settings)
        with store.sender_lock() as only_sender:
            # A run that died (SIGKILL, power cut) left claims behind: take them over.
            timeout = timedelta(seconds=settings.delivery.claim_timeout)
            store.release_claims(claimed_before=None if only_sender else now - timeout)
            total = store.count_due(issue.number, now=now)
            tally = Tally()
            if total:
                already = store.sent_since(now - timedelta(hours=1))
                run = OutboxRun(
                    store,
                    factory,
                    issue_number=issue.number,
                    envelope_from=identity.envelope_from,
                    connect=lambda: Connection(settings.smtp, password),
                    connections=settings.smtp.connections,
                    limiter=RateLimiter(
                        settings.smtp.rate_per_second, settings.smtp.rate_per_hour, already
                    ),
                    settings=settings.delivery,
                    clock=clock,
                    worker=_worker_name(),
                    total=total,
                    progress=progress,
                    stop=stop,
                )
                tally = run.run()
        return SendReport(
            issue_number=issue.number,
            title=issue.title,
            queued=queued,
            requeued=requeued,
            sent=tally.sent,
            deferred=tally.deferred,
            failed=tally.failed,
            skipped=tally.skipped,
            stopped=tally.stopped,
            status=store.delivery_status(issue.number),
        )


def delivery_status(
    settings: Settings, *, issue_number: int | None = None, limit: int = 10
) -> list[DeliveryStatus]:
    """Outbox counts per issue, newest first (one issue when `issue_number` is given)."""
    with Store.open(settings.database_url) as store:
        if issue_number is not None:
            if store.get_issue(issue_number) is None:
                raise DeliveryError(f"there is no issue #{issue_number}")
            return [store.delivery_status(issue_number)]
        return [store.delivery_status(n) for n in store.issues_with_outbox(limit)]


def failed_deliveries(settings: Settings, issue_number: int) -> Iterator[FailedDelivery]:
    """Every recipient of an issue the server refused for good, with its answer (streamed)."""
    with Store.open(settings.database_url) as store:
        if store.get_issue(issue_number) is None:
            raise DeliveryError(f"there is no issue #{issue_number}")
        yield from store.iter_failed(issue_number)


def _checked_address(email: str) -> str:
    try:
        return normalise_email(email)
    except ValueError as exc:
        raise DeliveryError(str(exc), hint="give an address such as jane@example.org") from None


def _must_get(store: Store, subscriber_id: int) -> Subscriber:
    subscriber = store.get_subscriber(subscriber_id=subscriber_id)
    if subscriber is None:  # pragma: no cover - removed between two statements
        raise DeliveryError("the subscriber vanished while being changed; try again")
    return subscriber


def _running_clock(now: datetime) -> Callable[[], datetime]:
    """`now` at the start of the run, moving on with the real time."""
    started = time.monotonic()
    return lambda: now + timedelta(seconds=time.monotonic() - started)


def _worker_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{secrets.token_hex(3)}"[-120:]


def _issue_to_send(store: Store, issue_number: int | None) -> Issue:
    issue = store.get_issue(issue_number)
    if issue is None:
        if issue_number is None:
            raise DeliveryError(
                "there is no issue to send yet", hint="run `publisher publish` first"
            )
        raise DeliveryError(f"there is no issue #{issue_number}", hint="see `publisher status`")
    return issue


def _read_digest(settings: Settings, issue: Issue) -> Digest:
    """The rendered digest of an issue, from its folder under the output root."""
    if issue.folder in ("", ".", "..") or Path(issue.folder).name != issue.folder:
        raise DeliveryError(f"issue #{issue.number} has an unsafe folder name {issue.folder!r}")
    folder = settings.output_dir / issue.folder
    try:
        page = (folder / "email.html").read_text(encoding="utf-8")
        text = (folder / "email.txt").read_text(encoding="utf-8")
    except FileNotFoundError as exc:
        raise DeliveryError(
            f"{exc.filename} not found",
            hint=f"run `publisher publish` first: it writes issue #{issue.number}'s email",
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise DeliveryError(
            f"cannot read issue #{issue.number}'s email ({exc})", where=str(folder)
        ) from None
    return Digest(subject=issue.title, preheader="", html=page, text=text)


def _send_test(
    settings: Settings,
    issue: Issue,
    factory: MessageFactory,
    identity: ListIdentity,
    address: str,
    clock: Callable[[], datetime],
) -> SendReport:
    recipient = _checked_address(address)
    message = factory.build(0, recipient, "", clock())
    connection = Connection(settings.smtp, smtp_password(settings))
    connection.open()
    try:
        reply = connection.send(identity.envelope_from, recipient, message.data)
    finally:
        connection.close()
    if reply.verdict != "accepted":
        raise DeliveryError(
            f"the server did not take the test message at {reply.stage}: {reply.text}",
            where=connection.where,
        )
    return SendReport(issue_number=issue.number, title=issue.title, sent=1, test_address=recipient)


def _dry_run(
    settings: Settings,
    store: Store,
    issue: Issue,
    factory: MessageFactory,
    now: datetime,
    progress: Progress | None,
) -> SendReport:
    """Write what a real run would send now as .eml files; the outbox is not touched."""
    target = settings.resolve(settings.delivery.dry_run_dir) / issue.folder
    if store.has_outbox(issue.number):
        items: Iterator[OutboxItem] = store.iter_due(issue.number, now=now)
        total = store.count_due(issue.number, now=now)
    else:
        items = (
            OutboxItem(0, issue.number, s.id, s.email, s.name, s.status, 0)
            for s in store.iter_subscribers("active")
        )
        total = store.count_subscribers().get("active", 0)
    written = 0
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
        temp = Path(tempfile.mkdtemp(prefix=f".{issue.folder}.", dir=target.parent))
        for item in items:
            if item.subscriber_status != "active":
                continue
            message = factory.build(item.subscriber_id, item.email, item.name, now)
            written += 1
            # Named by number and id only: an address never becomes a file name.
            (temp / f"{written:06d}-{item.subscriber_id}.eml").write_bytes(message.data)
            if progress is not None:
                progress(written, max(total, written))
        if target.exists():
            shutil.rmtree(target)
        temp.replace(target)
    except OSError as exc:
        raise DeliveryError(
            f"cannot write the dry run ({exc.strerror})",
            where=str(target),
            hint="check delivery.dry_run_dir",
        ) from None
    return SendReport(
        issue_number=issue.number,
        title=issue.title,
        written=written,
        dry_run_dir=str(target),
        status=store.delivery_status(issue.number),
    )


# ---------------------------------------------------------------- scheduling (issue 6)

JOB_NAMES = ("collect", "publish", "send")
# Lock name -> (what a second comer is told, what it can do).
_LOCK_TEXTS = {
    "scheduler": (
        "another `publisher run` is running on this store",
        "stop it first, or add --wait to take over when it stops",
    ),
    "publish": ("another publish is under way", "wait for it to end, or add --wait"),
    "send": ("another send is under way", "wait for it to end, or add --wait"),
}


@contextmanager
def exclusive(
    settings: Settings,
    name: str,
    *,
    purpose: str,
    wait: bool = False,
    stop: threading.Event | None = None,
    on_wait: Callable[[LockHolder], None] | None = None,
) -> Iterator[HeldLock]:
    """Hold the store-wide lock `name` ("scheduler", "publish" or "send") around a use case.

    Without `wait` a live holder makes this raise LockedError naming it (purpose, pid, host,
    since when); with `wait` it waits until the lock is free, or its holder dead, or `stop`
    is set (WaitStopped). Works the same on SQLite and PostgreSQL: the lock is a row.
    """
    busy, hint = _LOCK_TEXTS[name]
    with (
        Store.open(settings.database_url) as store,
        hold(
            store,
            name,
            purpose=purpose,
            timeout=settings.schedule.lock_timeout,
            busy=busy,
            hint=hint,
            wait=wait,
            stop=stop,
            on_wait=on_wait,
        ) as held,
    ):
        yield held


def record_job_run(settings: Settings, run: JobRun) -> None:
    """Remember a scheduled job's latest run (shown by `publisher status`)."""
    with Store.open(settings.database_url) as store:
        store.save_job_run(run)


def job_runs(settings: Settings) -> dict[str, JobRun]:
    with Store.open(settings.database_url) as store:
        return store.job_runs()


def delivery_backlog(settings: Settings, *, now: datetime) -> DeliveryBacklog:
    """The newest issue, whether its delivery has started, and how many messages are due."""
    with Store.open(settings.database_url) as store:
        issue = store.get_issue()
        if issue is None:
            return DeliveryBacklog(None, queued=False, due=0)
        return DeliveryBacklog(
            issue,
            queued=store.has_outbox(issue.number),
            due=store.count_due(issue.number, now=now),
        )


def schedule_status(settings: Settings) -> ScheduleStatus:
    """Each job's schedule, last run and next run, and who holds which lock now."""
    with Store.open(settings.database_url) as store:
        runs = store.job_runs()
        next_runs = store.job_next_runs()
        holders = store.lock_holders()
    jobs = tuple(
        JobStatus(
            job=name,
            schedule=getattr(settings.schedule, name),
            last=runs.get(name),
            next_run=next_runs.get(name) if getattr(settings.schedule, name) else None,
        )
        for name in JOB_NAMES
    )
    return ScheduleStatus(jobs=jobs, zone=str(settings.schedule_zone), locks=tuple(holders))


def check_send_ready(settings: Settings) -> None:
    """Fail now, not at the first scheduled send, when a secret delivery needs is missing."""
    load_key(settings)
    smtp_password(settings)


def open_job_store(settings: Settings) -> Any:
    """APScheduler's SQLAlchemyJobStore on the project's database (migrated first); the
    scheduler's shutdown closes it."""
    return Store.open(settings.database_url).job_store()
