"""Poll upstream feeds over HTTP: concurrent, conditional, every failure a result of its own."""

from __future__ import annotations

import hashlib
import itertools
import logging
import multiprocessing
import os
import threading
import time
from collections.abc import Generator, Sequence
from concurrent.futures import (
    FIRST_COMPLETED,
    Future,
    ProcessPoolExecutor,
    ThreadPoolExecutor,
    wait,
)
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from email.utils import parsedate_to_datetime
from http import HTTPStatus
from typing import Literal

import httpx

from publisher import __version__
from publisher.errors import SourceError
from publisher.settings import SourcesSettings
from publisher.sources.feed_parse import ParsedFeed, parse_feed

log = logging.getLogger(__name__)

ACCEPT = (
    "application/rss+xml, application/atom+xml, application/feed+json, "
    "application/rdf+xml;q=0.9, application/json;q=0.9, application/xml;q=0.8, "
    "text/xml;q=0.8, */*;q=0.1"
)
MAX_REDIRECTS = 10
MAX_RETRY_AFTER = timedelta(days=7)  # a server asking for longer is probably wrong
PERMANENT_REDIRECTS = (301, 308)
# Below this many feeds to poll, starting worker processes costs more than it saves.
POOL_MIN_FEEDS = 16

FetchStatus = Literal["fetched", "not_modified", "gone", "failed"]


@dataclass(frozen=True, slots=True)
class FeedRequest:
    """One feed to poll now, with what the last poll left for a conditional GET."""

    url: str  # as configured: the feed's key
    name: str
    fetch_url: str  # where to ask: the configured URL, or where a 301/308 moved it
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None


@dataclass(frozen=True, slots=True)
class FeedResult:
    """What one poll brought: a parsed document, "not modified", or a failure to report."""

    request: FeedRequest
    status: FetchStatus
    http_status: int | None = None
    moved_to: str | None = None  # a permanent redirect's target: poll there from now on
    etag: str | None = None
    last_modified: str | None = None
    body_hash: str | None = None
    retry_after: datetime | None = None  # the server asked not to be polled before then
    document: ParsedFeed | None = None
    error: str | None = None  # what happened
    hint: str | None = None  # what to do


def user_agent(site_url: str) -> str:
    """Names the tool, its version and the site, so feed publishers know who polls them."""
    return f"publisher/{__version__} (+{site_url})"


def poll_feeds(
    requests: Sequence[FeedRequest],
    settings: SourcesSettings,
    *,
    agent: str,
    now: datetime,
) -> Generator[FeedResult, None, None]:
    """Fetch and parse `requests` concurrently; yield each result as soon as it is ready.

    At most `settings.concurrency` feeds are in flight or waiting to be consumed, so a
    slow consumer (the store) bounds memory. Never raises for a feed's failure.
    """
    if not requests:
        return
    pool = _ParsePool(_parse_processes(settings.parse_processes, len(requests)))
    client = httpx.Client(
        headers={"User-Agent": agent, "Accept": ACCEPT},
        timeout=httpx.Timeout(
            connect=settings.connect_timeout,
            read=settings.read_timeout,
            write=settings.read_timeout,
            pool=None,
        ),
        limits=httpx.Limits(
            max_connections=settings.concurrency,
            max_keepalive_connections=settings.concurrency,
        ),
        follow_redirects=True,
        max_redirects=MAX_REDIRECTS,
    )
    threads = ThreadPoolExecutor(settings.concurrency, thread_name_prefix="publisher-feed")
    pending = iter(requests)
    in_flight: set[Future[FeedResult]] = set()

    def submit_next() -> None:
        request = next(pending, None)
        if request is not None:
            in_flight.add(threads.submit(_poll_one, client, pool, request, settings, now))

    try:
        for _ in range(settings.concurrency):
            submit_next()
        while in_flight:
            done, _ = wait(in_flight, return_when=FIRST_COMPLETED)
            for future in done:
                in_flight.discard(future)
                submit_next()
                yield future.result()
    finally:
        threads.shutdown(wait=True, cancel_futures=True)
        client.close()
        pool.shutdown()


