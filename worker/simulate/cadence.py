"""When beat fires each of its entries: the ticks of `worker/beat.py` computed, not waited for.

A number of seconds fires at every multiple of it since the Unix epoch (a deterministic choice:
a real beat counts from its own start); a crontab fires on its minutes, hours, days of the month,
months and days of the week, in UTC. The simulator steps only to instants where something is
due, and asks here which entries fired in between (each runs once per step, as a beat that had
been waiting would run it once).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from celery.schedules import crontab

from worker.beat import beat_schedule

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_CRON_LOOKAHEAD_DAYS = 400


@dataclass(frozen=True)
class BeatEntry:
    name: str
    task: str
    schedule: float | crontab

    def next_tick_after(self, at: datetime) -> datetime:
        """The first instant strictly after `at` at which beat fires this entry."""
        if isinstance(self.schedule, crontab):
            return _next_cron(self.schedule, at)
        period = float(self.schedule)
        elapsed = (at - _EPOCH).total_seconds()
        return _EPOCH + timedelta(seconds=(math.floor(elapsed / period) + 1) * period)

    def fired_between(self, after: datetime, until: datetime) -> bool:
        """Whether a tick falls in `(after, until]`."""
        return self.next_tick_after(after) <= until


def beat_entries(schedule: Mapping[str, Mapping[str, Any]] | None = None) -> list[BeatEntry]:
    """Every entry of the beat schedule, in its order."""
    entries = schedule if schedule is not None else beat_schedule()
    return [BeatEntry(name, str(spec["task"]), spec["schedule"]) for name, spec in entries.items()]


def _next_cron(schedule: crontab, at: datetime) -> datetime:
    start = at.astimezone(UTC).replace(second=0, microsecond=0) + timedelta(minutes=1)
    day = start.replace(hour=0, minute=0)
    for _ in range(_CRON_LOOKAHEAD_DAYS):
        # crontab's day_of_week counts from Sunday = 0; Python's weekday() from Monday = 0.
        weekday = (day.weekday() + 1) % 7
        if (
            day.day in schedule.day_of_month
            and day.month in schedule.month_of_year
            and weekday in schedule.day_of_week
        ):
            for hour in sorted(schedule.hour):
                for minute in sorted(schedule.minute):
                    tick = day.replace(hour=hour, minute=minute)
                    if tick >= start:
                        return tick
        day += timedelta(days=1)
    raise ValueError(f"crontab {schedule} does not fire within {_CRON_LOOKAHEAD_DAYS} days")
