"""DKIM signatures (dkimpy) for outgoing messages, when a key is configured."""

from __future__ import annotations

from publisher.errors import DeliveryError
from publisher.settings import Settings

# RFC 8058 section 3: the signature must cover List-Unsubscribe and List-Unsubscribe-Post.
SIGNED_HEADERS = (
    b"from",
    b"to",
    b"subject",
    b"date",
    b"message-id",
    b"list-id",
    b"list-unsubscribe",
    b"list-unsubscribe-post",
    b"mime-version",
    b"content-type",
)


class DkimSigner:
    """Signs whole messages with one key: relaxed/relaxed, rsa-sha256."""

    def __init__(self, selector: str, domain: str, private_key: bytes) -> None:
        self.selector = selector.encode("ascii")
        self.domain = domain.encode("idna")
        self.private_key = private_key

    def sign(self, message: bytes) -> bytes:
        """The message with its DKIM-Signature header in front."""
        import dkim  # here: dkimpy costs a tenth of a second to import, and most runs never sign

        try:
            header: bytes = dkim.sign(
                message,
                self.selector,
                self.domain,
                self.private_key,
                canonicalize=(b"relaxed", b"relaxed"),
                include_headers=list(SIGNED_HEADERS),
            )
        except (dkim.DKIMException, ValueError, IndexError, TypeError) as exc:
            # A malformed key surfaces from dkimpy's parser as any of these.
            raise DeliveryError(
                f"DKIM signing failed: {exc}", where="[delivery] dkim_selector"
            ) from None
        return header + message


def load_signer(settings: Settings, from_domain: str) -> DkimSigner | None:
    """The signer the settings ask for, or None when `dkim_selector` is empty.

    The key's path comes from the environment variable named by `dkim_key_env`.
    """
    d = settings.delivery
    if not d.dkim_selector:
        return None
    where = "[delivery] dkim_key_env"
    path = settings.secret(d.dkim_key_env)
    if path is None:
        raise DeliveryError(
            f"dkim_selector is set but the environment variable {d.dkim_key_env} is not",
            where=where,
            hint="set it to the path of the PEM private key, or empty dkim_selector",
        )
    try:
        with open(path, "rb") as handle:
            key = handle.read().replace(b"\r\n", b"\n")
    except OSError as exc:
        raise DeliveryError(
            f"cannot read the DKIM key named by {d.dkim_key_env} ({exc.strerror})", where=where
        ) from None
    signer = DkimSigner(d.dkim_selector, d.dkim_domain or from_domain, key)
    # Sign a tiny message now: a bad key fails here, with one line, not per message.
    try:
        signer.sign(b"From: a@example.org\r\nSubject: key check\r\n\r\nok\r\n")
    except DeliveryError:
        raise DeliveryError(
            f"the file named by {d.dkim_key_env} is not an RSA private key in PKCS#1 PEM form",
            where=where,
            hint="convert it with `openssl rsa -in KEY -traditional -out KEY.rsa`",
        ) from None
    return signer