def _parse_processes(wanted: int, feeds: int) -> int:
    if wanted == 0:
        wanted = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    return min(wanted, feeds) if feeds >= POOL_MIN_FEEDS else 1


class _ParsePool:
    """Parses in worker processes, started when the first body comes.

    A poll where every feed answers 304 starts no process at all.
    """

    def __init__(self, processes: int) -> None:
        self.processes = processes
        self.lock = threading.Lock()
        self.executor: ProcessPoolExecutor | None = None
        self.broken = False

    def parse(self, body: bytes, base_url: str, content_type: str | None) -> ParsedFeed:
        executor = self._executor()
        if executor is not None:
            try:
                return executor.submit(parse_feed, body, base_url, content_type).result()
            except BrokenProcessPool:
                log.warning("the feed parsing processes died; parsing in this process instead")
                self.broken = True
        return parse_feed(body, base_url, content_type)

    def _executor(self) -> ProcessPoolExecutor | None:
        with self.lock:
            if self.processes > 1 and self.executor is None and not self.broken:
                # forkserver: workers fork from a small, single-threaded interpreter that
                # imported only the parser, not from this process with its threads,
                # database and HTTP state.
                context = multiprocessing.get_context("forkserver")
                context.set_forkserver_preload(["publisher.sources.feed_xml"])
                self.executor = ProcessPoolExecutor(self.processes, mp_context=context)
            return None if self.broken else self.executor

    def shutdown(self) -> None:
        if self.executor is not None:
            self.executor.shutdown(wait=True, cancel_futures=True)


def _poll_one(
    client: httpx.Client,
    pool: _ParsePool,
    request: FeedRequest,
    settings: SourcesSettings,
    now: datetime,
) -> FeedResult:
    try:
        fetched = _fetch(client, request, settings, now)
        if isinstance(fetched, FeedResult):
            return fetched
        result, body, base_url, content_type = fetched
        if result.body_hash == request.body_hash:
            # A server without conditional GET sent the very body we parsed last time.
            return replace(result, status="not_modified")
        return replace(result, document=pool.parse(body, base_url, content_type))
    except SourceError as exc:
        return FeedResult(request, "failed", error=exc.message, hint=exc.hint)
    except Exception as exc:  # a bug must not stop the other feeds
        log.debug("unexpected error polling %s", request.fetch_url, exc_info=True)
        return FeedResult(
            request,
            "failed",
            error=f"unexpected {type(exc).__name__}: {exc}",
            hint="please report it with this line",
        )


def _fetch(
    client: httpx.Client, request: FeedRequest, settings: SourcesSettings, now: datetime
) -> FeedResult | tuple[FeedResult, bytes, str, str | None]:
    headers = {}
    if request.etag:
        headers["If-None-Match"] = request.etag
    if request.last_modified:
        headers["If-Modified-Since"] = request.last_modified
    deadline = time.monotonic() + settings.total_timeout
    try:
        with client.stream("GET", request.fetch_url, headers=headers) as response:
            status = response.status_code
            result = FeedResult(
                request,
                "fetched",
                http_status=status,
                etag=response.headers.get("etag") or None,
                last_modified=response.headers.get("last-modified") or None,
            )
            if status == 304:
                return replace(
                    result,
                    status="not_modified",
                    moved_to=_moved_to(response),
                    etag=result.etag or request.etag,
                    last_modified=result.last_modified or request.last_modified,
                )
            # 3xx here is a redirect httpx could not follow (no Location, say); 204/205 are empty.
            if status >= 300 or status < 200 or status in (204, 205):
                return _status_failure(result, response, now)
            body = _read_limited(response, settings, deadline)
            content_type = response.headers.get("content-type")
            base_url = str(response.url)
            moved_to = _moved_to(response)
    except httpx.ConnectTimeout:
        return _failure(
            request,
            f"no connection within {settings.connect_timeout:g} s",
            "publisher tries again later; check the address if it keeps failing",
        )
    except httpx.TimeoutException:
        return _failure(
            request,
            f"no answer within {settings.read_timeout:g} s",
            "publisher tries again later; raise sources.read_timeout if the server is just slow",
        )
    except httpx.TooManyRedirects:
        return _failure(
            request,
            f"more than {MAX_REDIRECTS} redirects",
            "check the feed's url in settings.toml",
        )
    except httpx.DecodingError as exc:
        return _failure(
            request,
            f"the body is not what its Content-Encoding says ({exc})",
            "publisher tries again later; tell the feed's publisher if it persists",
        )
    except httpx.HTTPError as exc:
        return _failure(
            request,
            f"cannot fetch ({type(exc).__name__}: {exc})",
            "check the address and the network; publisher tries again later",
        )
    digest = hashlib.sha256(body).hexdigest()
    return replace(result, moved_to=moved_to, body_hash=digest), body, base_url, content_type


