"""Ending subscriptions: cancel now (``DELETE``), cancel later (``cancel_at``), the final invoice.

What Stripe documents, and what the emulator does with it:

- ``DELETE /v1/subscriptions/{id}`` "Cancels a customer's subscription immediately. The customer
  won't be charged again for the subscription" (https://docs.stripe.com/api/subscriptions/cancel).
  ``invoice_now``: "Will generate a final invoice that invoices for any un-invoiced metered usage
  and new/pending proration invoice items. Defaults to `false`." ``prorate``: "Will generate a
  proration invoice item that credits remaining unused time until the subscription period end.
  Defaults to `false`." (stripe-python 16.1.0 ``SubscriptionCancelParams``, generated from the
  API spec.)  So at ``t`` each licensed item with a quantity gets one credit,
  ``−amount(quantity) × (period_end − t) / (period_end − period_start)`` rounded once (the same
  arithmetic as any proration, ``subscriptions.prorate``), "Unused time on …", pointing at the
  line that billed it; metered items are billed in arrears for ``[period_start, t)`` with the
  whole tier schedule (a graduated free tier applies in full, never prorated).
- "Pending invoice items are included on a final invoice if you generate one. Otherwise, they
  remain pending and can be billed on another invoice for the customer … pending prorations are
  removed if invoice_now and prorate are both set to false" (stripe-python 16.1.0
  ``SubscriptionService.cancel`` docstring; the 2025-04-30.basil API page says the same).  So
  without ``invoice_now`` the items stay pending and the customer's next invoice sweeps them
  (``invoice_items.pending_items`` takes items of a canceled subscription), and with neither
  flag the subscription's pending *prorations* are deleted.
- ``cancel_at`` on ``POST /v1/subscriptions/{id}``: "A timestamp at which the subscription should
  cancel. If set to a date before the current period ends, this will cause a proration if
  prorations have been enabled using `proration_behavior`. If set during a future period, this
  will always cause a proration for that period." ``cancel_at=""`` unsets it.  The enum values
  ``min_period_end`` / ``max_period_end`` "resolve to timestamps immediately" to the earliest /
  latest ``items.data.current_period_end``, and "for mixed interval subscriptions the existing
  cancel_at_period_end feature always resolves to the earliest item period end"
  (https://docs.stripe.com/changelog/basil/2025-07-30/cancel-at-enums).  A mixed-interval
  subscription (annual seats, monthly metered items, flexible billing mode) may therefore set
  ``cancel_at`` to the annual term end: the monthly items keep renewing until then, each of
  their periods ends on the anchor's day, so the term end is also a monthly period end and no
  proration arises.
- Subscription fields (stripe-python 16.1.0 ``Subscription``): ``cancel_at`` "A date in the future
  at which the subscription will automatically get canceled"; ``cancel_at_period_end`` "Whether
  this subscription will (if status=active) or did (if status=canceled) cancel at the end of the
  current billing period"; ``canceled_at`` "If the subscription was canceled with
  cancel_at_period_end, canceled_at will reflect the time of the most recent update request, not
  the end of the subscription period"; ``ended_at`` "If the subscription has ended, the date the
  subscription ended".  ``status`` becomes ``canceled`` when it ends.
- Events: ``customer.subscription.updated`` (with ``previous_attributes``) when a cancellation is
  scheduled or withdrawn, ``customer.subscription.deleted`` "Occurs whenever a customer's
  subscription ends", with the final invoice's ``invoice.created`` (then ``invoice.finalized``).

Assumptions where the documentation is silent:
- The final invoice's ``billing_reason`` is ``subscription_cycle`` (it closes the period in
  progress and bills its usage in arrears, as a renewal does; the documented reasons name no
  cancellation), its period is ``[earliest metered period start, t)``, and like every
  subscription invoice it starts as a draft that finalizes after the grace period, so usage for
  ``[start, t)`` reported in the grace period is still billed.  It is made even when it holds
  only zero lines.
- Scheduling records ``canceled_at`` = the request time and ``cancellation_details.reason =
  "cancellation_requested"`` (as Stripe's own ``customer.subscription.updated`` payloads show);
  a withdrawal clears both.  Setting ``cancel_at`` and ``cancel_at_period_end=true`` together is
  refused.  ``cancel_at`` must lie in the future of the customer's clock.
- A licensed item that renews into a period which ``cancel_at`` cuts short is billed for
  ``[start, cancel_at)`` only: ``amount × (cancel_at − start) / (natural_end − start)``, rounded
  once, and its period ends at ``cancel_at``.  Withdrawing a ``cancel_at`` that had created a
  credit does not re-debit it (not modelled).
- A cancelled subscription answers a second ``DELETE`` with a 400; a retry with the same
  ``Idempotency-Key`` replays the first answer (``state.EmulatorState.execute``).
"""

