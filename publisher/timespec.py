"""Schedule text from settings (a crontab line or an interval), checked and normalised; pure."""

from __future__ import annotations

import re
from dataclasses import dataclass

# Standard (Vixie) cron: 0 and 7 are Sunday. APScheduler 3.x counts from Monday, so weekdays
# leave this module as names, never as numbers (APScheduler issue 286).
_DAY_NAMES = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_MONTH_NAMES = ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec")
_MACROS = {
    "@yearly": "0 0 1 1 *",
    "@annually": "0 0 1 1 *",
    "@monthly": "0 0 1 * *",
    "@weekly": "0 0 * * 0",
    "@daily": "0 0 * * *",
    "@midnight": "0 0 * * *",
    "@hourly": "0 * * * *",
}
_UNITS = {
    "s": 1,
    "sec": 1,
    "secs": 1,
    "second": 1,
    "seconds": 1,
    "m": 60,
    "min": 60,
    "mins": 60,
    "minute": 60,
    "minutes": 60,
    "h": 3600,
    "hr": 3600,
    "hrs": 3600,
    "hour": 3600,
    "hours": 3600,
    "d": 86400,
    "day": 86400,
    "days": 86400,
    "w": 604800,
    "week": 604800,
    "weeks": 604800,
}
_INTERVAL = re.compile(r"^(?:every\s+)?((?:\d+\s*[a-z]+\s*)+)$")
_INTERVAL_PART = re.compile(r"(\d+)\s*([a-z]+)")
_ITEM = re.compile(r"^(?:(\*)|([a-z0-9]+)(?:-([a-z0-9]+))?)(?:/(\d+))?$")
EXAMPLES = "write a crontab line such as '0 7 * * mon-fri' or an interval such as 'every 30m'"


@dataclass(frozen=True, slots=True)
class _Field:
    name: str
    low: int
    high: int
    names: tuple[str, ...] = ()
    name_base: int = 0  # the number of the first name


_FIELDS = (
    _Field("minute", 0, 59),
    _Field("hour", 0, 23),
    _Field("day of month", 1, 31),
    _Field("month", 1, 12, _MONTH_NAMES, 1),
    _Field("day of week", 0, 7, _DAY_NAMES, 0),
)


@dataclass(frozen=True, slots=True)
class Cron:
    """A crontab line as APScheduler's CronTrigger keyword arguments, every field explicit."""

    minute: str
    hour: str
    day: str
    month: str
    day_of_week: str  # names (mon, tue, ...) or "*"

    def trigger_args(self) -> dict[str, str]:
        return {
            "minute": self.minute,
            "hour": self.hour,
            "day": self.day,
            "month": self.month,
            "day_of_week": self.day_of_week,
        }


@dataclass(frozen=True, slots=True)
class Interval:
    """Every `seconds` seconds."""

    seconds: int


Timespec = Cron | Interval


def parse_timespec(text: str) -> Timespec:
    """A crontab line (5 fields, standard cron meaning, or @daily and the like) or an interval
    ("every 30m", "every 1h30m", "45 seconds"). Raises ValueError saying what is wrong."""
    spec = " ".join(text.lower().split())
    if not spec:
        raise ValueError(f"empty; {EXAMPLES}")
    interval = _INTERVAL.match(spec)
    if interval:
        return Interval(_interval_seconds(interval.group(1)))
    if spec.startswith("@"):
        if spec not in _MACROS:
            raise ValueError(f"unknown {spec!r}; use one of {', '.join(_MACROS)}, or {EXAMPLES}")
        spec = _MACROS[spec]
    fields = spec.split(" ")
    if len(fields) != 5:
        raise ValueError(
            f"a crontab line has 5 fields (minute hour day month weekday), this has "
            f"{len(fields)}; {EXAMPLES}"
        )
    sets = [_expand(text, field) for text, field in zip(fields, _FIELDS, strict=True)]
    minute, hour, day, month, weekday = sets
    weekday = {7 if n == 0 else n for n in weekday}  # 0 and 7 both mean Sunday
    if fields[2] != "*" and fields[4] != "*":
        # Cron runs when EITHER day field matches, APScheduler only when BOTH do: refuse the
        # ambiguity rather than pick one.
        raise ValueError(
            "restrict the day of month or the day of week, not both (cron and APScheduler "
            "disagree on what that means); use '*' for one of them"
        )
    return Cron(
        minute=_render(minute, fields[0]),
        hour=_render(hour, fields[1]),
        day=_render(day, fields[2]),
        month=_render(month, fields[3]),
        day_of_week=_weekday_names(weekday, fields[4]),
    )


def _interval_seconds(parts: str) -> int:
    total = 0
    for number, unit in _INTERVAL_PART.findall(parts):
        if unit not in _UNITS:
            raise ValueError(f"unknown unit {unit!r} in an interval; use s, m, h, d or w")
        total += int(number) * _UNITS[unit]
    if total <= 0:
        raise ValueError("an interval must be longer than 0 seconds")
    return total


def _expand(text: str, field: _Field) -> set[int]:
    values: set[int] = set()
    for item in text.split(","):
        match = _ITEM.match(item)
        if not match:
            raise ValueError(f"{field.name}: {item!r} is not a number, a range or '*'")
        star, first, last, step = match.groups()
        if star:
            low, high = field.low, field.high
        else:
            low = _value(first, field)
            # "5/15" means from 5 to the end, every 15.
            high = _value(last, field) if last else (field.high if step else low)
            if field.names is _DAY_NAMES and last == "sun":
                high = 7  # "mon-sun": Sunday as the week's last day
            if low > high:
                raise ValueError(
                    f"{field.name}: the range {item!r} runs backwards; write it as two ranges"
                )
        stride = int(step) if step else 1
        if stride < 1:
            raise ValueError(f"{field.name}: the step in {item!r} must be at least 1")
        values.update(range(low, high + 1, stride))
    return values


def _value(token: str, field: _Field) -> int:
    if token.isdigit():
        number = int(token)
    elif token[:3] in field.names and len(token) == 3:
        number = field.names.index(token) + field.name_base
    else:
        raise ValueError(f"{field.name}: {token!r} is not a number" + _name_hint(field))
    if not field.low <= number <= field.high:
        raise ValueError(f"{field.name}: {number} is outside {field.low}-{field.high}")
    return number


def _name_hint(field: _Field) -> str:
    return f" or one of {', '.join(field.names)}" if field.names else ""


def _render(values: set[int], text: str) -> str:
    return "*" if text == "*" else ",".join(str(n) for n in sorted(values))


def _weekday_names(days: set[int], text: str) -> str:
    """Cron weekday numbers (1 = Monday ... 7 = Sunday) as APScheduler's names."""
    if text == "*" or len(days) == 7:
        return "*"
    return ",".join(_DAY_NAMES[n % 7] for n in sorted(days))
