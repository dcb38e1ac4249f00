"""MIME messages: one template per issue, each subscriber's message filled into its bytes."""

from __future__ import annotations

import binascii
import hashlib
import html
import logging
import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from email.headerregistry import HeaderRegistry
from email.policy import SMTP
from email.utils import format_datetime, parseaddr
from urllib.parse import quote, urlsplit

from slugify import slugify

from publisher.delivery import tokens
from publisher.delivery.dkim import DkimSigner
from publisher.errors import DeliveryError
from publisher.model import (
    PLACEHOLDER_GREETING,
    PLACEHOLDER_RECIPIENT,
    PLACEHOLDER_UNSUBSCRIBE_URL,
    Digest,
    Issue,
)
from publisher.settings import Settings

log = logging.getLogger(__name__)

CRLF = b"\r\n"
SOFT_BREAK = b"=\r\n"
_HEADERS = HeaderRegistry()
# Every mail we send is made by a program: vacation and out-of-office responders must not
# answer it (RFC 3834; Exchange reads a header of its own).
AUTOMATED_HEADERS = (
    ("Auto-Submitted", "auto-generated"),
    ("X-Auto-Response-Suppress", "OOF, AutoReply"),
)
# List mail (the digest, the welcome) also says so to the responders that predate RFC 3834.
LIST_PRECEDENCE = ("Precedence", "bulk")

# What each placeholder in the bodies stands for.
_BODY_SLOTS = {
    PLACEHOLDER_GREETING: "greeting",
    PLACEHOLDER_UNSUBSCRIBE_URL: "url",
    PLACEHOLDER_RECIPIENT: "recipient",
}
_BODY_PLACEHOLDER = re.compile("|".join(re.escape(p) for p in _BODY_SLOTS))
# Templates or CSS inliners may percent-encode a placeholder that sits in an href.
_QUOTED_URL_PLACEHOLDER = PLACEHOLDER_UNSUBSCRIBE_URL.replace("%", "%25")


@dataclass(frozen=True, slots=True)
class Personal:
    """The values one subscriber's message is filled with (already formatted)."""

    to: str  # the To: header value, ASCII
    recipient: str  # the bare address
    greeting: str  # "Hello Jane,"
    unsubscribe_url: str
    mailto_url: str
    message_id: str  # "<...@...>"
    date: str  # RFC 5322 date-time


class MessageTemplate:
    """A complete message as bytes with holes: static pieces and the slots between them.

    Every body slot starts and ends on a line boundary of the quoted-printable text (a soft
    line break ends each piece), so a value encoded on its own keeps the part valid, and no
    line grows past 76 octets whatever is filled in.
    """

    def __init__(self, statics: tuple[bytes, ...], slots: tuple[str, ...]) -> None:
        assert len(statics) == len(slots) + 1
        self.statics = statics
        self.slots = slots
        self._needed = frozenset(slots)

    def fill(self, personal: Personal) -> bytes:
        values = {key: _ENCODERS[key](personal) for key in self._needed}
        out = [self.statics[0]]
        for key, static in zip(self.slots, self.statics[1:], strict=True):
            out.append(values[key])
            out.append(static)
        return b"".join(out)


def _qp(data: bytes) -> bytes:
    # binascii's encoder is C; it follows the input's line ends, so feed LF and turn to CRLF.
    return binascii.b2a_qp(data, quotetabs=False, istext=True, header=False).replace(b"\n", CRLF)


def _qp_value(text: str) -> bytes:
    data = _qp(text.encode())
    return data + SOFT_BREAK if data else b""


def _header_line(name: str, value: str) -> bytes:
    return f"{name}: {value}\r\n".encode("ascii")


_ENCODERS: dict[str, Callable[[Personal], bytes]] = {
    "h:to": lambda p: _header_line("To", p.to),
    "h:date": lambda p: _header_line("Date", p.date),
    "h:message_id": lambda p: _header_line("Message-ID", p.message_id),
    "h:list_unsubscribe": lambda p: _header_line(
        "List-Unsubscribe", f"<{p.unsubscribe_url}>,\r\n <{p.mailto_url}>"
    ),
    "text:greeting": lambda p: _qp_value(p.greeting),
    "text:url": lambda p: _qp_value(p.unsubscribe_url),
    "text:recipient": lambda p: _qp_value(p.recipient),
    "html:greeting": lambda p: _qp_value(html.escape(p.greeting)),
    "html:url": lambda p: _qp_value(html.escape(p.unsubscribe_url)),
    "html:recipient": lambda p: _qp_value(html.escape(p.recipient)),
}


def _fold(name: str, value: str) -> bytes:
    """An ASCII header folded at spaces per RFC 5322."""
    folded = _HEADERS(name, value).fold(policy=SMTP)
    return folded.encode("ascii")


def encode_words(text: str) -> str:
    """RFC 2047 base64 encoded words, each at most 75 characters and whole characters,
    one per folded line (the space between encoded words is not part of the text)."""
    words, chunk = [], b""
    for ch in text:
        encoded = ch.encode()
        if len(chunk) + len(encoded) > 45:  # 45 bytes -> 60 base64 chars + 12 = 72
            words.append(chunk)
            chunk = b""
        chunk += encoded
    words.append(chunk)
    return "\r\n ".join(
        f"=?utf-8?b?{binascii.b2a_base64(w, newline=False).decode()}?=" for w in words
    )


