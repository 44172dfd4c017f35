"""The Stripe gateway: the only package that imports `stripe`, exposing typed calls and records."""

from billing.stripe_gateway.errors import map_stripe_error
from billing.stripe_gateway.gateway import StripeGateway
from billing.stripe_gateway.params import (
    MAX_IDEMPOTENCY_KEY_LENGTH,
    check_idempotency_key,
    price_create_params,
)
from billing.stripe_gateway.records import (
    MeterEventInput,
    PriceSpec,
    PriceTerms,
    PriceTier,
    StripeConfig,
    StripeCustomer,
    StripeInvoice,
    StripeInvoiceItem,
    StripeInvoiceLine,
    StripeMeter,
    StripeMeterEvent,
    StripeMeterEventSummary,
    StripePrice,
    StripeProduct,
    StripeSubscription,
    StripeSubscriptionItem,
    SubscriptionItemSpec,
)

__all__ = [
    "MAX_IDEMPOTENCY_KEY_LENGTH",
    "MeterEventInput",
    "PriceSpec",
    "PriceTerms",
    "PriceTier",
    "StripeConfig",
    "StripeCustomer",
    "StripeGateway",
    "StripeInvoice",
    "StripeInvoiceItem",
    "StripeInvoiceLine",
    "StripeMeter",
    "StripeMeterEvent",
    "StripeMeterEventSummary",
    "StripePrice",
    "StripeProduct",
    "StripeSubscription",
    "StripeSubscriptionItem",
    "SubscriptionItemSpec",
    "check_idempotency_key",
    "map_stripe_error",
    "price_create_params",
]
