"""Catalogue endpoints, auth and error shapes, through the real stripe library."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from stripe_emulator import EmulatorServer


def test_missing_or_live_key_is_refused_with_authentication_error(emulator: EmulatorServer) -> None:
    bad = stripe.StripeClient(
        "sk_live_nope", base_addresses={"api": emulator.url}, max_network_retries=0
    )
    with pytest.raises(stripe.AuthenticationError) as info:
        bad.v1.customers.list()
    assert info.value.http_status == 401
    assert info.value.request_id
    assert info.value.request_id.startswith("req_")


def test_unknown_customer_is_invalid_request_with_param(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.customers.retrieve("cus_missing")
    assert info.value.http_status == 404
    assert info.value.code == "resource_missing"


def test_customer_metadata_update_and_list_pagination(client: stripe.StripeClient) -> None:
    ids = [
        client.v1.customers.create({"email": f"p{i}@pag.example", "metadata": {"n": str(i)}}).id
        for i in range(3)
    ]
    updated = client.v1.customers.update(ids[0], {"metadata": {"n": "", "k": "v"}})
    assert updated.metadata.to_dict() == {"k": "v"}
    first = client.v1.customers.list({"email": "p1@pag.example"})
    assert [c.id for c in first.data] == [ids[1]]
    page = client.v1.customers.list({"limit": 2})
    assert len(page.data) == 2
    assert page.has_more
    rest = client.v1.customers.list({"limit": 100, "starting_after": page.data[-1].id})
    assert page.data[0].id not in [c.id for c in rest.data]


def test_tiers_are_returned_only_when_expanded(client: stripe.StripeClient) -> None:
    meter = client.v1.billing.meters.create(
        {
            "display_name": "Runner",
            "event_name": "cat_runner",
            "default_aggregation": {"formula": "sum"},
        }
    )
    product = client.v1.products.create({"name": "Runner minutes"})
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "product": product.id,
            "billing_scheme": "tiered",
            "tiers_mode": "graduated",
            "recurring": {"interval": "month", "usage_type": "metered", "meter": meter.id},
            "tiers": [
                {"up_to": 3000, "unit_amount": 0},
                {"up_to": "inf", "unit_amount_decimal": Decimal("0.8")},
            ],
            "lookup_key": "runner_v1",
        }
    )
    plain = client.v1.prices.retrieve(price.id)
    assert "tiers" not in plain
    expanded = client.v1.prices.retrieve(price.id, {"expand": ["tiers"]})
    assert expanded.tiers[0].up_to == 3000
    assert expanded.tiers[1].up_to is None
    assert expanded.tiers[1].unit_amount_decimal == Decimal("0.8")
    assert expanded.recurring.meter == meter.id
    found = client.v1.prices.list({"lookup_keys": ["runner_v1"]})
    assert [p.id for p in found.data] == [price.id]


def test_metered_price_requires_meter_and_tiers_refuse_transform_quantity(
    client: stripe.StripeClient,
) -> None:
    product = client.v1.products.create({"name": "X"})
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "unit_amount": 1,
                "recurring": {"interval": "month", "usage_type": "metered"},
            }
        )
    assert info.value.param == "recurring[meter]"
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.prices.create(
            {
                "currency": "usd",
                "product": product.id,
                "billing_scheme": "tiered",
                "tiers_mode": "graduated",
                "tiers": [{"up_to": "inf", "unit_amount": 1}],
                "transform_quantity": {"divide_by": 10, "round": "up"},
            }
        )
    assert info.value.param == "transform_quantity"


def test_price_update_changes_metadata_and_active(client: stripe.StripeClient) -> None:
    product = client.v1.products.create({"name": "Y"})
    price = client.v1.prices.create(
        {"currency": "usd", "product": product.id, "unit_amount_decimal": Decimal("12.5")}
    )
    assert price.unit_amount is None
    assert price.unit_amount_decimal == Decimal("12.5")
    updated = client.v1.prices.update(price.id, {"active": False, "metadata": {"tier": "team"}})
    assert updated.active is False
    assert updated.metadata["tier"] == "team"
    assert price.id not in [
        p.id for p in client.v1.prices.list({"product": product.id, "active": True}).data
    ]
