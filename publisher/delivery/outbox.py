"""The outbox state machine: claim due rows, send them over a pool of connections, record each.

    pending ──> sent
       │  └──> failed      (5xx; a 5xx at RCPT also counts toward the subscriber's bounces)
       └────> deferred ──> (due again after a backoff) ... ──> failed after max_attempts
    pending/deferred ──> skipped   (the subscriber left before their turn)

Each connection has at most one message between the server's acceptance and the row being
recorded as sent: a crash can send at most `smtp.connections` messages twice.
"""

from __future__ import annotations

import logging
import queue
import random
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from publisher.delivery.message import MessageFactory, Outgoing
from publisher.delivery.pacing import RateLimiter
from publisher.delivery.smtp import ConnectError, Connection, Reply
from publisher.model import AttemptResult, OutboxItem
from publisher.settings import DeliverySettings

log = logging.getLogger(__name__)

CLAIM_BATCH = 100
_PUT_WAIT = 0.2  # seconds between looks at the stop flag while the queue is full


class OutboxStore(Protocol):
    """The part of the store the outbox needs (store.Store implements it)."""

    def claim_due(
        self, issue_number: int, *, worker: str, now: datetime, limit: int
    ) -> list[OutboxItem]: ...

    def finish_attempt(self, result: AttemptResult, *, bounce_threshold: int) -> None: ...

    def skip(self, item: OutboxItem, *, reason: str, now: datetime) -> None: ...

    def release_claims(
        self, *, worker: str | None = None, claimed_before: datetime | None = None
    ) -> int: ...


def backoff(attempt: int, base: float, cap: float, rng: random.Random) -> float:
    """Seconds to wait after failed attempt number `attempt` (1-based).

    Doubles from `base` up to `cap`; "equal jitter" (half fixed, half random) keeps retries of
    a large list from arriving at the server all at once.
    """
    delay = min(cap, base * 2.0 ** min(attempt - 1, 60))
    return float(delay / 2 + rng.uniform(0, delay / 2))


def decide(
    item: OutboxItem,
    reply: Reply,
    *,
    now: datetime,
    message_id: str,
    settings: DeliverySettings,
    rng: random.Random,
) -> AttemptResult:
    """What an attempt's reply means for the row: sent, deferred (and when) or failed."""
    if reply.verdict == "accepted":
        return AttemptResult(item, "sent", reply.text, now, message_id)
    if reply.verdict == "permanent":
        return AttemptResult(
            item, "failed", reply.text, now, message_id, hard_bounce=reply.recipient_refused
        )
    attempts = item.attempts + 1
    if attempts >= settings.max_attempts:
        text = f"gave up after {attempts} attempts; last: {reply.text}"
        return AttemptResult(item, "failed", text, now, message_id)
    wait = backoff(attempts, settings.retry_base, settings.retry_max, rng)
    return AttemptResult(
        item, "deferred", reply.text, now, message_id, next_attempt_at=now + timedelta(seconds=wait)
    )


@dataclass
class Tally:
    """What a run did so far (updated under the run's lock)."""

    sent: int = 0
    deferred: int = 0
    failed: int = 0
    skipped: int = 0
    stopped: str = ""
    errors: list[BaseException] = field(default_factory=list)

    @property
    def done(self) -> int:
        return self.sent + self.deferred + self.failed + self.skipped


@dataclass(frozen=True, slots=True)
class _Job:
    item: OutboxItem
    message: Outgoing


