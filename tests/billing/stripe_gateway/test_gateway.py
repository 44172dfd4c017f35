"""The Stripe gateway at the HTTP boundary: wire format, idempotency keys, conversion, errors."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal

import pytest
import requests
import responses
from responses import matchers

from billing.core.errors import PermanentBillingError, TransientBillingError
from billing.stripe_gateway import (
    PriceSpec,
    PriceTerms,
    PriceTier,
    StripeConfig,
    StripeGateway,
    SubscriptionItemSpec,
)
from tests.fixtures.stripe import objects as o
from tests.fixtures.stripe_params import (
    RecordedCall,
    StripeParamsError,
    check_params,
    checking_stripe_params,
)

API = "https://api.stripe.com"
JAN_1 = datetime(2026, 1, 1, tzinfo=UTC)


@pytest.fixture
def gateway() -> StripeGateway:
    return StripeGateway(StripeConfig(api_key="sk_test_123", max_network_retries=0))


@pytest.fixture
def sent() -> Iterator[list[RecordedCall]]:
    """Every params dict the gateway hands to stripe-python, checked against `stripe.params`."""
    responses.start()
    try:
        with checking_stripe_params() as calls:
            yield calls
        unfired = [r.url for r in responses.registered() if r.call_count == 0]
        assert not unfired, f"expected requests never made: {unfired}"
    finally:
        responses.stop()
        responses.reset()


def key(value: str) -> matchers.header_matcher:  # type: ignore[valid-type]
    return matchers.header_matcher({"Idempotency-Key": value})


# ----------------------------------------------------------------------------- the checker


def test_checker_accepts_a_valid_seat_update() -> None:
    check_params(
        "SubscriptionUpdateParams",
        {
            "items": [{"id": "si_1", "quantity": 9}],
            "proration_behavior": "create_prorations",
            "proration_date": 1767225600,
        },
    )


@pytest.mark.parametrize(
    ("params", "problem"),
    [
        ({"proration_behaviour": "none"}, "proration_behaviour: unknown parameter"),
        ({"billing_cycle_anchor": "now"}, "expected object|does not fit object"),
        ({"proration_behavior": "prorate"}, "is not one of"),
        ({"items": [{"id": "si_1", "qty": 2}]}, r"items\[0\]\.qty: unknown parameter"),
        ({"proration_date": "yesterday"}, "proration_date"),
    ],
)
def test_checker_rejects_bad_subscription_update_params(params: dict, problem: str) -> None:
    with pytest.raises(StripeParamsError, match=problem):
        check_params("SubscriptionUpdateParams", params)


def test_checker_rejects_legacy_aggregate_usage_on_a_metered_price() -> None:
    with pytest.raises(StripeParamsError, match=r"recurring\.aggregate_usage: unknown"):
        check_params(
            "PriceCreateParams",
            {
                "currency": "usd",
                "recurring": {
                    "interval": "month",
                    "usage_type": "metered",
                    "aggregate_usage": "sum",
                },
            },
        )


# ----------------------------------------------------------------------------- client


def test_client_points_at_configured_bases_and_is_built_once() -> None:
    gw = StripeGateway(
        StripeConfig(
            api_key="sk_test_emulator",
            api_base="http://127.0.0.1:12111",
            max_network_retries=0,
            timeout_seconds=3,
        )
    )
    with responses.RequestsMock() as mock:
        mock.get("http://127.0.0.1:12111/v1/customers/cus_9", json=o.customer("cus_9"))
        assert gw.retrieve_customer("cus_9").stripe_customer_id == "cus_9"
        assert mock.calls[0].request.headers["Stripe-Version"] == "2026-10-28.endive"
    assert gw.client is gw.client


def test_idempotency_key_longer_than_255_is_refused_before_any_request(
    gateway: StripeGateway,
) -> None:
    with responses.RequestsMock(), pytest.raises(ValueError, match=r"1\.\.255"):
        gateway.create_customer(metadata={"org_id": "o"}, idempotency_key="k" * 256)


# ----------------------------------------------------------------------------- writes


def test_create_customer_sends_metadata_test_clock_and_our_key(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(
        f"{API}/v1/customers",
        json=o.customer("cus_1", metadata={"org_id": "org_1"}, test_clock="clock_1"),
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "metadata[org_id]": "org_1",
                    "email": "a@example.com",
                    "test_clock": "clock_1",
                }
            ),
            key("provision:customer:org_1"),
        ],
    )
    customer = gateway.create_customer(
        metadata={"org_id": "org_1"},
        email="a@example.com",
        stripe_test_clock_id="clock_1",
        idempotency_key="provision:customer:org_1",
    )
    assert customer.stripe_customer_id == "cus_1"
    assert customer.metadata == {"org_id": "org_1"}
    assert customer.stripe_test_clock_id == "clock_1"
    assert customer.created_at == JAN_1
    assert [c.params_type for c in sent] == ["CustomerCreateParams"]


def test_create_metered_price_sends_graduated_tiers_without_scientific_notation(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    spec = PriceSpec(
        stripe_product_id="prod_2",
        terms=PriceTerms(
            currency="usd",
            interval="month",
            usage_type="metered",
            stripe_meter_id="mtr_1",
            unit_amount_decimal=None,
            tiers=(
                PriceTier(up_to=500, unit_amount_decimal=Decimal(0)),
                PriceTier(up_to=None, unit_amount_decimal=Decimal("1E-7")),
            ),
        ),
        lookup_key="devtools:team:copilot_messages:v1",
        nickname="Team · Copilot messages",
        metadata={"book": "devtools", "plan": "team", "meter": "copilot_messages"},
    )
    responses.post(
        f"{API}/v1/prices",
        json=o.metered_price(unit_amount_decimal="0.0000001"),
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "currency": "usd",
                    "product": "prod_2",
                    "recurring[interval]": "month",
                    "recurring[usage_type]": "metered",
                    "recurring[meter]": "mtr_1",
                    "lookup_key": "devtools:team:copilot_messages:v1",
                    "nickname": "Team · Copilot messages",
                    "metadata[book]": "devtools",
                    "metadata[plan]": "team",
                    "metadata[meter]": "copilot_messages",
                    "billing_scheme": "tiered",
                    "tiers_mode": "graduated",
                    "tiers[0][up_to]": "500",
                    "tiers[0][unit_amount]": "0",
                    "tiers[1][up_to]": "inf",
                    "tiers[1][unit_amount_decimal]": "0.0000001",
                    "expand[0]": "tiers",
                }
            ),
            key("catalog:price:devtools:team:copilot_messages:v1"),
        ],
    )
    price = gateway.create_price(
        spec, idempotency_key="catalog:price:devtools:team:copilot_messages:v1"
    )
    assert price.terms.tiers == (
        PriceTier(up_to=500, unit_amount_decimal=Decimal(0)),
        PriceTier(up_to=None, unit_amount_decimal=Decimal("0.0000001")),
    )
    assert price.terms.stripe_meter_id == "mtr_1"
    assert sent[0].params_type == "PriceCreateParams"


def test_create_seat_price_uses_integer_unit_amount(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    spec = PriceSpec(
        stripe_product_id="prod_1",
        terms=PriceTerms("usd", "year", "licensed", None, Decimal(900)),
        lookup_key="devtools:team:seats:year:v1",
        nickname="Team seats (year)",
        transfer_lookup_key=True,
    )
    responses.post(
        f"{API}/v1/prices",
        json=o.seat_price(),
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "currency": "usd",
                    "product": "prod_1",
                    "recurring[interval]": "year",
                    "recurring[usage_type]": "licensed",
                    "lookup_key": "devtools:team:seats:year:v1",
                    "nickname": "Team seats (year)",
                    "transfer_lookup_key": "true",
                    "billing_scheme": "per_unit",
                    "unit_amount": "900",
                    "expand[0]": "tiers",
                }
            )
        ],
    )
    price = gateway.create_price(spec, idempotency_key="catalog:price:x")
    assert price.terms == spec.terms


def test_create_meter_sends_formula_and_window(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(
        f"{API}/v1/billing/meters",
        json=o.meter(formula="last", event_time_window="day"),
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "display_name": "Copilot messages",
                    "event_name": "devtools.copilot_messages",
                    "default_aggregation[formula]": "last",
                    "customer_mapping[type]": "by_id",
                    "customer_mapping[event_payload_key]": "stripe_customer_id",
                    "value_settings[event_payload_key]": "value",
                    "event_time_window": "day",
                }
            ),
            key("catalog:meter:devtools:copilot_messages:v1"),
        ],
    )
    meter = gateway.create_meter(
        display_name="Copilot messages",
        event_name="devtools.copilot_messages",
        formula="last",
        event_time_window="day",
        idempotency_key="catalog:meter:devtools:copilot_messages:v1",
    )
    assert meter.event_time_window == "day"
    assert meter.formula == "last"
    assert sent[0].params_type == "billing.MeterCreateParams"


def test_create_subscription_is_flexible_with_mixed_interval_items(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    seat = o.subscription_item("si_seats", o.seat_price(), 10)
    usage = o.subscription_item("si_msg", o.metered_price(), None, period=(1767225600, 1769904000))
    responses.post(
        f"{API}/v1/subscriptions",
        json=o.subscription([seat, usage], metadata={"org_id": "org_1"}),
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "customer": "cus_1",
                    "items[0][price]": "price_seat",
                    "items[0][quantity]": "10",
                    "items[0][metadata][component]": "seats",
                    "items[1][price]": "price_msg",
                    "billing_mode[type]": "flexible",
                    "metadata[org_id]": "org_1",
                }
            ),
            key("provision:subscription:org_1"),
        ],
    )
    sub = gateway.create_subscription(
        stripe_customer_id="cus_1",
        items=[
            SubscriptionItemSpec("price_seat", 10, {"component": "seats"}),
            SubscriptionItemSpec("price_msg", None),
        ],
        metadata={"org_id": "org_1"},
        idempotency_key="provision:subscription:org_1",
    )
    assert sub.billing_mode == "flexible"
    seats = sub.item_for_price("price_seat")
    assert seats is not None
    assert seats.quantity == 10
    assert seats.current_period_end_at == datetime(2027, 1, 1, tzinfo=UTC)
    metered = sub.item_for_price("price_msg")
    assert metered is not None
    assert metered.current_period_end_at == datetime(2026, 2, 1, tzinfo=UTC)
    assert sent[0].params_type == "SubscriptionCreateParams"


def test_subscription_items_beyond_the_first_page_are_fetched(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    first = o.subscription_item("si_a")
    responses.get(f"{API}/v1/subscriptions/sub_1", json=o.subscription([first], has_more=True))
    responses.get(
        f"{API}/v1/subscription_items",
        json=o.listing("/v1/subscription_items", [first, o.subscription_item("si_b")]),
        match=[matchers.query_param_matcher({"subscription": "sub_1", "limit": "100"})],
    )
    sub = gateway.retrieve_subscription("sub_1")
    assert [i.stripe_subscription_item_id for i in sub.items] == ["si_a", "si_b"]


def test_seat_quantity_update_carries_proration_date_and_key(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(
        f"{API}/v1/subscription_items/si_seats",
        json=o.subscription_item("si_seats", quantity=12),
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "quantity": "12",
                    "proration_behavior": "create_prorations",
                    "proration_date": "1771286400",
                }
            ),
            key("seats:org_1:2026-01-01:12"),
        ],
    )
    item = gateway.update_subscription_item_quantity(
        "si_seats",
        quantity=12,
        proration_behavior="create_prorations",
        proration_at=datetime(2026, 2, 17, tzinfo=UTC),
        idempotency_key="seats:org_1:2026-01-01:12",
    )
    assert item.quantity == 12
    assert sent[0].params_type == "SubscriptionItemUpdateParams"


def test_meter_event_sends_string_values_and_uses_identifier_as_key(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(
        f"{API}/v1/billing/meter_events",
        json={
            "object": "billing.meter_event",
            "event_name": "devtools.copilot_messages",
            "identifier": "usage:org_1:copilot_messages:2026-01-15",
            "payload": {"stripe_customer_id": "cus_1", "value": "1234"},
            "timestamp": 1768435200,
            "created": 1768435200,
            "livemode": False,
        },
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "event_name": "devtools.copilot_messages",
                    "identifier": "usage:org_1:copilot_messages:2026-01-15",
                    "timestamp": "1768435200",
                    "payload[stripe_customer_id]": "cus_1",
                    "payload[value]": "1234",
                }
            ),
            key("usage:org_1:copilot_messages:2026-01-15"),
        ],
    )
    event = gateway.create_meter_event(
        event_name="devtools.copilot_messages",
        stripe_customer_id="cus_1",
        value=1234,
        timestamp_at=datetime(2026, 1, 15, tzinfo=UTC),
        identifier="usage:org_1:copilot_messages:2026-01-15",
    )
    assert event.payload["value"] == "1234"
    assert sent[0].params["payload"] == {"stripe_customer_id": "cus_1", "value": "1234"}


def test_invoice_item_and_invoice_writes(gateway: StripeGateway, sent: list[RecordedCall]) -> None:
    responses.post(
        f"{API}/v1/invoiceitems",
        json={
            "id": "ii_1",
            "object": "invoiceitem",
            "amount": 250,
            "currency": "usd",
            "customer": "cus_1",
            "description": "Late usage adjustment",
            "invoice": None,
            "metadata": {"kind": "late_usage"},
        },
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "customer": "cus_1",
                    "amount": "250",
                    "currency": "usd",
                    "description": "Late usage adjustment",
                    "subscription": "sub_1",
                    "metadata[kind]": "late_usage",
                }
            ),
            key("adjustment:42"),
        ],
    )
    responses.post(
        f"{API}/v1/invoices/in_1",
        json=o.invoice("in_1", [], auto_advance=False),
        match=[matchers.urlencoded_params_matcher({"auto_advance": "false"}), key("hold:in_1")],
    )
    responses.post(
        f"{API}/v1/invoices/in_1/finalize",
        json=o.invoice("in_1", [], status="open"),
        match=[key("finalize:in_1")],
    )
    item = gateway.create_invoice_item(
        stripe_customer_id="cus_1",
        amount=250,
        currency="usd",
        description="Late usage adjustment",
        stripe_subscription_id="sub_1",
        metadata={"kind": "late_usage"},
        idempotency_key="adjustment:42",
    )
    assert item.amount == 250
    held = gateway.set_invoice_auto_advance("in_1", auto_advance=False, idempotency_key="hold:in_1")
    assert held.auto_advance is False
    final = gateway.finalize_invoice("in_1", idempotency_key="finalize:in_1")
    assert final.status == "open"
    assert [c.params_type for c in sent] == [
        "InvoiceItemCreateParams",
        "InvoiceUpdateParams",
        "InvoiceFinalizeInvoiceParams",
    ]


# ----------------------------------------------------------------------------- reads


def test_invoice_lines_are_paginated_and_converted(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    seat_line = o.invoice_line("il_1", 900, "price_seat", quantity_decimal="1")
    proration = o.invoice_line(
        "il_2", 338, "price_seat", proration=True, quantity_decimal="2", invoice_item_id="ii_9"
    )
    usage = o.invoice_line(
        "il_3", 987, "price_msg", quantity_decimal="1234.5", subscription_item_id="si_msg"
    )
    responses.get(f"{API}/v1/invoices/in_1", json=o.invoice("in_1", [seat_line], has_more=True))
    responses.get(
        f"{API}/v1/invoices/in_1/lines",
        json=o.listing("/v1/invoices/in_1/lines", [proration], has_more=True),
        match=[matchers.query_param_matcher({"starting_after": "il_1", "limit": "100"})],
    )
    responses.get(
        f"{API}/v1/invoices/in_1/lines",
        json=o.listing("/v1/invoices/in_1/lines", [usage]),
        match=[matchers.query_param_matcher({"starting_after": "il_2", "limit": "100"})],
    )
    invoice = gateway.retrieve_invoice("in_1")
    assert invoice.stripe_subscription_id == "sub_1"
    assert [line.stripe_invoice_line_id for line in invoice.lines] == ["il_1", "il_2", "il_3"]
    line = invoice.lines[1]
    assert line.proration is True
    assert line.stripe_price_id == "price_seat"
    assert line.stripe_invoice_item_id == "ii_9"
    assert line.stripe_subscription_item_id == "si_seats"
    assert invoice.lines[2].quantity_decimal == Decimal("1234.5")
    assert invoice.lines[2].period_start_at == JAN_1
    assert [c.params_type for c in sent] == [
        "InvoiceRetrieveParams",
        "InvoiceLineItemListParams",
        "InvoiceLineItemListParams",
    ]


def test_list_invoices_filters(gateway: StripeGateway, sent: list[RecordedCall]) -> None:
    responses.get(
        f"{API}/v1/invoices",
        json=o.listing("/v1/invoices", [o.invoice("in_1", [])]),
        match=[
            matchers.query_param_matcher(
                {
                    "customer": "cus_1",
                    "subscription": "sub_1",
                    "status": "draft",
                    "created[gte]": "1767225600",
                    "limit": "100",
                }
            )
        ],
    )
    invoices = gateway.list_invoices(
        stripe_customer_id="cus_1",
        stripe_subscription_id="sub_1",
        status="draft",
        created_from_at=JAN_1,
    )
    assert [i.stripe_invoice_id for i in invoices] == ["in_1"]


def test_preview_invoice_with_changed_quantity(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.post(
        f"{API}/v1/invoices/create_preview",
        json=o.invoice(None, [o.invoice_line("il_p", 338, "price_seat", proration=True)]),
        match=[
            matchers.urlencoded_params_matcher(
                {
                    "customer": "cus_1",
                    "subscription": "sub_1",
                    "subscription_details[items][0][id]": "si_seats",
                    "subscription_details[items][0][quantity]": "12",
                    "subscription_details[proration_behavior]": "create_prorations",
                    "subscription_details[proration_date]": "1771286400",
                }
            )
        ],
    )
    preview = gateway.preview_invoice(
        stripe_customer_id="cus_1",
        stripe_subscription_id="sub_1",
        item_quantities={"si_seats": 12},
        proration_behavior="create_prorations",
        proration_at=datetime(2026, 2, 17, tzinfo=UTC),
    )
    assert preview.stripe_invoice_id is None
    assert preview.lines[0].proration is True


def test_list_prices_by_lookup_key_expands_tiers(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.get(
        f"{API}/v1/prices",
        json=o.listing("/v1/prices", [o.metered_price(lookup_key="k1")]),
        match=[
            matchers.query_param_matcher(
                {"lookup_keys[0]": "k1", "expand[0]": "data.tiers", "limit": "100"}
            )
        ],
    )
    (price,) = gateway.list_prices(["k1"])
    assert price.lookup_key == "k1"
    assert price.terms.tiers[0] == PriceTier(up_to=500, unit_amount_decimal=Decimal(0))
    assert price.terms.tiers[1].unit_amount_decimal == Decimal(2)


def test_meter_event_summaries_become_decimals(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.get(
        f"{API}/v1/billing/meters/mtr_1/event_summaries",
        json=o.listing(
            "/v1/billing/meters/mtr_1/event_summaries",
            [
                {
                    "id": "mtrsum_1",
                    "object": "billing.meter_event_summary",
                    "aggregated_value": 1234.5,
                    "start_time": 1767225600,
                    "end_time": 1769904000,
                    "meter": "mtr_1",
                    "livemode": False,
                }
            ],
        ),
    )
    (summary,) = gateway.list_meter_event_summaries(
        "mtr_1",
        stripe_customer_id="cus_1",
        start_at=JAN_1,
        end_at=datetime(2026, 2, 1, tzinfo=UTC),
    )
    assert summary.aggregated_value == Decimal("1234.5")
    assert sent[0].params == {
        "customer": "cus_1",
        "start_time": 1767225600,
        "end_time": 1769904000,
        "limit": 100,
    }


def test_find_customers_reads_every_page_and_matches_metadata(
    gateway: StripeGateway, sent: list[RecordedCall]
) -> None:
    responses.get(
        f"{API}/v1/customers",
        json=o.listing("/v1/customers", [o.customer("cus_a", metadata={"org_id": "x"})], True),
        match=[matchers.query_param_matcher({"limit": "100"})],
    )
    responses.get(
        f"{API}/v1/customers",
        json=o.listing("/v1/customers", [o.customer("cus_b", metadata={"org_id": "org_1"})]),
        match=[matchers.query_param_matcher({"limit": "100", "starting_after": "cus_a"})],
    )
    found = gateway.find_customers(metadata={"org_id": "org_1"})
    assert [c.stripe_customer_id for c in found] == ["cus_b"]


# ----------------------------------------------------------------------------- errors


def _fail(status: int, body: dict, headers: dict[str, str] | None = None) -> None:
    responses.post(
        f"{API}/v1/customers",
        json=body,
        status=status,
        headers={"Request-Id": "req_abc", **(headers or {})},
    )


def _create(gateway: StripeGateway) -> None:
    gateway.create_customer(metadata={"org_id": "org_1"}, idempotency_key="provision:customer:1")


@pytest.mark.parametrize(
    ("status", "body", "error", "code"),
    [
        (
            429,
            o.error("invalid_request_error", "Too many requests", "rate_limit"),
            TransientBillingError,
            "rate_limit",
        ),
        (
            429,
            o.error("invalid_request_error", "Lock timeout", "lock_timeout"),
            TransientBillingError,
            "lock_timeout",
        ),
        (500, o.error("api_error", "Something went wrong"), TransientBillingError, None),
        (503, {"error": {"message": "unavailable"}}, TransientBillingError, None),
        (
            409,
            o.error("idempotency_error", "in flight", "idempotency_key_in_use"),
            TransientBillingError,
            "idempotency_key_in_use",
        ),
        (
            400,
            o.error(
                "idempotency_error",
                "Keys for idempotent requests can only be used with the same parameters",
            ),
            PermanentBillingError,
            None,
        ),
        (
            400,
            o.error("invalid_request_error", "No such price", "resource_missing", "price"),
            PermanentBillingError,
            "resource_missing",
        ),
        (
            401,
            o.error("invalid_request_error", "Invalid API Key provided"),
            PermanentBillingError,
            None,
        ),
    ],
)
def test_stripe_errors_are_mapped(
    gateway: StripeGateway,
    sent: list[RecordedCall],
    status: int,
    body: dict,
    error: type[Exception],
    code: str | None,
) -> None:
    _fail(status, body)
    with pytest.raises(error) as raised:
        _create(gateway)
    exc = raised.value
    assert type(exc) is error
    assert exc.http_status == status  # type: ignore[attr-defined]
    assert exc.request_id == "req_abc"  # type: ignore[attr-defined]
    assert exc.code == code  # type: ignore[attr-defined]


def test_connection_error_is_transient(gateway: StripeGateway, sent: list[RecordedCall]) -> None:
    responses.post(f"{API}/v1/customers", body=requests.ConnectionError("reset by peer"))
    with pytest.raises(TransientBillingError) as raised:
        _create(gateway)
    assert raised.value.http_status is None


def test_library_retries_a_500_with_the_same_idempotency_key() -> None:
    gw = StripeGateway(StripeConfig(api_key="sk_test_123", max_network_retries=1))
    with responses.RequestsMock() as mock:
        mock.post(f"{API}/v1/customers", json=o.error("api_error", "boom"), status=500)
        mock.post(f"{API}/v1/customers", json=o.customer("cus_1"))
        _create(gw)
        keys = [call.request.headers["Idempotency-Key"] for call in mock.calls]
    assert keys == ["provision:customer:1", "provision:customer:1"]
