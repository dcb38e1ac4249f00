"""Delivery benchmark: building personalised messages, sending them, memory at 100,000 subscribers.

    .venv/bin/python bench/bench_delivery.py           # the full run (a few minutes)
    .venv/bin/python bench/bench_delivery.py --quick   # smaller counts, for a smoke test

Prints one table. Every comparison is made in the same run, side by side:
  1. build 10,000 personalised ~60 KB messages from the prebuilt template, against a fresh
     EmailMessage per subscriber (the naive way; timed on fewer messages, reported as a rate);
  2. send 10,000 to a local aiosmtpd sink (a separate process) with `pipeline.send` (outbox,
     claims, a row written per message), against a bare smtplib loop sending the same prebuilt
     messages over one reused connection to the same sink; each side in a fresh process, as a
     user's `publisher send` runs, the bare loop before and after ours;
  3. peak RSS of a process that imports 100,000 subscribers and sends them an issue.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from publisher import pipeline  # noqa: E402
from publisher.delivery.message import MessageFactory, build_template, list_identity  # noqa: E402
from publisher.model import (  # noqa: E402
    PLACEHOLDER_GREETING,
    PLACEHOLDER_RECIPIENT,
    PLACEHOLDER_UNSUBSCRIBE_URL,
    Digest,
    Issue,
)
from publisher.settings import Settings, load_settings  # noqa: E402
from publisher.store import Store  # noqa: E402

KEY = "bench-secret-key-0123456789abcdef"
NOW = datetime(2026, 11, 24, 8, 0, tzinfo=UTC)
FROM = "Bench Dispatch <desk@bench.example.org>"

PARAGRAPH = (
    "<p style=\"margin:0 0 16px 0;font-family:Georgia,'Times New Roman',serif;font-size:17px;"
    'line-height:1.55;color:#222222">The harbour authority confirmed on Tuesday that the lights '
    "along the northern quay – dark since the storm in March – will be switched on again "
    "before the “Winter Market” opens. Fishermen welcomed the news; café owners less so, "
    'as the works close the promenade for a week. <a href="https://example.org/news/{n}" '
    'style="color:#0b5cad;text-decoration:underline">Read the full story</a>.</p>\n'
)


def digest() -> Digest:
    """An email of ~60 KB once encoded: inlined styles, links, some non-ASCII."""
    articles = "".join(PARAGRAPH.format(n=n) for n in range(95))
    html = (
        '<!DOCTYPE html><html lang="en"><head><meta charset="utf-8"></head>'
        '<body style="margin:0;padding:0;background:#f4f4f4">'
        f'<p style="font-family:Georgia,serif">{PLACEHOLDER_GREETING}</p>{articles}'
        f'<p style="font-size:12px;color:#666">Sent to {PLACEHOLDER_RECIPIENT}. '
        f'<a href="{PLACEHOLDER_UNSUBSCRIBE_URL}">Unsubscribe</a></p></body></html>'
    )
    text = (
        f"{PLACEHOLDER_GREETING}\n\n"
        + "The harbour lights return – “Winter Market” news, café owners react.\n\n" * 60
        + f"Sent to {PLACEHOLDER_RECIPIENT}. Unsubscribe: {PLACEHOLDER_UNSUBSCRIBE_URL}\n"
    )
    return Digest("Bench Dispatch #1: Harbour lights return", "", html, text)


def make_site(folder: Path, port: int, connections: int = 4) -> Settings:
    (folder / "settings.toml").write_text(
        f"""