class OutboxRun:
    """One `send` of one issue: the main thread claims rows and builds messages, a thread per
    connection sends them and records each outcome before taking the next."""

    def __init__(
        self,
        store: OutboxStore,
        factory: MessageFactory,
        *,
        issue_number: int,
        envelope_from: str,
        connect: Callable[[], Connection],
        connections: int,
        limiter: RateLimiter,
        settings: DeliverySettings,
        clock: Callable[[], datetime],
        worker: str,
        total: int = 0,
        progress: Callable[[int, int], None] | None = None,
        rng: random.Random | None = None,
        stop: threading.Event | None = None,
    ) -> None:
        self.store = store
        self.factory = factory
        self.issue_number = issue_number
        self.envelope_from = envelope_from
        self.connect = connect
        self.connections = connections
        self.limiter = limiter
        self.settings = settings
        self.clock = clock
        self.worker = worker
        self.total = total
        self.progress = progress
        self.rng = rng or random.Random()  # noqa: S311 (jitter, not a secret)
        self.tally = Tally()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._jobs: queue.Queue[_Job | None] = queue.Queue(maxsize=2 * connections)
        self._live = 0
        self._pending = 0  # jobs handed to the queue and not yet done
        self._idle = threading.Condition(self._lock)
        self._outer_stop = stop  # set from outside (SIGTERM in `publisher run`)

    def run(self) -> Tally:
        """Send every due row; returns the tally. Raises ConnectError when no connection can
        be opened at all (nothing was claimed then)."""
        first = self.connect()
        first.open()  # fail fast, before any row is claimed
        self._live = self.connections
        threads = [
            threading.Thread(target=self._work, args=(first if n == 0 else None,), name=f"smtp-{n}")
            for n in range(self.connections)
        ]
        for thread in threads:
            thread.start()
        ended = threading.Event()
        if self._outer_stop is not None:
            watcher = threading.Thread(
                target=self._watch, args=(self._outer_stop, ended), name="stop-watch", daemon=True
            )
            watcher.start()
        try:
            self._produce()
        except BaseException as exc:
            self._halt(f"stopped: {type(exc).__name__}")
            raise
        finally:
            for _ in threads:
                self._put(None, threads)
            for thread in threads:
                thread.join()
            ended.set()
            # Rows claimed but not attempted go back untouched for the next run.
            self.store.release_claims(worker=self.worker)
        if self.tally.errors:
            raise self.tally.errors[0]
        return self.tally

    def _watch(self, outer: threading.Event, ended: threading.Event) -> None:
        """A stop asked from outside halts the run as an error would: messages in hand are
        finished and recorded, queued ones go back to the outbox."""
        while not ended.is_set():
            if outer.wait(_PUT_WAIT):
                self._halt("stopped on request; the rest stays queued for the next run")
                return

    def _produce(self) -> None:
        while not self._stop.is_set():
            items = self.store.claim_due(
                self.issue_number, worker=self.worker, now=self.clock(), limit=CLAIM_BATCH
            )
            if not items:
                # Rows still in the queue may come back deferred and due at once (a short
                # retry_base): look again once every job is done, else the run is over.
                with self._idle:
                    if self._pending == 0:
                        return
                    while self._pending and not self._stop.is_set():
                        self._idle.wait(_PUT_WAIT)
                continue
            for item in items:
                if self._stop.is_set():
                    return
                if item.subscriber_status != "active":
                    reason = f"not sent: the subscriber is {item.subscriber_status}"
                    self.store.skip(item, reason=reason, now=self.clock())
                    self._count("skipped")
                    continue
                message = self.factory.build(
                    item.subscriber_id, item.email, item.name, self.clock()
                )
                with self._lock:
                    self._pending += 1
                if not self._put(_Job(item, message)):
                    self._done()
                    return

    def _put(self, job: _Job | None, threads: list[threading.Thread] | None = None) -> bool:
        while True:
            try:
                self._jobs.put(job, timeout=_PUT_WAIT)
                return True
            except queue.Full:
                if job is not None and self._stop.is_set():
                    return False
                if threads is not None and not any(t.is_alive() for t in threads):
                    return False

    def _work(self, conn: Connection | None) -> None:
        try:
            while True:
                job = self._jobs.get()
                if job is None:
                    return
                handed_on = False
                try:
                    handed_on, conn = self._attempt(job, conn)
                finally:
                    if not handed_on:
                        self._done()
                if handed_on:
                    return
        except BaseException as exc:  # recorded; the main thread re-raises it after the join
            with self._lock:
                self.tally.errors.append(exc)
            self._halt(f"stopped by an error: {exc}")
        finally:
            if conn is not None:
                conn.close()

    def _attempt(self, job: _Job, conn: Connection | None) -> tuple[bool, Connection | None]:
        """Send one job and record what happened. (True, _) when this connection gave up and
        the job went back to the queue for another one."""
        if self._stop.is_set():
            return False, conn  # left claimed; released when the run ends
        if not self.limiter.acquire():
            self._halt(
                "the hourly limit (smtp.rate_per_hour) is reached; "
                "the rest stays queued for a later run"
            )
            return False, conn
        reply, conn = self._send(conn, job)
        if reply is None:
            if not self._retire():
                return False, None
            return self._put(job), None  # another connection takes it
        if reply.stage == "MAIL" and reply.verdict == "permanent":
            self._halt(f"the server refused the sender {self.envelope_from}: {reply.text}")
            return False, conn
        result = decide(
            job.item,
            reply,
            now=self.clock(),
            message_id=job.message.message_id,
            settings=self.settings,
            rng=self.rng,
        )
        self.store.finish_attempt(result, bounce_threshold=self.settings.bounce_threshold)
        self._count(result.state)
        return False, conn

    def _done(self) -> None:
        with self._idle:
            self._pending -= 1
            self._idle.notify_all()

    def _send(self, conn: Connection | None, job: _Job) -> tuple[Reply | None, Connection | None]:
        """Send over `conn`, opening a new connection if there is none or it dropped; a message
        whose connection drops is tried once more on a fresh one. (None, None): no connection
        could be opened and the message was not tried."""
        last: Reply | None = None
        for _ in range(2):
            if conn is None or not conn.is_open:
                conn = self.connect()
                try:
                    conn.open()
                except ConnectError as exc:
                    log.warning("%s", exc)
                    if last is not None:
                        self._halt(str(exc))
                    return last, None
            m = job.message
            last = conn.send(self.envelope_from, m.recipient, m.data)
            if last.verdict != "dropped":
                return last, conn
            log.info("connection dropped (%s); reconnecting", last.text)
        return last, None

    def _retire(self) -> bool:
        """This connection could not be opened: True if other connections go on."""
        with self._lock:
            self._live -= 1
            live = self._live
        if live <= 0:
            self._halt("lost the SMTP server; the rest stays queued for `publisher send`")
            return False
        log.warning("the server refused connection %d; going on with %d", live + 1, live)
        return True

    def _halt(self, reason: str) -> None:
        with self._lock:
            if not self.tally.stopped:
                self.tally.stopped = reason
        self._stop.set()

    def _count(self, state: str) -> None:
        with self._lock:
            setattr(self.tally, state, getattr(self.tally, state) + 1)
            done = self.tally.done
            self.total = max(self.total, done)
            if self.progress is not None:
                self.progress(done, self.total)
