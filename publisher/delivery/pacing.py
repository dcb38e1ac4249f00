"""Rate limits for sending: messages per second (paced) and per rolling hour (a budget)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable


class RateLimiter:
    """Thread-safe pacing. `already` counts messages sent in the past hour by earlier runs."""

    def __init__(
        self,
        per_second: float,
        per_hour: int,
        already: int = 0,
        monotonic: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 1.0 / per_second if per_second > 0 else 0.0
        self.budget: int | None = max(0, per_hour - already) if per_hour > 0 else None
        self._monotonic = monotonic
        self._sleep = sleep
        self._lock = threading.Lock()
        self._next = 0.0

    def acquire(self) -> bool:
        """Wait for the next slot; False when this hour's budget is spent (stop sending)."""
        with self._lock:
            if self.budget is not None:
                if self.budget <= 0:
                    return False
                self.budget -= 1
            if not self.interval:
                return True
            now = self._monotonic()
            slot = max(now, self._next)
            self._next = slot + self.interval
        if slot > now:
            self._sleep(slot - now)
        return True
