"""SMTP transport: one reusable connection (TLS, AUTH, timeouts), replies sorted by meaning."""

from __future__ import annotations

import contextlib
import smtplib
import ssl
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

from publisher.errors import DeliveryError
from publisher.settings import Settings, SmtpSettings

Stage = Literal["connect", "MAIL", "RCPT", "DATA"]
# accepted: the server took the message; temporary: 4xx, try later; permanent: 5xx;
# dropped: the connection broke (or the server is closing it, 421), whatever was said.
Verdict = Literal["accepted", "temporary", "permanent", "dropped"]


@dataclass(frozen=True, slots=True)
class Reply:
    """What the server made of one message."""

    verdict: Verdict
    stage: Stage
    text: str  # "250 2.0.0 Ok: queued", or what broke

    @property
    def recipient_refused(self) -> bool:
        """A permanent refusal of the recipient itself: the one kind that counts as a bounce."""
        return self.verdict == "permanent" and self.stage == "RCPT"


class ConnectError(DeliveryError):
    """No session could be opened: the server is unreachable, or refused TLS or the login."""


def smtp_password(settings: Settings) -> str | None:
    """The SMTP password from the environment variable the settings name (None: no AUTH)."""
    if not settings.smtp.username:
        return None
    password = settings.secret(settings.smtp.password_env)
    if password is None:
        raise DeliveryError(
            f"smtp.username is set but the environment variable {settings.smtp.password_env} "
            "is not",
            where="[smtp] password_env",
            hint="export the SMTP password in it, or empty smtp.username for no login",
        )
    return password


def _text(code: int, message: bytes | str) -> str:
    words = message.decode("utf-8", "replace") if isinstance(message, bytes) else message
    return f"{code} {' '.join(words.split())}".strip()


class Connection:
    """One SMTP session, reused for many messages; not shared between threads."""

    def __init__(
        self,
        settings: SmtpSettings,
        password: str | None,
        context_factory: Callable[[], ssl.SSLContext] = ssl.create_default_context,
    ) -> None:
        self.settings = settings
        self._password = password
        self._context_factory = context_factory
        self._smtp: smtplib.SMTP | None = None
        self._dirty = False  # a transaction was refused half-way: RSET before the next

    @property
    def where(self) -> str:
        return f"smtp {self.settings.host}:{self.settings.port}"

    @property
    def is_open(self) -> bool:
        return self._smtp is not None

    def open(self) -> None:
        """Connect, say EHLO, secure the session and log in; raises ConnectError."""
        s = self.settings
        smtp: smtplib.SMTP | None = None
        local = s.local_hostname or None
        try:
            if s.security == "tls":
                smtp = smtplib.SMTP_SSL(
                    s.host, s.port, local_hostname=local, timeout=s.timeout,
                    context=self._context_factory(),
                )  # fmt: skip
            else:
                smtp = smtplib.SMTP(s.host, s.port, local_hostname=local, timeout=s.timeout)
            smtp.ehlo_or_helo_if_needed()
            if s.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise ConnectError(
                        "the server does not offer STARTTLS",
                        where=self.where,
                        hint='set smtp.security = "tls" (port 465), or "none" for a local relay',
                    )
                smtp.starttls(context=self._context_factory())
                smtp.ehlo()
            if s.username:
                smtp.login(s.username, self._password or "")
        except ConnectError:
            _quietly_close(smtp)
            raise
        except smtplib.SMTPAuthenticationError as exc:
            _quietly_close(smtp)
            raise ConnectError(
                f"the server refused the login of {s.username!r}: "
                f"{_text(exc.smtp_code, exc.smtp_error)}",
                where=self.where,
                hint=f"check smtp.username and the password in ${s.password_env}",
            ) from None
        except smtplib.SMTPNotSupportedError:
            _quietly_close(smtp)
            raise ConnectError(
                "the server offers no login (AUTH) on this connection",
                where=self.where,
                hint='empty smtp.username, or use smtp.security = "starttls" or "tls"',
            ) from None
        except ssl.SSLError as exc:
            _quietly_close(smtp)
            raise ConnectError(
                f"TLS failed: {exc.reason or exc}",
                where=self.where,
                hint="check smtp.security and smtp.port (465: tls, 587: starttls)",
            ) from None
        except (OSError, smtplib.SMTPException) as exc:
            _quietly_close(smtp)
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise ConnectError(
                f"cannot reach the SMTP server ({reason})",
                where=self.where,
                hint="check smtp.host and smtp.port and that the server runs; "
                "nothing was lost, run `publisher send` again",
            ) from None
        self._smtp = smtp
        self._dirty = False

    def send(self, sender: str, recipient: str, data: bytes) -> Reply:
        """Hand one message for one recipient to the server. Never reconnects by itself."""
        smtp = self._smtp
        if smtp is None:
            return Reply("dropped", "connect", "not connected")
        stage: Stage = "MAIL"
        try:
            if self._dirty:
                # A refused MAIL/RCPT/DATA left a transaction open: start clean.
                code, message = smtp.rset()
                if code != 250:
                    return self._dropped(stage, f"RSET refused: {_text(code, message)}")
                self._dirty = False
            code, message = smtp.mail(sender)
            if code != 250:
                return self._refused(stage, code, message)
            stage = "RCPT"
            code, message = smtp.rcpt(recipient)
            if code not in (250, 251):
                return self._refused(stage, code, message)
            stage = "DATA"
            try:
                code, message = smtp.data(data)
            except smtplib.SMTPDataError as exc:  # DATA itself refused (no 354)
                return self._refused(stage, exc.smtp_code, exc.smtp_error)
            if code != 250:
                # The final reply ends the transaction either way; no RSET needed.
                return self._refused(stage, code, message, dirty=False)
            return Reply("accepted", stage, _text(code, message))
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            return self._dropped(stage, f"connection lost: {exc or type(exc).__name__}")

    def _refused(self, stage: Stage, code: int, message: bytes | str, dirty: bool = True) -> Reply:
        text = _text(code, message)
        if code == 421 or code < 0:  # closing down (or smtplib's "no reply"): reconnect
            return self._dropped(stage, text)
        self._dirty = dirty
        verdict: Verdict = "permanent" if 500 <= code < 600 else "temporary"
        return Reply(verdict, stage, text)

    def _dropped(self, stage: Stage, text: str) -> Reply:
        self.close()
        return Reply("dropped", stage, text)

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            _quietly_close(smtp)


def _quietly_close(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()
