"""Every identifier we give Stripe, pinned character for character.

Stripe replays a write by its idempotency key and deduplicates meter events by identifier; our
rows store both, and the catalog finds its prices by lookup key. A changed format would make a
retry a second write, so each expected string below is written out, never computed.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime

import pytest

from billing.core import keys
from billing.core.components import MINIMUM_TOPUP
from billing.core.meters import Interval, Meter

JAN_31 = datetime(2026, 1, 31, 23, 0, tzinfo=UTC)  # 1769900400
LEAP_DAY = datetime(2024, 2, 29, 12, 30, 15, 999_999, tzinfo=UTC)  # 1709209815, µs dropped
OCT = datetime(2026, 10, 1, tzinfo=UTC)  # 1790812800


@pytest.mark.parametrize(
    ("build", "expected"),
    [
        # catalog keys, lookup keys and meter event names
        (lambda: keys.seat_product_key("devtools", "team"), "product:devtools:team:seats"),
        (
            lambda: keys.meter_product_key("devtools", Meter.RUNNER_MINUTES),
            "product:devtools:meter:runner_minutes",
        ),
        (
            lambda: keys.meter_key("zenaton", Meter.EXECUTION_TIME),
            "meter:zenaton:execution_time",
        ),
        (
            lambda: keys.seat_price_key("devtools", "team", Interval.YEAR, None),
            "price:devtools:team:seats:year",
        ),
        (
            lambda: keys.seat_price_key("devtools", "enterprise", Interval.YEAR, "org_ent"),
            "price:devtools:enterprise:seats:year:contract:org_ent",
        ),
        (
            lambda: keys.meter_price_key("devtools", "team", Meter.COPILOT_MESSAGES, None),
            "price:devtools:team:copilot_messages",
        ),
        (
            lambda: keys.meter_price_key("devtools", "enterprise", Meter.RUNNER_MINUTES, "o1"),
            "price:devtools:enterprise:runner_minutes:contract:o1",
        ),
        (
            lambda: keys.lookup_key("price:devtools:team:seats:year"),
            "devtools:team:seats:year",
        ),
        (
            lambda: keys.event_name("devtools", Meter.IAC_RESOURCE_HOURS),
            "devtools.iac_resource_hours",
        ),
        # the minimum top-up's meter (billing.usage.topup)
        (
            lambda: keys.meter_product_key("zenaton", MINIMUM_TOPUP),
            "product:zenaton:meter:minimum_topup",
        ),
        (lambda: keys.meter_key("zenaton", MINIMUM_TOPUP), "meter:zenaton:minimum_topup"),
        (
            lambda: keys.meter_price_key("zenaton", "payg", MINIMUM_TOPUP, None),
            "price:zenaton:payg:minimum_topup",
        ),
        (lambda: keys.event_name("zenaton", MINIMUM_TOPUP), "zenaton.minimum_topup"),
        (
            lambda: keys.meter_event_identifier("org_1", MINIMUM_TOPUP, OCT, 2),
            "usage:org_1:minimum_topup:1790812800:r2",
        ),
        # idempotency keys
        (
            lambda: keys.catalog_idempotency_key("meter:devtools:runner_minutes"),
            "catalog:meter:devtools:runner_minutes:v1",
        ),
        (
            lambda: keys.catalog_idempotency_key("price:devtools:team:seats:year", 3),
            "catalog:price:devtools:team:seats:year:v3",
        ),
        (lambda: keys.customer_idempotency_key("acme"), "provision:customer:acme"),
        (lambda: keys.subscription_idempotency_key("acme"), "provision:subscription:acme"),
        (
            lambda: keys.seat_step_key("acme", OCT, datetime(2026, 10, 3, 12, 5, tzinfo=UTC), 15),
            "seats:acme:1790812800:1791029100:15",
        ),
        (
            lambda: keys.seat_quantity_key("acme", OCT, "renewal", 1, 5),
            "seats:acme:1790812800:renewal:1:5",
        ),
        (
            lambda: keys.seat_quantity_key("acme", LEAP_DAY, "correction", 2, 10),
            "seats:acme:1709209815:correction:2:10",
        ),
        (
            lambda: keys.meter_event_identifier("acme", Meter.COPILOT_MESSAGES, JAN_31, 4),
            "usage:acme:copilot_messages:1769900400:r4",
        ),
        (
            lambda: keys.usage_adjustment_key("acme", Meter.RUNNER_MINUTES, OCT, 2),
            "usage-adjust:acme:runner_minutes:1790812800:2",
        ),
        (lambda: keys.minimum_topup_key("acme", OCT, 1), "minimum:acme:1790812800:1"),
        (lambda: keys.credit_application_key("acme", OCT, 2), "credit:acme:1790812800:2"),
        (lambda: keys.welcome_credit_id("acme"), "welcome:acme"),
        (lambda: keys.invoice_hold_key("in_123"), "reconciliation:hold:in_123"),
    ],
)
def test_key_format_never_changes(build: Callable[[], str], expected: str) -> None:
    assert build() == expected


@pytest.mark.parametrize(
    ("catalog_key", "org_id", "is_own"),
    [
        ("price:devtools:enterprise:seats:year:contract:org_ent", "org_ent", True),
        ("price:devtools:enterprise:seats:year", "org_ent", False),
        ("price:devtools:enterprise:seats:year:contract:org_ent", "org_en", False),
    ],
)
def test_contract_keys(catalog_key: str, org_id: str, is_own: bool) -> None:
    assert keys.is_contract_key(catalog_key, org_id) is is_own
