"""Server benchmark: requests per second of `publisher serve` from a load generator on loopback.

    .venv/bin/python bench/bench_server.py           # 4 s per row
    .venv/bin/python bench/bench_server.py --quick   # 1 s per row, for a smoke test

Prints one table. The server (`publisher serve`, a real process), an aiosmtpd sink that takes
the confirmation mails (another process) and the load generator (a third process: a small
asyncio HTTP/1.1 keep-alive client, `--connections` connections, bounded in time and count)
all run on 127.0.0.1. Rows, side by side in the same run:
  1. GET /feed.xml answered 304 (If-None-Match), and a full 200 (gzip, and identity);
     the same three against Starlette's own StaticFiles over the same folder (the baseline
     the ratio column compares with);
  2. POST /subscribe, a new address each time (store write, confirmation mail queued);
  3. POST /unsubscribe one-click (RFC 8058).
On a 2-core machine the load generator takes one core: the figures are a floor.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import quote

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

KEY = "bench-secret-key-0123456789abcdef"
NOW = datetime(2026, 11, 24, 6, 0, tzinfo=UTC)
MAX_REQUESTS = 500_000  # per row: the time bound ends a row long before this

SETTINGS = """\
[site]
title = "Bench Dispatch"
url = "http://127.0.0.1:{port}/"
timezone = "Europe/Berlin"
email = "desk@bench.example.org"

[store]
path = "state/bench.db"

[smtp]
host = "127.0.0.1"
port = {smtp_port}
security = "none"

[delivery]
from_address = "Bench Dispatch <desk@bench.example.org>"

[server]
subscribe_limit = 0
mail_per_hour = 0
confirm_resend_minutes = 0
"""

BASELINE = """\
import sys, uvicorn
from starlette.applications import Starlette
from starlette.staticfiles import StaticFiles
app = StaticFiles(directory=sys.argv[1], html=True)
uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning", access_log=False)
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, process: subprocess.Popen[bytes], timeout: float = 20) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"nothing listens on {port}")


def stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# ---------------------------------------------------------------- the load generator


async def _worker(
    port: int, kind: str, index: int, deadline: float, latencies: list[float], state: dict[str, int]
) -> None:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    n = 0
    try:
        while time.perf_counter() < deadline and state["count"] < MAX_REQUESTS:
            request = _request(kind, port, index, n, state)
            started = time.perf_counter()
            writer.write(request)
            head = await reader.readuntil(b"\r\n\r\n")
            status = int(head[9:12])
            length = 0
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value)
            if length:
                await reader.readexactly(length)
            latencies.append(time.perf_counter() - started)
            state["count"] += 1
            state[f"s{status}"] = state.get(f"s{status}", 0) + 1
            n += 1
    finally:
        writer.close()


def _request(kind: str, port: int, index: int, n: int, state: dict[str, int]) -> bytes:
    host = f"Host: 127.0.0.1:{port}\r\n"
    if kind.startswith("get"):
        _, encoding, etag = kind.split("|")
        conditional = f"If-None-Match: {etag}\r\n" if etag else ""
        return (
            f"GET /feed.xml HTTP/1.1\r\n{host}Accept-Encoding: {encoding}\r\n{conditional}\r\n"
        ).encode()
    if kind == "subscribe":
        body = f"email=bench{index}-{n}%40example.org&website=".encode()
        return (
            f"POST /subscribe HTTP/1.1\r\n{host}Origin: http://127.0.0.1:{port}\r\n"
            "Content-Type: application/x-www-form-urlencoded\r\n"
            f"Content-Length: {len(body)}\r\n\r\n"
        ).encode() + body
    token = kind.split("|")[1]
    body = b"List-Unsubscribe=One-Click"
    return (
        f"POST /unsubscribe?token={quote(token)} HTTP/1.1\r\n{host}"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    ).encode() + body


async def _load(port: int, kind: str, seconds: float, connections: int) -> dict[str, object]:
    latencies: list[float] = []
    state = {"count": 0}
    warm = time.perf_counter() + min(0.5, seconds / 4)
    await asyncio.gather(*(_worker(port, kind, -i - 1, warm, [], {"count": 0})
                           for i in range(connections)))  # fmt: skip
    started = time.perf_counter()
    await asyncio.gather(
        *(_worker(port, kind, i, started + seconds, latencies, state) for i in range(connections))
    )
    elapsed = time.perf_counter() - started
    latencies.sort()
    return {
        "count": state["count"],
        "seconds": elapsed,
        "statuses": {k: v for k, v in state.items() if k.startswith("s")},
        "p50": statistics.median(latencies) if latencies else 0.0,
        "p99": latencies[int(len(latencies) * 0.99)] if latencies else 0.0,
    }


def load_main(argv: list[str]) -> None:
    """`--load PORT KIND SECONDS CONNECTIONS`: run in its own process; prints JSON."""
    port, kind, seconds, connections = int(argv[0]), argv[1], float(argv[2]), int(argv[3])
    print(json.dumps(asyncio.run(_load(port, kind, seconds, connections))))


def load(port: int, kind: str, seconds: float, connections: int) -> dict[str, object]:
    done = subprocess.run(
        [sys.executable, __file__, "--load", str(port), kind, str(seconds), str(connections)],
        capture_output=True,
        text=True,
        check=True,
        timeout=seconds + 60,
    )
    result: dict[str, object] = json.loads(done.stdout)
    return result


