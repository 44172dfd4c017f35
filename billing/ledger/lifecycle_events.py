"""Plan changes and cancellations entering the ledger (SPEC §10).

An `org` line for a known org, or a `cancel` line, becomes at most one plan-change row stored
at the instant it takes effect:
- an upgrade, a move onto the org's contract, a re-subscription after a cancellation, or a
  downgrade under `downgrade = "immediate"`: at the line's `at`;
- a downgrade under the default `downgrade = "at_term_end"`: at the end of the current seat
  term (for monthly or no seats, the current monthly usage period), `requested_at` = `at`;
- `cancel` with `when = "term_end"`: a row with no plan at the term end; `when = "now"`: at `at`,
  with the book's `cancel_now_credit`.
A change or cancellation still scheduled (effective after the line's `at`) is withdrawn by a
later line that names the current plan again, and replaced by a later change or cancellation.
Repeating a line changes nothing. Usage after the end of a subscription is refused
(`admission.py`); usage dated before it is accepted whenever it arrives.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from billing.core.meters import Interval
from billing.core.periods import isoformat_z
from billing.ledger.formats import CancelLine, LineError, OrgLine
from billing.pricing.book import PriceBook, Terms
from billing.pricing.lifecycle import (
    NO_PLAN,
    ChangeKind,
    Subscribed,
    classify,
    current_term,
    effective_at,
)

Plan = tuple[str, str, str]  # (book, plan, interval); plan NO_PLAN: canceled


@dataclass
class Timeline:
    """An org's plan rows by effective instant, with the instant each scheduled one was asked."""

    history: dict[datetime, Plan]
    requested: dict[datetime, datetime] = field(default_factory=dict)

    def at(self, instant: datetime) -> tuple[datetime, Plan] | None:
        """The row in effect at `instant` (its start and plan), None before the first."""
        starts = [start for start in self.history if start <= instant]
        if not starts:
            return None
        start = max(starts)
        return start, self.history[start]

    def scheduled_after(self, instant: datetime) -> list[datetime]:
        """Rows that take effect after `instant` and were asked for at or before it."""
        return [
            start
            for start in self.history
            if start > instant and self.requested.get(start, start) <= instant
        ]

    def latest_request(self) -> datetime:
        return max(self.requested.get(start, start) for start in self.history)


@dataclass
class Decision:
    """What one line does: a row to add (effective `at`), rows to withdraw, or nothing."""

    row: dict[str, Any] | None = None
    withdraw: list[datetime] = field(default_factory=list)
    immediate: bool = False


TermsOf = Callable[[str, str, str], Terms]  # (book, plan, interval) -> the org's terms


def decide_org_line(
    record: OrgLine,
    timeline: Timeline,
    wanted: Plan,
    book: PriceBook,
    terms_of: TermsOf,
) -> Decision | LineError:
    """The effect of an `org` line naming `wanted` on a known org (SPEC §10)."""
    if record.at in timeline.history and record.at not in timeline.requested:
        if timeline.history[record.at] != wanted:
            return LineError(
                record.line, "at", "the org already has a different plan change at this instant"
            )
        return Decision()
    if _repeat(timeline, record.at, wanted):
        return Decision()
    if record.at < timeline.latest_request():
        latest = isoformat_z(timeline.latest_request())
        return LineError(record.line, "at", f"is before the org's latest plan change ({latest})")
    current = timeline.at(record.at)
    pending = timeline.scheduled_after(record.at)
    if current is None or current[1][1] == NO_PLAN:
        return _row(record.at, wanted, None, None, pending, immediate=True)  # (re)subscribes
    start, plan = current
    if plan == wanted:
        return Decision(withdraw=pending)  # withdraws a scheduled change or cancellation
    old_terms = terms_of(*plan)
    kind = classify(
        book.lifecycle,
        Subscribed(plan[0], plan[1], Interval(plan[2])),
        Subscribed(*wanted[:2], Interval(wanted[2])),
        onto_contract=book.is_contract_move(record.org_id, wanted[1], record.at),
    )
    if kind is ChangeKind.SAME:
        return Decision(withdraw=pending)
    when = effective_at(book.lifecycle, kind, record.at, start, old_terms.interval)
    if when != record.at and _repeat(timeline, when, wanted):
        return Decision()  # the same downgrade, already scheduled
    requested = record.at if when != record.at else None
    return _row(when, wanted, requested, None, pending, immediate=when == record.at)


def decide_cancel(
    record: CancelLine, timeline: Timeline, book: PriceBook, terms_of: TermsOf
) -> Decision | LineError:
    """The effect of a `cancel` line on a known org."""
    current = timeline.at(record.at)
    if current is None or current[1][1] == NO_PLAN:
        since = "" if current is None else f" (canceled since {isoformat_z(current[0])})"
        return LineError(
            record.line, "org", f"{record.org_id!r} has no subscription to cancel{since}"
        )
    start, plan = current
    canceled: Plan = (plan[0], NO_PLAN, "")
    if record.when == "now":
        credit = book.lifecycle.cancel_now_credit.value
        if _repeat(timeline, record.at, canceled):
            return Decision()
        pending = timeline.scheduled_after(record.at)
        return _row(record.at, canceled, None, credit, pending, immediate=True)
    ends = current_term(start, terms_of(*plan).interval, record.at).period_end
    if _repeat(timeline, ends, canceled) and timeline.requested.get(ends) == record.at:
        return Decision()
    pending = timeline.scheduled_after(record.at)
    return _row(ends, canceled, record.at, None, pending, immediate=False)


def _repeat(timeline: Timeline, at: datetime, plan: Plan) -> bool:
    return timeline.history.get(at) == plan


def _row(
    at: datetime,
    plan: Plan,
    requested_at: datetime | None,
    cancel_credit: str | None,
    withdraw: list[datetime],
    *,
    immediate: bool,
) -> Decision:
    row = {
        "book": plan[0],
        "plan": plan[1],
        "interval": plan[2],
        "at": at,
        "requested_at": requested_at,
        "cancel_credit": cancel_credit,
    }
    # A scheduled row at the same instant is replaced: withdrawn, then this one stored.
    return Decision(row, list(withdraw), immediate)


def apply(timeline: Timeline, decision: Decision) -> None:
    """Record `decision` in the timeline, so later lines of the batch see it."""
    for start in decision.withdraw:
        timeline.history.pop(start, None)
        timeline.requested.pop(start, None)
    if decision.row is not None:
        at = decision.row["at"]
        timeline.history[at] = (
            decision.row["book"],
            decision.row["plan"],
            decision.row["interval"],
        )
        if decision.row["requested_at"] is not None:
            timeline.requested[at] = decision.row["requested_at"]