[site]
title = "Bench Dispatch"
url = "https://bench.example.org/"
[store]
path = "state/bench.db"
[smtp]
host = "127.0.0.1"
port = {port}
security = "none"
connections = {connections}
timeout = 30
[delivery]
from_address = "{FROM}"
""",
        encoding="utf-8",
    )
    return load_settings(folder / "settings.toml", environ={})


def publish(settings: Settings, number: int) -> Issue:
    d = digest()
    folder = f"2026-11-{23 + number:02d}"
    issue = Issue(number, folder, NOW, d.subject, ())
    with Store.open(settings.database_url) as store:
        store.save_issue(issue)
    target = settings.output_dir / folder
    target.mkdir(parents=True, exist_ok=True)
    (target / "email.html").write_text(d.html, encoding="utf-8")
    (target / "email.txt").write_text(d.text, encoding="utf-8")
    return issue


def subscribers(settings: Settings, count: int) -> None:
    with Store.open(settings.database_url) as store:
        store.import_subscribers(
            ((f"reader{n}@example.org", f"Reader {n}") for n in range(count)), now=NOW
        )


# ---------------------------------------------------------------- 1. building


def naive_message(d: Digest, n: int) -> bytes:
    """What most code does: a fresh EmailMessage per subscriber."""
    url = f"https://bench.example.org/unsubscribe?token={n}.abcdefghijklmnopqrstuv"
    fill = {
        PLACEHOLDER_GREETING: f"Hello Reader {n},",
        PLACEHOLDER_RECIPIENT: f"reader{n}@example.org",
        PLACEHOLDER_UNSUBSCRIBE_URL: url,
    }
    text, html = d.text, d.html
    for key, value in fill.items():
        text, html = text.replace(key, value), html.replace(key, value)
    message = EmailMessage(policy=SMTP)
    message["From"] = FROM
    message["To"] = f"Reader {n} <reader{n}@example.org>"
    message["Subject"] = d.subject
    message["Date"] = format_datetime(NOW)
    message["Message-ID"] = make_msgid(domain="bench.example.org")
    message["List-Unsubscribe"] = f"<{url}>, <mailto:desk@bench.example.org?subject=unsubscribe>"
    message["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    return message.as_bytes()


def bench_build(settings: Settings, count: int, naive_count: int) -> list[tuple[str, ...]]:
    d = digest()
    identity = list_identity(settings)
    issue = Issue(1, "2026-11-24", NOW, d.subject, ())
    started = time.perf_counter()
    template = build_template(identity, d)
    factory = MessageFactory(settings, identity, template, issue.number, KEY.encode())
    setup = time.perf_counter() - started
    started = time.perf_counter()
    size = 0
    for n in range(1, count + 1):
        size += len(factory.build(n, f"reader{n}@example.org", f"Reader {n}", NOW).data)
    ours = time.perf_counter() - started
    started = time.perf_counter()
    for n in range(1, naive_count + 1):
        naive_message(d, n)
    naive = time.perf_counter() - started
    ours_rate, naive_rate = count / ours, naive_count / naive
    return [
        ("build: template once per issue", "1", f"{setup * 1000:.1f} ms", "", "", ""),
        (
            "build: template + fill (ours)",
            f"{count:,}",
            f"{ours:.2f} s",
            f"{ours_rate:,.0f}/s",
            f"{size / count / 1024:.1f} KB avg",
            f">= 2,000/s: {'met' if ours_rate >= 2000 else 'MISSED'}",
        ),
        (
            "build: fresh EmailMessage each",
            f"{naive_count:,}",
            f"{naive:.2f} s",
            f"{naive_rate:,.0f}/s",
            f"ours is {ours_rate / naive_rate:.1f}x",
            "",
        ),
    ]


# ---------------------------------------------------------------- 2. sending


def start_sink() -> tuple[subprocess.Popen[str], int]:
    process = subprocess.Popen(
        [sys.executable, __file__, "--sink"], stdout=subprocess.PIPE, text=True
    )
    assert process.stdout is not None
    port = int(process.stdout.readline())
    return process, port


def sink_count(port: int) -> int:
    """The sink answers VRFY with how many messages it has taken."""
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        return int(smtp.verify("count")[1])


def bare_child(folder: Path, port: int, count: int) -> None:
    """In a fresh process: the same prebuilt messages over one smtplib connection."""
    settings = make_site(folder, port)
    identity = list_identity(settings)
    factory = MessageFactory(
        settings, identity, build_template(identity, digest()), 1, KEY.encode()
    )
    distinct = min(count, 1000)  # the loop cycles through 1,000 prebuilt messages
    prebuilt = [
        factory.build(n, f"reader{n}@example.org", f"Reader {n}", NOW).data for n in range(distinct)
    ]
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port) as smtp:
        for n in range(count):
            rcpt = [f"reader{n}@example.org"]
            smtp.sendmail("desk@bench.example.org", rcpt, prebuilt[n % distinct])
    print(time.perf_counter() - started)


def send_child(folder: Path, port: int, connections: int, number: int) -> None:
    """In a fresh process, as `publisher send` runs: the whole use case, timed."""
    os.environ["PUBLISHER_TOKEN_KEY"] = KEY
    settings = make_site(folder, port, connections)
    started = time.perf_counter()
    report = pipeline.send(settings, now=NOW + timedelta(minutes=number), issue_number=number)
    took = time.perf_counter() - started
    print(took, report.sent)


def child(*args: object) -> list[str]:
    out = subprocess.run(
        [sys.executable, __file__, *map(str, args)], capture_output=True, text=True, check=True
    )
    return out.stdout.split()


def bench_send(folder: Path, port: int, count: int) -> list[tuple[str, ...]]:
    """Each side runs in its own fresh process, as a user's `publisher send` would."""
    rows: list[tuple[str, ...]] = []
    settings = make_site(folder, port)
    subscribers(settings, count)

    def bare_loop() -> float:
        before = sink_count(port)
        took = float(child("--bare-child", folder, port, count)[0])
        assert sink_count(port) - before == count
        return took

    # The bare loop runs before and after ours; the limit is their mean rate, so a drift of
    # the shared machine during the run weighs on both sides alike.
    bare_times = [bare_loop()]
    ours: list[tuple[int, float]] = []
    for number, connections in ((1, 4), (2, 1)):
        publish(make_site(folder, port, connections), number)
        before = sink_count(port)
        took, sent = child("--send-child", folder, port, connections, number)
        assert int(sent) == count == sink_count(port) - before
        ours.append((connections, float(took)))
    bare_times.append(bare_loop())
    rates = [count / t for t in bare_times]
    bare_rate = sum(rates) / len(rates)
    for label, took in zip(("before", "after"), bare_times, strict=True):
        note = f"limit: mean {bare_rate:,.0f}/s" if label == "after" else ""
        rows.append(
            (f"send: bare smtplib, 1 conn. ({label})", f"{count:,}", f"{took:.2f} s",
             f"{count / took:,.0f}/s", note, "")
        )  # fmt: skip
    for connections, took in ours:
        rate = count / took
        verdict = f">= 0.8x: {'met' if rate >= 0.8 * bare_rate else 'MISSED'}"
        rows.append(
            (f"send: pipeline.send, {connections} conn.", f"{count:,}", f"{took:.2f} s",
             f"{rate:,.0f}/s", f"{rate / bare_rate:.2f}x of bare", verdict)
        )  # fmt: skip
    return rows


