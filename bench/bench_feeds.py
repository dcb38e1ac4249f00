"""Upstream feeds: publisher's collect against the `reader` library, on the same loopback feeds.

100 feeds x 100 full-content entries (~750 words each, half RSS 2.0, half Atom 1.0) are
served from a loopback HTTP server in its own process that honours ETag and
If-Modified-Since. Each side polls them twice into a fresh SQLite store: a first poll
that stores every entry, then a second one where every feed answers 304. `reader`
(lemon24/reader) runs in its own venv (bench/.venv-reader, created on first use).

    .venv/bin/python bench/bench_feeds.py [--feeds 100] [--entries 100]

Wall times are measured inside each side's own process around the two polls only (each side
has imported its library and created its database before its clock starts); peak
memory is each main process's maximum RSS, and the sampled sum over its process tree
(publisher's parse workers included). Sides alternate; the median of --repeat runs counts.
PUBLISHER_SOURCES__* variables override publisher's [sources] settings, to try some.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
READER_VENV = HERE / ".venv-reader"
READER_PACKAGES = ["reader", "sgmllib3k"]
NOW = "2026-11-24T06:00:00+00:00"

# Top-level code stays light: parse worker processes import this file as their __main__.

WORDS = str.split(
    "harbour lights return council bike lanes market day reading winter cafe review river "
    "bridge tram night school garden library festival music weather storm ferry quay "
    "timetable bakery museum square station tide north south evening morning volunteers "
    "plans budget residents opening hours repairs archive photos history neighbours"
)


# ---------------------------------------------------------------------------- the feeds


def entry_html(rng: object, feed: int, entry: int) -> str:
    """~750 words: paragraphs, a heading, a list, links (a few relative) and an image."""
    import random

    assert isinstance(rng, random.Random)

    def sentence(n: int) -> str:
        return " ".join(rng.choice(WORDS) for _ in range(n)).capitalize() + "."

    parts = []
    for p in range(9):
        words = " ".join(sentence(rng.randint(9, 14)) for _ in range(6))
        link = (
            f'<a href="/f{feed}/posts/{entry}-{p}">read more</a>'
            if p % 4 == 0
            else f'<a href="https://example.org/f{feed}/{entry}/{p}">source</a>'
        )
        parts.append(f"<p>{words} See {link}.</p>")
        if p == 3:
            parts.append(f"<h2>{sentence(4)}</h2>")
            parts.append("<ul>" + "".join(f"<li>{sentence(6)}</li>" for _ in range(3)) + "</ul>")
        if p == 5:
            parts.append(f'<p><img src="img/{entry}.jpg" alt="{sentence(3)}"></p>')
    return "\n".join(parts)


def feed_document(feed: int, entries: int) -> tuple[bytes, str]:
    import random
    from datetime import UTC, datetime, timedelta
    from email.utils import format_datetime
    from html import escape

    rng = random.Random(feed)
    base = datetime(2026, 11, 24, 5, 0, tzinfo=UTC)
    items = []
    atom = feed % 2 == 1
    for n in range(entries):
        moment = base - timedelta(hours=n)
        title = f"Feed {feed} entry {n}: {' '.join(rng.choice(WORDS) for _ in range(5))}"
        content = entry_html(rng, feed, n)
        link = f"https://example.org/f{feed}/posts/{n}"
        if atom:
            items.append(
                f"<entry><title>{escape(title)}</title><id>tag:example.org,2026:f{feed}-{n}</id>"
                f'<link rel="alternate" href="{link}"/><updated>{moment.isoformat()}</updated>'
                f"<author><name>Writer {n % 7}</name></author>"
                f'<content type="html">{escape(content)}</content></entry>'
            )
        else:
            items.append(
                f"<item><title>{escape(title)}</title><link>{link}</link>"
                f'<guid isPermaLink="false">f{feed}-{n}</guid>'
                f"<pubDate>{format_datetime(moment)}</pubDate>"
                f"<dc:creator>Writer {n % 7}</dc:creator>"
                f"<content:encoded><![CDATA[{content}]]></content:encoded></item>"
            )
    if atom:
        doc = (
            '<?xml version="1.0" encoding="utf-8"?>'
            '<feed xmlns="http://www.w3.org/2005/Atom">'
            f"<title>Feed {feed}</title><id>tag:example.org,2026:f{feed}</id>"
            f"<updated>{base.isoformat()}</updated>" + "".join(items) + "</feed>"
        )
        return doc.encode(), "application/atom+xml"
    doc = (
        '<?xml version="1.0" encoding="utf-8"?><rss version="2.0" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/"><channel>'
        f"<title>Feed {feed}</title><link>https://example.org/f{feed}/</link>"
        "<description>bench</description>" + "".join(items) + "</channel></rss>"
    )
    return doc.encode(), "application/rss+xml; charset=utf-8"


def serve(feeds: int, entries: int, ready: object) -> None:
    """The loopback server: run in its own process; answers conditional GETs with 304."""
    import hashlib
    from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

    documents = {f"/f{n}.xml": feed_document(n, entries) for n in range(feeds)}
    etags = {
        path: f'"{hashlib.sha256(body).hexdigest()[:20]}"' for path, (body, _) in documents.items()
    }
    last_modified = "Tue, 24 Nov 2026 05:00:00 GMT"

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *_args: object) -> None:
            pass

        def do_GET(self) -> None:
            found = documents.get(self.path)
            if found is None:
                self.send_response(404)
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            body, content_type = found
            etag = etags[self.path]
            inm = self.headers.get("If-None-Match")
            ims = self.headers.get("If-Modified-Since")
            if (inm is not None and inm == etag) or (inm is None and ims == last_modified):
                self.send_response(304)
                self.send_header("ETag", etag)
                self.end_headers()
                return
            self.send_response(200)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.send_header("ETag", etag)
            self.send_header("Last-Modified", last_modified)
            self.end_headers()
            self.wfile.write(body)

    class Server(ThreadingHTTPServer):
        daemon_threads = True
        # The default listen backlog of 5 drops connection attempts beyond it; the client
        # then waits a full second before trying again, which would be measured as ours.
        request_queue_size = 128

    server = Server(("127.0.0.1", 0), Handler)
    total = sum(len(body) for body, _ in documents.values())
    ready.put((server.server_address[1], total))  # type: ignore[attr-defined]
    server.serve_forever()


# ---------------------------------------------------------------------------- the two sides


def run_ours(workdir: Path, port: int, feeds: int) -> dict[str, float]:
    """Child process: two polls through publisher.pipeline.collect into a fresh store."""
    import resource
    from datetime import datetime, timedelta

    from publisher import pipeline
    from publisher.settings import load_settings
    from publisher.store import Store

    (workdir / "articles").mkdir(parents=True, exist_ok=True)
    lines = [
        "[site]",
        'title = "Bench"',
        'url = "https://bench.example.org/"',
        "[store]",
        'path = "state/bench.db"',
        "[sources]",
        "max_age_days = 0",
    ]
    for n in range(feeds):
        lines += [
            "[[sources.feeds]]",
            f'url = "http://127.0.0.1:{port}/f{n}.xml"',
            f'name = "F{n}"',
        ]
    path = workdir / "settings.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    settings = load_settings(path)  # PUBLISHER_SOURCES__* overrides apply, to try settings
    # As on reader's side, where `import reader`, make_reader (its schema) and add_feed come
    # before the clock starts: the polling code is imported and the store exists first. The
    # store is created by another process, as by the run that collected the site's first
    # articles: creating it loads alembic, which no later run of `publisher collect` does.
    code = "import sys; from publisher.store import Store; Store.open(sys.argv[1]).close()"
    subprocess.run([sys.executable, "-c", code, settings.database_url], check=True)
    import publisher.pipeline.feed_collection  # noqa: F401

    now = datetime.fromisoformat(NOW)
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    started = time.perf_counter()
    first = pipeline.collect(settings, now=now)
    first_s = time.perf_counter() - started
    started = time.perf_counter()
    second = pipeline.collect(settings, now=now + timedelta(hours=1))
    second_s = time.perf_counter() - started

    with Store.open(settings.database_url) as store:
        stored = store.count_articles()
    return {
        "first_s": first_s,
        "second_s": second_s,
        "stored": stored,
        "first_new": first.feed_new,
        "first_failed": first.feeds_failed,
        "second_not_modified": second.feeds_not_modified,
        "rss_before_mb": rss_before,
        "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


READER_SCRIPT = """
import json, resource, sys, time
from reader import make_reader
db, port, feeds = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
reader = make_reader(db)
for n in range(feeds):
    reader.add_feed(f"http://127.0.0.1:{port}/f{n}.xml")
rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
started = time.perf_counter()
reader.update_feeds()
first_s = time.perf_counter() - started
started = time.perf_counter()
reader.update_feeds(scheduled=False)
second_s = time.perf_counter() - started
print(json.dumps({
    "first_s": first_s,
    "second_s": second_s,
    "stored": reader.get_entry_counts().total,
    "rss_before_mb": rss_before,
    "rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
}))
"""


def ensure_reader_venv() -> Path:
    python = READER_VENV / "bin" / "python"
    if not python.exists():
        print(f"creating {READER_VENV.relative_to(ROOT)} with {', '.join(READER_PACKAGES)} ...")
        subprocess.run(["python3.11", "-m", "venv", str(READER_VENV)], check=True)
        subprocess.run(
            [str(python), "-m", "pip", "install", "--quiet", *READER_PACKAGES], check=True
        )
    return python


def reader_command(workdir: Path, port: int, feeds: int) -> list[str]:
    python = ensure_reader_venv()
    return [str(python), "-c", READER_SCRIPT, str(workdir / "reader.sqlite"), str(port), str(feeds)]


def run_side(side: str, port: int, feeds: int) -> dict[str, float]:
    """One side in a fresh process of its own; its process tree's memory sampled meanwhile."""
    with tempfile.TemporaryDirectory(prefix=f"bench-feeds-{side}-") as tmp:
        command = (
            reader_command(Path(tmp), port, feeds)
            if side == "reader"
            else [sys.executable, __file__, "--child-ours", tmp, str(port), str(feeds)]
        )
        child = subprocess.Popen(command, stdout=subprocess.PIPE, text=True, cwd=ROOT)
        rss_peak = pss_peak = 0.0
        cpu: dict[int, float] = {}  # pid -> CPU seconds last seen
        while child.poll() is None:
            rss, pss = tree_memory_mb(child.pid, cpu)
            rss_peak, pss_peak = max(rss_peak, rss), max(pss_peak, pss)
            time.sleep(0.02)
        out = child.stdout.read() if child.stdout else ""
        if child.returncode:
            raise SystemExit(f"{side} failed with exit status {child.returncode}")
        result = dict(json.loads(out.strip().splitlines()[-1]))
        result["tree_rss_mb"] = max(rss_peak, result["rss_mb"])
        result["tree_pss_mb"] = pss_peak
        result["tree_cpu_s"] = sum(cpu.values())
        return result


