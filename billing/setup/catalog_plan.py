"""The Stripe catalog a price book implies, planned without I/O: products, meters and prices."""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Context, Decimal

from billing.core.components import MINIMUM_TOPUP, SEATS
from billing.core.keys import (
    event_name,
    is_contract_key,
    lookup_key,
    meter_key,
    meter_price_key,
    meter_product_key,
    seat_price_key,
    seat_product_key,
)
from billing.core.meters import Interval
from billing.core.money import MAX_DECIMAL_PLACES, format_decimal
from billing.pricing.book import MeterPrice, PriceBook, Terms
from billing.stripe_gateway.records import PriceTerms, PriceTier

TOPUP_DISPLAY_NAME = "Minimum commitment top-up"
TOPUP_UNIT_AMOUNT = Decimal(1)  # cents per unit of the top-up meter
_CONTEXT = Context(prec=60, rounding=ROUND_HALF_UP)
_QUANTUM = Decimal(1).scaleb(-MAX_DECIMAL_PLACES)


@dataclass(frozen=True)
class UnitPrice:
    """A book unit price converted to Stripe's per-base-unit price (≤ 12 decimal places)."""

    stripe_amount_decimal: Decimal
    approximate: bool


def stripe_unit_price(unit_amount_decimal: Decimal, per: int) -> UnitPrice:
    """`unit / per`, rounded half up to 12 places when not exact (13¢ per 3,600 s, say)."""
    exact = _CONTEXT.divide(unit_amount_decimal, Decimal(per))
    rounded = exact.quantize(_QUANTUM, rounding=ROUND_HALF_UP, context=_CONTEXT)
    return UnitPrice(Decimal(format_decimal(rounded)), rounded != exact)


@dataclass(frozen=True)
class ProductPlan:
    catalog_key: str
    book: str
    name: str
    plan: str | None = None
    meter: str | None = None  # a meter code, or MINIMUM_TOPUP

    @property
    def metadata(self) -> dict[str, str]:
        data = {"catalog_key": self.catalog_key, "book": self.book}
        if self.plan:
            data["plan"] = self.plan
            data["component"] = SEATS
        if self.meter:
            data["meter"] = self.meter
        return data


@dataclass(frozen=True)
class MeterPlan:
    catalog_key: str
    book: str
    meter: str  # a meter code, or MINIMUM_TOPUP
    event_name: str
    display_name: str


@dataclass(frozen=True)
class PricePlan:
    """A price the book implies; `terms` still names the meter by catalog key, not Stripe id."""

    catalog_key: str
    book: str
    plan: str
    interval: Interval
    product_key: str
    nickname: str
    currency: str
    usage_type: str
    unit_amount_decimal: Decimal | None
    tiers: tuple[PriceTier, ...]
    meter: str | None = None  # a meter code, or MINIMUM_TOPUP
    contract_org_id: str | None = None
    approximate: bool = False

    @property
    def lookup_key(self) -> str:
        """Stable per catalog object; a repaired price takes it over (`transfer_lookup_key`)."""
        return lookup_key(self.catalog_key)

    @property
    def meter_key(self) -> str | None:
        return None if self.meter is None else meter_key(self.book, self.meter)

    def terms(self, stripe_meter_id: str | None) -> PriceTerms:
        return PriceTerms(
            currency=self.currency,
            interval=self.interval.value,
            usage_type=self.usage_type,
            stripe_meter_id=stripe_meter_id,
            unit_amount_decimal=self.unit_amount_decimal,
            tiers=self.tiers,
        )

    def metadata(self, version: int) -> dict[str, str]:
        data = {
            "catalog_key": self.catalog_key,
            "catalog_version": str(version),
            "book": self.book,
            "plan": self.plan,
            "interval": self.interval.value,
        }
        if self.meter:
            data["meter"] = self.meter
        if self.contract_org_id:
            data["contract"] = self.contract_org_id
        return data


@dataclass(frozen=True)
class CatalogPlan:
    book: str
    products: tuple[ProductPlan, ...]
    meters: tuple[MeterPlan, ...]
    prices: tuple[PricePlan, ...]


def price_keys_for_terms(book: PriceBook, terms: Terms) -> dict[str, str]:
    """The catalog key of each component (`seats`, meter codes) an org on `terms` subscribes to.

    A contract uses its own price only where its terms differ from the plan's.
    """
    plan_terms = _plan_terms(book, terms.plan, terms.interval)
    org = terms.contract_org
    keys: dict[str, str] = {}
    if terms.seat_unit_amount is not None:
        own = org is not None and (
            plan_terms is None or plan_terms.seat_unit_amount != terms.seat_unit_amount
        )
        keys[SEATS] = seat_price_key(book.name, terms.plan, terms.interval, org if own else None)
    for meter, price in terms.meters.items():
        base = plan_terms.meters.get(meter) if plan_terms else None
        own = org is not None and base != price
        keys[meter.value] = meter_price_key(book.name, terms.plan, meter, org if own else None)
    if terms.minimum_amount > 0:
        # The top-up's price is the same 1 cent per unit for every plan: the plan's own.
        keys[MINIMUM_TOPUP] = meter_price_key(book.name, terms.plan, MINIMUM_TOPUP, None)
    return keys


def _plan_terms(book: PriceBook, plan: str, interval: Interval) -> Terms | None:
    if interval not in book.plan_intervals(plan):
        return None
    return book.terms(plan, interval)


