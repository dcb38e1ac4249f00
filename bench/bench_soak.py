"""Soak: a year of daily collect -> publish -> send in one process, as `publisher run` lives.

Each simulated day drops one article, collects it, publishes an issue and sends it to 50
subscribers through a real SMTP server on loopback (aiosmtpd). Memory, open file
descriptors and threads are read at checkpoints: a long-running scheduler must not grow.

    .venv/bin/python bench/bench_soak.py [--days 365] [--subscribers 50]
"""

from __future__ import annotations

import argparse
import gc
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.common import print_table
from publisher import pipeline
from publisher.settings import load_settings
from publisher.store import Store
from tests.smtp_sink import SmtpSink

START = datetime(2026, 1, 1, 6, 0, tzinfo=UTC)
# Growth allowed from the first checkpoint after warm-up to the last: caches fill early on.
GROWTH_LIMIT_MB = 10.0


def resident_mb() -> float:
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def open_fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--days", type=int, default=365)
    parser.add_argument("--subscribers", type=int, default=50)
    args = parser.parse_args()

    sink = SmtpSink()
    sink.start()
    with tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        root = Path(tmp)
        (root / "articles").mkdir()
        (root / "settings.toml").write_text(
            '[site]\ntitle = "Soak"\nurl = "https://soak.example.org/"\n'
            'timezone = "Europe/Berlin"\n'
            f'[smtp]\nhost = "{sink.host}"\nport = {sink.port}\nsecurity = "none"\n'
            'connections = 2\n[delivery]\nfrom_address = "Soak <desk@soak.example.org>"\n'
            'token_key_env = "BENCH_SOAK_TOKEN_KEY"\n',
            encoding="utf-8",
        )
        environ = {"BENCH_SOAK_TOKEN_KEY": "bench-soak-secret-0123456789abcdef"}
        os.environ.update(environ)
        settings = load_settings(root / "settings.toml", environ=environ)
        with Store.open(settings.database_url) as store:
            store.import_subscribers(
                ((f"reader{n}@example.org", f"Reader {n}") for n in range(args.subscribers)),
                now=START,
            )
        checkpoints = sorted({1, 30, *range(60, args.days + 1, 60), args.days})
        rows, sent, received, twice, began = [], 0, 0, 0, time.perf_counter()
        baseline: float | None = None
        for day in range(1, args.days + 1):
            now = START + timedelta(days=day)
            article = root / "articles" / f"day-{day:04}.md"
            article.write_text(f"# Day {day} at the harbour\n\n" + "The quay was busy. " * 40)
            pipeline.collect(settings, now=now)
            with pipeline.exclusive(settings, "publish", purpose="bench soak", wait=True):
                pipeline.publish(settings, now=now + timedelta(minutes=5))
            with pipeline.exclusive(settings, "send", purpose="bench soak", wait=True):
                sent += pipeline.send(settings, now=now + timedelta(minutes=10)).sent
            delivered = sink.recipients()
            received += sum(delivered.values())
            twice += sum(count - 1 for count in delivered.values())
            with sink.lock:
                sink.messages.clear()  # the sink's own memory is not ours
            if day in checkpoints:
                gc.collect()
                rss = resident_mb()
                if day == 30:
                    baseline = rss
                rows.append(
                    [f"{day}", f"{rss:.1f}", f"{open_fds()}", f"{threading.active_count()}",
                     f"{sent:,}", f"{time.perf_counter() - began:.0f}"]
                )  # fmt: skip
    sink.stop()
    print_table(
        f"soak: {args.days} daily cycles of collect, publish and send to "
        f"{args.subscribers} subscribers, in one process",
        ["day", "RSS MB", "open fds", "threads", "mails sent", "seconds"],
        rows,
    )
    if baseline is not None:
        growth = resident_mb() - baseline
        verdict = "met" if growth <= GROWTH_LIMIT_MB else "MISSED"
        print(f"\n{verdict}   RSS growth after day 30: {growth:.1f} MB (<= {GROWTH_LIMIT_MB:.0f})")
    expected = args.days * args.subscribers
    once = sent == received == expected and twice == 0
    print(
        f"{'met' if once else 'MISSED'}   every mail sent once: {received:,} received of "
        f"{expected:,}, {twice} twice"
    )


if __name__ == "__main__":
    main()
