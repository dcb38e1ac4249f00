"""One-off messages (a confirmation request, a welcome): built whole, sent on their own session."""

from __future__ import annotations

from datetime import datetime
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP
from email.utils import format_datetime, make_msgid

from publisher.delivery.dkim import DkimSigner
from publisher.delivery.message import (
    AUTOMATED_HEADERS,
    LIST_PRECEDENCE,
    ListIdentity,
    encode_phrase,
    mailto_url,
)
from publisher.delivery.smtp import Connection
from publisher.errors import DeliveryError
from publisher.model import Notice, NoticeKind
from publisher.settings import SmtpSettings


def build_notice(
    identity: ListIdentity,
    *,
    kind: NoticeKind,
    subscriber_id: int,
    recipient: str,
    subject: str,
    text: str,
    html: str,
    date: datetime,
    unsubscribe: tuple[str, str] | None = None,
    signer: DkimSigner | None = None,
) -> Notice:
    """A multipart/alternative message in 7-bit quoted-printable, DKIM-signed if asked.

    `unsubscribe` is (https URL, token) for list mail such as the welcome: it adds List-Id,
    List-Unsubscribe and List-Unsubscribe-Post (RFC 2369, RFC 8058), and Precedence: bulk.
    A confirmation request is not list mail yet and gets none of them.
    """
    message = EmailMessage(policy=SMTP)
    message["From"] = Address(identity.from_name, addr_spec=identity.from_address)
    message["To"] = recipient
    message["Subject"] = " ".join(subject.split())
    message["Date"] = format_datetime(date)
    message["Message-ID"] = make_msgid(kind, domain=identity.domain)
    for name, value in AUTOMATED_HEADERS:
        message[name] = value
    if unsubscribe is not None:
        message[LIST_PRECEDENCE[0]] = LIST_PRECEDENCE[1]
    message.set_content(text, cte="quoted-printable")
    message.add_alternative(html, subtype="html", cte="quoted-printable")
    data = message.as_bytes()
    if unsubscribe is not None:
        # Written as the digest writes them (message.py): the email package would fold a long
        # URL onto a line of its own, which some receivers read with a leading space.
        url, token = unsubscribe
        data = (
            f"List-Id: {encode_phrase(identity.list_name)} <{identity.list_id}>\r\n"
            f"List-Unsubscribe: <{url}>,\r\n <{mailto_url(identity.mailto_address, token)}>\r\n"
            "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n"
        ).encode("ascii") + data
    if signer is not None:
        data = signer.sign(data)
    return Notice(kind, subscriber_id, recipient, identity.envelope_from, data)


def send_notice(smtp: SmtpSettings, password: str | None, notice: Notice) -> None:
    """Hand one notice to the SMTP server; DeliveryError when it was not taken."""
    connection = Connection(smtp, password)
    connection.open()  # raises ConnectError, a DeliveryError
    try:
        reply = connection.send(notice.envelope_from, notice.recipient, notice.data)
    finally:
        connection.close()
    if reply.verdict != "accepted":
        raise DeliveryError(
            f"the server did not take the {notice.kind} message at {reply.stage}: {reply.text}",
            where=connection.where,
        )
