"""Meter events: identifier dedup, timestamp window, digits, pre-aggregation, cancels, summaries."""

from __future__ import annotations

from decimal import Decimal

import pytest
import stripe

from stripe_emulator import EmulatorServer
from tests.stripe_emulator.conftest import DAY, JAN_1_2026, Builders


def test_duplicate_identifier_is_refused_and_counted_once(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer
) -> None:
    build.meter("dup_messages")
    _, customer = build.clock_customer()
    build.usage("dup_messages", customer, 42, JAN_1_2026 - 60, identifier="org1:messages:2025-12")
    with pytest.raises(stripe.InvalidRequestError) as info:
        build.usage(
            "dup_messages", customer, 42, JAN_1_2026 - 60, identifier="org1:messages:2025-12"
        )
    assert info.value.code == "duplicate_meter_event"
    assert emulator.state.meter_total(customer, "dup_messages", 0, JAN_1_2026) == Decimal(42)


def test_timestamp_window_is_relative_to_the_test_clock(
    client: stripe.StripeClient, build: Builders
) -> None:
    build.meter("old_messages")
    _, customer = build.clock_customer()
    build.usage("old_messages", customer, 1, JAN_1_2026 - 34 * DAY)
    with pytest.raises(stripe.InvalidRequestError) as info:
        build.usage("old_messages", customer, 1, JAN_1_2026 - 36 * DAY)
    assert info.value.code == "timestamp_too_far_in_past"
    with pytest.raises(stripe.InvalidRequestError) as info:
        build.usage("old_messages", customer, 1, JAN_1_2026 + 301)
    assert info.value.code == "timestamp_in_future"


def test_values_with_more_than_15_significant_digits_are_refused(build: Builders) -> None:
    build.meter("digits")
    _, customer = build.clock_customer()
    build.usage("digits", customer, 123456789012345, JAN_1_2026)
    with pytest.raises(stripe.InvalidRequestError) as info:
        build.usage("digits", customer, 1234567890123456, JAN_1_2026)
    assert info.value.code == "meter_event_value_too_many_digits"


def test_unknown_event_name_is_refused(build: Builders) -> None:
    _, customer = build.clock_customer()
    with pytest.raises(stripe.InvalidRequestError) as info:
        build.usage("no_such_meter", customer, 1, JAN_1_2026)
    assert info.value.code == "no_meter"


def test_pre_aggregated_day_meter_keeps_only_the_newest_event_per_day(
    build: Builders, emulator: EmulatorServer
) -> None:
    build.meter("daily_totals", event_time_window="day")
    _, customer = build.clock_customer()
    day1 = JAN_1_2026 - 3 * DAY
    build.usage("daily_totals", customer, 100, day1 + 3600)
    build.usage("daily_totals", customer, 130, day1 + 7200)  # corrected total for day 1
    build.usage("daily_totals", customer, 50, day1 + DAY + 60)
    assert emulator.state.meter_total(customer, "daily_totals", day1, day1 + 2 * DAY) == Decimal(
        180
    )


def test_cancel_adjustment_removes_the_event(
    client: stripe.StripeClient, build: Builders, emulator: EmulatorServer
) -> None:
    build.meter("cancel_me")
    _, customer = build.clock_customer()
    build.usage("cancel_me", customer, 7, JAN_1_2026 - 60, identifier="c-1")
    build.usage("cancel_me", customer, 5, JAN_1_2026 - 60, identifier="c-2")
    adjustment = client.v1.billing.meter_event_adjustments.create(
        {"event_name": "cancel_me", "type": "cancel", "cancel": {"identifier": "c-1"}}
    )
    assert adjustment.status == "pending"
    assert emulator.state.meter_total(customer, "cancel_me", 0, JAN_1_2026) == Decimal(5)


def test_event_summaries_group_by_day(client: stripe.StripeClient, build: Builders) -> None:
    meter_id = build.meter("summ")
    _, customer = build.clock_customer()
    start = JAN_1_2026 - 2 * DAY
    build.usage("summ", customer, 10, start + 10)
    build.usage("summ", customer, 5, start + DAY + 10)
    build.usage("summ", customer, 6, start + DAY + 20)
    page = client.v1.billing.meters.event_summaries.list(
        meter_id,
        {
            "customer": customer,
            "start_time": start,
            "end_time": JAN_1_2026,
            "value_grouping_window": "day",
        },
    )
    assert [(s.start_time, s.aggregated_value) for s in page.data] == [
        (start, 10.0),
        (start + DAY, 11.0),
    ]
    total = client.v1.billing.meters.event_summaries.list(
        meter_id, {"customer": customer, "start_time": start, "end_time": JAN_1_2026}
    )
    assert total.data[0].aggregated_value == 21.0


def test_meter_display_name_update_and_deactivation(
    client: stripe.StripeClient, build: Builders
) -> None:
    meter_id = build.meter("deact")
    assert (
        client.v1.billing.meters.update(meter_id, {"display_name": "Renamed"}).display_name
        == "Renamed"
    )
    assert client.v1.billing.meters.deactivate(meter_id).status == "inactive"
    _, customer = build.clock_customer()
    with pytest.raises(stripe.InvalidRequestError):
        build.usage("deact", customer, 1, JAN_1_2026)
    assert client.v1.billing.meters.reactivate(meter_id).status == "active"
    build.usage("deact", customer, 1, JAN_1_2026)
