"""Collect: article files, then the upstream feeds that are due, into the store."""

from __future__ import annotations

import hashlib
import logging
import threading
from datetime import datetime

from slugify import slugify

from publisher.errors import SourceError
from publisher.model import (
    Article,
    CollectReport,
    Problem,
    Progress,
    article_id,
    unique_slug,
)
from publisher.settings import Settings
from publisher.sources.files import (
    ArticleFile,
    parse_article,
    read_article_bytes,
    scan_article_files,
)
from publisher.store import FileState, Store

log = logging.getLogger(__name__)


def collect(
    settings: Settings,
    *,
    now: datetime,
    progress: Progress | None = None,
    stop: threading.Event | None = None,
) -> CollectReport:
    """Read new or changed article files, then poll the feeds that are due, into the store.

    One transaction per file and per feed; a failing file or feed is a problem in the report.
    A set `stop` ends the run after the file in hand; the rest is read next time.
    """
    root = settings.articles_dir
    has_files = root.is_dir()
    if not has_files and not settings.sources.feeds:
        raise SourceError(
            "articles folder not found",
            where=str(root),
            hint="create it, or set articles.dir in the settings",
        )
    with Store.open(settings.database_url) as store:
        # A site that only follows feeds needs no articles folder.
        report = (
            _collect_files(store, settings, now, progress, stop) if has_files else CollectReport()
        )
        if settings.sources.feeds and not (stop is not None and stop.is_set()):
            # Imported here: httpx and feedparser load only for sites that follow feeds.
            from publisher.pipeline.feed_collection import collect_feeds

            report = collect_feeds(store, settings, now, progress, report)
        return report


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
            break  # stopping: files not read yet are read by the next run
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
