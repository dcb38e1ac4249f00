"""A published site served by a real uvicorn on 127.0.0.1, for the server and browser tests."""

from __future__ import annotations

import re
import shutil
import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from email.message import EmailMessage
from pathlib import Path

import httpx
import uvicorn

from publisher.model import Subscriber
from publisher.pipeline import collect, publish
from publisher.server import create_app
from publisher.settings import Settings, load_settings
from publisher.store import Store
from tests.conftest import NOW, ROOT
from tests.smtp_sink import SmtpSink, free_port

SETTINGS = """\
[site]
title = "Test Dispatch"
url = "http://127.0.0.1:{port}/"
description = "Short news from the quay."
timezone = "Europe/Berlin"
author = "Desk"
email = "desk@news.example.org"

[store]
path = "state/test.db"

[smtp]
host = "127.0.0.1"
port = 1
security = "none"
timeout = 5.0

[delivery]
from_address = "Test Dispatch <desk@news.example.org>"
"""


MAIL_LINK = re.compile(r"(http://127\.0\.0\.1:\d+/(?:confirm|unsubscribe)\?token=[0-9A-Za-z._-]+)")


@dataclass(frozen=True)
class Template:
    """A site published once per test session; each test serves its own copy of it."""

    root: Path
    port: int


def publish_template(root: Path) -> Template:
    port = free_port()
    root.mkdir(parents=True)
    shutil.copytree(ROOT / "articles", root / "articles")
    (root / "settings.toml").write_text(SETTINGS.format(port=port), encoding="utf-8")
    settings = load_settings(root / "settings.toml", environ={})
    collect(settings, now=NOW)
    report = publish(settings, now=NOW + timedelta(hours=1))
    assert report.issue is not None and not report.problems
    return Template(root, port)


class LiveServer:
    """uvicorn in a thread, on a fixed loopback port; stop() waits for it to finish."""

    def __init__(self, settings: Settings, port: int) -> None:
        config = uvicorn.Config(
            create_app(settings),
            host="127.0.0.1",
            port=port,
            proxy_headers=False,
            access_log=False,
            log_config=None,
            lifespan="on",
            timeout_graceful_shutdown=5,
        )
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, daemon=True)

    def start(self) -> LiveServer:
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self.thread.join(15)


@dataclass
class Served:
    """One running server over its own copy of the published site."""

    root: Path
    settings: Settings
    url: str  # "http://127.0.0.1:PORT/"
    sink: SmtpSink
    server: LiveServer
    clients: list[httpx.Client] = field(default_factory=list)

    @property
    def origin(self) -> str:
        return self.url.rstrip("/")

    def client(self) -> httpx.Client:
        """One client per server (making one costs tens of milliseconds): cookies would show."""
        if not self.clients:
            self.clients.append(httpx.Client(base_url=self.url, timeout=10))
        return self.clients[0]

    def subscribe(
        self,
        email: str,
        *,
        client: httpx.Client | None = None,
        headers: dict[str, str] | None = None,
        website: str = "",
    ) -> httpx.Response:
        """POST the form as a browser on one of our pages does (unless `headers` say else)."""
        client = client or self.client()
        sent = {"Origin": self.origin} if headers is None else headers
        return client.post("subscribe", data={"email": email, "website": website}, headers=sent)

    def subscriber(self, email: str) -> Subscriber | None:
        with Store.open(self.settings.database_url) as store:
            return store.get_subscriber(email=email)

    def mails(self, count: int, timeout: float = 10.0) -> list[EmailMessage]:
        """The first `count` messages the sink got, waiting for them to arrive."""
        deadline = time.monotonic() + timeout
        while len(self.sink.messages) < count:
            if time.monotonic() > deadline:
                raise AssertionError(f"expected {count} mails, got {len(self.sink.messages)}")
            time.sleep(0.02)
        return self.sink.parsed()[:count]

    def mail_links(self, index: int) -> list[str]:
        """The confirm and unsubscribe links in the plain text of mail number `index`."""
        body = self.mails(index + 1)[index].get_body(("plain",))
        assert body is not None
        return MAIL_LINK.findall(body.get_content())

    def no_more_mail(self, count: int, wait: float = 0.3) -> None:
        """Give the sender thread time, then check nothing beyond `count` mails came."""
        time.sleep(wait)
        assert len(self.sink.messages) == count, [m.rcpt_tos for m in self.sink.messages]

    def close(self) -> None:
        for client in self.clients:
            client.close()
        self.server.stop()


def serve_copy(
    template: Template, target: Path, sink: SmtpSink, overrides: dict[str, object]
) -> Served:
    shutil.copytree(template.root, target)
    environ = {"PUBLISHER_SMTP__PORT": str(sink.port)}
    for key, value in overrides.items():
        environ[f"PUBLISHER_SERVER__{key.upper()}"] = str(value)
    settings = load_settings(target / "settings.toml", environ=environ)
    server = LiveServer(settings, template.port).start()
    return Served(target, settings, f"http://127.0.0.1:{template.port}/", sink, server)
