"""Publish: plan the next issue, render it in memory, write it; refresh feeds and archive."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass, replace
from datetime import datetime
from pathlib import Path, PurePosixPath

import jinja2
from jinja2 import Environment
from slugify import slugify

from publisher.delivery.message import (
    render_eml,
)
from publisher.errors import SourceError, WriteError
from publisher.model import (
    Article,
    Issue,
    IssueContent,
    IssueSummary,
    Problem,
    PublishedArticle,
    PublishReport,
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
from publisher.store import Store
from publisher.write import (
    SyncPoint,
    install_issues,
    remove_stale_temp,
    write_issue,
    write_issue_temp,
    write_site_files,
)

log = logging.getLogger(__name__)


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
        # Jinja2's per-user cache in the temp folder: compiled templates keyed by their source,
        # so a theme edit is never served stale; a publish then skips ~10 compilations.
        env = make_environment(settings, bytecode_cache=jinja2.FileSystemBytecodeCache())
        if not dry_run:
            remove_stale_temp(output)
        if rebuild:
            rebuilt = _rebuild(settings, env, _rebuild_jobs(store), problems, write=not dry_run)
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
    content = IssueContent(
        summary=issue_summary(settings, issue, titles), articles=tuple(published)
    )
    digest = render_digest(env, settings, content)
    files = dict(render_issue_pages(env, settings, content))
    files.update(images)
    files["email.html"] = digest.html.encode("utf-8")
    files["email.txt"] = digest.text.encode("utf-8")
    files["email.eml"] = render_eml(settings, issue, digest)
    files["issue.json"] = _manifest(content, files)
    return files, digest.form


# The archive lists this many article titles per issue, then "and N more": its size (and the
# cost of every publish) must not grow with the articles of every past issue.
ARCHIVE_TITLES = 5
# A rebuild makes issue folders durable in batches of this many while the rest still render,
# so writing them out overlaps rendering; the renames all wait for the last issue.
REBUILD_SYNC_BATCH = 10
# Article ids per store query when a rebuild reads every issue's articles (SQLite allows 32,766
# bound parameters per statement).
REBUILD_QUERY_IDS = 2_000
# Below this many issues a rebuild renders in-process: starting workers would cost more.
PARALLEL_REBUILD_MIN = 8


@dataclass(frozen=True)
class _WorkerState:
    """What a rebuild worker process renders from, set once at its start."""

    settings: Settings
    env: Environment
    jobs: list[tuple[Issue, list[Article]]]
    write: bool


_worker: _WorkerState | None = None  # per-process state of a rebuild worker


def _rebuild_jobs(store: Store) -> list[tuple[Issue, list[Article]]]:
    """Every issue, oldest first, with its articles in issue order."""
    issues = [issue for issue, _titles in reversed(store.issues_with_titles())]
    wanted = [aid for issue in issues for aid in issue.article_ids]
    by_id: dict[str, Article] = {}
    for start in range(0, len(wanted), REBUILD_QUERY_IDS):  # a few queries, not one per issue
        by_id.update(store.articles_by_id(wanted[start : start + REBUILD_QUERY_IDS]))
    return [(issue, [by_id[aid] for aid in issue.article_ids if aid in by_id]) for issue in issues]


def _rebuild(
    settings: Settings,
    env: Environment,
    jobs: list[tuple[Issue, list[Article]]],
    problems: list[Problem],
    *,
    write: bool,
) -> int:
    """Regenerate every issue folder: each is rendered and written to a temp folder (in a
    worker process on every core); only when all of them are, they are renamed into place.

    An issue that fails to render (a theme error, say) leaves the whole site as it was, not
    half of it in the new theme; a crash during the renames leaves each folder old or new.
    """
    output = settings.output_dir
    temps: dict[str, Path] = {}
    unsynced: list[Path] = []
    rebuilt = 0
    with contextlib.ExitStack() as stack:
        # Opened before any file is written, so a failed write-back of any of them is reported.
        sync_point = (
            stack.enter_context(SyncPoint(output, whole_filesystem=True)) if write else None
        )
        rendered = _render_issues(settings, env, jobs, write=write)
        try:
            for issue, temp, issue_problems in rendered:
                problems.extend(issue_problems)
                rebuilt += 1
                if temp is not None:
                    temps[issue.folder] = temp
                    unsynced.append(temp)
                if sync_point is not None and len(unsynced) == REBUILD_SYNC_BATCH:
                    sync_point.sync(unsynced)
                    unsynced = []
        except BaseException:
            # Stop the workers (each finishes its current issue) before dropping the temp
            # folders they wrote; no issue folder has been touched.
            rendered.close()
            if write:
                remove_stale_temp(output)
            raise
        if temps:
            install_issues(output, temps, replace=True, sync_point=sync_point)
    return rebuilt


def _render_issues(
    settings: Settings, env: Environment, jobs: list[tuple[Issue, list[Article]]], *, write: bool
) -> Generator[tuple[Issue, Path | None, list[Problem]], None, None]:
    """Render (and with `write`, write to temp folders) many issues, in order, on every core.

    Workers write their own folders: creating files costs as much as rendering them, and
    handing the bytes back to this process would cost more again.
    """
    workers = min(os.cpu_count() or 1, 4)
    if workers < 2 or len(jobs) < PARALLEL_REBUILD_MIN:
        for issue, articles in jobs:
            yield (issue, *_rebuild_issue(settings, env, issue, articles, write))
        return
    # The first issue is rendered here, before the workers start: that imports premailer, parses
    # the theme's stylesheet and compiles the templates, and forked workers inherit all of it
    # (with the environment itself) instead of each paying for it again.
    (first, first_articles), rest = jobs[0], jobs[1:]
    yield (first, *_rebuild_issue(settings, env, first, first_articles, write))
    # Imported here: only a rebuild needs them, and they cost a publish ~10 ms.
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    context = multiprocessing.get_context()
    inherited = env if context.get_start_method() == "fork" else None  # else it is pickled
    # The jobs go to each worker once, at its start (inherited as they are, when forked); the
    # pool then hands out job numbers only instead of pickling every issue's articles.
    initargs = (settings, inherited, jobs, write)
    with ProcessPoolExecutor(
        workers, mp_context=context, initializer=_init_worker, initargs=initargs
    ) as pool:
        try:
            results = pool.map(_rebuild_issue_in_worker, range(1, len(jobs)), chunksize=4)
            for (issue, _articles), (temp, issue_problems) in zip(rest, results, strict=True):
                yield issue, temp, issue_problems
        finally:
            pool.shutdown(cancel_futures=True)  # after a failure, render no further issue


def _init_worker(
    settings: Settings,
    env: Environment | None,
    jobs: list[tuple[Issue, list[Article]]],
    write: bool,
) -> None:
    global _worker  # per-process state of a pool worker, set once at its start
    _worker = _WorkerState(
        settings, env if env is not None else make_environment(settings), jobs, write
    )


def _rebuild_issue_in_worker(number: int) -> tuple[Path | None, list[Problem]]:
    assert _worker is not None
    issue, articles = _worker.jobs[number]
    return _rebuild_issue(_worker.settings, _worker.env, issue, articles, _worker.write)


def _rebuild_issue(
    settings: Settings, env: Environment, issue: Issue, articles: list[Article], write: bool
) -> tuple[Path | None, list[Problem]]:
    problems: list[Problem] = []
    files, _form = _render_issue(settings, env, issue, articles, problems)
    temp = write_issue_temp(settings.output_dir, issue.folder, files) if write else None
    return temp, problems


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
    from publisher.sources.files import read_image  # only for articles with images: ~5 ms

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


def issue_summary(
    settings: Settings, issue: Issue, titles: tuple[str, ...], *, total: int | None = None
) -> IssueSummary:
    """`total`: how many articles the issue carries when `titles` lists only the first few."""
    return IssueSummary(
        number=issue.number,
        folder=issue.folder,
        published_at=issue.published_at,
        title=issue.title,
        url=f"{settings.site.url}{issue.folder}/",
        article_titles=titles,
        more_articles=max(0, (total or 0) - len(titles)),
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
    output = settings.output_dir  # resolved once: each lookup is a realpath() of the folder
    latest = [
        _published(settings, article, folder, _ImageOnDisk(output / folder))
        for article, folder in store.published_articles(settings.feeds.max_items)
    ]
    recent = [
        issue_summary(settings, issue, titles)
        for issue, titles in store.issues_with_titles(settings.feeds.max_items)
    ]
    archive = [
        issue_summary(settings, issue, titles, total=total)
        for issue, titles, total in store.issue_listing(ARCHIVE_TITLES)
    ]
    files = {
        "feed.xml": render_rss(settings, latest, now),
        "atom.xml": render_atom(settings, latest, now),
        "feed.json": render_json_feed(settings, latest, now),
        "issues.xml": render_issues_feed(settings, recent, now),
        "index.html": render_archive(env, settings, archive),
    }
    files.update(render_assets(env, settings))
    return files
