"""The [server] settings: the shipped file documents every key; bad values are named."""

from __future__ import annotations

import re
from collections.abc import Callable

import pytest

from publisher.errors import ConfigError
from publisher.settings import ServerSettings, load_settings
from tests.conftest import ROOT, Site


def test_every_server_key_is_in_the_shipped_settings_with_a_comment() -> None:
    text = (ROOT / "settings.toml").read_text(encoding="utf-8")
    lines = text.split("[server]\n", 1)[1].split("\n[", 1)[0].splitlines()
    for key in ServerSettings.model_fields:
        index = next((i for i, line in enumerate(lines) if re.match(rf"{key} = ", line)), None)
        assert index is not None, f"[server] {key} is missing from settings.toml"
        assert lines[index - 1].startswith("#"), f"[server] {key} has no comment above it"


def test_the_shipped_settings_listen_on_loopback_and_limit_abuse() -> None:
    server = load_settings(ROOT / "settings.toml", environ={}).server

    assert server.host == "127.0.0.1"
    assert server.trusted_proxies == ("127.0.0.1", "::1")
    assert server.subscribe_limit > 0
    assert server.mail_per_hour > 0
    assert server.max_body_bytes <= 65536


def test_lists_come_from_the_environment_as_toml() -> None:
    server = load_settings(
        ROOT / "settings.toml",
        environ={
            "PUBLISHER_SERVER__TRUSTED_PROXIES": '["10.0.0.0/8", "fd00::1"]',
            "PUBLISHER_SERVER__ALLOWED_ORIGINS": '["HTTPS://WWW.Example.org/"]',
            "PUBLISHER_SERVER__PORT": "8080",
        },
    ).server

    assert server.trusted_proxies == ("10.0.0.0/8", "fd00::1")
    assert server.allowed_origins == ("https://www.example.org",)
    assert server.port == 8080


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ('trusted_proxies = ["proxy.local"]', "trusted_proxies: 'proxy.local' is not an IP"),
        ('allowed_origins = ["example.org"]', "allowed_origins: 'example.org' is not an origin"),
        ('allowed_origins = ["https://example.org/news/"]', "is not an origin"),
        ("max_body_bytes = 10", "[server] max_body_bytes"),
        ("confirm_ttl_hours = 0", "[server] confirm_ttl_hours"),
        ("port = 70000", "[server] port"),
        ("listen = 1", "[server] listen: unknown key"),
    ],
)  # fmt: skip
def test_bad_server_values_are_named(
    make_site: Callable[..., Site], line: str, message: str
) -> None:
    site = make_site(extra=f"[server]\n{line}\n")

    with pytest.raises(ConfigError) as info:
        site.settings()

    assert message in str(info.value)
