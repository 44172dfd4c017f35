"""Catalog sync: what the books imply, idempotent creation, drift reporting and repair."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.meters import Interval
from billing.pricing.book import load_book
from billing.setup.catalog import CatalogAction, CatalogSync
from billing.setup.catalog_plan import plan_catalog, price_keys_for_terms, stripe_unit_price
from billing.stripe_gateway import PriceTier
from models.stripe_records import StripeCatalogEntry
from tests.fixtures.fake_stripe import FakeStripe

NOW = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("unit", "per", "stripe_unit", "approximate"),
    [
        ("0.8", 1, "0.8", False),
        ("13", 3600, "0.003611111111", True),  # $0.13 per hour of seconds
        ("10", 3600, "0.002777777778", True),  # rounds up at the 12th place
        ("36", 3600, "0.01", False),
        ("5", 10_000_000_000_000, "0.000000000001", True),  # exactly half of the last place: up
        ("4", 10_000_000_000_000, "0", True),
    ],
)
def test_stripe_unit_price(unit: str, per: int, stripe_unit: str, approximate: bool) -> None:
    converted = stripe_unit_price(Decimal(unit), per)
    assert converted.stripe_amount_decimal == Decimal(stripe_unit)
    assert converted.approximate is approximate


def test_devtools_catalog_plan() -> None:
    plan = plan_catalog(load_book("devtools"))
    # 3 meters + the minimum top-up's + seats of free, team, enterprise
    assert len(plan.products) == 7
    assert [m.event_name for m in plan.meters] == [
        "devtools.copilot_messages",
        "devtools.runner_minutes",
        "devtools.iac_resource_hours",
        "devtools.minimum_topup",  # the example contract has a minimum
    ]
    prices = {p.catalog_key: p for p in plan.prices}
    team_msgs = prices["price:devtools:team:copilot_messages"]
    assert team_msgs.tiers == (PriceTier(500, Decimal(0)), PriceTier(None, Decimal(2)))
    assert team_msgs.lookup_key == "devtools:team:copilot_messages"
    assert prices["price:devtools:team:seats:year"].unit_amount_decimal == Decimal(900)
    assert "price:devtools:team:seats:month" not in prices  # the book offers Team yearly only
    # The example contract differs on seats, messages and runner minutes, not on IaC hours.
    contract = sorted(k for k in prices if k.endswith(":contract:org_enterprise_example"))
    assert contract == [
        "price:devtools:enterprise:copilot_messages:contract:org_enterprise_example",
        "price:devtools:enterprise:runner_minutes:contract:org_enterprise_example",
        "price:devtools:enterprise:seats:year:contract:org_enterprise_example",
    ]
    runner = prices["price:devtools:enterprise:runner_minutes:contract:org_enterprise_example"]
    assert runner.tiers == (
        PriceTier(10_000, Decimal(0)),
        PriceTier(100_000, Decimal("0.6")),
        PriceTier(None, Decimal("0.4")),
    )
    # Enterprise's top-up price (the contract's minimum): 1¢ per unit, metered, on its meter.
    topup = prices["price:devtools:enterprise:minimum_topup"]
    assert (topup.unit_amount_decimal, topup.tiers, topup.usage_type, topup.meter_key) == (
        Decimal(1),
        (),
        "metered",
        "meter:devtools:minimum_topup",
    )
    assert len(prices) == 17


def test_price_keys_for_a_contract_fall_back_to_plan_prices() -> None:
    book = load_book("devtools")
    terms = book.terms("enterprise", Interval.YEAR, "org_enterprise_example")
    keys = price_keys_for_terms(book, terms)
    assert keys["seats"].endswith(":contract:org_enterprise_example")
    assert keys["iac_resource_hours"] == "price:devtools:enterprise:iac_resource_hours"
    assert keys["minimum_topup"] == "price:devtools:enterprise:minimum_topup"
    assert "minimum_topup" not in price_keys_for_terms(book, book.terms("team", Interval.YEAR))


def test_zenaton_prices_are_exact_per_hour() -> None:
    # The meter receives hours (billing.pricing.meter_value), so 13¢ per 3,600 s is 13¢ exactly.
    plan = plan_catalog(load_book("zenaton"))
    prices = {p.catalog_key: p for p in plan.prices}
    payg = prices["price:zenaton:payg:execution_time"]
    assert payg.unit_amount_decimal == Decimal("13")
    assert not payg.approximate
    assert payg.tiers == ()
    assert not prices["price:zenaton:free:execution_time"].approximate
    assert not any(p.usage_type == "licensed" for p in plan.prices)


def test_sync_twice_creates_once_then_verifies(engine: Engine) -> None:
    fake = FakeStripe()
    sync = CatalogSync(fake, engine)
    first = sync.sync(load_book("devtools"), NOW)
    assert {r.action for r in first.results} == {CatalogAction.CREATED}
    assert len(first.results) == 7 + 4 + 17
    writes = fake.writes()
    assert ("create_price", "catalog:price:devtools:team:copilot_messages:v1") in writes
    assert ("create_meter", "catalog:meter:devtools:copilot_messages:v1") in writes
    assert ("create_product", "catalog:product:devtools:team:seats:v1") in writes

    second = CatalogSync(fake, engine).sync(load_book("devtools"), NOW)
    assert {r.action for r in second.results} == {CatalogAction.VERIFIED}
    assert fake.writes() == writes  # nothing new written
    assert not second.has_drift

    with Session(engine) as session:
        row = session.exec(
            select(StripeCatalogEntry).where(
                StripeCatalogEntry.catalog_key == "price:devtools:team:runner_minutes"
            )
        ).one()
    runner = next(r for r in first.results if r.catalog_key == row.catalog_key)
    assert row.stripe_price_id == runner.stripe_id
    assert fake.prices[runner.stripe_id].lookup_key == "devtools:team:runner_minutes"
    assert row.plan == "team"
    assert row.meter == "runner_minutes"
    assert row.synced_at == NOW
    assert json.loads(row.terms_json or "{}")["tiers"] == [
        {"up_to": 1000, "unit_amount_decimal": "0", "flat_amount": 0},
        {"up_to": "inf", "unit_amount_decimal": "0.8", "flat_amount": 0},
    ]


APPROXIMATE_BOOK = """
name = "hourly"
currency = "usd"
[meters.execution_time]
display_name = "Execution time"
unit = "second"
[plans.basic.meters.execution_time]
tiers = [
  { up_to = 5_000, unit_amount_decimal = "0" },
  { up_to = "inf", unit_amount_decimal = "13" },
]
per = 3_600
"""


def test_sync_reports_approximate_prices(engine: Engine, tmp_path: Path) -> None:
    # 5,000 free seconds is not a whole number of hours: Stripe's tier stops at 1 hour.
    path = tmp_path / "hourly.toml"
    path.write_text(APPROXIMATE_BOOK, encoding="utf-8")
    report = CatalogSync(FakeStripe(), engine).sync(load_book(path), NOW)
    price = next(r for r in report.results if r.catalog_key == "price:hourly:basic:execution_time")
    assert price.approximate
    assert "approximate" in price.note


def test_drift_is_reported_with_both_sides_and_never_reused(engine: Engine) -> None:
    fake = FakeStripe()
    CatalogSync(fake, engine).sync(load_book("devtools"), NOW)
    seat = next(p for p in fake.prices.values() if p.lookup_key == "devtools:team:seats:year")
    fake.prices[seat.stripe_price_id] = replace(
        seat, terms=replace(seat.terms, unit_amount_decimal=Decimal(1200))
    )
    before = fake.writes()

    report = CatalogSync(fake, engine).sync(load_book("devtools"), NOW)

    assert report.has_drift
    (drift,) = [r for r in report.results if r.action is CatalogAction.DRIFTED]
    assert drift.catalog_key == "price:devtools:team:seats:year"
    assert drift.stripe_id == seat.stripe_price_id
    assert drift.book_terms is not None
    assert "unit=900¢" in drift.book_terms
    assert drift.stripe_terms is not None
    assert "unit=1200¢" in drift.stripe_terms
    assert fake.writes() == before


def test_repair_creates_a_new_version_holding_the_lookup_key(engine: Engine) -> None:
    fake = FakeStripe()
    CatalogSync(fake, engine).sync(load_book("devtools"), NOW)
    seat = next(p for p in fake.prices.values() if p.lookup_key == "devtools:team:seats:year")
    fake.prices[seat.stripe_price_id] = replace(
        seat, terms=replace(seat.terms, unit_amount_decimal=Decimal(1200))
    )

    report = CatalogSync(fake, engine).sync(load_book("devtools"), NOW, repair=True)

    (repaired,) = [r for r in report.results if r.action is CatalogAction.REPAIRED]
    assert fake.writes()[-1] == ("create_price", "catalog:price:devtools:team:seats:year:v2")
    new = fake.prices[repaired.stripe_id]
    assert new.lookup_key == "devtools:team:seats:year"
    assert new.metadata["catalog_version"] == "2"
    assert new.terms.unit_amount_decimal == Decimal(900)
    assert fake.prices[seat.stripe_price_id].lookup_key is None
    after = CatalogSync(fake, engine).sync(load_book("devtools"), NOW)
    assert {r.action for r in after.results} == {CatalogAction.VERIFIED}
    with Session(engine) as session:
        row = session.exec(
            select(StripeCatalogEntry).where(
                StripeCatalogEntry.catalog_key == "price:devtools:team:seats:year"
            )
        ).one()
    assert row.version == 2
    assert row.stripe_price_id == repaired.stripe_id


def test_meter_with_another_shape_is_drift(engine: Engine) -> None:
    fake = FakeStripe()
    CatalogSync(fake, engine).sync(load_book("zenaton"), NOW)
    meters = {meter.event_name: meter for meter in fake.meters.values()}
    assert set(meters) == {"zenaton.execution_time", "zenaton.minimum_topup"}
    meter = meters["zenaton.execution_time"]
    fake.meters[meter.stripe_meter_id] = replace(meter, formula="sum", event_time_window="day")
    report = CatalogSync(fake, engine).sync(load_book("zenaton"), NOW)
    (drift,) = [r for r in report.results if r.action is CatalogAction.DRIFTED]
    assert drift.catalog_key == "meter:zenaton:execution_time"
    assert "formula=last window=None" in (drift.book_terms or "")
    assert "formula=sum window=day" in (drift.stripe_terms or "")
