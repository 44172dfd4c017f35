"""The read-only drift check of a book's prices against Stripe: nothing created, nothing stored."""

from __future__ import annotations

from billing.pricing.book import PriceBook
from billing.setup.catalog import CatalogAction, CatalogGateway, CatalogResult, CatalogSyncReport
from billing.setup.catalog_plan import plan_catalog
from models.stripe_records import CatalogKind


def verify_catalog(gateway: CatalogGateway, book: PriceBook) -> CatalogSyncReport:
    """Read-only drift check of the book's prices: lists Stripe, creates and records nothing.

    A price missing in Stripe, or whose terms differ from the book's, is `drifted`.
    """
    plan = plan_catalog(book)
    meters = {m.event_name: m.stripe_meter_id for m in gateway.list_meters()}
    meter_ids = {item.catalog_key: meters.get(item.event_name) for item in plan.meters}
    existing = {
        p.lookup_key: p
        for p in gateway.list_prices([item.lookup_key for item in plan.prices])
        if p.lookup_key
    }
    results: list[CatalogResult] = []
    for item in plan.prices:
        desired = item.terms(meter_ids.get(item.meter_key) if item.meter_key else None)
        found = existing.get(item.lookup_key)
        if found is None:
            action, stripe_id, note, stripe_terms = (
                CatalogAction.DRIFTED,
                "",
                "missing in Stripe: run `billing stripe sync-catalog`",
                None,
            )
        elif found.terms == desired:
            action, stripe_id, note, stripe_terms = (
                CatalogAction.VERIFIED,
                found.stripe_price_id,
                "",
                None,
            )
        else:
            action, stripe_id, note, stripe_terms = (
                CatalogAction.DRIFTED,
                found.stripe_price_id,
                "Stripe's price differs from the book",
                found.terms.describe(),
            )
        results.append(
            CatalogResult(
                item.catalog_key,
                CatalogKind.PRICE,
                action,
                stripe_id,
                note,
                desired.describe() if action is CatalogAction.DRIFTED else None,
                stripe_terms,
                item.approximate,
            )
        )
    return CatalogSyncReport(book.name, tuple(results))
