"""Stripe's per-subscription caps: quantity updates and new invoices, counted per subscription.

Source: https://docs.stripe.com/rate-limits ("Object lock timeouts and other limits"): a
subscription allows "200 quantity updates per hour", and "10 new invoices per minute" and "20
new invoices per day" (also SPEC §4.1 and ``STRIPE-NOTES.md`` §4.2). Enforced only when
``EmulatorConfig.limits`` is ``live`` or ``sandbox``.

Assumptions (the page gives only the figures):

- Windows slide and are measured on the subscription's own clock: its customer's test clock's
  frozen time when it has one, else the emulator's account clock. A simulation that advances a
  clock by months therefore never trips a cap it would not trip in real time, and stays
  deterministic.
- A quantity update is one API request (``POST /v1/subscriptions/{id}`` or
  ``/v1/subscription_items[/{id}]``) that sets an existing item's quantity to another value; a
  request changing several items counts once. A new invoice is one an API request makes for
  the subscription (``proration_behavior=always_invoice``, a cancellation with
  ``invoice_now``); cycle invoices Stripe drafts itself are not refused (no request to answer).
- A refused request changes nothing and is answered 429 with Stripe's rate-limit error shape:
  ``{"error": {"type": "invalid_request_error", "code": "rate_limit", ...}}`` (stripe-python's
  ``RateLimitError``, not retried by the library).
- Invoice previews (run on a copy of the store) are never capped nor counted.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from stripe_emulator.errors import ApiError
from stripe_emulator.store import Store

HOUR = 3600
DAY = 86_400
QUANTITY_UPDATES_PER_HOUR = 200
NEW_INVOICES_PER_MINUTE = 10
NEW_INVOICES_PER_DAY = 20
_QUANTITY = "quantity_updates"
_INVOICES = "new_invoices"


def enforced(store: Store) -> bool:
    mode = store.config.limits if store.config is not None else "none"
    return not store.preview and mode in ("live", "sandbox")


def _times(sub: dict[str, Any], kind: str, now: int) -> list[int]:
    """The subscription's stamps of `kind` within the last day (older ones dropped)."""
    caps: dict[str, list[int]] = sub.setdefault("_caps", {})
    kept = [t for t in caps.get(kind, []) if now - DAY < t <= now]
    caps[kind] = kept
    return kept


def _refuse(sub: dict[str, Any], what: str) -> ApiError:
    return ApiError(
        429,
        f"Too many {what} for subscription {sub['id']}. Learn more about rate limits here "
        "https://stripe.com/docs/rate-limits.",
        code="rate_limit",
    )


def check_quantity_update(store: Store, sub: dict[str, Any], now: int) -> None:
    """Refuse (429) the request when the subscription had 200 quantity updates in the hour
    before `now`."""
    if not enforced(store):
        return
    times = _times(sub, _QUANTITY, now)
    if sum(1 for t in times if t > now - HOUR) >= QUANTITY_UPDATES_PER_HOUR:
        raise _refuse(sub, f"quantity updates (at most {QUANTITY_UPDATES_PER_HOUR} per hour)")


def check_new_invoice(store: Store, sub: dict[str, Any], now: int) -> None:
    """Refuse (429) a request that would create the subscription's 11th invoice in a minute
    or its 21st in a day."""
    if not enforced(store):
        return
    times = _times(sub, _INVOICES, now)
    if sum(1 for t in times if t > now - 60) >= NEW_INVOICES_PER_MINUTE:
        raise _refuse(sub, f"new invoices (at most {NEW_INVOICES_PER_MINUTE} per minute)")
    if len(times) >= NEW_INVOICES_PER_DAY:
        raise _refuse(sub, f"new invoices (at most {NEW_INVOICES_PER_DAY} per day)")


def count_quantity_update(store: Store, sub: dict[str, Any], now: int) -> None:
    """Count a quantity update that was made (after `check_quantity_update` admitted it)."""
    if enforced(store):
        _times(sub, _QUANTITY, now).append(now)


def count_new_invoice(store: Store, sub: dict[str, Any], now: int) -> None:
    """Count an invoice a request made for the subscription."""
    if enforced(store):
        _times(sub, _INVOICES, now).append(now)


def changes_quantity(store: Store, entries: list[dict[str, Any]]) -> bool:
    """Whether any `items[n]` entry sets an existing item's quantity to another value."""
    for node in entries:
        item_id, raw = node.get("id"), node.get("quantity")
        if not isinstance(item_id, str) or raw is None or node.get("deleted"):
            continue
        item = store.table("subscription_item").get(item_id)
        if item is not None and str(item.get("quantity")) != str(raw).strip():
            return True
    return False


def admit_item_changes(
    store: Store, sub: dict[str, Any], entries: list[dict[str, Any]], invoicing: bool, now: int
) -> Callable[[], None]:
    """Check the caps an item change request is under before it changes anything; returns
    what counts it once it is made."""
    quantity = changes_quantity(store, entries)
    if quantity:
        check_quantity_update(store, sub, now)
    if invoicing:
        check_new_invoice(store, sub, now)

    def count() -> None:
        if quantity:
            count_quantity_update(store, sub, now)
        if invoicing:
            count_new_invoice(store, sub, now)

    return count
