"""`publisher run`: APScheduler 3.x runs collect, publish and send as [schedule] says."""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.events import (
    EVENT_JOB_ERROR,
    EVENT_JOB_EXECUTED,
    EVENT_JOB_MISSED,
    EVENT_JOB_SUBMITTED,
)
from apscheduler.executors.pool import ThreadPoolExecutor
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from publisher import pipeline
from publisher.errors import ConfigError, PublisherError
from publisher.locks import HeldLock, WaitStopped
from publisher.model import (
    CollectReport,
    DeliveryBacklog,
    JobOutcome,
    JobRun,
    LockHolder,
    PublishReport,
    SendReport,
)
from publisher.settings import Settings
from publisher.timespec import Interval, parse_timespec

log = logging.getLogger(__name__)

# What the job store pickles: a textual reference, so a stored job survives a restart and
# an upgrade. Job ids are the job names: a restart replaces the stored jobs, never adds more.
JOB_FUNC = "publisher.scheduler:run_job"
RESUME_JOB = "send-on-start"
EXECUTOR_THREADS = 3  # one per job: a long send never holds back a collect or a publish
SUBMIT_TIMEOUT = 60.0  # seconds `--once` waits for the scheduler to start the due jobs
_DONE_EVENTS = EVENT_JOB_EXECUTED | EVENT_JOB_ERROR | EVENT_JOB_MISSED

Clock = Callable[[], datetime]

# The Runner of this process. APScheduler calls jobs by textual reference, and a pickled job
# cannot carry the live stop event, so run_job finds them here; set only while run() runs.
_active: Runner | None = None


def run_job(job: str) -> str:
    """The function every stored job names: run one scheduled job in this process's Runner."""
    runner = _active
    if runner is None:
        raise RuntimeError("publisher jobs run only inside `publisher run`")
    return runner.run_job(job)


def make_trigger(text: str, zone: ZoneInfo) -> Any:
    """An APScheduler trigger for a [schedule] entry (already checked by the settings)."""
    spec = parse_timespec(text)
    if isinstance(spec, Interval):
        return IntervalTrigger(seconds=spec.seconds, timezone=zone)
    return CronTrigger(timezone=zone, **spec.trigger_args())


def job_label(job: str, text: str, zone: ZoneInfo) -> str:
    """The stored job's name. It changes exactly when the schedule does, which tells a
    restart whether the stored next run still holds."""
    return f"{job}: {text} ({zone.key})"


def should_resume_send(
    backlog: DeliveryBacklog, last_publish: JobRun | None, send_after_publish: bool
) -> bool:
    """At start: does the newest issue's delivery need to go on at once?

    Yes when its messages are due (a stop or crash cut the send short), or when the publish
    job published it and stopped or died before the send that follows could begin.
    """
    issue = backlog.issue
    if issue is None:
        return False
    if backlog.queued:
        return backlog.due > 0
    if not send_after_publish or last_publish is None:
        return False
    if last_publish.issue_number == issue.number:
        return True
    started = last_publish.started_at
    died_mid_run = last_publish.outcome == "running" and started is not None
    return died_mid_run and started is not None and issue.published_at >= started


# ---------------------------------------------------------------- one line per job run


def collect_line(report: CollectReport) -> str:
    line = (
        f"{report.new} new, {report.updated} updated, {report.unchanged} unchanged, "
        f"{report.failed} failed"
    )
    if report.source_missing:
        line += f", {len(report.source_missing)} source missing"
    return line


def publish_line(report: PublishReport) -> str:
    issue = report.issue
    if issue is None:
        return "nothing new to publish"
    return (
        f"issue #{issue.number} in {issue.folder}/ with {len(issue.article_ids)} article(s), "
        f"digest {report.digest_form or 'n/a'}: {issue.title}"
    )


def send_line(report: SendReport) -> str:
    line = (
        f"issue #{report.issue_number}: {report.sent} sent, {report.deferred} deferred, "
        f"{report.failed} failed, {report.skipped} skipped"
    )
    if report.queued > 0:  # psycopg 3 reports an INSERT's count as -1
        line += f" ({report.queued} newly queued)"
    status = report.status
    if status is not None:
        left = status.pending + status.deferred
        line += "; delivery finished" if status.finished else f"; {left} still to send"
    if report.stopped:
        line += f"; stopped: {report.stopped}"
    return line