def _read_limited(response: httpx.Response, settings: SourcesSettings, deadline: float) -> bytes:
    limit = settings.max_bytes
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _too_big(int(declared), limit)
    chunks: list[bytes] = []
    size = 0
    # iter_bytes decompresses: the limit counts what we would parse, so a gzip bomb stops too.
    for chunk in response.iter_bytes():
        size += len(chunk)
        if size > limit:
            raise _too_big(size, limit, at_least=True)
        if time.monotonic() > deadline:
            raise SourceError(
                f"the answer took over {settings.total_timeout:g} s (sources.total_timeout)",
                hint="publisher tries again later; raise sources.total_timeout for a slow server",
            )
        chunks.append(chunk)
    return b"".join(chunks)


def _too_big(size: int, limit: int, *, at_least: bool = False) -> SourceError:
    amount = f"over {limit:,}" if at_least else f"{size:,}"
    return SourceError(
        f"the feed is {amount} bytes, over sources.max_bytes ({limit:,})",
        hint="raise sources.max_bytes, or ask the feed's publisher for a shorter feed",
    )


def _moved_to(response: httpx.Response) -> str | None:
    """Where the feed lives now: the end of the unbroken run of 301/308 hops, if any."""
    target: str | None = None
    hops = [*response.history, response]
    for hop, following in itertools.pairwise(hops):
        if hop.status_code not in PERMANENT_REDIRECTS:
            break
        target = str(following.request.url)
    return target


def _status_failure(result: FeedResult, response: httpx.Response, now: datetime) -> FeedResult:
    status = response.status_code
    try:
        reason = HTTPStatus(status).phrase
    except ValueError:
        reason = response.reason_phrase or "unknown status"
    said = f"HTTP {status} {reason}"
    if status == 410:
        return replace(
            result,
            status="gone",
            error=f"{said}: the feed was removed for good; publisher stops polling it",
            hint="remove it from settings.toml (a new url there is polled afresh)",
        )
    if status in (429, 503):
        retry_after = parse_retry_after(response.headers.get("retry-after"), now)
        if retry_after is not None:
            return replace(
                result,
                status="failed",
                retry_after=retry_after,
                error=f"{said}; the server asks to wait until {retry_after:%Y-%m-%d %H:%M} UTC",
                hint="nothing to do: publisher waits as asked",
            )
    hints = {
        401: "the feed needs a login, which publisher does not do; use a public feed",
        403: "the server refuses publisher; check the address or ask the feed's publisher",
        404: "check the feed's url in settings.toml",
        429: "publisher polls this feed less often for now; raise its min_interval_minutes",
    }
    hint = hints.get(status) or (
        "nothing to do if it passes: publisher tries again later with growing pauses"
        if status >= 500
        else "check the feed's url in settings.toml"
    )
    return replace(result, status="failed", error=said, hint=hint)


def parse_retry_after(value: str | None, now: datetime) -> datetime | None:
    """A Retry-After header (seconds or an HTTP date) as a moment, at most a week away."""
    if not value:
        return None
    value = value.strip()
    moment: datetime | None
    if value.isdigit():
        moment = now + min(timedelta(seconds=int(value[:12])), MAX_RETRY_AFTER)
    else:
        try:
            moment = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
    return min(max(moment, now), now + MAX_RETRY_AFTER).astimezone(UTC)


def _failure(request: FeedRequest, error: str, hint: str) -> FeedResult:
    return FeedResult(request, "failed", error=error, hint=hint)
