"""Helpers for tests of `publisher run`: a real scheduler in a subprocess, watched by its log."""

from __future__ import annotations

import os
import pickle
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import datetime

import sqlalchemy as sa

from publisher.settings import Settings
from publisher.store import Store, apscheduler_jobs_table
from tests.conftest import ROOT, Site
from tests.delivery_support import TOKEN_KEY

DEADLINE = 45.0  # seconds: generous, for a loaded two-core machine


def schedule(**entries: object) -> str:
    """A [schedule] block."""
    lines = ["", "[schedule]"]
    for key, value in entries.items():
        if isinstance(value, bool):
            lines.append(f"{key} = {str(value).lower()}")
        elif isinstance(value, str):
            lines.append(f'{key} = "{value}"')
        else:
            lines.append(f"{key} = {value}")
    return "\n".join(lines) + "\n"


def publisher_command(site: Site, *args: str) -> list[str]:
    return [sys.executable, "-m", "publisher", "--settings", str(site.settings_path), *args]


ENV = {**os.environ, "PUBLISHER_TOKEN_KEY": TOKEN_KEY}


def run_publisher(site: Site, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        publisher_command(site, *args),
        capture_output=True,
        text=True,
        timeout=timeout,
        env=ENV,
        cwd=ROOT,
    )


def wait_until(condition: Callable[[], bool], what: str, timeout: float = DEADLINE) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


class Running:
    """`publisher <args>` in a subprocess; its log (stderr) goes to a file we poll."""

    def __init__(self, site: Site, *args: str, name: str = "run") -> None:
        self.log_path = site.root / f"{name}.log"
        self._log = self.log_path.open("wb")
        self.process = subprocess.Popen(
            publisher_command(site, *args),
            stdout=subprocess.DEVNULL,
            stderr=self._log,
            env=ENV,
            cwd=ROOT,
        )

    @property
    def pid(self) -> int:
        return self.process.pid

    def text(self) -> str:
        return self.log_path.read_text(encoding="utf-8", errors="replace")

    def wait_for(self, pattern: str, timeout: float = DEADLINE) -> re.Match[str]:
        """Until the log matches `pattern` (a regex); fails early if the process ends."""
        deadline = time.monotonic() + timeout
        while True:
            match = re.search(pattern, self.text())
            if match:
                return match
            if self.process.poll() is not None:
                match = re.search(pattern, self.text())
                if match:
                    return match
                raise AssertionError(
                    f"exited {self.process.returncode} before logging {pattern!r}:\n{self.text()}"
                )
            assert time.monotonic() < deadline, f"no {pattern!r} in:\n{self.text()}"
            time.sleep(0.05)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> tuple[int, float]:
        """Send `sig` and wait: (exit status, seconds it took to exit)."""
        started = time.monotonic()
        self.process.send_signal(sig)
        code = self.process.wait(timeout=timeout)
        took = time.monotonic() - started
        self._log.close()
        return code, took

    def kill(self) -> None:
        self.process.kill()
        self.process.wait(timeout=30)
        self._log.close()

    def close(self) -> None:
        if self.process.poll() is None:
            self.kill()
        self._log.close()


def set_next_run(settings: Settings, job: str, when: datetime) -> None:
    """Move a stored job's next run, as downtime would leave it (APScheduler keeps the time
    both in a column and in the pickled job state)."""
    t = apscheduler_jobs_table
    with Store.open(settings.database_url) as store, store.engine.begin() as conn:
        state = pickle.loads(
            conn.execute(sa.select(t.c.job_state).where(t.c.id == job)).scalar_one()
        )
        state["next_run_time"] = when.astimezone(settings.schedule_zone)
        conn.execute(
            t.update()
            .where(t.c.id == job)
            .values(next_run_time=when.timestamp(), job_state=pickle.dumps(state))
        )


def issue_numbers(settings: Settings) -> list[int]:
    with Store.open(settings.database_url) as store:
        return sorted(issue.number for issue, _ in store.issues_with_titles())


def next_runs(settings: Settings) -> dict[str, datetime | None]:
    with Store.open(settings.database_url) as store:
        return store.job_next_runs()


def article_text(title: str) -> str:
    return f"""\
        Maren Holt – The Quay Courier
        {title}
        The harbour master said the work would take a week, and it took a week.
        Fishermen came down to watch the new lamps go up along the old wall.
        """