# ---------------------------------------------------------------- the run


@dataclass
class Row:
    what: str
    server: str
    result: dict[str, object]

    @property
    def rps(self) -> float:
        return float(self.result["count"]) / float(self.result["seconds"])  # type: ignore[arg-type]


def build_site(root: Path, port: int, smtp_port: int) -> None:
    from publisher.pipeline import collect, publish
    from publisher.settings import load_settings

    shutil.copytree(ROOT / "articles", root / "articles")
    (root / "settings.toml").write_text(SETTINGS.format(port=port, smtp_port=smtp_port))
    settings = load_settings(root / "settings.toml", environ={})
    collect(settings, now=NOW)
    publish(settings, now=NOW + timedelta(hours=1))


def unsubscribe_token(root: Path) -> str:
    from publisher.delivery.tokens import make_token
    from publisher.settings import load_settings
    from publisher.store import Store

    settings = load_settings(root / "settings.toml", environ={})
    with Store.open(settings.database_url) as store:
        subscriber, _ = store.add_subscriber("leaving@example.org", "", now=NOW)
    return make_token(KEY.encode(), subscriber.id, subscriber.email)


def main() -> int:
    if len(sys.argv) > 1 and sys.argv[1] == "--load":
        load_main(sys.argv[2:])
        return 0
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--connections", type=int, default=16)
    args = parser.parse_args()
    seconds = 1.0 if args.quick else 4.0
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    env["PUBLISHER_TOKEN_KEY"] = KEY
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench-server-") as tmp:
        root = Path(tmp) / "site"
        port, base_port, smtp_port = free_port(), free_port(), free_port()
        build_site(root, port, smtp_port)
        feed = (root / "issues" / "feed.xml").stat().st_size
        sink = subprocess.Popen(
            [sys.executable, "-m", "aiosmtpd", "-n", "-l", f"127.0.0.1:{smtp_port}",
             "-c", "aiosmtpd.handlers.Sink"],
        )  # fmt: skip
        server = subprocess.Popen(
            [sys.executable, "-m", "publisher", "--settings", str(root / "settings.toml"),
             "serve", "--port", str(port)],
            env=env, stdout=subprocess.DEVNULL,
        )  # fmt: skip
        baseline = subprocess.Popen(
            [sys.executable, "-c", BASELINE, str(root / "issues"), str(base_port)], env=env
        )
        try:
            for p, process in ((smtp_port, sink), (port, server), (base_port, baseline)):
                wait_for_port(p, process)
            etags = {}
            for name, p in (("publisher serve", port), ("Starlette StaticFiles", base_port)):
                for encoding in ("gzip", "identity"):
                    etags[name, encoding] = _etag(p, encoding)
            for name, p in (("publisher serve", port), ("Starlette StaticFiles", base_port)):
                gz = etags[name, "gzip"]
                for what, kind in (
                    ("GET /feed.xml, 304 (If-None-Match)", f"get|gzip|{gz}"),
                    ("GET /feed.xml, 200 gzip", "get|gzip|"),
                    ("GET /feed.xml, 200 identity", "get|identity|"),
                ):
                    rows.append(Row(what, name, load(p, kind, seconds, args.connections)))
            rows.append(
                Row("POST /subscribe (new address)", "publisher serve",
                    load(port, "subscribe", seconds, args.connections))
            )  # fmt: skip
            token = unsubscribe_token(root)
            rows.append(
                Row("POST /unsubscribe one-click", "publisher serve",
                    load(port, f"unsubscribe|{token}", seconds, args.connections))
            )  # fmt: skip
        finally:
            for process in (server, baseline, sink):
                stop(process)
    print_table(rows, feed, seconds, args.connections)
    return 0


def _etag(port: int, encoding: str) -> str:
    import httpx

    response = httpx.get(f"http://127.0.0.1:{port}/feed.xml", headers={"Accept-Encoding": encoding})
    return response.headers.get("etag", "")


def print_table(rows: list[Row], feed: int, seconds: float, connections: int) -> None:
    cores = os.cpu_count()
    print(
        f"feed.xml: {feed:,} bytes; {connections} keep-alive connections, {seconds:g} s per row; "
        f"{cores} cores shared by server, load generator and SMTP sink"
    )
    base = {r.what: r.rps for r in rows if r.server == "Starlette StaticFiles"}
    header = (
        f"{'request':<38} {'server':<22} {'req/s':>8} {'p50 ms':>7} {'p99 ms':>7} "
        f"{'vs base':>8}  statuses"
    )
    print("(Starlette StaticFiles compresses nothing: its gzip rows are answered uncompressed)")
    print(header)
    print("-" * len(header))
    for row in rows:
        ratio = f"{row.rps / base[row.what]:.2f}x" if row.what in base else ""
        p50 = float(row.result["p50"]) * 1000  # type: ignore[arg-type]
        p99 = float(row.result["p99"]) * 1000  # type: ignore[arg-type]
        statuses = ",".join(
            f"{k[1:]}:{v}"
            for k, v in sorted(row.result["statuses"].items())  # type: ignore[attr-defined]
        )
        print(
            f"{row.what:<38} {row.server:<22} {row.rps:>8.0f} {p50:>7.2f} {p99:>7.2f} "
            f"{ratio:>8}  {statuses}"
        )


if __name__ == "__main__":
    sys.exit(main())
