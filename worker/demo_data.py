"""The demo's simulated month: a seeded, reproducible mix of orgs and their daily events."""

from __future__ import annotations

import random
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from billing.core.periods import Period, isoformat_z


@dataclass(frozen=True)
class DemoOrg:
    org_id: str
    book: str
    plan: str
    interval: str | None
    seats: int | None
    profile: str  # light | heavy | idle


@dataclass
class _State:
    seats: int | None
    stacks: dict[str, int] = field(default_factory=dict)


# (book, plan, interval, share of orgs)
_MIX = (
    ("devtools", "free", "month", 30),
    ("devtools", "team", "year", 40),
    ("devtools", "enterprise", "year", 5),
    ("zenaton", "free", None, 10),
    ("zenaton", "payg", None, 15),
)
CONTRACT_ORGS = {
    ("devtools", "enterprise"): "org_enterprise_example",
    ("zenaton", "enterprise"): "org_zen_enterprise_example",
}


def demo_orgs(count: int, seed: int) -> list[DemoOrg]:
    """`count` orgs in the mix's proportions; from 10 orgs on, the first two are the books'
    example enterprise contracts (negotiated terms, minimum commitments)."""
    rng = random.Random(seed)  # noqa: S311 (a seeded simulation, not security)
    weights = [share for *_, share in _MIX]
    orgs: list[DemoOrg] = []
    if count >= 10:
        orgs.append(
            DemoOrg(
                CONTRACT_ORGS[("devtools", "enterprise")],
                "devtools",
                "enterprise",
                "year",
                120,
                "heavy",
            )
        )
        orgs.append(
            DemoOrg(
                CONTRACT_ORGS[("zenaton", "enterprise")],
                "zenaton",
                "enterprise",
                None,
                None,
                "heavy",
            )
        )
    for index in range(len(orgs), count):
        book, plan, interval, _ = rng.choices(_MIX, weights)[0]
        if plan == "enterprise":  # list terms only: the contracts above are the negotiated ones
            plan = "team"
        seats = rng.randint(2, 40) if book == "devtools" else None
        profile = rng.choices(("light", "heavy", "idle"), (60, 30, 10))[0]
        orgs.append(DemoOrg(f"demo-{index + 1:04d}", book, plan, interval, seats, profile))
    return orgs


def opening_events(orgs: list[DemoOrg], at: datetime) -> list[dict[str, Any]]:
    events: list[dict[str, Any]] = []
    for org in orgs:
        event: dict[str, Any] = {
            "type": "org",
            "org": org.org_id,
            "book": org.book,
            "plan": org.plan,
            "at": isoformat_z(at),
        }
        if org.interval:
            event["interval"] = org.interval
        if org.seats is not None:
            event["seats"] = org.seats
        events.append(event)
    return events


def daily_events(
    orgs: list[DemoOrg], period: Period, seed: int
) -> Iterator[tuple[datetime, list[dict[str, Any]]]]:
    """For each day of the period: its end, and the events that happened during it."""
    rng = random.Random(seed + 1)  # noqa: S311 (a seeded simulation, not security)
    states = {org.org_id: _State(org.seats) for org in orgs}
    day = period.period_start
    serial = 0
    while day < period.period_end:
        end = min(day + timedelta(days=1), period.period_end)
        events: list[dict[str, Any]] = []
        for org in orgs:
            state = states[org.org_id]
            if org.profile == "idle" and rng.random() < 0.8:
                continue
            scale = 4 if org.profile == "heavy" else 1
            for _ in range(rng.randint(1, 3)):
                at = day + timedelta(seconds=rng.randrange(int((end - day).total_seconds())))
                serial += 1
                for meter, quantity in _usage(org, rng, scale):
                    events.append(
                        {
                            "type": "usage",
                            "id": f"evt-{serial}-{meter}",
                            "org": org.org_id,
                            "meter": meter,
                            "quantity": quantity,
                            "at": isoformat_z(at),
                        }
                    )
            if state.seats is not None and rng.random() < 0.12:
                state.seats = max(1, state.seats + rng.choice((-2, -1, 1, 2, 3, 5)))
                at = day + timedelta(seconds=rng.randrange(int((end - day).total_seconds())))
                events.append(
                    {
                        "type": "seats",
                        "org": org.org_id,
                        "count": state.seats,
                        "at": isoformat_z(at),
                    }
                )
            if org.book == "devtools" and (day == period.period_start or rng.random() < 0.1):
                stack = f"stack-{rng.randint(1, 3)}"
                count = rng.choice((0, 50, 120, 400, 900)) * scale
                if state.stacks.get(stack) != count:
                    state.stacks[stack] = count
                    at = day + timedelta(seconds=rng.randrange(int((end - day).total_seconds())))
                    events.append(
                        {
                            "type": "resources",
                            "org": org.org_id,
                            "stack": stack,
                            "count": count,
                            "at": isoformat_z(at),
                        }
                    )
        events.sort(key=lambda event: str(event["at"]))
        yield end, events
        day = end


def _usage(org: DemoOrg, rng: random.Random, scale: int) -> list[tuple[str, int]]:
    if org.book == "zenaton":
        if org.plan == "free":
            return [("execution_time", rng.randint(0, 600))]
        # Light pay-as-you-go orgs stay under the $10 minimum, heavy ones go well above.
        return [("execution_time", rng.randint(100, 1500) * scale * scale)]
    return [
        ("copilot_messages", rng.randint(0, 12) * scale),
        ("runner_minutes", rng.randint(0, 30) * scale),
    ]
