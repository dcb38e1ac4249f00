"""MIME messages: structure, headers and bodies as a mail reader decodes them."""

from __future__ import annotations

import email
import email.policy
import re
import subprocess
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import parsedate_to_datetime
from html import escape as html_escape
from pathlib import Path

import dkim
import pytest
from hypothesis import HealthCheck, given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from publisher.delivery.dkim import DkimSigner, load_signer
from publisher.delivery.message import (
    MessageFactory,
    build_template,
    list_identity,
    render_eml,
)
from publisher.errors import DeliveryError
from publisher.model import (
    PLACEHOLDER_GREETING,
    PLACEHOLDER_RECIPIENT,
    PLACEHOLDER_UNSUBSCRIBE_URL,
    Digest,
    Issue,
)
from publisher.settings import Settings
from tests.conftest import Site

KEY = b"k" * 32
WHEN = datetime(2026, 11, 24, 7, 30, tzinfo=UTC)
ISSUE = Issue(3, "2026-11-24", datetime(2026, 11, 24, 6, 0, tzinfo=UTC), "Dispatch #3", ())

HTML = (
    "<html><body><p>%%GREETING%%</p>"
    + "<p style='color:#333'>Line of news with “quotes” and ümlauts.</p>" * 200
    + '<p><a href="%%UNSUBSCRIBE_URL%%">Unsubscribe</a> (%%RECIPIENT%%)</p></body></html>'
)
TEXT = (
    "%%GREETING%%\n\n" + "News paragraph – ümlaut.\n" * 50 + "\nUnsubscribe: %%UNSUBSCRIBE_URL%%\n"
)


@pytest.fixture
def settings(site: Site) -> Settings:
    return site.settings()


def build(
    settings: Settings,
    *,
    subject: str = "Dispatch #3: Harbour lights",
    html: str = HTML,
    text: str = TEXT,
    name: str = "Jane",
    address: str = "jane@example.org",
    subscriber_id: int = 42,
    signer: DkimSigner | None = None,
) -> bytes:
    identity = list_identity(settings)
    template = build_template(identity, Digest(subject, "", html, text))
    factory = MessageFactory(settings, identity, template, 3, KEY, signer)
    return factory.build(subscriber_id, address, name, WHEN).data


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def bodies(message: EmailMessage) -> tuple[str, str]:
    text, page = list(message.iter_parts())
    # The parts keep the CRLF of the wire; a reader shows lines.
    return tuple(str(p.get_content()).replace("\r\n", "\n") for p in (text, page))  # type: ignore[return-value]


def test_message_is_multipart_alternative_text_then_html_in_utf8(settings: Settings) -> None:
    message = parse(build(settings))

    assert message.get_content_type() == "multipart/alternative"
    parts = list(message.iter_parts())
    assert [p.get_content_type() for p in parts] == ["text/plain", "text/html"]
    assert all(p.get_content_charset() == "utf-8" for p in parts)
    assert all(p["Content-Transfer-Encoding"] == "quoted-printable" for p in parts)
    assert message["MIME-Version"] == "1.0"
    assert not message.defects and not any(p.defects for p in parts)


def test_wire_format_is_crlf_ascii_and_no_line_is_over_998_octets(settings: Settings) -> None:
    long_line_html = "<p>" + "x" * 5000 + "</p>" + HTML  # premailer output can be one line
    data = build(settings, html=long_line_html, name="Łukasz Żółć " * 10)

    assert data.isascii()
    assert b"\n" not in data.replace(b"\r\n", b"")
    assert b"\r" not in data.replace(b"\r\n", b"")
    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    _, page = bodies(parse(data))
    assert "x" * 5000 in page