def _needs_encoding(text: str) -> bool:
    return not text.isascii() or "=?" in text or not text.isprintable()


def encode_phrase(text: str) -> str:
    """A display name for a header: a quoted string, or RFC 2047 encoded words."""
    clean = " ".join(text.split())
    if _needs_encoding(clean):
        return encode_words(clean)
    escaped = clean.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _subject_line(subject: str) -> bytes:
    clean = " ".join(subject.split())
    if _needs_encoding(clean):
        return f"Subject: {encode_words(clean)}\r\n".encode("ascii")
    return _fold("Subject", clean)


def _from_line(name: str, address: str) -> bytes:
    value = f"{encode_phrase(name)} <{address}>" if name else address
    return f"From: {value}\r\n".encode("ascii")


def format_to(email: str, name: str) -> str:
    """The To: value: the address alone, or `"Name" <address>` (RFC 2047 when not ASCII)."""
    return f"{encode_phrase(name)} <{email}>" if name else email


class _Builder:
    """Collects static bytes and slots in order; a slot always sits between two statics."""

    def __init__(self) -> None:
        self.statics: list[bytes] = [b""]
        self.slots: list[str] = []

    def add(self, data: bytes) -> None:
        self.statics[-1] += data

    def slot(self, key: str) -> None:
        self.slots.append(key)
        self.statics.append(b"")

    def body(self, kind: str, text: str) -> None:
        """A body as quoted-printable; each placeholder becomes a slot on its own lines."""
        normal = text.replace("\r\n", "\n").replace("\r", "\n")
        if kind == "html":
            normal = normal.replace(_QUOTED_URL_PLACEHOLDER, PLACEHOLDER_UNSUBSCRIBE_URL)
        position = 0
        for match in _BODY_PLACEHOLDER.finditer(normal):
            piece = _qp(normal[position : match.start()].encode())
            self.add(piece + SOFT_BREAK if piece and not piece.endswith(CRLF) else piece)
            self.slot(f"{kind}:{_BODY_SLOTS[match.group()]}")
            position = match.end()
        self.add(_qp(normal[position:].encode()))

    def template(self) -> MessageTemplate:
        return MessageTemplate(tuple(self.statics), tuple(self.slots))


def _with_unsubscribe_link(kind: str, text: str) -> str:
    """Make sure the body shows the unsubscribe link, as RFC 8058 senders are expected to."""
    if PLACEHOLDER_UNSUBSCRIBE_URL in text or _QUOTED_URL_PLACEHOLDER in text:
        return text
    if kind == "text":
        return f"{text.rstrip()}\n\nUnsubscribe: {PLACEHOLDER_UNSUBSCRIBE_URL}\n"
    link = f'<p><a href="{PLACEHOLDER_UNSUBSCRIBE_URL}">Unsubscribe</a></p>'
    at = text.lower().rfind("</body>")
    return f"{text[:at]}{link}{text[at:]}" if at >= 0 else f"{text}{link}"


@dataclass(frozen=True, slots=True)
class ListIdentity:
    """Who sends: the From header, the envelope sender, the List-Id and the id domain."""

    from_name: str
    from_address: str
    envelope_from: str
    domain: str  # ASCII, for Message-IDs and the default DKIM domain
    list_id: str  # "label.domain"
    list_name: str
    unsubscribe_base: str
    mailto_address: str


def _ascii_address(address: str, setting: str) -> str:
    """An address as it goes into headers and the envelope: the domain in IDNA form."""
    local, _, domain = address.rpartition("@")
    try:
        return f"{local.encode('ascii').decode()}@{domain.encode('idna').decode().lower()}"
    except UnicodeError:
        raise DeliveryError(
            f"{address!r} cannot be sent without SMTPUTF8",
            where=f"[delivery] {setting}",
            hint="use an address whose part before @ is ASCII",
        ) from None


def list_identity(settings: Settings) -> ListIdentity:
    """Sender and list details from the settings, checked once per run."""
    d = settings.delivery
    name, address = (
        parseaddr(d.from_address) if d.from_address else (settings.site.title, settings.site.email)
    )
    if "@" not in address:
        raise DeliveryError(
            "no From address",
            where="[delivery] from_address",
            hint="set it, e.g. 'News <news@example.org>'",
        )
    address = _ascii_address(address, "from_address")
    domain = address.rpartition("@")[2]
    host = (urlsplit(settings.site.url).hostname or domain).encode("idna").decode().lower()
    label = slugify(settings.site.title) or "list"
    unsubscribe_base = d.unsubscribe_url or f"{settings.site.url}unsubscribe"
    if not unsubscribe_base.startswith("https://"):
        log.warning(
            "the unsubscribe link %s is not https; mailbox providers ignore one-click "
            "unsubscribe (RFC 8058) without it: serve site.url over https or set "
            "delivery.unsubscribe_url",
            unsubscribe_base,
        )
    return ListIdentity(
        from_name=name,
        from_address=address,
        envelope_from=(
            _ascii_address(parseaddr(d.envelope_from)[1], "envelope_from")
            if d.envelope_from
            else address
        ),
        domain=domain,
        list_id=d.list_id or f"{label}.{host}",
        list_name=settings.site.title,
        unsubscribe_base=unsubscribe_base,
        mailto_address=(
            _ascii_address(parseaddr(d.unsubscribe_mailto)[1], "unsubscribe_mailto")
            if d.unsubscribe_mailto
            else address
        ),
    )


