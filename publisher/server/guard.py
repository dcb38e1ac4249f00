"""Abuse protection: rate limits, the Origin check, body size limits, security headers."""

from __future__ import annotations

import ipaddress
import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Mapping
from urllib.parse import urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

# The site's pages carry no script and no inline style; images may come from other sites.
PAGE_CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self' https: data:; "
    "media-src 'self' https:; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
)
# Well above any browser's or mail provider's request; a request past them is not a reader.
MAX_HEADER_BYTES = 16_384
MAX_TARGET_BYTES = 8_192
SECURITY_HEADERS = (
    (b"content-security-policy", PAGE_CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    # Same-origin requests (the subscribe form's POST) keep their Origin header; other sites
    # learn nothing, not even which page (with which token) a reader came from.
    (b"referrer-policy", b"same-origin"),
    (b"x-frame-options", b"DENY"),
)


class RateLimit:
    """Token buckets per key: `limit` requests per `window` seconds, in bursts of up to `limit`.

    Memory stays bounded: past `max_keys` keys, the least recently seen are forgotten (which
    only ever gives a client back its full allowance).
    """

    def __init__(
        self,
        limit: int,
        window: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_keys: int = 100_000,
    ) -> None:
        self.limit = limit
        self.rate = limit / window if limit else 0.0  # tokens per second
        self.clock = clock
        self.max_keys = max_keys
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # tokens, at
        self.lock = threading.Lock()

    def take(self, key: str) -> float:
        """0 when the request may go on (one token taken), else the seconds until it may."""
        if not self.limit:
            return 0.0
        with self.lock:
            now = self.clock()
            tokens, at = self.buckets.pop(key, (float(self.limit), now))
            tokens = min(float(self.limit), tokens + (now - at) * self.rate)
            if tokens >= 1.0:
                tokens -= 1.0
                wait = 0.0
            else:
                wait = (1.0 - tokens) / self.rate
            self.buckets[key] = (tokens, now)
            while len(self.buckets) > self.max_keys:
                self.buckets.popitem(last=False)
            return wait


def client_key(scope: Scope) -> str:
    """Whom a rate limit counts: the client's IP (IPv6 by its /64, which one host usually has)."""
    client = scope.get("client")
    host = client[0] if client else ""
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        return host or "unknown"
    if isinstance(address, ipaddress.IPv6Address):
        if address.ipv4_mapped is not None:
            return str(address.ipv4_mapped)
        return str(ipaddress.IPv6Network((address, 64), strict=False))
    return str(address)


def origin_of(url: str) -> str:
    """`scheme://host[:port]` of a URL, lower case, the default port left out."""
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    try:
        host, port = parts.hostname, parts.port
    except ValueError:
        return ""
    if not scheme or not host:
        return ""
    if ":" in host:
        host = f"[{host}]"
    default = {"http": 80, "https": 443}.get(scheme)
    return f"{scheme}://{host}" + (f":{port}" if port and port != default else "")


def same_origin(headers: Mapping[str, str], allowed: Iterable[str]) -> bool:
    """Whether a form post comes from one of our pages: by Origin, else by Referer.

    Browsers send Origin with every POST; a request with neither header is refused, as is
    Origin "null" (sandboxed frames, privacy redirects).
    """
    allowed = set(allowed)
    origin = headers.get("origin")
    if origin is not None:
        return origin.strip() != "null" and origin_of(origin) in allowed
    referer = headers.get("referer")
    return referer is not None and origin_of(referer) in allowed


class Guard:
    """ASGI middleware: refuses request targets over MAX_TARGET_BYTES (414), headers over
    MAX_HEADER_BYTES (431) and bodies over `max_body` bytes (413), and adds security headers
    to every response that does not set its own."""

    def __init__(self, app: ASGIApp, *, max_body: int, error_page: Callable[[int], bytes]) -> None:
        self.app = app
        self.max_body = max_body
        self.error_page = error_page

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = False

        async def send_with_headers(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
                headers = list(message.get("headers", []))
                present = {name.lower() for name, _ in headers}
                headers.extend(h for h in SECURITY_HEADERS if h[0] not in present)
                message = {**message, "headers": headers}
            await send(message)

        target = len(scope.get("raw_path") or b"") + len(scope.get("query_string") or b"")
        if target > MAX_TARGET_BYTES:
            await self._refuse(414, scope, send_with_headers)
            return
        if sum(len(name) + len(value) for name, value in scope["headers"]) > MAX_HEADER_BYTES:
            await self._refuse(431, scope, send_with_headers)
            return
        declared = _content_length(scope)
        if declared is not None and declared > self.max_body:
            await self._refuse(413, scope, send_with_headers)
            return
        received = 0

        async def counting_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_body:
                    raise _TooLarge
            return message

        try:
            await self.app(scope, counting_receive, send_with_headers)
        except _TooLarge:
            if started:
                raise
            await self._refuse(413, scope, send_with_headers)

    async def _refuse(self, status: int, scope: Scope, send: Send) -> None:
        body = self.error_page(status)
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"text/html; charset=utf-8"),
                    (b"content-length", str(len(body)).encode()),
                    (b"connection", b"close"),
                ],
            }
        )
        await send(
            {"type": "http.response.body", "body": b"" if scope["method"] == "HEAD" else body}
        )


class _TooLarge(Exception):
    """The body grew past the limit while it was being read."""


def _content_length(scope: Scope) -> int | None:
    for name, value in scope["headers"]:
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


def retry_after(seconds: float) -> str:
    """A Retry-After value: whole seconds, at least one."""
    return str(max(1, math.ceil(seconds)))
