"""Named locks in the store, kept alive by a heartbeat; a dead holder's lock is taken over."""

from __future__ import annotations

import logging
import os
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from publisher.errors import LockedError, StoreError
from publisher.model import LockHolder
from publisher.store import Store

log = logging.getLogger(__name__)

POLL_SECONDS = 0.5  # how often a waiting process looks at the lock again
Clock = Callable[[], datetime]


class WaitStopped(Exception):
    """A stop was asked for while waiting for a lock: nothing was started."""


def process_alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine (signal 0 checks, sends nothing)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # it exists, under another user
    return True


def _utc_now() -> datetime:
    return datetime.now(UTC)


class HeldLock:
    """A lock this process holds. A thread refreshes its heartbeat until `release()`; if
    another process took the lock over meanwhile (this one looked dead), `lost` is set."""

    def __init__(
        self, store: Store, name: str, token: str, *, interval: float, clock: Clock
    ) -> None:
        self.store = store
        self.name = name
        self.token = token
        self.interval = interval
        self.clock = clock
        self.lost = threading.Event()
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._beat, name=f"lock-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _beat(self) -> None:
        while not self._done.wait(self.interval):
            try:
                mine = self.store.refresh_lock(self.name, self.token, now=self.clock())
            except StoreError as exc:  # a busy or unreachable database: try at the next beat
                log.warning("cannot refresh the %s lock: %s", self.name, exc)
                continue
            if not mine:
                log.error(
                    "lost the %s lock: another process took it over while this one was silent",
                    self.name,
                )
                self.lost.set()
                return

    def release(self) -> None:
        self._done.set()
        self._thread.join()
        try:
            self.store.release_lock(self.name, self.token)
        except StoreError as exc:  # the lock times out by itself; say so and go on stopping
            log.warning("cannot release the %s lock (it expires by itself): %s", self.name, exc)


@contextmanager
def hold(
    store: Store,
    name: str,
    *,
    purpose: str,
    timeout: float,
    busy: str,
    hint: str,
    wait: bool = False,
    stop: threading.Event | None = None,
    on_wait: Callable[[LockHolder], None] | None = None,
    clock: Clock = _utc_now,
) -> Iterator[HeldLock]:
    """Hold the lock `name` while the body runs.

    A live holder makes this raise LockedError ("<busy>: <holder>; <hint>"), or with `wait`
    look again every POLL_SECONDS (calling `on_wait` once) until the lock is free or its
    holder dead: on this host with its process gone, or silent for `timeout` seconds. A set
    `stop` ends the wait with WaitStopped.
    """
    token = secrets.token_hex(16)
    pid, host = os.getpid(), socket.gethostname()
    told = False
    while True:
        now = clock()
        acquired, holder = store.acquire_lock(
            name,
            token=token,
            pid=pid,
            host=host,
            purpose=purpose,
            now=now,
            stale_before=now - timedelta(seconds=timeout),
            alive=process_alive,
        )
        if acquired:
            if holder is not None:
                log.warning("took over the %s lock from %s, which is gone", name, holder.describe())
            break
        if not wait:
            who = holder.describe() if holder is not None else "a process that just let go"
            raise LockedError(f"{busy}: {who}", hint=hint)
        if holder is not None and on_wait is not None and not told:
            on_wait(holder)
            told = True
        if stop is None:
            time.sleep(POLL_SECONDS)
        elif stop.wait(POLL_SECONDS):
            raise WaitStopped(name)
    held = HeldLock(store, name, token, interval=max(1.0, timeout / 4), clock=clock)
    held.start()
    try:
        yield held
    finally:
        held.release()
