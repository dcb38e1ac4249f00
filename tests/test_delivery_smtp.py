"""SMTP transport against a real aiosmtpd server: replies sorted, TLS, AUTH, broken links."""

from __future__ import annotations

import ssl
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from publisher.delivery.smtp import ConnectError, Connection, smtp_password
from publisher.errors import DeliveryError
from publisher.settings import SmtpSettings
from tests.conftest import Site
from tests.smtp_sink import SmtpSink, free_port

MESSAGE = b"From: a@example.org\r\nTo: b@example.org\r\nSubject: hi\r\n\r\n.dot line\r\nbody\r\n"


def connection(sink: SmtpSink, password: str | None = None, **changes: object) -> Connection:
    values: dict[str, object] = {
        "host": sink.host,
        "port": sink.port,
        "security": "none",
        "timeout": 5.0,
        **changes,
    }
    return Connection(SmtpSettings.model_validate(values), password)


def test_a_message_is_accepted_and_arrives_unchanged(smtp_sink: SmtpSink) -> None:
    conn = connection(smtp_sink)
    conn.open()
    reply = conn.send("a@example.org", "b@example.org", MESSAGE)
    conn.close()

    assert reply.verdict == "accepted"
    assert reply.text.startswith("250 ")
    [got] = smtp_sink.messages
    assert got.mail_from == "a@example.org"
    assert got.rcpt_tos == ("b@example.org",)
    assert got.data.replace(b"\r\n", b"\n") == MESSAGE.replace(b"\r\n", b"\n")  # dot undone


def test_one_connection_carries_many_messages(smtp_sink: SmtpSink) -> None:
    conn = connection(smtp_sink)
    conn.open()
    replies = [conn.send("a@example.org", f"r{n}@example.org", MESSAGE) for n in range(5)]
    conn.close()

    assert {r.verdict for r in replies} == {"accepted"}
    assert len({m.connection for m in smtp_sink.messages}) == 1


def test_a_refused_recipient_is_permanent_at_rcpt_and_the_next_message_goes_through(
    smtp_sink: SmtpSink,
) -> None:
    smtp_sink.faults.reject_rcpt = {"gone@example.org"}
    conn = connection(smtp_sink)
    conn.open()
    refused = conn.send("a@example.org", "gone@example.org", MESSAGE)
    after = conn.send("a@example.org", "b@example.org", MESSAGE)  # after an RSET

    assert (refused.verdict, refused.stage) == ("permanent", "RCPT")
    assert refused.recipient_refused
    assert "550 5.1.1" in refused.text and "User unknown" in refused.text
    assert after.verdict == "accepted"
    assert smtp_sink.recipients() == {"b@example.org": 1}


def test_451_at_data_is_temporary_and_not_a_bounce(smtp_sink: SmtpSink) -> None:
    smtp_sink.faults.defer_data_first = 1
    conn = connection(smtp_sink)
    conn.open()
    deferred = conn.send("a@example.org", "b@example.org", MESSAGE)
    again = conn.send("a@example.org", "b@example.org", MESSAGE)

    assert (deferred.verdict, deferred.stage, deferred.text[:3]) == ("temporary", "DATA", "451")
    assert not deferred.recipient_refused
    assert again.verdict == "accepted"


def test_a_dropped_connection_is_reported_as_dropped_and_closed(smtp_sink: SmtpSink) -> None:
    smtp_sink.faults.drop_after = 1
    conn = connection(smtp_sink)
    conn.open()
    first = conn.send("a@example.org", "b@example.org", MESSAGE)
    second = conn.send("a@example.org", "c@example.org", MESSAGE)

    assert first.verdict == "accepted"
    assert second.verdict == "dropped"
    assert not conn.is_open
    conn.open()
    assert conn.send("a@example.org", "c@example.org", MESSAGE).verdict == "accepted"


def test_nobody_listening_is_a_connect_error_naming_the_server() -> None:
    port = free_port()
    settings = SmtpSettings(host="127.0.0.1", port=port, security="none", timeout=2.0)
    with pytest.raises(ConnectError) as info:
        Connection(settings, None).open()
    message = str(info.value)
    assert f"smtp 127.0.0.1:{port}" in message
    assert "cannot reach the SMTP server" in message
    assert "run `publisher send` again" in message


# ---------------------------------------------------------------- TLS and AUTH


@pytest.fixture(scope="module")
def certificate(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = folder / "cert.pem", folder / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1",
         "-addext", "subjectAltName=IP:127.0.0.1"],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return cert, key


@pytest.fixture
def server_tls(certificate: tuple[Path, Path], monkeypatch: pytest.MonkeyPatch) -> ssl.SSLContext:
    cert, key = certificate
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(cert, key)
    # The client trusts our test certificate the way OpenSSL lets an operator add one.
    monkeypatch.setenv("SSL_CERT_FILE", str(cert))
    return context


@pytest.fixture
def starttls_sink(server_tls: ssl.SSLContext) -> Iterator[SmtpSink]:
    sink = SmtpSink(tls=server_tls, login=("news", "s3cret")).start()
    yield sink
    sink.stop()


def test_starttls_then_login_then_send(starttls_sink: SmtpSink) -> None:
    conn = connection(starttls_sink, security="starttls", username="news", password="s3cret")
    conn.open()
    reply = conn.send("a@example.org", "b@example.org", MESSAGE)
    conn.close()

    assert reply.verdict == "accepted"
    assert starttls_sink.logins == ["news"]


def test_a_wrong_password_is_a_connect_error_naming_the_variable(starttls_sink: SmtpSink) -> None:
    conn = connection(starttls_sink, security="starttls", username="news", password="wrong")
    with pytest.raises(ConnectError) as info:
        conn.open()
    message = str(info.value)
    assert "refused the login of 'news'" in message and "535" in message
    assert "$PUBLISHER_SMTP_PASSWORD" in message
    assert "wrong" not in message


def test_an_untrusted_certificate_fails_tls(
    starttls_sink: SmtpSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    monkeypatch.setenv("SSL_CERT_FILE", "/nonexistent")
    conn = connection(starttls_sink, security="starttls", username="news", password="s3cret")
    with pytest.raises(ConnectError, match="TLS failed"):
        conn.open()


def test_implicit_tls(server_tls: ssl.SSLContext) -> None:
    sink = SmtpSink(implicit_tls=server_tls).start()
    try:
        conn = connection(sink, security="tls")
        conn.open()
        reply = conn.send("a@example.org", "b@example.org", MESSAGE)
        conn.close()
    finally:
        sink.stop()
    assert reply.verdict == "accepted"
    assert sink.recipients() == {"b@example.org": 1}


def test_starttls_required_but_not_offered_is_a_clear_error(smtp_sink: SmtpSink) -> None:
    with pytest.raises(ConnectError, match="does not offer STARTTLS") as info:
        connection(smtp_sink, security="starttls").open()
    assert 'smtp.security = "tls"' in str(info.value)


def test_the_password_comes_from_the_named_variable_only(
    make_site: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    site: Site = make_site(extra='[smtp]\nusername = "news"\npassword_env = "MY_SMTP_PW"\n')  # type: ignore[operator]
    monkeypatch.delenv("MY_SMTP_PW", raising=False)
    with pytest.raises(DeliveryError, match="MY_SMTP_PW is not"):
        smtp_password(site.settings())
    monkeypatch.setenv("MY_SMTP_PW", "pw")
    assert smtp_password(site.settings()) == "pw"