def tree_memory_mb(root: int, cpu: dict[int, float]) -> tuple[float, float]:
    """RSS and PSS summed over a process and its descendants (parse workers too), in MB.

    RSS counts pages shared between processes once per process; PSS splits them. Each
    process's CPU seconds so far are noted in `cpu`.
    """
    parents: dict[int, int] = {}
    ticks: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        pid = int(stat.parent.name)
        parents[pid] = int(fields[1])
        ticks[pid] = int(fields[11]) + int(fields[12])  # utime + stime
    tree, grew = {root}, True
    while grew:
        more = {pid for pid, parent in parents.items() if parent in tree} - tree
        tree |= more
        grew = bool(more)
    hertz = os.sysconf("SC_CLK_TCK")
    for pid in tree:
        cpu[pid] = max(cpu.get(pid, 0.0), ticks.get(pid, 0) / hertz)
    rss = pss = 0
    for pid in tree:
        try:
            rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
        except OSError:
            continue
        for name, value in re.findall(r"^(Rss|Pss):\s+(\d+) kB", rollup, re.M):
            if name == "Rss":
                rss += int(value)
            else:
                pss += int(value)
    return rss / 1024, pss / 1024


# ---------------------------------------------------------------------------- the table


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--feeds", type=int, default=100)
    parser.add_argument("--entries", type=int, default=100)
    parser.add_argument("--repeat", type=int, default=3, help="runs per side; the median counts")
    parser.add_argument("--child-ours", nargs=3, metavar=("DIR", "PORT", "FEEDS"))
    args = parser.parse_args()
    if args.child_ours:
        workdir, port, feeds = args.child_ours
        print(json.dumps(run_ours(Path(workdir), int(port), int(feeds))))
        return

    import multiprocessing

    ensure_reader_venv()
    ready: multiprocessing.Queue[tuple[int, int]] = multiprocessing.Queue()
    server = multiprocessing.Process(
        target=serve, args=(args.feeds, args.entries, ready), daemon=True
    )
    server.start()
    try:
        port, total = ready.get(timeout=300)
        print(
            f"{args.feeds} feeds x {args.entries} entries, {total / 1e6:.1f} MB of feeds, "
            f"served on 127.0.0.1:{port}; {os.cpu_count()} CPUs\n"
        )
        runs: dict[str, list[dict[str, float]]] = {"ours": [], "reader": []}
        for n in range(args.repeat):
            for side in ("ours", "reader"):  # alternating, so machine load hits both alike
                runs[side].append(run_side(side, port, args.feeds))
            print(f"run {n + 1}/{args.repeat} done; load average {os.getloadavg()[0]:.2f}")
    finally:
        server.terminate()
        server.join()
    print(f"\nmedian of {args.repeat} runs per side (best run in brackets)\n")
    print_table(summary(runs["ours"]), summary(runs["reader"]), args.feeds * args.entries)