# ---------------------------------------------------------------- 3. memory


def rss_child(folder: Path, port: int, count: int) -> None:
    """In its own process: import `count` subscribers from CSV, then send them an issue."""
    os.environ["PUBLISHER_TOKEN_KEY"] = KEY
    settings = make_site(folder, port)
    csv_path = folder / "people.csv"
    with csv_path.open("w", encoding="utf-8") as handle:
        handle.write("email,name\n")
        for n in range(count):
            handle.write(f"reader{n}@example.org,Reader {n}\n")
    report = pipeline.import_subscribers(settings, csv_path, now=NOW)
    assert report.new == count, report
    publish(settings, 1)
    sent = pipeline.send(settings, now=NOW)
    assert sent.sent == count, sent
    print(sent.sent)


def bench_rss(folder: Path, port: int, count: int) -> list[tuple[str, ...]]:
    started = time.perf_counter()
    child = subprocess.Popen(
        [sys.executable, __file__, "--rss-child", str(folder), str(port), str(count)],
        stdout=subprocess.PIPE,
        text=True,
    )
    _, status, usage = os.wait4(child.pid, 0)
    took = time.perf_counter() - started
    assert status == 0, "the memory run failed"
    peak = usage.ru_maxrss / 1024  # kB on Linux
    verdict = f"<= 200 MB: {'met' if peak <= 200 else 'MISSED'}"
    return [
        (f"memory: import + send {count:,}", f"{count:,}", f"{took:.1f} s",
         f"{count / took:,.0f}/s", f"peak RSS {peak:.0f} MB", verdict)
    ]  # fmt: skip


# ---------------------------------------------------------------- the sink process


def run_sink() -> None:
    from aiosmtpd.controller import Controller

    class Counting:
        count = 0

        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            Counting.count += 1
            return "250 OK"

        async def handle_VRFY(
            self, server: object, session: object, envelope: object, address: str
        ) -> str:
            return f"250 {Counting.count}"

    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    controller = Controller(Counting(), hostname="127.0.0.1", port=port, data_size_limit=0)
    controller.start()
    print(port, flush=True)
    try:
        sys.stdin.read()  # until the parent goes away
        while True:
            time.sleep(3600)
    finally:
        controller.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--sink", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--rss-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--bare-child", nargs=3, help=argparse.SUPPRESS)
    parser.add_argument("--send-child", nargs=4, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.bare_child:
        folder, port, count = args.bare_child
        bare_child(Path(folder), int(port), int(count))
        return
    if args.send_child:
        folder, port, connections, number = args.send_child
        send_child(Path(folder), int(port), int(connections), int(number))
        return
    if args.sink:
        run_sink()
        return
    if args.rss_child:
        folder, port, count = args.rss_child
        rss_child(Path(folder), int(port), int(count))
        return
    build_n, naive_n, send_n, rss_n = (
        (1_000, 200, 1_000, 10_000) if args.quick else (10_000, 1_000, 10_000, 100_000)
    )
    sink, port = start_sink()
    rows: list[tuple[str, ...]] = []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            base = Path(tmp)
            (base / "build").mkdir()
            rows += bench_build(make_site(base / "build", port), build_n, naive_n)
            (base / "send").mkdir()
            rows += bench_send(base / "send", port, send_n)
            (base / "rss").mkdir()
            rows += bench_rss(base / "rss", port, rss_n)
    finally:
        sink.kill()
        sink.wait()
    header = ("case", "messages", "time", "rate", "note", "target")
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    print(f"publisher delivery benchmark ({os.cpu_count()} cores, Python {sys.version.split()[0]})")
    for row in [header, tuple("-" * w for w in widths), *rows]:
        print("  ".join(str(cell).ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip())


if __name__ == "__main__":
    main()
