"""The [schedule] settings: documented in the shipped file, bad text named by key."""

from __future__ import annotations

import re
from collections.abc import Callable
from zoneinfo import ZoneInfo

import pytest

from publisher.errors import ConfigError
from publisher.settings import ScheduleSettings, load_settings
from tests.conftest import ROOT, Site


def test_every_key_is_in_the_shipped_settings_with_a_comment() -> None:
    text = (ROOT / "settings.toml").read_text(encoding="utf-8")
    body = text.split("[schedule]\n", 1)[1].split("\n[", 1)[0]
    lines = body.splitlines()
    for key in ScheduleSettings.model_fields:
        index = next((i for i, line in enumerate(lines) if re.match(rf"{key} = ", line)), None)
        assert index is not None, f"[schedule] {key} is missing from settings.toml"
        assert lines[index - 1].startswith("#"), f"[schedule] {key} has no comment above it"


def test_the_shipped_schedule_is_the_documented_demo() -> None:
    settings = load_settings(ROOT / "settings.toml", environ={})
    schedule = settings.schedule
    assert (schedule.collect, schedule.publish) == ("every 30m", "0 7 * * mon-fri")
    assert schedule.send_after_publish
    assert settings.schedule_zone == ZoneInfo("Europe/Berlin")  # from [site] timezone


def test_nothing_is_scheduled_by_default(site: Site) -> None:
    schedule = site.settings().schedule
    assert (schedule.collect, schedule.publish, schedule.send) == ("", "", "")


def test_every_bad_entry_is_reported_at_once_with_its_key(make_site: Callable[..., Site]) -> None:
    site = make_site(
        extra='[schedule]\ncollect = "every 5 parsecs"\npublish = "0 7 * *"\n'
        'send = "0 25 * * *"\ntimezone = "Europe/Atlantis"\nmisfire_grace_time = 0\n'
    )
    with pytest.raises(ConfigError) as caught:
        site.settings()
    message = str(caught.value)
    assert message.startswith(f"{site.settings_path}: 5 problems in the settings:")
    assert "[schedule] collect: unknown unit 'parsecs' in an interval" in message
    assert "[schedule] publish: a crontab line has 5 fields" in message
    assert "(got '0 7 * *')" in message
    assert "[schedule] send: hour: 25 is outside 0-23" in message
    assert "[schedule] timezone: unknown time zone 'Europe/Atlantis'" in message
    assert "[schedule] misfire_grace_time: Input should be greater than or equal to 1" in message


def test_an_environment_override_is_checked_the_same_way(site: Site) -> None:
    with pytest.raises(ConfigError, match=r"\[schedule\] publish: minute: 99 is outside 0-59"):
        load_settings(site.settings_path, environ={"PUBLISHER_SCHEDULE__PUBLISH": "99 7 * * *"})
    settings = load_settings(
        site.settings_path,
        environ={"PUBLISHER_SCHEDULE__SEND": "every 10m", "PUBLISHER_SCHEDULE__TIMEZONE": "UTC"},
    )
    assert settings.schedule.send == "every 10m"
    assert settings.schedule_zone == ZoneInfo("UTC")