def summary(runs: list[dict[str, float]]) -> dict[str, float]:
    """Median of every figure, and the best (smallest) as best_<figure>."""
    middle = {key: statistics.median(run[key] for run in runs) for key in runs[0]}
    return middle | {f"best_{key}": min(run[key] for run in runs) for key in runs[0]}


def print_table(ours: dict[str, float], theirs: dict[str, float], entries: int) -> None:
    rows = [
        ("first poll, s", ours["first_s"], theirs["first_s"], "ours <= 0.3x reader"),
        ("second poll (all 304), s", ours["second_s"], theirs["second_s"], "ours <= 0.5 s"),
        ("peak RSS, main process, MB", ours["rss_mb"], theirs["rss_mb"], "ours <= reader"),
        ("  of it after imports, MB", ours["rss_before_mb"], theirs["rss_before_mb"], ""),
        ("  growth while polling, MB", ours["rss_mb"] - ours["rss_before_mb"],
         theirs["rss_mb"] - theirs["rss_before_mb"], ""),
        ("peak RSS, all processes, MB", ours["tree_rss_mb"], theirs["tree_rss_mb"],
         "incl. parse workers"),
        ("peak PSS, all processes, MB", ours["tree_pss_mb"], theirs["tree_pss_mb"],
         "shared pages split"),
        ("CPU time, all processes, s", ours["tree_cpu_s"], theirs["tree_cpu_s"],
         "both polls and start-up"),
        ("entries stored", ours["stored"], theirs["stored"], f"both {entries}"),
    ]  # fmt: skip
    print(f"{'':30} {'publisher':>17} {'reader':>17} {'ratio':>7}  target")
    best = {"first poll, s": "first_s", "second poll (all 304), s": "second_s"}
    for label, mine, other, target in rows:
        ratio = f"{mine / other:.2f}x" if other else ""
        if label in best:
            key = f"best_{best[label]}"
            cells = f"{mine:>8.2f} ({ours[key]:>5.2f}) {other:>8.2f} ({theirs[key]:>5.2f})"
        else:
            cells = f"{mine:>17.2f} {other:>17.2f}"
        print(f"{label:30} {cells} {ratio:>7}  {target}")
    checks = {
        "first poll <= 0.3x reader": ours["first_s"] <= 0.3 * theirs["first_s"],
        "second poll <= 0.5 s": ours["second_s"] <= 0.5,
        "peak RSS (main process) <= reader": ours["rss_mb"] <= theirs["rss_mb"],
        "peak RSS (all processes) <= reader": ours["tree_rss_mb"] <= theirs["tree_rss_mb"],
        "all entries stored": ours["stored"] == theirs["stored"] == entries,
    }
    print()
    for name, met in checks.items():
        print(f"{'met   ' if met else 'MISSED'} {name}")


if __name__ == "__main__":
    main()
