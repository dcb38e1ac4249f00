"""The output folder over HTTP: media types, ETag / Last-Modified with 304s, gzip, no escape."""

from __future__ import annotations

import gzip
import hashlib
import mimetypes
import os
import stat
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import format_datetime, parsedate_to_datetime
from pathlib import Path
from urllib.parse import quote

from anyio import to_thread
from starlette.types import Receive, Scope, Send

from publisher.server.guard import PAGE_CSP

# The feeds publish writes at the root, by name: all of them are .xml or .json.
FEED_TYPES = {
    "feed.xml": "application/rss+xml; charset=utf-8",
    "atom.xml": "application/atom+xml; charset=utf-8",
    "issues.xml": "application/atom+xml; charset=utf-8",
    "feed.json": "application/feed+json",
}
SUFFIX_TYPES = {
    ".html": "text/html; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".txt": "text/plain; charset=utf-8",
    ".json": "application/json",
    ".xml": "application/xml; charset=utf-8",
    ".eml": "message/rfc822",
    ".svg": "image/svg+xml",
    ".webp": "image/webp",
    ".avif": "image/avif",
}
COMPRESSIBLE = ("text/", "application/rss+xml", "application/atom+xml", "application/xml",
                "application/json", "application/feed+json", "image/svg+xml")  # fmt: skip
MIN_COMPRESS = 256  # smaller bodies gain nothing from gzip
LARGEST_CACHED = 8 * 1024 * 1024
# email.html is the digest as mail programs get it: its CSS is inlined into style attributes.
EMAIL_CSP = PAGE_CSP.replace("style-src 'self'", "style-src 'self' 'unsafe-inline'")


@dataclass(frozen=True, slots=True)
class _Entry:
    """One file as served: its bytes (and gzip form), validators and headers."""

    signature: tuple[int, int, int]  # mtime_ns, size, inode: a change means read again
    body: bytes
    gzipped: bytes | None
    etag: str
    last_modified: str
    modified: datetime  # whole seconds, as Last-Modified says
    media_type: str

    @property
    def gzip_etag(self) -> str:
        return self.etag[:-1] + '-gz"'

    @property
    def cost(self) -> int:
        return len(self.body) + len(self.gzipped or b"")


