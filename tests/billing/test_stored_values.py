"""The values of statuses, kinds, outcomes and actions, pinned: rows store them and JSON output
(task results, `--json`, the web) shows them, so renaming a member must never change its value."""

from __future__ import annotations

from enum import StrEnum

import pytest

from billing.core.components import BillingKind
from billing.reconciliation.match import Status
from billing.seats.sync import SeatSyncAction
from billing.setup.catalog import CatalogAction
from billing.setup.provisioning import ProvisionAction
from billing.usage.push import MeterPushAction, UsagePushAction
from models.push_records import SeatPushKind
from models.stripe_records import CatalogKind, WriteStatus


@pytest.mark.parametrize(
    ("enum", "values"),
    [
        (WriteStatus, ["pending", "started", "done", "failed"]),
        (SeatPushKind, ["step", "renewal", "correction", "renewal_item"]),
        (CatalogKind, ["product", "meter", "price"]),
        (
            BillingKind,
            [
                "usage_adjustment",
                "minimum_commitment",
                "seat_renewal",
                "late_usage_after_end",
                "credit",
            ],
        ),
        (SeatSyncAction, ["in_sync", "updated", "no_seats", "not_provisioned"]),
        (MeterPushAction, ["sent", "unchanged", "adjusted", "final", "failed"]),
        (UsagePushAction, ["pushed", "unchanged", "not_provisioned", "failed"]),
        (ProvisionAction, ["created", "existing", "recovered"]),
        (CatalogAction, ["created", "verified", "drifted", "repaired"]),
        (
            Status,
            [
                "matched",
                "rounding",
                "awaiting_usage",
                "mismatched",
                "missing_in_stripe",
                "unexpected_in_stripe",
                "error",
            ],
        ),
    ],
)
def test_values_never_change(enum: type[StrEnum], values: list[str]) -> None:
    assert [member.value for member in enum] == values
