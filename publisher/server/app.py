"""The server's routes: thin endpoints over pipeline.Subscriptions, then the static site."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from typing import Any, cast
from urllib.parse import parse_qsl

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp
from uvicorn.middleware.proxy_headers import ProxyHeadersMiddleware

from publisher.errors import DeliveryError, PublisherError
from publisher.model import Notice
from publisher.pipeline import Subscriptions, subscriber_address
from publisher.render.notices import format_hours, render_page
from publisher.server.guard import Guard, RateLimit, client_key, origin_of, retry_after, same_origin
from publisher.server.static import StaticSite
from publisher.settings import Settings

log = logging.getLogger(__name__)

Clock = Callable[[], datetime]
FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")
MAX_FIELDS = 20

# status -> (heading, what the reader can do); one page each, rendered once.
ERRORS = {
    400: ("Bad request", "The server could not make sense of that request."),
    403: (
        "Not sent from this site",
        "For your safety the subscribe form works only from this site's own pages: "
        "open the archive page and subscribe there.",
    ),
    404: (
        "Page not found",
        "There is nothing at this address. Every issue is on the archive page.",
    ),
    405: ("Not allowed", "This address does not take that kind of request."),
    413: ("Too large", "The request was larger than this server accepts."),
    414: ("Too large", "The address asked for is longer than this server accepts."),
    415: ("Not a form", "Send the form the way a web browser does."),
    429: (
        "Too many requests",
        "Many subscribe requests came from your network in a short time. Please try again later.",
    ),
    431: ("Too large", "The request's headers were larger than this server accepts."),
    500: ("Something went wrong", "The server could not do that. Please try again later."),
    503: (
        "Try again shortly",
        "The server could not do that just now. Please try again in a few minutes.",
    ),
}
HEADINGS = {
    "confirmed": "You are subscribed",
    "already": "You are subscribed",
    "expired": "This link has expired",
    "invalid": "This link does not work",
}


def create_app(settings: Settings, *, clock: Clock | None = None) -> ASGIApp:
    """The whole server: the output folder, subscribe / confirm / unsubscribe, the guards.

    Opens the store and loads the signing key, the sender and the theme now, so a missing
    secret or a wrong setting stops `publisher serve` at start with one line.
    """
    endpoints = _Endpoints(settings, clock or _utc_now)
    if not settings.output_dir.is_dir():
        log.warning(
            "%s does not exist yet: every page answers 404 until `publisher publish` writes it",
            settings.output_dir,
        )
    static = StaticSite(settings.output_dir, endpoints.error_body, settings.server.cache_mb << 20)
    app = Starlette(
        routes=[
            Route("/subscribe", endpoints.subscribe, methods=["GET", "POST"]),
            Route("/confirm", endpoints.confirm, methods=["GET"]),
            Route("/unsubscribe", endpoints.unsubscribe, methods=["GET", "POST"]),
            Mount("", app=static),
        ],
        # Inside Starlette's error handling, so a body that grows too large while an
        # endpoint reads it still gets the 413 page rather than a 500.
        middleware=[
            Middleware(
                Guard, max_body=settings.server.max_body_bytes, error_page=endpoints.error_body
            )
        ],
        exception_handlers={HTTPException: endpoints.http_error},
        lifespan=endpoints.lifespan,
    )
    # The client a trusted proxy names becomes scope["client"]; anyone else's headers are ignored.
    proxied = ProxyHeadersMiddleware(
        cast(Any, app), trusted_hosts=list(settings.server.trusted_proxies)
    )
    return cast(ASGIApp, proxied)


def _utc_now() -> datetime:
    return datetime.now(UTC)


class _Endpoints:
    """The three endpoints and what they share: the use cases, the limits, the mail thread."""

    def __init__(self, settings: Settings, clock: Clock) -> None:
        self.settings = settings
        self.clock = clock
        self.subscriptions = Subscriptions(settings)
        s = settings.server
        self.allowed_origins = frozenset({origin_of(settings.site.url), *s.allowed_origins})
        self.per_client = RateLimit(s.subscribe_limit, s.rate_window)
        self.per_address = RateLimit(
            1 if s.confirm_resend_minutes else 0, s.confirm_resend_minutes * 60 or 1
        )
        self.all_mail = RateLimit(s.mail_per_hour, 3600.0)
        # One sender thread: mails leave in order, and a slow SMTP server holds no request.
        self.mailer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="publisher-mail")
        self.errors: dict[int, bytes] = {}

    @contextlib.asynccontextmanager
    async def lifespan(self, _app: Starlette) -> AsyncIterator[None]:
        # Sign-ups that expired while the server was down go now, not at the next visitor.
        await run_in_threadpool(self.subscriptions.drop_expired_signups, self.clock())
        try:
            yield
        finally:
            # Mails already promised go out before the server stops.
            await run_in_threadpool(self.mailer.shutdown, wait=True)
            self.subscriptions.close()

    # ---------------------------------------------------------------- pages

    def page(self, name: str, path: str, status: int = 200, **context: Any) -> Response:
        body = render_page(self.subscriptions.env, self.settings, name, path=path, **context)
        return _html(body, status)

    def error_body(self, status: int) -> bytes:
        if status not in self.errors:
            heading, message = ERRORS.get(status, ERRORS[500])
            self.errors[status] = render_page(
                self.subscriptions.env,
                self.settings,
                "page_error.html",
                path="",
                heading=heading,
                message=message,
                status=status,
            )
        return self.errors[status]

    def error(self, status: int, headers: dict[str, str] | None = None) -> Response:
        return _html(self.error_body(status), status, headers)

    async def http_error(self, _request: Request, exc: Exception) -> Response:
        assert isinstance(exc, HTTPException)
        return self.error(exc.status_code, dict(exc.headers or {}))

    # ---------------------------------------------------------------- subscribe

    async def subscribe(self, request: Request) -> Response:
        if request.method != "POST":
            return self._subscribe_page("form", 200)
        if not same_origin(request.headers, self.allowed_origins):
            return self.error(403)
        wait = self.per_client.take(client_key(request.scope))
        if wait:
            return self.error(429, {"retry-after": retry_after(wait)})
        form = await _form(request)
        if form is None:
            return self.error(415)
        raw = form.get("email", "")
        if form.get("website", "").strip():
            # The honeypot: people never see the field. Answer as usual; store and send nothing.
            log.info("subscribe: honeypot field filled in; request dropped")
            return self._sent(raw)
        try:
            address = subscriber_address(raw)
        except DeliveryError as exc:
            return self._subscribe_page("invalid", 400, problem=exc.message)
        try:
            result = await run_in_threadpool(
                self.subscriptions.subscribe, address, now=self.clock()
            )
        except PublisherError as exc:
            log.error("subscribe failed: %s", exc)
            return self.error(503)
        if result.notice is not None and self._may_mail(result.email):
            self.mailer.submit(self._send, result.notice)
        return self._sent(result.email)

    def _may_mail(self, address: str) -> bool:
        """At most one confirmation per address per resend interval, and a cap for all."""
        if self.per_address.take(address):
            log.info("subscribe: a confirmation went to this address recently; none sent")
            return False
        if self.all_mail.take(""):
            log.warning("subscribe: [server] mail_per_hour reached; confirmation not sent")
            return False
        return True

    def _sent(self, email: str) -> Response:
        # One page for a new, a waiting and an active address: it must not tell them apart.
        return self._subscribe_page("sent", 200, email=email.strip()[:320])

    def _subscribe_page(self, state: str, status: int, **context: Any) -> Response:
        headings = {"sent": "Check your inbox", "invalid": "Check the address", "form": "Subscribe"}
        return self.page(
            "page_subscribe.html",
            "subscribe",
            status,
            state=state,
            heading=headings[state],
            ttl_hours=format_hours(self.settings.server.confirm_ttl_hours),
            **context,
        )

    def _send(self, notice: Notice) -> None:
        try:
            self.subscriptions.send(notice)
        except PublisherError as exc:
            # Without the hint: it speaks of `publisher send`, which does not resend these.
            where = f"{exc.where}: " if exc.where else ""
            log.warning(
                "%s mail to subscriber #%d not sent: %s%s",
                notice.kind,
                notice.subscriber_id,
                where,
                exc.message,
            )
        except Exception:  # a bug must not kill the sender thread silently
            log.exception("%s mail to subscriber #%d failed", notice.kind, notice.subscriber_id)

    # ---------------------------------------------------------------- confirm

    async def confirm(self, request: Request) -> Response:
        token = request.query_params.get("token", "")

        def work() -> tuple[Any, Any]:
            result = self.subscriptions.confirm(token, now=self.clock())
            ok = result.outcome in ("confirmed", "already")
            return result, self.subscriptions.latest_issue() if ok else None

        try:
            result, latest = await run_in_threadpool(work)
        except PublisherError as exc:
            log.error("confirm failed: %s", exc)
            return self.error(503)
        if result.notice is not None:
            self.mailer.submit(self._send, result.notice)
        ok = result.outcome in ("confirmed", "already")
        return self.page(
            "page_confirm.html",
            "confirm",
            200 if ok else 400,
            outcome=result.outcome,
            heading=HEADINGS[result.outcome],
            email=result.email,
            latest=latest,
            ttl_hours=format_hours(self.settings.server.confirm_ttl_hours),
        )

    # ---------------------------------------------------------------- unsubscribe

    async def unsubscribe(self, request: Request) -> Response:
        """GET shows one button; POST (RFC 8058 one-click, or that button) unsubscribes."""
        token = request.query_params.get("token", "")
        if request.method == "POST":
            return await self._unsubscribe_now(request, token)
        try:
            found = await run_in_threadpool(self.subscriptions.check_unsubscribe, token)
        except PublisherError as exc:
            log.error("unsubscribe failed: %s", exc)
            return self.error(503)
        if found is None:
            return self._unsubscribe_page("invalid", 400)
        state = "already" if found.already else "ask"
        return self._unsubscribe_page(state, 200, email=found.email, token=token.strip())

    async def _unsubscribe_now(self, request: Request, token: str) -> Response:
        form = await _form(request) or {}
        token = token or form.get("token", "")
        if form.get("List-Unsubscribe") != "One-Click":
            return self._unsubscribe_page("invalid", 400)
        try:
            result = await run_in_threadpool(
                self.subscriptions.unsubscribe, token, now=self.clock()
            )
        except DeliveryError:
            return self._unsubscribe_page("invalid", 400)
        except PublisherError as exc:
            log.error("unsubscribe failed: %s", exc)
            return self.error(503)
        return self._unsubscribe_page(
            "already" if result.already else "done", 200, email=result.email
        )

    def _unsubscribe_page(self, state: str, status: int, **context: Any) -> Response:
        headings = {
            "ask": "Unsubscribe?",
            "done": "You are unsubscribed",
            "already": "You are unsubscribed",
            "invalid": "This unsubscribe link does not work",
        }
        context.setdefault("email", "")
        context.setdefault("token", "")
        heading = headings[state]
        return self.page(
            "page_unsubscribe.html", "unsubscribe", status, state=state, heading=heading, **context
        )


def _html(body: bytes, status: int, headers: dict[str, str] | None = None) -> Response:
    # no-store: these answers name an address, and a token may sit in the URL.
    return Response(
        body,
        status_code=status,
        media_type="text/html; charset=utf-8",
        headers={"cache-control": "no-store", **(headers or {})},
    )


async def _form(request: Request) -> dict[str, str] | None:
    """The posted fields (text only), or None when the body is not a form."""
    kind = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if kind in FORM_TYPES:
        data = await request.form(max_files=0, max_fields=MAX_FIELDS)
        return {k: v for k, v in data.multi_items() if isinstance(v, str)}
    if kind == "":
        # Some one-click unsubscribe senders leave the Content-Type out.
        body = (await request.body()).decode("utf-8", "replace")
        try:
            return dict(parse_qsl(body, max_num_fields=MAX_FIELDS))
        except ValueError:
            return None
    return None
