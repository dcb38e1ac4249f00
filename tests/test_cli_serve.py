"""`publisher serve` as a user runs it: a real process on a free port, stopped by a signal."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest

from publisher.server import listen
from tests.conftest import Site
from tests.delivery_support import TOKEN_KEY
from tests.server_support import Template


@pytest.fixture
def site_copy(served_template: Template, tmp_path: Path) -> Path:
    target = tmp_path / "site"
    shutil.copytree(served_template.root, target)
    return target


@contextmanager
def serving(root: Path, *args: str, key: str | None = TOKEN_KEY) -> Iterator[subprocess.Popen[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUBLISHER_")}
    if key is not None:
        env["PUBLISHER_TOKEN_KEY"] = key
    process = subprocess.Popen(
        [sys.executable, "-m", "publisher", "--settings", str(root / "settings.toml"), "serve",
         *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**env, "COLUMNS": "200"},
        cwd=root,
    )  # fmt: skip
    try:
        yield process
    finally:
        if process.poll() is None:
            process.kill()
        process.wait(10)


@pytest.mark.parametrize(
    ("stop", "status"),
    # uvicorn shuts down gracefully, then lets the signal end the process as it would have;
    # Ctrl-C ends it as every other command does.
    [(signal.SIGTERM, -signal.SIGTERM), (signal.SIGINT, 130)],
    ids=["SIGTERM", "SIGINT"],
)
def test_serve_prints_its_url_serves_the_site_and_stops_cleanly_on_a_signal(
    site_copy: Path, stop: signal.Signals, status: int
) -> None:
    with serving(site_copy, "--port", "0") as process:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("Serving issues/ at http://127.0.0.1:"), line
        url = line.split(" at ")[1].split()[0]
        with httpx.Client(base_url=url, timeout=10) as client:
            page = client.get("")
            feed = client.get("feed.xml")
        process.send_signal(stop)
        assert process.wait(15) == status
        stderr = process.stderr.read() if process.stderr else ""

    assert page.status_code == 200
    assert "Test Dispatch" in page.text
    assert feed.headers["content-type"] == "application/rss+xml; charset=utf-8"
    assert "Traceback" not in stderr
    assert TOKEN_KEY not in stderr


def test_the_printed_url_takes_connections_before_the_server_has_started(site: Site) -> None:
    # `serve` prints its URL, then uvicorn starts (deleting expired sign-ups first): a client
    # that connects in between must wait in the queue. Before, it was refused.
    sock = listen(site.settings(), "127.0.0.1", 0)
    with sock, socket.create_connection(sock.getsockname(), timeout=5) as client:
        accepted, _ = sock.accept()
        accepted.close()
        assert client.recv(1) == b""  # connected, then closed by our side: never refused


def test_serve_without_the_signing_key_stops_at_once_with_one_line(site_copy: Path) -> None:
    with serving(site_copy, "--port", "0", key=None) as process:
        assert process.wait(30) == 1
        stderr = process.stderr.read() if process.stderr else ""

    assert stderr.startswith("error: [delivery] token_key_env: the environment variable")
    assert "PUBLISHER_TOKEN_KEY" in stderr
    assert len(stderr.strip().splitlines()) == 1


def test_serve_on_a_port_in_use_says_so(site_copy: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with serving(site_copy, "--port", str(port)) as process:
            assert process.wait(30) == 2
            stderr = process.stderr.read() if process.stderr else ""

    assert f"cannot listen on 127.0.0.1:{port}" in stderr
    assert "Traceback" not in stderr


def test_the_listening_socket_is_marked_tcp_so_responses_are_not_delayed(
    site_copy: Path,
) -> None:
    # asyncio turns Nagle off (TCP_NODELAY) only for sockets made with IPPROTO_TCP; without
    # it each response's body waited for the client's delayed ACK (~40 ms, seen in the bench).
    from publisher.server import listen
    from publisher.settings import load_settings

    sock = listen(load_settings(site_copy / "settings.toml", environ={}), "127.0.0.1", 0)
    with sock:
        assert sock.proto == socket.IPPROTO_TCP
