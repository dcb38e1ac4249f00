"""A real SMTP server (aiosmtpd) on 127.0.0.1 that records what it gets and injects faults."""

from __future__ import annotations

import asyncio
import email
import email.policy
import socket
import ssl
import threading
from collections import Counter
from dataclasses import dataclass, field
from email.message import EmailMessage
from typing import Any

from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class Faults:
    """What the server does wrong; change it between runs."""

    defer_data_first: int = 0  # 451 at DATA for the first K messages
    reject_rcpt: set[str] = field(default_factory=set)  # 550 at RCPT for these addresses
    drop_after: int | None = None  # close the connection at the MAIL of message N+1 (once)
    data_delay: float = 0.0  # seconds before answering DATA


@dataclass(frozen=True)
class Received:
    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes  # as it came over the wire, dot-stuffing undone
    connection: int

    def parsed(self) -> EmailMessage:
        message = email.message_from_bytes(self.data, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        return message


class _Handler:
    def __init__(self, sink: SmtpSink) -> None:
        self.sink = sink

    async def handle_MAIL(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        sink = self.sink
        with sink.lock:
            sink.mail_commands += 1
            drop = (
                sink.faults.drop_after is not None
                and not sink.dropped
                and len(sink.messages) >= sink.faults.drop_after
            )
            if drop:
                sink.dropped = True
        if drop:
            server.transport.close()
            return "421 4.3.2 going away"
        envelope.mail_from = address
        return "250 OK"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        if address in self.sink.faults.reject_rcpt:
            return f"550 5.1.1 <{address}>: Recipient address rejected: User unknown"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        sink = self.sink
        with sink.lock:
            sink.data_commands += 1
            defer = sink.data_commands <= sink.faults.defer_data_first
        if defer:
            return "451 4.3.0 Try again later"
        if sink.faults.data_delay:
            await asyncio.sleep(sink.faults.data_delay)
        with sink.lock:
            sink.messages.append(
                Received(
                    envelope.mail_from,
                    tuple(envelope.rcpt_tos),
                    bytes(envelope.content),
                    id(session),
                )
            )
            n = len(sink.messages)
        return f"250 2.0.0 Ok: queued as {n}"


class SmtpSink:
    """Start, point the settings at `port`, send, then read `messages`."""

    def __init__(
        self,
        port: int | None = None,
        *,
        tls: ssl.SSLContext | None = None,  # offer STARTTLS with this context
        implicit_tls: ssl.SSLContext | None = None,  # TLS from the first byte
        login: tuple[str, str] | None = None,  # require AUTH with this user and password
    ) -> None:
        self.port = port or free_port()
        self.host = "127.0.0.1"
        self.faults = Faults()
        self.lock = threading.Lock()
        self.messages: list[Received] = []
        self.logins: list[str] = []
        self.mail_commands = 0
        self.data_commands = 0
        self.dropped = False
        kwargs: dict[str, Any] = {}
        if tls is not None:
            kwargs["tls_context"] = tls
        if implicit_tls is not None:
            kwargs["ssl_context"] = implicit_tls
        if login is not None:
            kwargs.update(
                authenticator=self._authenticator(login),
                auth_required=True,
                auth_require_tls=tls is not None or implicit_tls is not None,
            )
        self._controller = Controller(
            _Handler(self), hostname=self.host, port=self.port, ready_timeout=10, **kwargs
        )
        self.running = False

    def _authenticator(self, login: tuple[str, str]) -> Any:
        def check(
            server: Any, session: Any, envelope: Any, mechanism: str, data: Any
        ) -> AuthResult:
            ok = (
                isinstance(data, LoginPassword)
                and (
                    data.login.decode(),
                    data.password.decode(),
                )
                == login
            )
            if ok:
                self.logins.append(data.login.decode())
            return AuthResult(success=ok, handled=False)

        return check

    def start(self) -> SmtpSink:
        self._controller.start()
        self.running = True
        return self

    def stop(self) -> None:
        if self.running:
            self._controller.stop()
            self.running = False

    # ---------------------------------------------------------------- reading what came

    def recipients(self) -> Counter[str]:
        with self.lock:
            return Counter(r for m in self.messages for r in m.rcpt_tos)

    def parsed(self) -> list[EmailMessage]:
        with self.lock:
            messages = list(self.messages)
        return [m.parsed() for m in messages]

    def by_recipient(self) -> dict[str, list[Received]]:
        out: dict[str, list[Received]] = {}
        with self.lock:
            for m in self.messages:
                for r in m.rcpt_tos:
                    out.setdefault(r, []).append(m)
        return out
