"""Five-field crontab expressions as crontab(5) reads them, built as apscheduler triggers.

apscheduler's CronTrigger.from_crontab differs from crontab in two ways that move a user's
schedule: its weekday 0 is Monday (crontab: Sunday, and 7 is Sunday too), and with both the
day of month and the day of week restricted it fires only when both match (crontab: either).
As in cron, a day field that starts with "*" ("*/2") counts as unrestricted for that rule.
"""

from __future__ import annotations

import re
from datetime import tzinfo
from typing import Any, Final

_NAMES: Final = ("sun", "mon", "tue", "wed", "thu", "fri", "sat")
_ITEM: Final = re.compile(r"^(\*|[a-z0-9]+(?:-[a-z0-9]+)?)(?:/([0-9]+))?$")


def _weekday(token: str) -> int:
    if token in _NAMES:
        return _NAMES.index(token)
    if token.isascii() and token.isdigit() and int(token) <= 7:
        return int(token) % 7  # 0 and 7 are Sunday
    raise ValueError(f"{token!r} is not a day of the week (0-7 or sun-sat)")


def weekdays(field: str) -> list[int]:
    """The days (0 = Sunday) a crontab day-of-week field names, e.g. "1-5", "sat,sun", "*/2"."""
    days: set[int] = set()
    for item in field.lower().split(","):
        match = _ITEM.match(item)
        if match is None:
            raise ValueError(f"{item!r} is not a day-of-week item")
        span, step = match.group(1), int(match.group(2) or 1)
        if step < 1:
            raise ValueError("a step must be at least 1")
        if span == "*":
            first, last = 0, 6
        elif "-" in span:
            low, high = span.split("-")
            first, last = _weekday(low), _weekday(high)
            if high == "7":
                last = 7  # "5-7": Friday to Sunday
            if low == "7":
                first = 7  # "7-1" runs backwards, as cron says
            if last < first:
                raise ValueError(f"{span!r} runs backwards")
        else:
            first = last = _weekday(span)
        days.update(day % 7 for day in range(first, last + 1, step))
    return sorted(days)


def crontab_trigger(expression: str, timezone: tzinfo | None = None) -> Any:
    """The apscheduler trigger that fires when crontab would for `expression`."""
    from apscheduler.triggers.combining import OrTrigger
    from apscheduler.triggers.cron import CronTrigger

    fields = expression.split()
    if len(fields) != 5:
        raise ValueError(f"a crontab expression has 5 fields, not {len(fields)}")
    minute, hour, day, month, dow = fields
    days = ",".join(_NAMES[d] for d in weekdays(dow))

    def cron(**which: str) -> Any:
        return CronTrigger(minute=minute, hour=hour, month=month, timezone=timezone, **which)

    # crontab fires on either day field when both are restricted; a field that starts with
    # "*" is not (cron's DOM_STAR / DOW_STAR): "*/2" with "1" is odd days that are Mondays.
    if not day.startswith("*") and not dow.startswith("*"):
        return OrTrigger([cron(day=day), cron(day_of_week=days)])
    return cron(day=day, day_of_week=days)