def test_headers_name_sender_recipient_list_one_click_unsubscribe_and_no_auto_replies(
    settings: Settings,
) -> None:
    message = parse(build(settings))

    assert message["From"] == "Test Dispatch <desk@news.example.org>"
    assert message["To"].addresses[0].addr_spec == "jane@example.org"
    assert message["To"].addresses[0].display_name == "Jane"
    assert message["Subject"] == "Dispatch #3: Harbour lights"
    assert parsedate_to_datetime(message["Date"]) == WHEN
    assert re.fullmatch(r"<3\.42\.[A-Za-z0-9_-]{16}@news\.example\.org>", message["Message-ID"])
    assert message["List-Id"] == '"Test Dispatch" <test-dispatch.news.example.org>'
    assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
    # No vacation or out-of-office replies to the editor for every issue sent.
    assert message["Auto-Submitted"] == "auto-generated"
    assert message["Precedence"] == "bulk"
    assert message["X-Auto-Response-Suppress"] == "OOF, AutoReply"
    links = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])
    assert len(links) == 2
    https, mailto = links
    assert https.startswith("https://news.example.org/unsubscribe?token=42.")
    assert mailto.startswith("mailto:desk@news.example.org?subject=unsubscribe%2042.")
    assert https.rpartition("=")[2] == mailto.rpartition("%20")[2]


def test_the_header_link_is_the_one_visible_in_both_bodies(settings: Settings) -> None:
    message = parse(build(settings))
    https = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])[0]
    text, page = bodies(message)

    assert f"Unsubscribe: {https}" in text
    assert f'<a href="{https}">Unsubscribe</a>' in page
    assert text.startswith("Hello Jane,\n")
    assert "<p>Hello Jane,</p>" in page
    assert "(jane@example.org)" in page
    assert "%%" not in text and "%%" not in page


def test_non_ascii_subject_and_name_use_rfc2047_and_decode_back(settings: Settings) -> None:
    subject = "Die Sächsische #3: Überraschung im Hafen – ein langer Betreff " * 2
    data = build(settings, subject=subject.strip(), name="Zoë Ångström")
    message = parse(data)

    head = data.split(b"\r\n\r\n", 1)[0]
    assert b"=?utf-8?" in head
    assert message["Subject"] == " ".join(subject.split())
    assert message["To"].addresses[0].display_name == "Zoë Ångström"
    assert all(len(word) <= 75 for word in re.findall(rb"=\?[^?]+\?[bqBQ]\?[^?]*\?=", head))


def test_a_hostile_name_cannot_inject_headers_or_markup(settings: Settings) -> None:
    name = 'Eve\r\nBcc: victim@example.org <script>alert("x")</script>'
    data = build(settings, name=name)
    message = parse(data)

    assert message["Bcc"] is None
    _, page = bodies(message)
    assert "<script>" not in page
    assert "&lt;script&gt;" in page


def test_each_subscriber_gets_their_own_token_link_and_message_id(settings: Settings) -> None:
    one = parse(build(settings, subscriber_id=1, address="a@example.org"))
    two = parse(build(settings, subscriber_id=2, address="b@example.org"))

    assert one["Message-ID"] != two["Message-ID"]
    assert one["List-Unsubscribe"] != two["List-Unsubscribe"]
    assert bodies(one)[0].replace("a@example.org", "") != bodies(two)[0].replace(
        "b@example.org", ""
    )


def test_a_body_without_the_link_placeholder_still_shows_the_link(settings: Settings) -> None:
    message = parse(build(settings, html="<html><body><p>Hi</p></body></html>", text="Hi\n"))
    https = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])[0]
    text, page = bodies(message)

    assert text.rstrip().endswith(f"Unsubscribe: {https}")
    assert f'<a href="{https}">Unsubscribe</a></p></body></html>' in page


def test_a_percent_encoded_placeholder_in_an_href_is_filled_too(settings: Settings) -> None:
    html = '<a href="%25%25UNSUBSCRIBE_URL%25%25">Unsubscribe</a>'
    _, page = bodies(parse(build(settings, html=html)))

    assert 'href="https://news.example.org/unsubscribe?token=42.' in page


names = st.text(st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=60)
# Text around the placeholders never holds "%%": the digest renderer breaks up every "%%" in
# outside text (tests/test_render_digest.py), since "%%UNSUBSCRIBE_URL" written just before
# the real %%UNSUBSCRIBE_URL%% would make the first 19 characters look like the placeholder.
bodies_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)), min_size=0, max_size=400
).filter(lambda text: "%%" not in text)