def plan_catalog(book: PriceBook) -> CatalogPlan:
    """Every product, meter and price the book implies, in creation order (pure)."""
    products: dict[str, ProductPlan] = {}
    meters: dict[str, MeterPlan] = {}
    prices: dict[str, PricePlan] = {}
    for meter, definition in book.meter_definitions.items():
        key = meter_product_key(book.name, meter)
        products[key] = ProductPlan(key, book.name, definition.display_name, meter=meter)
        mkey = meter_key(book.name, meter)
        meters[mkey] = MeterPlan(
            mkey, book.name, meter, event_name(book.name, meter), definition.display_name
        )
    everyone: list[Terms] = [
        book.terms(plan, interval) for plan in book.plans for interval in book.plan_intervals(plan)
    ]
    for org_id, contract in book.contracts.items():
        everyone.append(book.terms(str(contract["plan"]), contract.get("interval"), org_id))
    if any(terms.minimum_amount > 0 for terms in everyone):
        _add_topup_meter(book, products, meters)
    for terms in everyone:
        keys = price_keys_for_terms(book, terms)
        label = book.plan_display_name(terms.plan)
        org = terms.contract_org
        suffix = f" ({org})" if org else ""
        if SEATS in keys and keys[SEATS] not in prices:
            pkey = seat_product_key(book.name, terms.plan)
            products.setdefault(pkey, ProductPlan(pkey, book.name, f"{label} seats", terms.plan))
            assert terms.seat_unit_amount is not None
            prices[keys[SEATS]] = PricePlan(
                catalog_key=keys[SEATS],
                book=book.name,
                plan=terms.plan,
                interval=terms.interval,
                product_key=pkey,
                nickname=f"{label} seats per {terms.interval.value}{suffix}",
                currency=book.currency,
                usage_type="licensed",
                unit_amount_decimal=Decimal(terms.seat_unit_amount),
                tiers=(),
                contract_org_id=org if org and is_contract_key(keys[SEATS], org) else None,
            )
        for meter, meter_price in terms.meters.items():
            key = keys[meter.value]
            if key in prices:
                continue
            prices[key] = _metered_price_plan(
                book, terms, meter_price, key, f"{label} · {meter.value}{suffix}"
            )
        if MINIMUM_TOPUP in keys and keys[MINIMUM_TOPUP] not in prices:
            prices[keys[MINIMUM_TOPUP]] = _topup_price_plan(book, terms, keys[MINIMUM_TOPUP], label)
    return CatalogPlan(
        book.name, tuple(products.values()), tuple(meters.values()), tuple(prices.values())
    )


def _add_topup_meter(
    book: PriceBook, products: dict[str, ProductPlan], meters: dict[str, MeterPlan]
) -> None:
    """The minimum top-up's product and meter (formula `last`, like the usage meters): the
    push reports each period's top-up in cents, cumulative (billing.usage.topup)."""
    key = meter_product_key(book.name, MINIMUM_TOPUP)
    products[key] = ProductPlan(key, book.name, TOPUP_DISPLAY_NAME, meter=MINIMUM_TOPUP)
    mkey = meter_key(book.name, MINIMUM_TOPUP)
    meters[mkey] = MeterPlan(
        mkey, book.name, MINIMUM_TOPUP, event_name(book.name, MINIMUM_TOPUP), TOPUP_DISPLAY_NAME
    )


def _topup_price_plan(book: PriceBook, terms: Terms, key: str, label: str) -> PricePlan:
    """A plan's minimum top-up price: metered, 1 cent per unit (a unit is a cent of top-up)."""
    return PricePlan(
        catalog_key=key,
        book=book.name,
        plan=terms.plan,
        interval=Interval.MONTH,
        product_key=meter_product_key(book.name, MINIMUM_TOPUP),
        nickname=f"{label} · {MINIMUM_TOPUP}",
        currency=book.currency,
        usage_type="metered",
        unit_amount_decimal=TOPUP_UNIT_AMOUNT,
        tiers=(),
        meter=MINIMUM_TOPUP,
    )


def _metered_price_plan(
    book: PriceBook, terms: Terms, meter_price: MeterPrice, key: str, nickname: str
) -> PricePlan:
    # The meter receives quantities in the price's unit (billing.pricing.meter_value: hours
    # for 13¢ per 3,600 s), so the book's unit amount is Stripe's, exactly; tier bounds are
    # converted to that unit too (approximate only if a bound is not a whole number of them).
    tiers: list[PriceTier] = []
    approximate = False
    per = meter_price.per
    for tier in meter_price.tiers:
        up_to = None if tier.up_to is None else tier.up_to // per
        approximate = approximate or (tier.up_to is not None and tier.up_to % per != 0)
        unit = stripe_unit_price(tier.unit_amount_decimal, 1)
        tiers.append(PriceTier(up_to, unit.stripe_amount_decimal, tier.flat_amount))
    per_unit = len(tiers) == 1 and tiers[0].flat_amount == 0
    org = terms.contract_org
    return PricePlan(
        catalog_key=key,
        book=book.name,
        plan=terms.plan,
        interval=Interval.MONTH,  # usage is always billed monthly, in arrears
        product_key=meter_product_key(book.name, meter_price.meter),
        nickname=nickname,
        currency=book.currency,
        usage_type="metered",
        unit_amount_decimal=tiers[0].unit_amount_decimal if per_unit else None,
        tiers=() if per_unit else tuple(tiers),
        meter=meter_price.meter,
        contract_org_id=org if org and is_contract_key(key, org) else None,
        approximate=approximate,
    )