@dataclass(frozen=True, slots=True)
class _Planned:
    text: str
    trigger: Any
    label: str


class Runner:
    """One `publisher run`: holds the store's scheduler lock, keeps the jobs in APScheduler's
    job store in step with [schedule], and runs each job through the pipeline."""

    def __init__(
        self, settings: Settings, stop: threading.Event, clock: Clock | None = None
    ) -> None:
        self.settings = settings
        self.stop = stop
        self.clock = clock or (lambda: datetime.now(UTC))
        self.failed = 0  # job runs that failed, for `--once`'s exit status
        self._collecting = threading.Lock()  # the publish job collects too; never two at once
        self._lock = threading.Lock()
        self._awaited: set[str] = set()  # `--once`: jobs not yet finished
        self._unsubmitted: set[str] = set()
        self._scheduler: Any = None
        self._all_done = threading.Event()

    # ------------------------------------------------------------ driving

    def run(
        self,
        *,
        once: bool = False,
        wait: bool = False,
        on_wait: Callable[[LockHolder], None] | None = None,
    ) -> int:
        """Run until `stop` is set (or, with `once`, until every due job ran); returns how
        many job runs failed. Raises LockedError when another `publisher run` holds the store
        (unless `wait`)."""
        global _active  # see the note at its definition
        planned = self._plan()
        schedule = self.settings.schedule
        if schedule.send or (schedule.publish and schedule.send_after_publish):
            pipeline.check_send_ready(self.settings)
        purpose = "publisher run --once" if once else "publisher run"
        try:
            with pipeline.exclusive(
                self.settings,
                "scheduler",
                purpose=purpose,
                wait=wait,
                stop=self.stop,
                on_wait=on_wait,
            ) as held:
                _active = self
                try:
                    self._drive(planned, held, once)
                finally:
                    _active = None
        except WaitStopped:
            log.info("stopped while waiting for the other `publisher run` to end")
        return self.failed

    def _plan(self) -> dict[str, _Planned]:
        zone = self.settings.schedule_zone
        planned = {}
        for job in pipeline.JOB_NAMES:
            text = getattr(self.settings.schedule, job)
            if text:
                planned[job] = _Planned(text, make_trigger(text, zone), job_label(job, text, zone))
        if not planned:
            raise ConfigError(
                [
                    "[schedule]: no job is scheduled; set collect, publish or send (see the "
                    "bundled settings.toml)"
                ],
                where=str(self.settings.source_file),
            )
        return planned

    def _drive(self, planned: dict[str, _Planned], held: HeldLock, once: bool) -> None:
        grace = self.settings.schedule.misfire_grace_time
        scheduler = BackgroundScheduler(
            jobstores={"default": pipeline.open_job_store(self.settings)},
            executors={"default": ThreadPoolExecutor(EXECUTOR_THREADS)},
            job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": grace},
            timezone=self.settings.schedule_zone,
        )
        self._scheduler = scheduler
        scheduler.add_listener(self._on_event, _DONE_EVENTS | EVENT_JOB_SUBMITTED)
        scheduler.start(paused=True)  # jobs are brought in step before anything runs
        try:
            self._sync_jobs(scheduler, planned)
            self._resume_delivery(scheduler)
            if once:
                self._run_once(scheduler)
            else:
                self._run_until_stopped(scheduler, held)
        finally:
            self.stop.set()  # jobs still running finish the item in hand, then return
            scheduler.shutdown(wait=True)
            self._scheduler = None
            if not once:
                log.info("publisher run: stopped")

    def _sync_jobs(self, scheduler: Any, planned: dict[str, _Planned]) -> None:
        stored = {job.id: job for job in scheduler.get_jobs()}
        for job in pipeline.JOB_NAMES:
            plan, old = planned.get(job), stored.get(job)
            if plan is None:
                if old is not None:
                    scheduler.remove_job(job)
                    log.info("%s: no longer scheduled; removed from the job store", job)
                continue
            keep: dict[str, Any] = {}
            if old is not None and old.name == plan.label and old.next_run_time is not None:
                # Same schedule: keep the stored next run, even one in the past, so downtime
                # gives its catch-up run. (replace_existing alone would compute a new one.)
                keep["next_run_time"] = old.next_run_time
            scheduler.add_job(
                JOB_FUNC,
                trigger=plan.trigger,
                args=[job],
                id=job,
                name=plan.label,
                replace_existing=True,
                **keep,
            )

    def _resume_delivery(self, scheduler: Any) -> None:
        schedule = self.settings.schedule
        follows = bool(schedule.publish) and schedule.send_after_publish
        if not (schedule.send or follows):
            return
        backlog = pipeline.delivery_backlog(self.settings, now=self.clock())
        last_publish = pipeline.job_runs(self.settings).get("publish")
        if not should_resume_send(backlog, last_publish, follows):
            return
        assert backlog.issue is not None
        number = backlog.issue.number
        log.info("send: issue #%d's delivery was cut short; going on with it now", number)
        now = self.clock()
        if scheduler.get_job("send") is not None:
            # Now rather than at its time (or never, if that time was missed by more than the
            # grace time); its schedule goes on from here.
            scheduler.modify_job("send", next_run_time=now)
            return
        scheduler.add_job(
            JOB_FUNC,
            trigger=DateTrigger(run_date=now),
            args=["send"],
            id=RESUME_JOB,
            name="send: resume after a restart",
            replace_existing=True,
            misfire_grace_time=None,  # however late: it is owed
        )

    def _run_until_stopped(self, scheduler: Any, held: HeldLock) -> None:
        scheduler.resume()
        log.info("publisher run: started; %s", self._next_runs(scheduler))
        while not self.stop.wait(1.0):
            if held.lost.is_set():
                log.error("another process took this store's scheduler lock over; stopping")
                return
        log.info("publisher run: stopping; jobs under way finish the item in hand")

    def _run_once(self, scheduler: Any) -> None:
        now = datetime.now(UTC)
        due = {
            job.id
            for job in scheduler.get_jobs()
            if job.next_run_time is not None and job.next_run_time <= now
        }
        if not due:
            log.info("publisher run --once: nothing is due; %s", self._next_runs(scheduler))
            return
        with self._lock:
            self._awaited, self._unsubmitted = set(due), set(due)
        scheduler.resume()
        started = time.monotonic()
        while not self._all_done.wait(0.2):
            if self.stop.is_set():
                return
            with self._lock:
                stuck = self._unsubmitted and time.monotonic() - started > SUBMIT_TIMEOUT
            if stuck:
                raise PublisherError(
                    "the scheduler did not start the due jobs; is the database reachable?",
                    where="publisher run --once",
                )

    def _next_runs(self, scheduler: Any) -> str:
        zone, now = self.settings.schedule_zone, datetime.now(UTC)
        parts = []
        for job in sorted(scheduler.get_jobs(), key=lambda j: str(j.id)):
            when = job.next_run_time
            if when is not None:
                due = (
                    "due now" if when <= now else f"next {when.astimezone(zone):%Y-%m-%d %H:%M:%S}"
                )
                parts.append(f"{job.name}, {due}")
        return "; ".join(parts) or "no job is scheduled"

    # ------------------------------------------------------------ events

    def _on_event(self, event: Any) -> None:
        job = "send" if event.job_id == RESUME_JOB else str(event.job_id)
        if event.code == EVENT_JOB_MISSED:
            self._missed(job, event.scheduled_run_time)
        with self._lock:
            if event.code == EVENT_JOB_SUBMITTED:
                self._unsubmitted.discard(event.job_id)
                if self._awaited and not self._unsubmitted and self._scheduler is not None:
                    # `--once`: the due jobs are on their way; start nothing more.
                    self._scheduler.pause()
            elif event.job_id in self._awaited:
                self._awaited.discard(event.job_id)
                if not self._awaited:
                    self._all_done.set()

    def _missed(self, job: str, due: datetime) -> None:
        now = self.clock()
        grace = self.settings.schedule.misfire_grace_time
        zone = self.settings.schedule_zone
        summary = (
            f"skipped the run due at {due.astimezone(zone):%Y-%m-%d %H:%M:%S %Z}: "
            f"{_late(now - due)} late, more than [schedule] misfire_grace_time ({grace} s)"
        )
        log.warning("%s: %s", job, summary)
        pipeline.record_job_run(
            self.settings,
            JobRun(job, "missed", finished_at=now, scheduled_for=due, summary=summary),
        )

    # ------------------------------------------------------------ the jobs

    def run_job(self, job: str) -> str:
        """Run one job through the pipeline, log its one-line summary, record the run."""
        if self.stop.is_set():
            return "not started: stopping"
        started = self.clock()
        pipeline.record_job_run(self.settings, JobRun(job, "running", started_at=started))
        began = time.monotonic()
        issue_number: int | None = None
        outcome: JobOutcome = "ok"
        try:
            if job == "collect":
                summary = self._collect()
            elif job == "publish":
                summary, issue_number = self._publish()
            else:
                summary = self._send()
        except WaitStopped:
            outcome, summary = "stopped", "stopped while waiting for another process"
        except PublisherError as exc:
            outcome, summary = "failed", str(exc)
        except Exception as exc:  # a bug must not end the scheduler; it is logged in full
            log.exception("%s: unexpected error", job)
            outcome, summary = "failed", f"unexpected {type(exc).__name__}: {exc}"
        else:
            if self.stop.is_set():
                outcome = "stopped"
        took = f" ({time.monotonic() - began:.1f} s)"
        if outcome == "failed":
            with self._lock:
                self.failed += 1
            log.error("%s: failed: %s%s", job, summary, took)
        else:
            log.info("%s: %s%s", job, summary, took)
        pipeline.record_job_run(
            self.settings,
            JobRun(
                job,
                outcome,
                started_at=started,
                finished_at=self.clock(),
                summary=summary,
                issue_number=issue_number,
            ),
        )
        if issue_number is not None and self.settings.schedule.send_after_publish:
            # Recorded first: a stop before or during this send is resumed at the next start
            # (from this record, or from the outbox).
            self.run_job("send")
        return summary

    def _collect(self) -> str:
        with self._collecting:
            report = pipeline.collect(self.settings, now=self.clock(), stop=self.stop)
        for problem in report.problems:
            log.warning("collect: %s: %s", problem.severity, problem)
        line = collect_line(report)
        return line + "; stopped before the end" if self.stop.is_set() else line

    def _publish(self) -> tuple[str, int | None]:
        # Collect first, as `publisher build` does: an article dropped in just before the
        # publish time is in the issue even when the collect job has not come round yet.
        self.run_job("collect")
        if self.stop.is_set():
            return "not started: stopping", None
        with pipeline.exclusive(
            self.settings,
            "publish",
            purpose="publisher run: publish",
            wait=True,
            stop=self.stop,
            on_wait=self._waiting("publish"),
        ):
            report = pipeline.publish(self.settings, now=self.clock())
        for problem in report.problems:
            log.warning("publish: %s: %s", problem.severity, problem)
        return publish_line(report), None if report.issue is None else report.issue.number

    def _send(self) -> str:
        with pipeline.exclusive(
            self.settings,
            "send",
            purpose="publisher run: send",
            wait=True,
            stop=self.stop,
            on_wait=self._waiting("send"),
        ):
            backlog = pipeline.delivery_backlog(self.settings, now=self.clock())
            if backlog.issue is None:
                return "nothing to send: no issue has been published yet"
            report = pipeline.send(self.settings, now=self.clock(), stop=self.stop)
        return send_line(report)

    def _waiting(self, job: str) -> Callable[[LockHolder], None]:
        def tell(holder: LockHolder) -> None:
            if (holder.pid, holder.host) == (os.getpid(), socket.gethostname()):
                return  # another job of this process: it ends soon, nothing to report
            log.info("%s: waiting for %s", job, holder.describe())

        return tell


def _late(delta: Any) -> str:
    seconds = int(delta.total_seconds())
    hours, rest = divmod(seconds, 3600)
    minutes, seconds = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes} min"
    return f"{minutes} min {seconds} s" if minutes else f"{seconds} s"