from __future__ import annotations

import copy
from decimal import Decimal
from typing import Any

from stripe_emulator import caps
from stripe_emulator.amounts import exact_amount, prorated, round_cents
from stripe_emulator.cycles import metered_lines
from stripe_emulator.errors import invalid
from stripe_emulator.forms import Params, get_bool, get_dict, get_enum, get_int, get_list, get_str
from stripe_emulator.invoice_lines import subscription_line
from stripe_emulator.invoicing import new_invoice
from stripe_emulator.periods import fmt_date
from stripe_emulator.routing import route
from stripe_emulator.store import Store
from stripe_emulator.subscriptions import (
    BEHAVIORS,
    items_of,
    licensed_description,
    prorate,
)

CANCEL_AT_ENUMS = ("min_period_end", "max_period_end")
REQUESTED = "cancellation_requested"
_SCHEDULE_FIELDS = ("cancel_at", "cancel_at_period_end", "canceled_at", "cancellation_details")


# ----- cancel now -------------------------------------------------------------------------------


@route("DELETE", "/v1/subscriptions/{id}")
def cancel_subscription(store: Store, params: Params, sub_id: str) -> dict[str, Any]:
    sub = store.get("subscription", sub_id)
    if sub["status"] == "canceled":
        raise invalid("This subscription is already canceled.", "subscription")
    now = store.customer_now(sub["customer"])
    invoice_now = bool(get_bool(params, "invoice_now"))
    if invoice_now:
        caps.check_new_invoice(store, sub, now)
    if get_bool(params, "prorate"):
        credit_unused_time(store, sub, now)
    elif not invoice_now:
        _drop_pending_prorations(store, sub)
    if invoice_now:
        final_invoice(store, sub, now)
        caps.count_new_invoice(store, sub, now)
    details = get_dict(params, "cancellation_details")
    for key in ("comment", "feedback"):
        if key in details:
            sub["cancellation_details"][key] = get_str(details, key)
    end(store, sub, now, canceled_at=now)
    return store.render(sub, get_list(params, "expand"))


def credit_unused_time(store: Store, sub: dict[str, Any], t: int) -> list[dict[str, Any]]:
    """Credit prorations (pending items) for the licensed items' time after ``t``."""
    credits: list[dict[str, Any]] = []
    for item in items_of(store, sub):
        price = store.get("price", item["price"])
        quantity = item["quantity"] or 0
        if price["recurring"]["usage_type"] != "licensed" or quantity <= 0:
            continue
        if not item["current_period_start"] <= t < item["current_period_end"]:
            continue
        credits += prorate(store, sub, item, (price, quantity, price, 0), t)
    return credits


def _drop_pending_prorations(store: Store, sub: dict[str, Any]) -> None:
    for item in store.of_customer("invoiceitem", sub["customer"]):
        parent = item["parent"]
        owner = parent["subscription_details"]["subscription"] if parent else None
        if owner == sub["id"] and item["invoice"] is None and item["proration"]:
            item["deleted"] = True


def final_invoice(store: Store, sub: dict[str, Any], at: int) -> dict[str, Any]:
    """The draft that bills the metered usage of the periods in progress up to ``at`` and sweeps
    the subscription's pending items (prorations included)."""
    items = items_of(store, sub)
    lines = metered_lines(store, sub, items, at)
    starts = [line["period"]["start"] for line in lines]
    invoice = new_invoice(
        store,
        customer_id=sub["customer"],
        subscription=sub,
        billing_reason="subscription_cycle",
        lines=lines,
        period=(min(starts, default=at), at),
        now=at,
        currency=sub["currency"],
    )
    sub["latest_invoice"] = invoice["id"]
    return invoice


