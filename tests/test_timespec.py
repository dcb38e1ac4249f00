"""Schedule text: crontab lines keep their standard meaning under APScheduler; intervals parse."""

from __future__ import annotations

from datetime import datetime, timedelta
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from publisher.scheduler import make_trigger
from publisher.timespec import Cron, Interval, parse_timespec

BERLIN = ZoneInfo("Europe/Berlin")
MONDAY = datetime(2026, 11, 23, 0, 0, tzinfo=BERLIN)  # a Monday


def fire_times(text: str, start: datetime, count: int) -> list[datetime]:
    trigger = make_trigger(text, BERLIN)
    times: list[datetime] = []
    previous = None
    now = start
    while len(times) < count:
        moment = trigger.get_next_fire_time(previous, now)
        assert moment is not None
        times.append(moment)
        previous, now = moment, moment + timedelta(seconds=1)
    return times


@pytest.mark.parametrize(
    ("text", "weekdays"),
    [
        ("0 7 * * 1-5", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 7 * * mon-fri", {"Mon", "Tue", "Wed", "Thu", "Fri"}),
        ("0 7 * * 0", {"Sun"}),  # APScheduler alone would read 0 as Monday
        ("0 7 * * 7", {"Sun"}),
        ("0 7 * * 6,0", {"Sat", "Sun"}),
        ("0 7 * * 5-7", {"Fri", "Sat", "Sun"}),
        ("0 7 * * sat-sun", {"Sat", "Sun"}),
        ("0 7 * * */2", {"Sun", "Tue", "Thu", "Sat"}),  # cron steps from 0 = Sunday
        ("0 7 * * *", {"Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun"}),
    ],
)
def test_weekdays_mean_what_they_mean_in_crontab(text: str, weekdays: set[str]) -> None:
    times = fire_times(text, MONDAY, 14)
    assert {t.strftime("%a") for t in times} == weekdays
    assert {(t.hour, t.minute) for t in times} == {(7, 0)}
    assert all(t.tzinfo is not None and t.utcoffset() == timedelta(hours=1) for t in times)


def test_cron_fires_at_local_time_across_a_dst_change() -> None:
    # Europe/Berlin moves to summer time on 2027-03-28: 07:00 stays 07:00 on the wall clock.
    times = fire_times("0 7 * * *", datetime(2027, 3, 27, 8, 0, tzinfo=BERLIN), 2)
    assert [t.strftime("%Y-%m-%d %H:%M %z") for t in times] == [
        "2027-03-28 07:00 +0200",
        "2027-03-29 07:00 +0200",
    ]


def test_minute_steps_and_lists() -> None:
    times = fire_times("*/20 9 * * *", MONDAY, 4)
    assert [t.strftime("%d %H:%M") for t in times] == [
        "23 09:00",
        "23 09:20",
        "23 09:40",
        "24 09:00",
    ]
    assert parse_timespec("5,35 * * * *") == Cron("5,35", "*", "*", "*", "*")
    assert parse_timespec("@daily") == parse_timespec("0 0 * * *")
    assert parse_timespec("@weekly") == Cron("0", "0", "*", "*", "sun")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("every 30m", 1800),
        ("every 1h30m", 5400),
        ("every 1h 30m", 5400),
        ("Every 2 Hours", 7200),
        ("45s", 45),
        ("every 1d", 86400),
        ("every 2 weeks", 1209600),
    ],
)
def test_intervals(text: str, seconds: int) -> None:
    assert parse_timespec(text) == Interval(seconds)
    trigger = make_trigger(text, BERLIN)
    first = trigger.get_next_fire_time(None, MONDAY)
    assert trigger.get_next_fire_time(first, first) - first == timedelta(seconds=seconds)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("0 7 * *", "a crontab line has 5 fields (minute hour day month weekday), this has 4"),
        ("61 * * * *", "minute: 61 is outside 0-59"),
        ("0 24 * * *", "hour: 24 is outside 0-23"),
        ("0 7 0 * *", "day of month: 0 is outside 1-31"),
        ("0 7 * 13 *", "month: 13 is outside 1-12"),
        ("0 7 * * 8", "day of week: 8 is outside 0-7"),
        ("0 7 * * fri-mon", "day of week: the range 'fri-mon' runs backwards"),
        ("0 7 * * funday", "day of week: 'funday' is not a number or one of sun, mon"),
        ("*/0 * * * *", "minute: the step in '*/0' must be at least 1"),
        ("0 7 1 * mon", "restrict the day of month or the day of week, not both"),
        ("every 0s", "an interval must be longer than 0 seconds"),
        ("every 3 fortnights", "unknown unit 'fortnights'"),
        ("@reboot", "unknown '@reboot'"),
        ("", "empty"),
        ("0 7 * * 1 extra", "this has 6"),
    ],
)
def test_bad_text_says_what_is_wrong(text: str, message: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_timespec(text)
    assert message in str(caught.value)


@given(st.text(max_size=40))
def test_any_text_parses_or_raises_value_error(text: str) -> None:
    try:
        spec = parse_timespec(text)
    except ValueError:
        return
    make_trigger(text, BERLIN)  # whatever is accepted, APScheduler takes as is
    assert isinstance(spec, Cron | Interval)


day_ranges = st.tuples(st.integers(0, 7), st.integers(0, 7), st.integers(1, 7)).map(
    lambda t: (min(t[0], t[1]), max(t[0], t[1]), t[2])
)


@given(st.lists(day_ranges, min_size=1, max_size=3))
def test_numeric_weekday_fields_fire_on_the_crontab_days(
    ranges: list[tuple[int, int, int]],
) -> None:
    # The expected days come from the numbers drawn, read the crontab way (0 and 7: Sunday).
    field = ",".join(f"{a}-{b}/{step}" for a, b, step in ranges)
    expected = {n % 7 for a, b, step in ranges for n in range(a, b + 1, step)}
    times = fire_times(f"30 6 * * {field}", MONDAY, 2 * len(expected))
    fired = {int(t.strftime("%w")) for t in times}  # %w: 0 = Sunday
    assert fired == expected
