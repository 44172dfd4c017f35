"""Provisioning: one Stripe customer and one mixed-interval subscription per org, made once."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from billing.core.components import MINIMUM_TOPUP, SEATS
from billing.core.keys import customer_idempotency_key, subscription_idempotency_key
from billing.core.meters import Interval
from billing.ledger.stripe_writes import Settled, write_to_stripe
from billing.pricing.book import PriceBook, load_book
from billing.setup.catalog import catalog_entries
from billing.setup.catalog_plan import price_keys_for_terms
from billing.stripe_gateway.records import (
    StripeCustomer,
    StripeSubscription,
    SubscriptionItemSpec,
)
from models.db import unit_of_work
from models.stripe_records import (
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
    WriteStatus,
)

log = structlog.get_logger(__name__)

# Stripe keeps an idempotency key's result for at least 24 hours.
IDEMPOTENCY_WINDOW = timedelta(hours=24)
_LIVE_SUBSCRIPTION = frozenset({"active", "trialing", "past_due", "incomplete", "unpaid", "paused"})


class ProvisioningGateway(Protocol):
    """The part of the Stripe gateway provisioning uses (a fake in service tests)."""

    def create_customer(
        self,
        *,
        metadata: Mapping[str, str],
        idempotency_key: str,
        email: str | None = None,
        name: str | None = None,
        stripe_test_clock_id: str | None = None,
    ) -> StripeCustomer: ...

    def find_customers(
        self, *, metadata: Mapping[str, str], stripe_test_clock_id: str | None = None
    ) -> list[StripeCustomer]: ...

    def create_subscription(
        self,
        *,
        stripe_customer_id: str,
        items: Sequence[SubscriptionItemSpec],
        metadata: Mapping[str, str],
        idempotency_key: str,
    ) -> StripeSubscription: ...

    def list_subscriptions(self, stripe_customer_id: str) -> list[StripeSubscription]: ...


class ProvisioningError(Exception):
    """Provisioning cannot proceed without a human: missing catalog, ambiguous Stripe state."""


@dataclass(frozen=True)
class OrgToProvision:
    """What the worker knows about an org; provisioning never reads the ledger itself."""

    org_id: str
    book: str
    plan: str
    interval: Interval
    term_start_at: datetime
    seat_count: int
    email: str | None = None
    name: str | None = None
    stripe_test_clock_id: str | None = None  # emulator / test mode only


class ProvisionAction(StrEnum):
    CREATED = "created"  # this run made the Stripe object
    EXISTING = "existing"  # already recorded as done locally; Stripe not called
    RECOVERED = "recovered"  # a write left `started` was found in Stripe and recorded


@dataclass(frozen=True)
class ProvisionOutcome:
    org_id: str
    stripe_customer_id: str
    stripe_subscription_id: str
    customer_action: ProvisionAction
    subscription_action: ProvisionAction
    stripe_subscription_item_ids: Mapping[str, str]  # component (seats / meter) -> item id


class Provisioner:
    """Creates an org's Stripe customer and subscription exactly once, resumable after a crash.

    Each write is bracketed by a local status row: `pending` → `started` (committed before
    the call) → `done` / `failed`. A row found `started` is resolved by reading Stripe
    (customers by `metadata.org_id`, the customer's subscriptions by `metadata.org_id`); only
    when Stripe has nothing is the write made again, with the same idempotency key.
    """

    def __init__(
        self,
        gateway: ProvisioningGateway,
        engine: Engine,
        books: Callable[[str], PriceBook] = load_book,
    ) -> None:
        self.gateway = gateway
        self.engine = engine
        self.books = books

    def provision(self, org: OrgToProvision, now: datetime) -> ProvisionOutcome:
        if org.seat_count < 0:
            raise ValueError(f"org {org.org_id}: seat_count must not be negative")
        book = self.books(org.book)
        terms = book.terms(org.plan, org.interval, org.org_id)
        price_keys = price_keys_for_terms(book, terms)
        entries = catalog_entries(self.engine, price_keys.values())
        topup_key = price_keys.get(MINIMUM_TOPUP)
        topup = entries.get(topup_key) if topup_key is not None else None
        if topup_key is not None and (topup is None or topup.stripe_price_id is None):
            # A catalog synced before the top-up meter existed: the org's minimum stays an
            # invoice item on its drafts (billing.usage.minimum), as before.
            del price_keys[MINIMUM_TOPUP]
            log.warning("provisioning.no_topup_price", org_id=org.org_id, catalog_key=topup_key)
        missing = [key for key in price_keys.values() if key not in entries]
        if missing or any(entries[k].stripe_price_id is None for k in price_keys.values()):
            raise ProvisioningError(
                f"org {org.org_id}: Stripe prices not synced for {', '.join(missing)}; "
                f"run `billing stripe sync-catalog --book {book.name}` first"
            )
        items = [
            SubscriptionItemSpec(
                stripe_price_id=str(entries[key].stripe_price_id),
                quantity=org.seat_count if component == SEATS else None,
                metadata={"org_id": org.org_id, "component": component},
            )
            for component, key in price_keys.items()
        ]
        customer_id, customer_action = self._customer(org, now)
        sub, sub_action = self._subscription(org, customer_id, items, now)
        price_ids = {key: str(entry.stripe_price_id) for key, entry in entries.items()}
        item_ids = self._record_items(org, sub, price_keys, price_ids, now)
        sub_id = sub if isinstance(sub, str) else sub.stripe_subscription_id
        log.info(
            "provisioning.provisioned",
            org_id=org.org_id,
            stripe_customer_id=customer_id,
            stripe_subscription_id=sub_id,
            customer=customer_action.value,
            subscription=sub_action.value,
        )
        return ProvisionOutcome(
            org.org_id, customer_id, sub_id, customer_action, sub_action, item_ids
        )

    # ------------------------------------------------------------------ customer

    def _customer(self, org: OrgToProvision, now: datetime) -> tuple[str, ProvisionAction]:
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(StripeCustomerRecord, org.org_id)
            if row is None:
                row = StripeCustomerRecord(
                    org_id=org.org_id,
                    status=WriteStatus.PENDING.value,
                    idempotency_key=customer_idempotency_key(org.org_id),
                    stripe_test_clock_id=org.stripe_test_clock_id,
                    updated_at=now,
                )
                session.add(row)
                session.commit()
            if row.status == WriteStatus.DONE and row.stripe_customer_id:
                return row.stripe_customer_id, ProvisionAction.EXISTING
            started_at = row.started_at
            record = row

            def find() -> Settled[StripeCustomer] | None:
                return self._find_customer(org, now, started_at)

            def done(customer: StripeCustomer | None) -> None:
                assert customer is not None
                record.stripe_customer_id = customer.stripe_customer_id

            outcome = write_to_stripe(
                session,
                row,
                now,
                lambda: self.gateway.create_customer(
                    metadata={"org_id": org.org_id, "book": org.book},
                    email=org.email,
                    name=org.name,
                    stripe_test_clock_id=org.stripe_test_clock_id,
                    idempotency_key=customer_idempotency_key(org.org_id),
                ),
                resolve=find if row.status == WriteStatus.STARTED else None,
                on_done=done,
            )
        if outcome.exception is not None:
            raise outcome.exception
        assert outcome.response is not None
        action = ProvisionAction.CREATED if outcome.called else ProvisionAction.RECOVERED
        return outcome.response.stripe_customer_id, action

    def _find_customer(
        self, org: OrgToProvision, now: datetime, started_at: datetime | None
    ) -> Settled[StripeCustomer] | None:
        """The customer a write left `started` created, if Stripe has it (by org metadata)."""
        found = self.gateway.find_customers(
            metadata={"org_id": org.org_id}, stripe_test_clock_id=org.stripe_test_clock_id
        )
        if len(found) > 1:
            ids = ", ".join(c.stripe_customer_id for c in found)
            raise ProvisioningError(f"org {org.org_id}: several Stripe customers ({ids})")
        if found:
            return Settled(WriteStatus.DONE, found[0])
        log.info(
            "provisioning.customer_retried",
            org_id=org.org_id,
            within_idempotency_window=bool(started_at and now - started_at < IDEMPOTENCY_WINDOW),
        )
        return None

    # ------------------------------------------------------------------ subscription

    def _subscription(
        self,
        org: OrgToProvision,
        stripe_customer_id: str,
        items: Sequence[SubscriptionItemSpec],
        now: datetime,
    ) -> tuple[StripeSubscription | str, ProvisionAction]:
        with Session(self.engine, expire_on_commit=False) as session:
            row = session.get(StripeSubscriptionRecord, org.org_id)
            if row is None:
                row = StripeSubscriptionRecord(
                    org_id=org.org_id,
                    status=WriteStatus.PENDING.value,
                    idempotency_key=subscription_idempotency_key(org.org_id),
                    book=org.book,
                    plan=org.plan,
                    interval=org.interval.value,
                    term_start_at=org.term_start_at,
                    stripe_customer_id=stripe_customer_id,
                    updated_at=now,
                )
                session.add(row)
                session.commit()
            if row.status == WriteStatus.DONE and row.stripe_subscription_id:
                return row.stripe_subscription_id, ProvisionAction.EXISTING
            record = row

            def find() -> Settled[StripeSubscription] | None:
                return self._find_subscription(org, stripe_customer_id)

            def done(sub: StripeSubscription | None) -> None:
                assert sub is not None
                record.stripe_subscription_id = sub.stripe_subscription_id

            outcome = write_to_stripe(
                session,
                row,
                now,
                lambda: self.gateway.create_subscription(
                    stripe_customer_id=stripe_customer_id,
                    items=items,
                    metadata={
                        "org_id": org.org_id,
                        "book": org.book,
                        "plan": org.plan,
                        "interval": org.interval.value,
                        "term_start": org.term_start_at.isoformat(),
                    },
                    idempotency_key=row.idempotency_key,
                ),
                resolve=find if row.status == WriteStatus.STARTED else None,
                on_done=done,
            )
        if outcome.exception is not None:
            raise outcome.exception
        assert outcome.response is not None
        action = ProvisionAction.CREATED if outcome.called else ProvisionAction.RECOVERED
        return outcome.response, action

    def _find_subscription(
        self, org: OrgToProvision, stripe_customer_id: str
    ) -> Settled[StripeSubscription] | None:
        """The live subscription a write left `started` created, if Stripe has it."""
        live = [
            s
            for s in self.gateway.list_subscriptions(stripe_customer_id)
            if s.metadata.get("org_id") == org.org_id
            and s.status in _LIVE_SUBSCRIPTION
            and s.metadata.get("term_start", org.term_start_at.isoformat())
            == org.term_start_at.isoformat()
        ]
        if len(live) > 1:
            ids = ", ".join(s.stripe_subscription_id for s in live)
            raise ProvisioningError(f"org {org.org_id}: several live subscriptions ({ids})")
        return Settled(WriteStatus.DONE, live[0]) if live else None

    def _record_items(
        self,
        org: OrgToProvision,
        sub: StripeSubscription | str,
        price_keys: Mapping[str, str],
        price_ids: Mapping[str, str],
        now: datetime,
    ) -> dict[str, str]:
        """Store the subscription's items by component; an already-done org keeps its rows."""
        if isinstance(sub, str):
            with Session(self.engine) as session:
                rows = session.exec(
                    select(StripeSubscriptionItemRecord).where(
                        StripeSubscriptionItemRecord.org_id == org.org_id
                    )
                ).all()
                return {row.component: row.stripe_subscription_item_id for row in rows}
        by_price = {price_ids[key]: component for component, key in price_keys.items()}
        result: dict[str, str] = {}
        with unit_of_work(self.engine) as session:
            for item in sub.items:
                component = item.metadata.get("component") or by_price.get(
                    item.stripe_price_id or ""
                )
                if component is None:
                    continue
                row = session.exec(
                    select(StripeSubscriptionItemRecord).where(
                        StripeSubscriptionItemRecord.org_id == org.org_id,
                        StripeSubscriptionItemRecord.component == component,
                    )
                ).first() or StripeSubscriptionItemRecord(
                    org_id=org.org_id,
                    component=component,
                    stripe_subscription_id=sub.stripe_subscription_id,
                    stripe_subscription_item_id=item.stripe_subscription_item_id,
                    stripe_price_id=str(item.stripe_price_id),
                    interval=org.interval.value if component == SEATS else Interval.MONTH.value,
                    updated_at=now,
                )
                row.stripe_subscription_id = sub.stripe_subscription_id
                row.stripe_subscription_item_id = item.stripe_subscription_item_id
                row.stripe_price_id = str(item.stripe_price_id)
                row.quantity = item.quantity
                row.current_period_start_at = item.current_period_start_at
                row.current_period_end_at = item.current_period_end_at
                row.updated_at = now
                session.add(row)
                result[component] = item.stripe_subscription_item_id
        return result
