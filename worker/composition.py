"""The composition root: the only place that builds the gateway and the services, from settings."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from functools import cache

import redis
from sqlalchemy.engine import Engine

from billing.alerts.delivery import AlertDeliverer
from billing.lifecycle.apply import Lifecycle
from billing.pricing.book_cache import BookCache
from billing.quotas.service import QuotaService
from billing.reconciliation.inbox import EventHandler, UsagePush
from billing.reconciliation.price_drift import PriceDriftCheck
from billing.reconciliation.reconciler import HoldPolicy, Reconciler
from billing.seats.sync import SeatSync
from billing.setup.catalog import CatalogSync
from billing.setup.provisioning import Provisioner
from billing.stripe_gateway import StripeConfig, StripeGateway
from billing.stripe_gateway.budget import (
    LocalRequestBudget,
    RedisRequestBudget,
    RequestBudget,
    UnlimitedBudget,
)
from billing.stripe_gateway.http import BudgetedRequestsClient
from billing.usage.meter_errors import MeterErrorIntake
from billing.usage.push import UsagePusher
from models.db import engine_for
from worker import metrics
from worker.alert_webhook import WebhookAlertSender
from worker.settings import Settings, get_settings

STRIPE_API_BASE = "https://api.stripe.com"
# Any key is accepted by the local emulator; a real Stripe URL needs STRIPE_API_KEY.
EMULATOR_API_KEY = "sk_test_emulator"


class ConfigurationError(RuntimeError):
    """The settings cannot build what was asked for (e.g. no Stripe key for real Stripe)."""


def stripe_config(settings: Settings) -> StripeConfig:
    """Translate settings into the gateway's config; the key is only read here."""
    key = settings.stripe_api_key.get_secret_value() if settings.stripe_api_key else None
    if not key:
        if settings.stripe_api_base.rstrip("/") == STRIPE_API_BASE:
            raise ConfigurationError(
                "STRIPE_API_KEY is not set (or point BILLING_STRIPE_API_BASE at the emulator, "
                "see `billing stripe-emulator`)"
            )
        key = EMULATOR_API_KEY
    return StripeConfig(
        api_key=key,
        api_base=settings.stripe_api_base.rstrip("/"),
        meter_events_base=(settings.stripe_meter_events_base or "").rstrip("/") or None,
        max_network_retries=settings.stripe_max_network_retries,
        timeout_seconds=settings.stripe_timeout_seconds,
    )


def request_budget(kind: str, rate: int, redis_url: str) -> RequestBudget:
    """The account-wide Stripe request budget (settings `stripe_budget`): shared through Redis
    by every process, process-local (the in-process demo), or none (unit tests)."""
    if kind == "local":
        return LocalRequestBudget(rate)
    if kind == "none":
        return UnlimitedBudget()
    return RedisRequestBudget(redis.Redis.from_url(redis_url), rate=rate)


@cache
def _gateway(config: StripeConfig, budget_kind: str, rate: int, redis_url: str) -> StripeGateway:
    def http_client() -> BudgetedRequestsClient:
        budget = request_budget(budget_kind, rate, redis_url)
        return BudgetedRequestsClient(
            budget, timeout=config.timeout_seconds, observer=metrics.stripe_request_observed
        )

    return StripeGateway(config, http_client_factory=http_client)


def stripe_gateway(settings: Settings | None = None) -> StripeGateway:
    """One gateway per config per process; its StripeClient (and its HTTP client, with the
    shared request budget) is built lazily on first use in each process."""
    settings = settings or get_settings()
    return _gateway(
        stripe_config(settings),
        settings.stripe_budget,
        settings.stripe_requests_per_second,
        settings.redis_url,
    )