class _Cache:
    """Entries by real path, least recently used dropped first beyond `limit` bytes."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.used = 0
        self.entries: OrderedDict[str, _Entry] = OrderedDict()
        self.lock = threading.Lock()

    def get(self, key: str, signature: tuple[int, int, int]) -> _Entry | None:
        with self.lock:
            entry = self.entries.get(key)
            if entry is None or entry.signature != signature:
                return None
            self.entries.move_to_end(key)
            return entry

    def put(self, key: str, entry: _Entry) -> None:
        if entry.cost > min(self.limit, LARGEST_CACHED):
            return
        with self.lock:
            old = self.entries.pop(key, None)
            if old is not None:
                self.used -= old.cost
            self.entries[key] = entry
            self.used += entry.cost
            while self.used > self.limit:
                _, dropped = self.entries.popitem(last=False)
                self.used -= dropped.cost


ErrorPage = Callable[[int], bytes]


class StaticSite:
    """An ASGI app serving the files under `root`, and nothing outside it.

    A path is refused when a segment is empty, `.`, `..` or hidden (publish's temporary
    folders start with a dot), and when the file it names, symlinks resolved, lies outside
    `root`. A folder is served as its index.html.
    """

    def __init__(self, root: Path, error_page: ErrorPage, cache_bytes: int) -> None:
        self.root = Path(os.path.realpath(root))
        self.error_page = error_page
        self.cache = _Cache(cache_bytes)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert scope["type"] == "http"
        method = scope["method"]
        if method not in ("GET", "HEAD"):
            await _send(send, 405, self.error_page(405), method, [(b"allow", b"GET, HEAD")])
            return
        found = self.resolve(scope["path"])
        if isinstance(found, str):  # a folder asked for without its slash
            location = quote(found).encode("ascii")
            await _send(send, 301, b"", method, [(b"location", location)])
            return
        if found is None:
            await _send(send, 404, self.error_page(404), method)
            return
        path, info = found
        signature = (info.st_mtime_ns, info.st_size, info.st_ino)
        entry = self.cache.get(str(path), signature)
        if entry is None:
            try:
                entry = await to_thread.run_sync(_load, path, signature, self.media_type(path))
            except OSError:
                await _send(send, 404, self.error_page(404), method)
                return
            self.cache.put(str(path), entry)
        await _answer(scope, send, entry)

    def resolve(self, url_path: str) -> tuple[Path, os.stat_result] | str | None:
        """The file to serve, a relative redirect for a folder without its slash, or None."""
        if "\x00" in url_path or "\\" in url_path or not url_path.startswith("/"):
            return None
        segments = url_path[1:].split("/")
        folder_asked = segments[-1] == ""
        if folder_asked:
            segments.pop()
        if any(s in ("", ".", "..") or s.startswith(".") for s in segments):
            return None
        root = str(self.root)
        candidate = os.path.realpath(os.path.join(root, *segments))
        if candidate != root and not candidate.startswith(root + os.sep):
            return None  # a symlink that leads out of the output folder
        try:
            info = os.stat(candidate)
        except (OSError, ValueError):
            return None
        if stat.S_ISDIR(info.st_mode):
            if not folder_asked and segments:
                return f"{segments[-1]}/"
            index = os.path.realpath(os.path.join(candidate, "index.html"))
            if not index.startswith(root + os.sep):
                return None
            try:
                info = os.stat(index)
            except OSError:
                return None
            candidate = index
        elif folder_asked:
            return None
        if not stat.S_ISREG(info.st_mode):
            return None
        return Path(candidate), info

    def media_type(self, path: Path) -> str:
        return media_type(path, path.parent == self.root)


def media_type(path: Path, at_root: bool) -> str:
    """The Content-Type of a served file: the feeds by name, the rest by suffix."""
    if at_root and path.name in FEED_TYPES:
        return FEED_TYPES[path.name]
    suffix = path.suffix.lower()
    if suffix in SUFFIX_TYPES:
        return SUFFIX_TYPES[suffix]
    guessed, _ = mimetypes.guess_type(path.name, strict=False)
    return guessed or "application/octet-stream"


def _load(path: Path, signature: tuple[int, int, int], kind: str) -> _Entry:
    body = path.read_bytes()
    gzipped = None
    if len(body) >= MIN_COMPRESS and kind.startswith(COMPRESSIBLE):
        packed = gzip.compress(body, compresslevel=6, mtime=0)
        gzipped = packed if len(packed) < len(body) else None
    modified = datetime.fromtimestamp(signature[0] // 1_000_000_000, UTC)
    return _Entry(
        signature=signature,
        body=body,
        gzipped=gzipped,
        etag=f'"{hashlib.blake2b(body, digest_size=12).hexdigest()}"',
        last_modified=format_datetime(modified, usegmt=True),
        modified=modified,
        media_type=kind,
    )


async def _answer(scope: Scope, send: Send, entry: _Entry) -> None:
    headers = _request_headers(scope)
    use_gzip = entry.gzipped is not None and accepts_gzip(headers.get("accept-encoding", ""))
    etag = entry.gzip_etag if use_gzip else entry.etag
    common = [
        (b"etag", etag.encode()),
        (b"last-modified", entry.last_modified.encode()),
        (b"cache-control", _cache_control(entry.media_type)),
    ]
    if entry.gzipped is not None:
        common.append((b"vary", b"Accept-Encoding"))
    if not_modified(headers, entry, (entry.etag, entry.gzip_etag)):
        await send({"type": "http.response.start", "status": 304, "headers": common})
        await send({"type": "http.response.body", "body": b""})
        return
    body = entry.gzipped if use_gzip and entry.gzipped is not None else entry.body
    common.append((b"content-type", entry.media_type.encode()))
    if use_gzip:
        common.append((b"content-encoding", b"gzip"))
    if scope["path"].endswith("/email.html"):
        common.append((b"content-security-policy", EMAIL_CSP.encode()))
    await _send(send, 200, body, scope["method"], common)


def _cache_control(kind: str) -> bytes:
    # Pages and feeds change when an issue is published: ask every time (a 304 is cheap).
    if kind.startswith(COMPRESSIBLE):
        return b"public, no-cache"
    return b"public, max-age=86400"


def not_modified(headers: dict[str, str], entry: _Entry, tags: tuple[str, ...]) -> bool:
    """RFC 9110 13.1: If-None-Match (weak comparison) wins; else If-Modified-Since."""
    if "if-none-match" in headers:
        wanted = headers["if-none-match"].strip()
        if wanted == "*":
            return True
        offered = {t.strip().removeprefix("W/") for t in wanted.split(",")}
        return any(tag in offered for tag in tags)
    since = headers.get("if-modified-since")
    if since:
        try:
            moment = parsedate_to_datetime(since)
        except (TypeError, ValueError):
            return False
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=UTC)
        return entry.modified <= moment
    return False


def accepts_gzip(header: str) -> bool:
    """Whether Accept-Encoding allows gzip (by name, or by `*`), honouring q=0."""
    named: float | None = None
    star: float | None = None
    for item in header.split(","):
        coding, _, params = item.strip().partition(";")
        quality = 1.0
        for param in params.split(";"):
            name, _, value = param.strip().partition("=")
            if name.strip().lower() == "q":
                try:
                    quality = float(value)
                except ValueError:
                    quality = 0.0
        coding = coding.strip().lower()
        if coding in ("gzip", "x-gzip"):
            named = quality
        elif coding == "*":
            star = quality
    if named is not None:
        return named > 0
    return star is not None and star > 0


def _request_headers(scope: Scope) -> dict[str, str]:
    return {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}


async def _send(
    send: Send,
    status: int,
    body: bytes,
    method: str,
    headers: list[tuple[bytes, bytes]] | None = None,
) -> None:
    out = list(headers or [])
    names = {name for name, _ in out}
    if b"content-type" not in names and (body or status != 301):
        out.append((b"content-type", b"text/html; charset=utf-8"))
    out.append((b"content-length", str(len(body)).encode()))
    await send({"type": "http.response.start", "status": status, "headers": out})
    await send({"type": "http.response.body", "body": b"" if method == "HEAD" else body})
