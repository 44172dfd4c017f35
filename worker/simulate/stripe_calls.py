"""`stripe_call` lines: placeholders resolved from our records, then the raw call made.

`{customer:ORG}`, `{subscription:ORG}`, `{subscription_item:ORG:COMPONENT}` (COMPONENT is
`seats` or a meter code) and `{price:BOOK:PLAN:COMPONENT}` are replaced, in the path and in every
string value of the params, by the Stripe ids the worker recorded when it provisioned the org
and synced the catalog. An unknown placeholder, or one naming an org that has no such object
yet, refuses the line.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from sqlalchemy.engine import Engine
from sqlmodel import Session, col, select

from billing.core.errors import BillingError
from billing.stripe_gateway.admin import raw_call
from billing.stripe_gateway.gateway import StripeGateway
from models.stripe_records import (
    CatalogKind,
    StripeCatalogEntry,
    StripeCustomerRecord,
    StripeSubscriptionItemRecord,
    StripeSubscriptionRecord,
)

PLACEHOLDER = re.compile(r"\{([a-z_]+):([^{}]+)\}")
SEATS = "seats"


class StripeCallError(ValueError):
    """A `stripe_call` line that cannot be made (a placeholder) or that Stripe refused."""


def make_call(
    engine: Engine, gateway: StripeGateway, body: Mapping[str, Any], *, line: int
) -> dict[str, Any]:
    with Session(engine) as session:
        path = _resolve(session, str(body["path"]))
        params = _resolve_values(session, body.get("params") or {})
    try:
        return raw_call(
            gateway,
            str(body["method"]).upper(),
            path,
            params,
            idempotency_key=f"simulate:stripe_call:line:{line}",
        )
    except BillingError as exc:
        raise StripeCallError(f"Stripe refused {body['method']} {path}: {exc}") from exc


def _resolve_values(session: Session, value: Any) -> Any:
    if isinstance(value, str):
        return _resolve(session, value)
    if isinstance(value, Mapping):
        return {key: _resolve_values(session, item) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_values(session, item) for item in value]
    return value


def _resolve(session: Session, text: str) -> str:
    return PLACEHOLDER.sub(lambda match: _lookup(session, match.group(1), match.group(2)), text)


def _lookup(session: Session, kind: str, argument: str) -> str:
    parts = argument.split(":")
    found: str | None
    if kind == "customer" and len(parts) == 1:
        row = session.get(StripeCustomerRecord, parts[0])
        found = row.stripe_customer_id if row else None
    elif kind == "subscription" and len(parts) == 1:
        sub = session.get(StripeSubscriptionRecord, parts[0])
        found = sub.stripe_subscription_id if sub else None
    elif kind == "subscription_item" and len(parts) == 2:
        item = session.exec(
            select(StripeSubscriptionItemRecord).where(
                StripeSubscriptionItemRecord.org_id == parts[0],
                StripeSubscriptionItemRecord.component == parts[1],
            )
        ).first()
        found = item.stripe_subscription_item_id if item else None
    elif kind == "price" and len(parts) == 3:
        found = _price(session, *parts)
    else:
        raise StripeCallError(
            f"{{{kind}:{argument}}}: unknown placeholder (customer:ORG, subscription:ORG, "
            "subscription_item:ORG:COMPONENT, price:BOOK:PLAN:COMPONENT)"
        )
    if found is None:
        raise StripeCallError(f"{{{kind}:{argument}}}: no such Stripe object recorded yet")
    return found


def _price(session: Session, book: str, plan: str, component: str) -> str | None:
    rows = session.exec(
        select(StripeCatalogEntry)
        .where(
            StripeCatalogEntry.kind == CatalogKind.PRICE.value,
            StripeCatalogEntry.book == book,
            StripeCatalogEntry.plan == plan,
            col(StripeCatalogEntry.contract_org_id).is_(None),
            (
                col(StripeCatalogEntry.meter).is_(None)
                if component == SEATS
                else StripeCatalogEntry.meter == component
            ),
        )
        .order_by(col(StripeCatalogEntry.version).desc())
    ).all()
    intervals = {row.interval for row in rows}
    if len(intervals) > 1:
        raise StripeCallError(
            f"{{price:{book}:{plan}:{component}}}: the book has one per interval "
            f"({', '.join(sorted(i for i in intervals if i))}); edit the price by its id"
        )
    return rows[0].stripe_price_id if rows else None