def build_template(identity: ListIdentity, digest: Digest) -> MessageTemplate:
    """The issue's message with holes for what differs per subscriber; built once per issue."""
    text = _with_unsubscribe_link("text", digest.text)
    page = _with_unsubscribe_link("html", digest.html)
    boundary = (
        "=_publisher_"
        + hashlib.sha256("\0".join((digest.subject, text, page)).encode()).hexdigest()[:32]
    )
    # "=_" cannot occur in quoted-printable text, so the boundary never clashes with a body.
    b = _Builder()
    b.add(_from_line(identity.from_name, identity.from_address))
    b.slot("h:to")
    b.add(_subject_line(digest.subject))
    b.slot("h:date")
    b.slot("h:message_id")
    b.add(_header_line("List-Id", f"{encode_phrase(identity.list_name)} <{identity.list_id}>"))
    b.slot("h:list_unsubscribe")
    b.add(b"List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n")
    for name, value in (*AUTOMATED_HEADERS, LIST_PRECEDENCE):
        b.add(_header_line(name, value))
    b.add(
        b"MIME-Version: 1.0\r\n"
        b"Content-Type: multipart/alternative;\r\n"
        b' boundary="' + boundary.encode() + b'"\r\n'
        b"\r\n"
    )
    for kind, subtype, body in (("text", "plain", text), ("html", "html", page)):
        b.add(
            f"--{boundary}\r\n"
            f'Content-Type: text/{subtype}; charset="utf-8"\r\n'
            "Content-Transfer-Encoding: quoted-printable\r\n"
            "\r\n".encode()
        )
        b.body(kind, body)
        b.add(CRLF)  # belongs to the boundary line that follows
    b.add(f"--{boundary}--\r\n".encode())
    return b.template()


def greeting_text(word: str, name: str) -> str:
    return f"{word} {name}," if name else f"{word},"


def unsubscribe_url(base: str, token: str) -> str:
    return f"{base}{'&' if '?' in base else '?'}token={token}"


def mailto_url(address: str, token: str) -> str:
    subject = f"unsubscribe {token}" if token else "unsubscribe"
    return f"mailto:{quote(address, safe='@')}?subject={quote(subject)}"


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One subscriber's message, ready for the wire."""

    recipient: str
    message_id: str
    data: bytes


class MessageFactory:
    """Per-subscriber messages of one issue: the template filled in, then signed if asked."""

    def __init__(
        self,
        settings: Settings,
        identity: ListIdentity,
        template: MessageTemplate,
        issue_number: int,
        key: bytes,
        signer: DkimSigner | None = None,
    ) -> None:
        self.identity = identity
        self.template = template
        self.issue_number = issue_number
        self.key = key
        self.signer = signer
        self.greeting = settings.delivery.greeting

    def message_id(self, subscriber_id: int) -> str:
        tag = tokens.message_id_tag(
            self.key, self.identity.list_id, self.issue_number, subscriber_id
        )
        return f"<{self.issue_number}.{subscriber_id}.{tag}@{self.identity.domain}>"

    def build(self, subscriber_id: int, email: str, name: str, date: datetime) -> Outgoing:
        token = tokens.make_token(self.key, subscriber_id, email)
        message_id = self.message_id(subscriber_id)
        personal = Personal(
            to=format_to(email, name),
            recipient=email,
            greeting=greeting_text(self.greeting, name),
            unsubscribe_url=unsubscribe_url(self.identity.unsubscribe_base, token),
            mailto_url=mailto_url(self.identity.mailto_address, token),
            message_id=message_id,
            date=format_datetime(date),
        )
        data = self.template.fill(personal)
        if self.signer is not None:
            data = self.signer.sign(data)
        return Outgoing(email, message_id, data)


def render_eml(settings: Settings, issue: Issue, digest: Digest) -> bytes:
    """The message a test recipient would get, per-subscriber parts left as placeholders.

    Deterministic: the same settings, issue and digest give the same bytes.
    """
    identity = list_identity(settings)
    template = build_template(identity, digest)
    return template.fill(
        Personal(
            to=PLACEHOLDER_RECIPIENT,
            recipient=PLACEHOLDER_RECIPIENT,
            greeting=PLACEHOLDER_GREETING,
            unsubscribe_url=PLACEHOLDER_UNSUBSCRIBE_URL,
            mailto_url=mailto_url(identity.mailto_address, ""),
            message_id=f"<issue-{issue.number}.{issue.folder}@{identity.domain}>",
            date=format_datetime(issue.published_at),
        )
    )