def meter_error_intake(settings: Settings | None = None) -> MeterErrorIntake | None:
    """The receiver of Stripe's meter error reports, or None without a destination secret."""
    settings = settings or get_settings()
    secret = settings.stripe_event_destination_secret
    if secret is None:
        return None
    return MeterErrorIntake(
        database(settings),
        stripe_gateway(settings),
        secret.get_secret_value(),
        livemode=settings.stripe_livemode,
    )


def database(settings: Settings | None = None) -> Engine:
    return engine_for((settings or get_settings()).database_url)


def catalog_sync(settings: Settings | None = None) -> CatalogSync:
    settings = settings or get_settings()
    return CatalogSync(stripe_gateway(settings), database(settings))


def lifecycle(
    push_usage: Callable[[str, datetime], object],
    provision: Callable[[str, datetime], object],
    settings: Settings | None = None,
) -> Lifecycle:
    return Lifecycle(
        database(settings),
        stripe_gateway(settings),
        push_usage=push_usage,
        provision=provision,
    )


def provisioner(settings: Settings | None = None) -> Provisioner:
    settings = settings or get_settings()
    return Provisioner(stripe_gateway(settings), database(settings))


def seat_sync(settings: Settings | None = None) -> SeatSync:
    settings = settings or get_settings()
    return SeatSync(database(settings), stripe_gateway(settings))


def usage_pusher(settings: Settings | None = None) -> UsagePusher:
    settings = settings or get_settings()
    return UsagePusher(
        database(settings), stripe_gateway(settings), transport=settings.stripe_meter_transport
    )


def reconciler(settings: Settings | None = None) -> Reconciler:
    """The reconciler, holding drafts whose status is in `reconciliation_hold_on`."""
    settings = settings or get_settings()
    return Reconciler(
        database(settings),
        stripe_gateway(settings),
        BookCache(),
        hold_policy=HoldPolicy.parse(settings.reconciliation_hold_on),
        usage_deadline=timedelta(minutes=settings.reconciliation_usage_deadline_minutes),
    )


def event_handler(push_usage: UsagePush, settings: Settings | None = None) -> EventHandler:
    """The webhook event handler; `push_usage` is the job that pushes an org's usage under
    its lock (worker/jobs.py passes it: this module builds, it does not run jobs)."""
    settings = settings or get_settings()
    return EventHandler(database(settings), reconciler(settings), push_usage)


def price_drift_check(settings: Settings | None = None) -> PriceDriftCheck:
    settings = settings or get_settings()
    return PriceDriftCheck(database(settings), stripe_gateway(settings))


@cache
def _redis(url: str) -> redis.Redis:
    return redis.Redis.from_url(url)


def redis_client(settings: Settings | None = None) -> redis.Redis:
    """One Redis client (connection pool) per URL per process."""
    return _redis((settings or get_settings()).redis_url)


@cache
def _quota_service(
    database_url: str, redis_url: str, key_prefix: str, checkpoint_units: int
) -> QuotaService:
    return QuotaService(
        redis.Redis.from_url(redis_url),
        engine_for(database_url),
        BookCache(),
        key_prefix=key_prefix,
        checkpoint_units=checkpoint_units,
    )


def quota_service(settings: Settings | None = None) -> QuotaService:
    """One quota service per configuration per process (it caches org terms for a minute)."""
    settings = settings or get_settings()
    return _quota_service(
        settings.database_url,
        settings.redis_url,
        settings.quota_key_prefix,
        settings.quota_checkpoint_units,
    )


def alert_deliverer(settings: Settings | None = None) -> AlertDeliverer | None:
    """The alert delivery to BILLING_ALERT_WEBHOOK_URL (None when it is not set)."""
    settings = settings or get_settings()
    if settings.alert_webhook_url is None:
        return None
    sender = WebhookAlertSender(
        settings.alert_webhook_url.get_secret_value(),
        format=settings.alert_webhook_format,
        timeout_seconds=settings.alert_webhook_timeout_seconds,
        public_url=settings.public_url,
    )
    return AlertDeliverer(database(settings), sender)
