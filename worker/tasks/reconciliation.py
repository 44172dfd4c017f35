"""Celery tasks of reconciliation: webhook handling, invoice reconciliation, sweeps, price checks.

Thin: ids in, one service call, a short result out. Transient Stripe errors (429, 5xx,
network) are retried with exponential backoff and jitter; every task is safe to run twice
(the inbox marks an event handled; reconciliations are append-only).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from celery import shared_task

from billing.core.errors import TransientBillingError
from billing.pricing.book import load_book
from billing.pricing.book_cache import BookCache
from billing.reconciliation.inbox import EventHandler, usage_pusher
from billing.reconciliation.price_drift import PriceDriftCheck
from billing.reconciliation.reconciler import HoldPolicy, Reconciler
from worker import composition
from worker.settings import Settings, get_settings

_RETRY: dict[str, Any] = {
    "autoretry_for": (TransientBillingError,),
    "retry_backoff": True,
    "retry_backoff_max": 600,
    "retry_jitter": True,
    "max_retries": 8,
}


def reconciler(settings: Settings | None = None) -> Reconciler:
    settings = settings or get_settings()
    return Reconciler(
        composition.database(settings),
        composition.stripe_gateway(settings),
        BookCache(),
        hold_policy=HoldPolicy.parse(settings.reconciliation_hold_on),
    )


def event_handler(settings: Settings | None = None) -> EventHandler:
    settings = settings or get_settings()
    service = reconciler(settings)
    push = usage_pusher(service.engine, service.gateway, service.books)
    return EventHandler(service.engine, service, push)


@shared_task(name="billing.reconciliation.handle_event", **_RETRY)
def handle_event(stripe_event_id: str) -> str:
    return event_handler().handle(stripe_event_id, datetime.now(UTC)).action


@shared_task(name="billing.reconciliation.reconcile_invoice", **_RETRY)
def reconcile_invoice(stripe_invoice_id: str, hold: bool = False) -> str:
    outcome = reconciler().reconcile_invoice(
        stripe_invoice_id, datetime.now(UTC), trigger="task", hold=hold
    )
    return outcome.status.value


@shared_task(name="billing.reconciliation.sweep", **_RETRY)
def sweep() -> int:
    settings = get_settings()
    outcome = reconciler(settings).sweep(
        datetime.now(UTC), timedelta(hours=settings.reconciliation_sweep_hours)
    )
    return len(outcome.reconciled)


@shared_task(name="billing.reconciliation.check_prices", **_RETRY)
def check_prices() -> int:
    settings = get_settings()
    check = PriceDriftCheck(composition.database(settings), composition.stripe_gateway(settings))
    return check.check(load_book(settings.book), datetime.now(UTC)).drift_count