@hsettings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(name=names, before=bodies_text, after=bodies_text, subject=names)
def test_any_text_fills_into_valid_quoted_printable(
    settings: Settings, name: str, before: str, after: str, subject: str
) -> None:
    from publisher.delivery.addresses import clean_name

    text = f"{before}{PLACEHOLDER_GREETING}{after}{PLACEHOLDER_UNSUBSCRIBE_URL}\n"
    html = (
        f"<p>{PLACEHOLDER_GREETING}</p><pre>{before}</pre><a href='{PLACEHOLDER_UNSUBSCRIBE_URL}'>"
    )
    data = build(settings, subject=subject or "x", text=text, html=html, name=clean_name(name))

    assert max(len(line) for line in data.split(b"\r\n")) <= 998
    message = parse(data)
    plain, page = bodies(message)
    greeting = f"Hello {clean_name(name)}," if clean_name(name) else "Hello,"
    link = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])[0]
    expected = f"{before}{greeting}{after}{link}\n"
    assert plain == expected.replace("\r\n", "\n").replace("\r", "\n")
    assert f"<p>{html_escape(greeting)}</p>" in page
    assert f"href='{html_escape(link)}'" in page


def test_render_eml_leaves_placeholders_visible_and_is_deterministic(settings: Settings) -> None:
    digest = Digest("Dispatch #3: Harbour lights", "", HTML, TEXT)
    first = render_eml(settings, ISSUE, digest)
    again = render_eml(settings, ISSUE, digest)
    message = parse(first)
    text, page = bodies(message)

    assert first == again
    assert message["To"] == PLACEHOLDER_RECIPIENT
    assert parsedate_to_datetime(message["Date"]) == ISSUE.published_at
    assert message["Message-ID"] == "<issue-3.2026-11-24@news.example.org>"
    assert f"<{PLACEHOLDER_UNSUBSCRIBE_URL}>" in message["List-Unsubscribe"]
    assert text.startswith(f"{PLACEHOLDER_GREETING}\n")
    assert f"Unsubscribe: {PLACEHOLDER_UNSUBSCRIBE_URL}" in text
    assert f'href="{PLACEHOLDER_UNSUBSCRIBE_URL}"' in page
    assert f"({PLACEHOLDER_RECIPIENT})" in page


def test_settings_override_list_id_links_and_greeting(make_site: object) -> None:
    site = make_site(  # type: ignore[operator]
        extra="""
[delivery]
from_address = "Desk <desk@news.example.org>"
list_id = "weekly.news.example.org"
unsubscribe_url = "https://lists.example.org/leave?list=weekly"
unsubscribe_mailto = "leave@lists.example.org"
greeting = "Moin"
"""
    )
    message = parse(build(site.settings()))
    https, mailto = re.findall(r"<([^>]+)>", message["List-Unsubscribe"])

    assert message["List-Id"].endswith("<weekly.news.example.org>")
    assert https.startswith("https://lists.example.org/leave?list=weekly&token=42.")
    assert mailto.startswith("mailto:leave@lists.example.org?subject=unsubscribe%2042.")
    assert bodies(message)[0].startswith("Moin Jane,")


def test_no_from_address_anywhere_is_a_clear_error(make_site: object) -> None:
    site = make_site(extra="")  # type: ignore[operator]
    settings = site.settings().model_copy(
        update={"site": site.settings().site.model_copy(update={"email": ""})}
    )
    with pytest.raises(DeliveryError, match="no From address"):
        list_identity(settings)


# ---------------------------------------------------------------- DKIM


@pytest.fixture(scope="module")
def rsa_key(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, bytes]:
    """A PKCS#1 key and its public key (DER, base64) made by openssl."""
    folder = tmp_path_factory.mktemp("dkim")
    key = folder / "dkim.pem"
    subprocess.run(
        ["openssl", "genrsa", "-traditional", "-out", str(key), "2048"],
        check=True,
        capture_output=True,
    )
    public = subprocess.run(
        ["openssl", "rsa", "-in", str(key), "-pubout", "-outform", "DER"],
        check=True,
        capture_output=True,
    ).stdout
    import base64

    return key, base64.b64encode(public)


