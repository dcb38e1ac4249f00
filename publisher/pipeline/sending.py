"""Deliver: subscribers, the outbox and `send`, status and unsubscribe."""

from __future__ import annotations

import itertools
import logging
import os
import secrets
import shutil
import socket
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

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
)
from publisher.delivery.outbox import OutboxRun, Tally
from publisher.delivery.pacing import RateLimiter
from publisher.delivery.smtp import Connection, smtp_password
from publisher.delivery.tokens import check_token, load_key, token_subscriber
from publisher.errors import DeliveryError
from publisher.model import (
    DeliveryStatus,
    Digest,
    FailedDelivery,
    ImportReport,
    Issue,
    OutboxItem,
    Problem,
    Progress,
    SendReport,
    Subscriber,
    SubscriberStatus,
    UnsubscribeResult,
)
from publisher.settings import Settings
from publisher.store import Store

log = logging.getLogger(__name__)


# ---------------------------------------------------------------- delivery (issue 5)


def add_subscriber(
    settings: Settings, email: str, *, now: datetime, name: str = "", reactivate: bool = False
) -> tuple[Subscriber, bool]:
    """Add an active subscriber; returns (subscriber, created).

    Someone who unsubscribed or bounced comes back only with `reactivate` (they asked to).
    """
    address = checked_address(email)
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
    address = checked_address(email)
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
    token = unsubscribe_token_from(token)
    key = load_key(settings)
    with Store.open(settings.database_url) as store:
        return apply_unsubscribe(store, key, token, now)


def unsubscribe_token_from(token: str) -> str:
    """The token itself, from a token or a whole link; DeliveryError when it is neither."""
    if "token=" in token:
        token = parse_qs(urlsplit(token.strip()).query).get("token", [""])[0]
    if token_subscriber(token) is None:
        raise DeliveryError(
            "not an unsubscribe token",
            hint="copy the whole token: the part after token= in the link",
        )
    return token


def token_owner(store: Store, key: bytes, token: str) -> Subscriber:
    subscriber_id = token_subscriber(token)
    subscriber = (
        None if subscriber_id is None else store.get_subscriber(subscriber_id=subscriber_id)
    )
    if subscriber is None or not check_token(key, token, subscriber.id, subscriber.email):
        # One answer for both: a token never tells whether an id exists.
        raise DeliveryError(
            "this token matches no subscriber", hint="it may have been mistyped or cut short"
        )
    return subscriber


def apply_unsubscribe(store: Store, key: bytes, token: str, now: datetime) -> UnsubscribeResult:
    subscriber = token_owner(store, key, token)
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
    """Every recipient of an issue the server refused for good, with its answer (streamed).

    Raises at once (not on the first row) when there is no such issue.
    """
    store = Store.open(settings.database_url)
    if store.get_issue(issue_number) is None:
        store.close()
        raise DeliveryError(f"there is no issue #{issue_number}", hint="see `publisher status`")

    def rows() -> Iterator[FailedDelivery]:
        with store:
            yield from store.iter_failed(issue_number)

    return rows()


def checked_address(email: str) -> str:
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
    recipient = checked_address(address)
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
    except OSError as exc:
        raise DeliveryError(
            f"cannot write the dry run ({exc.strerror})",
            where=str(target),
            hint="check delivery.dry_run_dir",
        ) from None
    try:
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
        shutil.rmtree(temp, ignore_errors=True)  # never leave half a dry run behind
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
