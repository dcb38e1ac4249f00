"""Subscriptions for `publisher serve`: double opt-in subscribe, confirm, one-click unsubscribe."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from publisher.delivery.dkim import load_signer
from publisher.delivery.message import (
    greeting_text,
    list_identity,
    unsubscribe_url,
)
from publisher.delivery.notice import build_notice, send_notice  # server (issue 7)
from publisher.delivery.smtp import smtp_password
from publisher.delivery.tokens import (
    check_confirm_token,
    confirm_token_parts,
    load_key,
    make_confirm_token,
    make_token,
)
from publisher.errors import DeliveryError
from publisher.model import (
    ConfirmResult,
    IssueSummary,
    Notice,
    NoticeKind,
    Subscriber,
    SubscribeResult,
    UnsubscribeResult,
)
from publisher.pipeline.publication import issue_summary
from publisher.pipeline.sending import (
    apply_unsubscribe,
    checked_address,
    token_owner,
    unsubscribe_token_from,
)
from publisher.render.digest import (
    make_environment,
)
from publisher.render.notices import MailText, render_confirm_mail, render_welcome_mail
from publisher.settings import Settings
from publisher.store import Store

log = logging.getLogger(__name__)


# A confirmation link stamped this far in the future is refused: clocks differ a little, not more.
CLOCK_SKEW = timedelta(minutes=5)


def subscriber_address(raw: str) -> str:
    """An address as the store keeps it; DeliveryError saying what is wrong with it."""
    return checked_address(raw)


class Subscriptions:
    """Subscribe (double opt-in), confirm and unsubscribe, for a driver that runs for long.

    The store, the signing key, the sender, the DKIM key and the theme are loaded once, so a
    setting that is wrong fails here, at start, with one line. Every method may be called from
    several threads at once.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.key = load_key(settings)
        self.identity = list_identity(settings)
        self.signer = load_signer(settings, self.identity.domain)
        self.password = smtp_password(settings)
        self.env = make_environment(settings)
        self.ttl = timedelta(hours=settings.server.confirm_ttl_hours)
        self.store = Store.open(settings.database_url)

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> Subscriptions:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()

    def subscribe(self, email: str, *, now: datetime) -> SubscribeResult:
        """Record the address as pending (unless it is known) and build its confirmation.

        An active subscriber gets no mail; anyone else (new, pending, unsubscribed, bounced)
        gets a fresh link, and stays as they are until they follow it.
        """
        address = subscriber_address(email)
        self.drop_expired_signups(now)
        subscriber, created = self.store.add_subscriber(address, "", now=now, status="pending")
        before = None if created else subscriber.status
        if subscriber.status == "active":
            return SubscribeResult(subscriber.email, before, None)
        if not created:
            self.store.note_confirmation_sent(subscriber.id, now=now)
        token = make_confirm_token(self.key, subscriber.id, subscriber.email, now)
        mail = render_confirm_mail(
            self.env,
            self.settings,
            confirm_url=f"{self.settings.site.url}confirm?token={token}",
            ttl_hours=self.settings.server.confirm_ttl_hours,
        )
        return SubscribeResult(
            subscriber.email, before, self._notice("confirm", subscriber, mail, now)
        )

    def confirm(self, token: str, *, now: datetime) -> ConfirmResult:
        """Make the link's subscriber active and build their welcome, once.

        Following a link again answers "already" and sends nothing; a link older than
        [server] confirm_ttl_hours, or made before the address last unsubscribed, "expired".
        """
        parts = confirm_token_parts(token)
        if parts is None:
            return ConfirmResult("invalid")
        subscriber_id, issued = parts
        self.drop_expired_signups(now)
        subscriber = self.store.get_subscriber(subscriber_id=subscriber_id)
        if (
            subscriber is None
            or not check_confirm_token(self.key, token, subscriber.id, subscriber.email)
            or issued > now + CLOCK_SKEW
        ):
            # An old link whose sign-up was deleted names nobody now: it has expired. Judged by
            # the link's own time alone, so the answer tells nothing of who is on the list.
            return ConfirmResult("expired" if now - issued > self.ttl else "invalid")
        if subscriber.status == "active":
            return ConfirmResult("already", subscriber.email)
        left = subscriber.unsubscribed_at
        if now - issued > self.ttl or (left is not None and issued < left):
            return ConfirmResult("expired", subscriber.email)
        if not self.store.activate_subscriber(subscriber.id, now=now):
            return ConfirmResult("already", subscriber.email)  # a second click won the race
        return ConfirmResult("confirmed", subscriber.email, self._welcome(subscriber, now))

    def drop_expired_signups(self, now: datetime) -> int:
        """Delete sign-ups nobody confirmed before their latest link expired: an address no
        one has agreed to give us is not kept. Run at server start, subscribe and confirm."""
        deleted = self.store.delete_expired_signups(sent_before=now - self.ttl)
        if deleted:
            log.info("deleted %d sign-up(s) nobody confirmed within their link's time", deleted)
        return deleted

    def _welcome(self, subscriber: Subscriber, now: datetime) -> Notice:
        token = make_token(self.key, subscriber.id, subscriber.email)
        link = unsubscribe_url(self.identity.unsubscribe_base, token)
        mail = render_welcome_mail(
            self.env,
            self.settings,
            greeting=greeting_text(self.settings.delivery.greeting, subscriber.name),
            latest=self.latest_issue(),
            unsubscribe_url=link,
        )
        return self._notice("welcome", subscriber, mail, now, unsubscribe=(link, token))

    def _notice(
        self,
        kind: NoticeKind,
        subscriber: Subscriber,
        mail: MailText,
        now: datetime,
        *,
        unsubscribe: tuple[str, str] | None = None,
    ) -> Notice:
        return build_notice(
            self.identity,
            kind=kind,
            subscriber_id=subscriber.id,
            recipient=subscriber.email,
            subject=mail.subject,
            text=mail.text,
            html=mail.html,
            date=now,
            unsubscribe=unsubscribe,
            signer=self.signer,
        )

    def latest_issue(self) -> IssueSummary | None:
        issue = self.store.get_issue()
        return None if issue is None else issue_summary(self.settings, issue, ())

    def check_unsubscribe(self, token: str) -> UnsubscribeResult | None:
        """Whom an unsubscribe token names (and whether they are off the list already)."""
        try:
            subscriber = token_owner(self.store, self.key, token.strip())
        except DeliveryError:
            return None
        return UnsubscribeResult(subscriber.email, subscriber.status == "unsubscribed")

    def unsubscribe(self, token: str, *, now: datetime) -> UnsubscribeResult:
        """Apply an unsubscribe token; idempotent. DeliveryError for a token that is not ours."""
        return apply_unsubscribe(self.store, self.key, unsubscribe_token_from(token), now)

    def send(self, notice: Notice) -> None:
        """Hand a confirmation or welcome to the SMTP server; DeliveryError when not taken."""
        send_notice(self.settings.smtp, self.password, notice)


def subscribe(
    settings: Settings, email: str, *, now: datetime, send: bool = True
) -> SubscribeResult:
    """Ask `email` to confirm a subscription (double opt-in); the mail goes out unless `send`
    is False, when it is only returned."""
    with Subscriptions(settings) as subscriptions:
        result = subscriptions.subscribe(email, now=now)
        if send and result.notice is not None:
            subscriptions.send(result.notice)
        return result


def confirm(settings: Settings, token: str, *, now: datetime, send: bool = True) -> ConfirmResult:
    """Apply a confirmation token: the subscriber becomes active and is welcomed, once."""
    with Subscriptions(settings) as subscriptions:
        result = subscriptions.confirm(token, now=now)
        if send and result.notice is not None:
            subscriptions.send(result.notice)
        return result