def end(store: Store, sub: dict[str, Any], at: int, *, canceled_at: int | None = None) -> None:
    """Mark ``sub`` ended at ``at``: it never renews or invoices again."""
    sub["status"] = "canceled"
    sub["ended_at"] = at
    if canceled_at is not None or sub["canceled_at"] is None:
        sub["canceled_at"] = canceled_at if canceled_at is not None else at
    if sub["cancellation_details"]["reason"] is None:
        sub["cancellation_details"]["reason"] = REQUESTED
    store.emit("customer.subscription.deleted", sub, at)


# ----- cancel later -----------------------------------------------------------------------------


def end_at_cancel_at(store: Store, sub: dict[str, Any], at: int) -> dict[str, Any]:
    """The subscription reached its ``cancel_at``: final usage invoice, then it ends."""
    invoice = final_invoice(store, sub, at)
    end(store, sub, at)
    return invoice


def schedule(store: Store, sub: dict[str, Any], params: Params, now: int) -> dict[str, Any]:
    """Apply the ``cancel_at`` / ``cancel_at_period_end`` of an update; the previous attributes
    (empty when the update holds neither)."""
    if "cancel_at" not in params and "cancel_at_period_end" not in params:
        return {}
    if sub["status"] == "canceled":
        raise invalid("A canceled subscription can only update its metadata.", "cancel_at")
    target, at_period_end = _requested_end(store, sub, params, now)
    previous = {key: copy.deepcopy(sub[key]) for key in _SCHEDULE_FIELDS}
    behavior = get_enum(params, "proration_behavior", BEHAVIORS, "create_prorations")
    if target is not None and target != sub["cancel_at"] and behavior != "none":
        credit_unused_time(store, sub, target)
    sub["cancel_at"] = target
    sub["cancel_at_period_end"] = at_period_end
    sub["canceled_at"] = now if target is not None else None
    sub["cancellation_details"]["reason"] = REQUESTED if target is not None else None
    return previous


def _requested_end(
    store: Store, sub: dict[str, Any], params: Params, now: int
) -> tuple[int | None, bool]:
    """(cancel_at, cancel_at_period_end) asked for by ``params``."""
    at_period_end = get_bool(params, "cancel_at_period_end")
    raw = params.get("cancel_at")
    if raw not in (None, "") and at_period_end:
        raise invalid(
            "You may only specify one of these parameters: cancel_at, cancel_at_period_end.",
            "cancel_at",
        )
    ends = [i["current_period_end"] for i in items_of(store, sub)] or [now]
    if "cancel_at" not in params:
        return (min(ends), True) if at_period_end else (None, False)
    if raw == "":
        return None, False
    if raw in CANCEL_AT_ENUMS:
        return (min(ends) if raw == "min_period_end" else max(ends)), False
    target = get_int(params, "cancel_at")
    assert target is not None
    if target <= now:
        raise invalid("cancel_at must be in the future.", "cancel_at")
    return target, False


def shorten_to_cancel_at(
    store: Store, sub: dict[str, Any], item: dict[str, Any], price: dict[str, Any]
) -> dict[str, Any] | None:
    """A licensed item just renewed into a period that ``cancel_at`` cuts short: its period now
    ends there, and its advance line bills only that part (None when nothing is cut)."""
    cancel_at = sub["cancel_at"]
    start, natural_end = item["current_period_start"], item["current_period_end"]
    if cancel_at is None or natural_end <= cancel_at:
        return None
    item["current_period_end"] = cancel_at
    if price["recurring"]["usage_type"] != "licensed":
        return None
    quantity = Decimal(item["quantity"] or 0)
    full = exact_amount(price, quantity)
    amount = round_cents(prorated(full, cancel_at - start, natural_end - start))
    return subscription_line(
        subscription_id=sub["id"],
        item_id=item["id"],
        price=price,
        quantity=quantity,
        amount=amount,
        description=(
            f"{licensed_description(store, price, int(quantity))} until {fmt_date(cancel_at)}"
        ),
        period=(start, cancel_at),
    )
