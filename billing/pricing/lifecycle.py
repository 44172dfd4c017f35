"""The subscription lifecycle's rules (SPEC.md §10): plan order, upgrade or downgrade, when a
change or a cancellation takes effect, and the credit for unused prepaid seat time.

Policies are price-book data, `[lifecycle]`, each with the SPEC's default:

    [lifecycle]
    plan_order = ["free", "team", "enterprise"]  # lowest first; default: the order of [plans]
    upgrade = "immediate"                        # the only upgrade timing SPEC §10 defines
    downgrade = "at_term_end"                    # or "immediate"
    cancel_now_credit = "prorate"                # or "none"

A move to a higher plan, or to a longer seat interval on the same plan, is an upgrade; the
reverse is a downgrade; a book change counts as an upgrade, and moving an org onto its
negotiated contract is always immediate. A change that takes effect at t ends the current
subscription at t and starts a new one at t (a new term, usage periods anchored at t).

Pure: no database, no Stripe, no clock.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal
from enum import StrEnum
from typing import Any

from billing.core.meters import Interval
from billing.core.money import round_line_amount
from billing.core.periods import Period, term_containing, to_unix
from billing.pricing.book_format import Validator

# The plan of a ledger segment that is no subscription at all: from its `at` the org is canceled.
NO_PLAN = ""


class ChangeTiming(StrEnum):
    IMMEDIATE = "immediate"
    AT_TERM_END = "at_term_end"


class CancelWhen(StrEnum):
    TERM_END = "term_end"
    NOW = "now"


class CancelCredit(StrEnum):
    PRORATE = "prorate"
    NONE = "none"


class ChangeKind(StrEnum):
    UPGRADE = "upgrade"
    DOWNGRADE = "downgrade"
    CONTRACT = "contract"  # onto the org's negotiated contract: always immediate
    SAME = "same"  # no change of book, plan or interval


@dataclass(frozen=True)
class LifecyclePolicy:
    plan_order: tuple[str, ...]
    upgrade: ChangeTiming = ChangeTiming.IMMEDIATE
    downgrade: ChangeTiming = ChangeTiming.AT_TERM_END
    cancel_now_credit: CancelCredit = CancelCredit.PRORATE

    def rank(self, plan: str) -> int:
        return self.plan_order.index(plan) if plan in self.plan_order else -1


@dataclass(frozen=True)
class Subscribed:
    """What an org is on: its book, plan and seat interval."""

    book: str
    plan: str
    interval: Interval


_INTERVAL_RANK = {Interval.MONTH: 0, Interval.YEAR: 1}
_KEYS = {"plan_order", "upgrade", "downgrade", "cancel_now_credit"}


def parse_lifecycle(v: Validator, raw: object, plans: Sequence[str]) -> LifecyclePolicy:
    """The book's `[lifecycle]` table, every problem reported under `lifecycle.KEY`."""
    default = LifecyclePolicy(tuple(plans))
    if not isinstance(raw, dict):
        v.problem("lifecycle", "must be a table")
        return default
    v.keys(raw, "lifecycle", _KEYS)
    order = raw.get("plan_order", list(plans))
    if (
        not isinstance(order, list)
        or sorted(map(str, order)) != sorted(plans)
        or len(set(order)) != len(order)
    ):
        v.problem("lifecycle.plan_order", f"must list each of the book's plans once: {plans}")
        order = list(plans)
    return LifecyclePolicy(
        plan_order=tuple(str(plan) for plan in order),
        upgrade=_choice(v, raw, "upgrade", (ChangeTiming.IMMEDIATE,), ChangeTiming),
        downgrade=_choice(
            v, raw, "downgrade", (ChangeTiming.AT_TERM_END, ChangeTiming.IMMEDIATE), ChangeTiming
        ),
        cancel_now_credit=_choice(
            v, raw, "cancel_now_credit", (CancelCredit.PRORATE, CancelCredit.NONE), CancelCredit
        ),
    )


def _choice(
    v: Validator, raw: Mapping[str, Any], key: str, allowed: tuple[Any, ...], kind: Any
) -> Any:
    """The value of `key`, one of `allowed` (the first is the default)."""
    value = raw.get(key, allowed[0].value)
    if value not in {choice.value for choice in allowed}:
        names = " or ".join(repr(choice.value) for choice in allowed)
        v.problem(f"lifecycle.{key}", f"must be {names}")
        return allowed[0]
    return kind(value)


def classify(
    policy: LifecyclePolicy, old: Subscribed, new: Subscribed, *, onto_contract: bool = False
) -> ChangeKind:
    """Whether moving from `old` to `new` is an upgrade, a downgrade, a move onto a contract,
    or no change (SPEC §10's plan order)."""
    if old == new:
        return ChangeKind.SAME
    if onto_contract:
        return ChangeKind.CONTRACT
    if old.book != new.book:
        return ChangeKind.UPGRADE
    old_rank, new_rank = policy.rank(old.plan), policy.rank(new.plan)
    if new_rank != old_rank:
        return ChangeKind.UPGRADE if new_rank > old_rank else ChangeKind.DOWNGRADE
    if _INTERVAL_RANK[new.interval] > _INTERVAL_RANK[old.interval]:
        return ChangeKind.UPGRADE
    return ChangeKind.DOWNGRADE


def current_term(generation_start: datetime, interval: Interval, at: datetime) -> Period:
    """The seat term (or, for a plan with monthly or no seats, the monthly usage period) of
    the subscription that started at `generation_start` holding `at`."""
    return term_containing(generation_start, interval, at)


def effective_at(
    policy: LifecyclePolicy,
    kind: ChangeKind,
    requested_at: datetime,
    generation_start: datetime,
    interval: Interval,
) -> datetime:
    """When a change requested at `requested_at` takes effect: at once, or at the end of the
    current term (a downgrade under the default policy)."""
    if kind is ChangeKind.DOWNGRADE and policy.downgrade is ChangeTiming.AT_TERM_END:
        return current_term(generation_start, interval, requested_at).period_end
    return requested_at


def unused_seat_credit(
    seat_unit_amount: int, billed_quantity: int, term: Period, ends_at: datetime
) -> int:
    """The credit (a negative amount, in cents) for the prepaid seat time of `term` after
    `ends_at`: `− unit × billed_quantity × (term_end − ends_at) / term length`, rounded once."""
    if not term.period_start <= ends_at < term.period_end or not billed_quantity:
        return 0
    remaining = to_unix(term.period_end) - to_unix(ends_at)
    exact = Decimal(seat_unit_amount) * billed_quantity * remaining / Decimal(term.seconds)
    return -round_line_amount(exact)
