"""Every identifier we hand Stripe, built from our own ids: idempotency keys, meter-event
identifiers, catalog keys, lookup keys and meter event names.

They are deterministic, so a retried write carries the key of the first attempt, and they are
stored (`seat_pushes.idempotency_key`, `usage_pushes.identifier`, `stripe_catalog_entries`):
Stripe replays a write by its key and our rows find their Stripe objects by them. A format here
never changes; tests/billing/core/test_keys.py pins each one character for character.
"""

from __future__ import annotations

from datetime import datetime

from billing.core.components import SEATS
from billing.core.meters import Interval, Meter
from billing.core.periods import to_unix

_PRICE_PREFIX = "price:"

# --------------------------------------------------------------------------- catalog


def seat_product_key(book: str, plan: str) -> str:
    return f"product:{book}:{plan}:{SEATS}"


def meter_product_key(book: str, meter: str) -> str:
    return f"product:{book}:meter:{meter}"


def meter_key(book: str, meter: str) -> str:
    return f"meter:{book}:{meter}"


def seat_price_key(book: str, plan: str, interval: Interval, contract_org_id: str | None) -> str:
    return _contract(f"{_PRICE_PREFIX}{book}:{plan}:{SEATS}:{interval.value}", contract_org_id)


def meter_price_key(book: str, plan: str, meter: str, contract_org_id: str | None) -> str:
    return _contract(f"{_PRICE_PREFIX}{book}:{plan}:{meter}", contract_org_id)


def is_contract_key(catalog_key: str, contract_org_id: str) -> bool:
    """Whether a price's catalog key is the contract's own (not the plan's) price."""
    return catalog_key.endswith(f":contract:{contract_org_id}")


def _contract(key: str, contract_org_id: str | None) -> str:
    return f"{key}:contract:{contract_org_id}" if contract_org_id else key


def lookup_key(price_catalog_key: str) -> str:
    """A price's Stripe lookup key: stable per catalog object, taken over by a repaired price."""
    return price_catalog_key.removeprefix(_PRICE_PREFIX)


def event_name(book: str, meter: str) -> str:
    """The event name of the book's meter in Stripe (meters are per book)."""
    return f"{book}.{meter}"


def catalog_idempotency_key(catalog_key: str, version: int = 1) -> str:
    """Creating a product, meter or (a version of a) price."""
    return f"catalog:{catalog_key}:v{version}"


# --------------------------------------------------------------------------- provisioning


def customer_idempotency_key(org_id: str) -> str:
    return f"provision:customer:{org_id}"


def subscription_idempotency_key(org_id: str, generation_at: datetime | None = None) -> str:
    """The org's first subscription; with `generation_at`, the one a plan change or a
    re-subscription starts then (SPEC §10: each change makes a new subscription)."""
    base = f"provision:subscription:{org_id}"
    return base if generation_at is None else f"{base}:{to_unix(generation_at)}"


def subscription_ending_key(
    org_id: str, stripe_subscription_id: str, how: str, ends_at: datetime | None
) -> str:
    """The Stripe write that ends (or schedules or withdraws the end of) a subscription."""
    when = "none" if ends_at is None else str(to_unix(ends_at))
    return f"lifecycle:{org_id}:{stripe_subscription_id}:{how}:{when}"


# --------------------------------------------------------------------------- seats


def seat_step_key(
    org_id: str, term_start_at: datetime, window_start_at: datetime, to_quantity: int
) -> str:
    """The quantity update of one coalesced seat step (a closed window of the term)."""
    return f"{_seat_term(org_id, term_start_at)}:{to_unix(window_start_at)}:{to_quantity}"


def seat_quantity_key(
    org_id: str, term_start_at: datetime, kind: str, sequence: int, to_quantity: int
) -> str:
    """The `sequence`-th renewal or correction (`kind`) of the term's seat quantity."""
    return f"{_seat_term(org_id, term_start_at)}:{kind}:{sequence}:{to_quantity}"


def _seat_term(org_id: str, term_start_at: datetime) -> str:
    return f"{SEATS}:{org_id}:{to_unix(term_start_at)}"


# --------------------------------------------------------------------------- usage


def meter_event_identifier(
    org_id: str, meter: str, period_start_at: datetime, revision: int
) -> str:
    """A meter event's identifier (Stripe's dedup key, and its idempotency key)."""
    return f"usage:{org_id}:{meter}:{to_unix(period_start_at)}:r{revision}"


def usage_adjustment_key(
    org_id: str, meter: Meter, period_start_at: datetime, sequence: int
) -> str:
    """The `sequence`-th late-usage invoice item of a final period's meter."""
    return f"usage-adjust:{org_id}:{meter.value}:{to_unix(period_start_at)}:{sequence}"


def minimum_topup_key(org_id: str, period_start_at: datetime, sequence: int) -> str:
    """The `sequence`-th minimum-commitment invoice item (a top-up or its correction)."""
    return f"minimum:{org_id}:{to_unix(period_start_at)}:{sequence}"


def credit_application_key(org_id: str, period_start_at: datetime, sequence: int) -> str:
    """The `sequence`-th credit invoice item of a period (the credit or its correction)."""
    return f"credit:{org_id}:{to_unix(period_start_at)}:{sequence}"


def welcome_credit_id(org_id: str) -> str:
    """The credit id of the book's welcome credit of an org: granted once, whatever repeats."""
    return f"welcome:{org_id}"


# --------------------------------------------------------------------------- reconciliation


def invoice_hold_key(stripe_invoice_id: str, sequence: int = 0) -> str:
    """Holding a draft invoice (auto_advance=false) reconciliation found wrong; `sequence` is
    the number of earlier reconciliations of the invoice (a draft held again after a release
    is a new write, not a replay of the first)."""
    suffix = f":{sequence}" if sequence else ""
    return f"reconciliation:hold:{stripe_invoice_id}{suffix}"


def invoice_release_key(stripe_invoice_id: str, sequence: int) -> str:
    """Releasing a draft we held (auto_advance=true) once reconciliation finds it right."""
    return f"reconciliation:release:{stripe_invoice_id}:{sequence}"