def test_dkim_signature_covers_the_unsubscribe_headers_and_verifies(
    settings: Settings, rsa_key: tuple[Path, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    key_path, public = rsa_key
    monkeypatch.setenv("PUBLISHER_DKIM_KEY_FILE", str(key_path))
    dkim_settings = settings.model_copy(
        update={"delivery": settings.delivery.model_copy(update={"dkim_selector": "mail"})}
    )
    signer = load_signer(dkim_settings, "news.example.org")
    assert signer is not None
    data = build(settings, signer=signer)

    assert data.startswith(b"DKIM-Signature: ")
    signature = parse(data)["DKIM-Signature"]
    signed = {h.strip().lower() for h in re.search(r"h=([^;]+)", signature).group(1).split(":")}  # type: ignore[union-attr]
    assert {"list-unsubscribe", "list-unsubscribe-post", "from", "subject", "to"} <= signed
    assert "d=news.example.org" in signature and "s=mail" in signature

    def dns(name: bytes, timeout: int = 5) -> bytes:
        assert name == b"mail._domainkey.news.example.org."
        return b"v=DKIM1; k=rsa; p=" + public

    assert dkim.verify(data, dnsfunc=dns)
    tampered = data.replace(
        b"List-Unsubscribe-Post: List-Unsubscribe=One-Click", b"List-Unsubscribe-Post: x"
    )
    assert not dkim.verify(tampered, dnsfunc=dns)


def test_dkim_configured_without_its_key_variable_is_a_clear_error(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PUBLISHER_DKIM_KEY_FILE", raising=False)
    dkim_settings = settings.model_copy(
        update={"delivery": settings.delivery.model_copy(update={"dkim_selector": "mail"})}
    )
    with pytest.raises(DeliveryError, match="PUBLISHER_DKIM_KEY_FILE is not"):
        load_signer(dkim_settings, "news.example.org")


def test_dkim_key_that_is_not_pkcs1_is_refused_once(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad = tmp_path / "key.pem"
    bad.write_text("-----BEGIN PRIVATE KEY-----\nnot a key\n-----END PRIVATE KEY-----\n")
    monkeypatch.setenv("PUBLISHER_DKIM_KEY_FILE", str(bad))
    dkim_settings = settings.model_copy(
        update={"delivery": settings.delivery.model_copy(update={"dkim_selector": "mail"})}
    )
    with pytest.raises(DeliveryError, match="PKCS#1") as info:
        load_signer(dkim_settings, "news.example.org")
    assert "-traditional" in str(info.value)


def test_a_plain_http_unsubscribe_link_is_warned_about(
    make_site: object, caplog: pytest.LogCaptureFixture
) -> None:
    site: Site = make_site()  # type: ignore[operator]
    settings = site.settings()
    plain = settings.model_copy(
        update={"site": settings.site.model_copy(update={"url": "http://news.example.org/"})}
    )

    list_identity(plain)

    assert "not https" in caplog.text and "delivery.unsubscribe_url" in caplog.text
    caplog.clear()
    list_identity(settings)
    assert caplog.text == ""


def test_a_from_address_with_a_unicode_domain_goes_out_in_idna(make_site: object) -> None:
    site: Site = make_site(  # type: ignore[operator]
        extra='[delivery]\nfrom_address = "Bücherei Nord <post@bücherei.example>"\n'
    )
    data = build(site.settings())
    message = parse(data)

    assert data.isascii()
    assert message["From"].addresses[0].display_name == "Bücherei Nord"
    local, _, domain = message["From"].addresses[0].addr_spec.partition("@")
    assert local == "post" and domain.startswith("xn--")
    assert domain.encode().decode("idna") == "bücherei.example"
    assert message["Message-ID"].endswith(f"@{domain}>")
