"""The delivery settings: the shipped file documents every key; bad values are named."""

from __future__ import annotations

import re

import pytest

from publisher.errors import ConfigError
from publisher.settings import DeliverySettings, SmtpSettings, load_settings
from tests.conftest import ROOT, Site


@pytest.mark.parametrize(
    ("section", "model"), [("smtp", SmtpSettings), ("delivery", DeliverySettings)]
)
def test_every_key_is_in_the_shipped_settings_with_a_comment(section: str, model: type) -> None:
    text = (ROOT / "settings.toml").read_text(encoding="utf-8")
    body = text.split(f"[{section}]\n", 1)[1].split("\n[", 1)[0]
    lines = body.splitlines()
    for key in model.model_fields:
        index = next((i for i, line in enumerate(lines) if re.match(rf"{key} = ", line)), None)
        assert index is not None, f"[{section}] {key} is missing from settings.toml"
        assert lines[index - 1].startswith("#"), f"[{section}] {key} has no comment above it"


def test_the_shipped_settings_load_with_safe_delivery_defaults() -> None:
    settings = load_settings(ROOT / "settings.toml", environ={})

    assert settings.smtp.connections == 4
    assert settings.smtp.rate_per_hour == 0
    assert settings.delivery.max_attempts >= 3
    assert settings.delivery.dkim_selector == ""
    assert settings.delivery.dry_run_dir.startswith("state/")


@pytest.mark.parametrize(
    ("line", "message"),
    [
        (
            'unsubscribe_url = "http://example.org/u"',
            "[delivery] unsubscribe_url: must be an https",
        ),
        ('from_address = "nobody"', "[delivery] from_address: must be an email address"),
        ('list_id = "no dots"', "[delivery] list_id: must look like"),
        ("max_attempts = 0", "[delivery] max_attempts"),
    ],
)
def test_bad_delivery_values_are_named(make_site: object, line: str, message: str) -> None:
    site: Site = make_site(extra=f"[delivery]\n{line}\n")  # type: ignore[operator]
    with pytest.raises(ConfigError) as info:
        site.settings()
    assert message in str(info.value)
