"""Customers, products and prices: the catalogue endpoints and their validation rules.

Assumptions: ``price.tiers`` is only rendered when expanded (``expand[]=tiers``), as Stripe
documents ("not included by default"); a price's ``unit_amount`` is immutable (the emulator
offers ``EmulatorState.set_price_amount`` to inject drift); ``transfer_lookup_key=true`` moves a
lookup key from another price, otherwise a taken lookup key is refused.
"""

from __future__ import annotations

import copy
import secrets
from decimal import Decimal
from typing import Any

from stripe_emulator.clocks import check_clock_capacity
from stripe_emulator.errors import invalid, missing
from stripe_emulator.forms import (
    Params,
    decimal_str,
    get_bool,
    get_decimal,
    get_dict,
    get_enum,
    get_int,
    get_list,
    get_str,
    merge_metadata,
    req_str,
)
from stripe_emulator.routing import route
from stripe_emulator.store import RENDERERS, Store, new_id

# ----- customers ----------------------------------------------------------------------------


@route("POST", "/v1/customers")
def create_customer(store: Store, params: Params) -> dict[str, Any]:
    clock_id = get_str(params, "test_clock")
    if clock_id is not None:
        store.get("test_helpers.test_clock", clock_id, "test_clock")
        check_clock_capacity(
            store, clock_id, getattr(store.config, "test_clock_max_customers", None)
        )
    customer = {
        "id": new_id("cus"),
        "object": "customer",
        "address": None,
        "balance": get_int(params, "balance") or 0,
        "created": store.clock_now(clock_id),
        "currency": None,
        "default_source": None,
        "delinquent": False,
        "description": get_str(params, "description"),
        "discount": None,
        "email": get_str(params, "email"),
        "invoice_prefix": secrets.token_hex(4).upper(),
        "invoice_settings": {
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        "livemode": False,
        "metadata": merge_metadata({}, params),
        "name": get_str(params, "name"),
        "next_invoice_sequence": 1,
        "phone": get_str(params, "phone"),
        "preferred_locales": [],
        "shipping": None,
        "tax_exempt": "none",
        "test_clock": clock_id,
    }
    store.add(customer)
    return store.render(customer, get_list(params, "expand"))


@route("GET", "/v1/customers/{id}")
def retrieve_customer(store: Store, params: Params, customer_id: str) -> dict[str, Any]:
    return store.render(store.get("customer", customer_id), get_list(params, "expand"))


@route("POST", "/v1/customers/{id}")
def update_customer(store: Store, params: Params, customer_id: str) -> dict[str, Any]:
    customer = store.get("customer", customer_id)
    for key in ("email", "name", "description", "phone"):
        if key in params:
            customer[key] = get_str(params, key)
    if "balance" in params:
        customer["balance"] = get_int(params, "balance") or 0
    customer["metadata"] = merge_metadata(customer["metadata"], params)
    return store.render(customer, get_list(params, "expand"))


@route("GET", "/v1/customers")
def list_customers(store: Store, params: Params) -> dict[str, Any]:
    email = get_str(params, "email")
    clock = get_str(params, "test_clock")
    items = [
        c
        for c in store.table("customer").values()
        if not c.get("deleted")
        and (email is None or c["email"] == email)
        and (clock is None or c["test_clock"] == clock)
    ]
    return store.list_response("/v1/customers", items, params)


# ----- products -----------------------------------------------------------------------------


def _new_product(store: Store, params: Params, created: int) -> dict[str, Any]:
    product = {
        "id": get_str(params, "id") or new_id("prod"),
        "object": "product",
        "active": get_bool(params, "active") is not False,
        "created": created,
        "default_price": None,
        "description": get_str(params, "description"),
        "images": [],
        "livemode": False,
        "marketing_features": [],
        "metadata": merge_metadata({}, params),
        "name": req_str(params, "name"),
        "package_dimensions": None,
        "shippable": None,
        "statement_descriptor": None,
        "tax_code": None,
        "unit_label": get_str(params, "unit_label"),
        "updated": created,
        "url": None,
    }
    if product["id"] in store.table("product"):
        raise invalid(f"Product already exists: {product['id']}", "id", "resource_already_exists")
    return store.add(product)


@route("POST", "/v1/products")
def create_product(store: Store, params: Params) -> dict[str, Any]:
    product = _new_product(store, params, store.wall_now())
    return store.render(product, get_list(params, "expand"))


@route("GET", "/v1/products/{id}")
def retrieve_product(store: Store, params: Params, product_id: str) -> dict[str, Any]:
    return store.render(store.get("product", product_id), get_list(params, "expand"))


@route("POST", "/v1/products/{id}")
def update_product(store: Store, params: Params, product_id: str) -> dict[str, Any]:
    product = store.get("product", product_id)
    for key in ("name", "description", "unit_label"):
        if key in params:
            product[key] = get_str(params, key)
    if "active" in params:
        product["active"] = bool(get_bool(params, "active"))
    if "default_price" in params:
        product["default_price"] = get_str(params, "default_price")
    product["metadata"] = merge_metadata(product["metadata"], params)
    product["updated"] = store.wall_now()
    return store.render(product, get_list(params, "expand"))


@route("GET", "/v1/products")
def list_products(store: Store, params: Params) -> dict[str, Any]:
    active = get_bool(params, "active")
    items = [p for p in store.table("product").values() if active is None or p["active"] == active]
    return store.list_response("/v1/products", items, params)


# ----- prices -------------------------------------------------------------------------------


def _amount_pair(
    node: Params, prefix: str, int_key: str, dec_key: str
) -> tuple[int | None, Decimal | None]:
    amount = get_int(node, int_key, param=f"{prefix}{int_key}")
    amount_decimal = get_decimal(node, dec_key, param=f"{prefix}{dec_key}")
    if amount is not None and amount_decimal is not None:
        raise invalid(
            f"You may only specify one of these parameters: {int_key}, {dec_key}.",
            f"{prefix}{dec_key}",
        )
    if amount_decimal is not None and -amount_decimal.as_tuple().exponent > 12:  # type: ignore[operator]
        raise invalid(f"{dec_key} may have at most 12 decimal places", f"{prefix}{dec_key}")
    if amount is not None:
        amount_decimal = Decimal(amount)
    return amount, amount_decimal


def _parse_tiers(params: Params) -> list[dict[str, Any]]:
    raw = get_list(params, "tiers")
    if not raw:
        raise missing("tiers")
    tiers: list[dict[str, Any]] = []
    previous = 0
    for index, node in enumerate(raw):
        prefix = f"tiers[{index}]"
        if not isinstance(node, dict):
            raise invalid("Invalid tier", prefix)
        up_raw = node.get("up_to")
        if up_raw in (None, ""):
            raise missing(f"{prefix}[up_to]")
        up_to = None if up_raw == "inf" else get_int(node, "up_to", param=f"{prefix}[up_to]")
        if up_to is not None and up_to <= previous and index > 0:
            raise invalid("Tiers must be sorted by increasing up_to.", f"{prefix}[up_to]")
        if up_to is None and index != len(raw) - 1:
            raise invalid("Only the last tier may have up_to=inf.", f"{prefix}[up_to]")
        unit, unit_dec = _amount_pair(node, prefix + "[", "unit_amount", "unit_amount_decimal")
        flat, flat_dec = _amount_pair(node, prefix + "[", "flat_amount", "flat_amount_decimal")
        tiers.append(
            {
                "up_to": up_to,
                "unit_amount": unit,
                "unit_amount_decimal": None if unit_dec is None else decimal_str(unit_dec),
                "flat_amount": flat,
                "flat_amount_decimal": None if flat_dec is None else decimal_str(flat_dec),
            }
        )
        previous = up_to or previous
    if tiers[-1]["up_to"] is not None:
        raise invalid("The last tier must have up_to=inf.", f"tiers[{len(tiers) - 1}][up_to]")
    return tiers


def _check_lookup_key(store: Store, params: Params, price_id: str | None) -> str | None:
    key = get_str(params, "lookup_key")
    if key is None:
        return None
    for other in store.table("price").values():
        if other["lookup_key"] == key and other["id"] != price_id:
            if get_bool(params, "transfer_lookup_key"):
                other["lookup_key"] = None
            else:
                raise invalid(
                    f"A price (`{other['id']}`) already uses that lookup key.",
                    "lookup_key",
                    "lookup_key_already_exists",
                )
    return key


@route("POST", "/v1/prices")
def create_price(store: Store, params: Params) -> dict[str, Any]:
    currency = (get_str(params, "currency", required=True) or "").lower()
    product_id = get_str(params, "product")
    product_data = get_dict(params, "product_data")
    if product_id is None and not product_data:
        raise missing("product")
    now = store.wall_now()
    if product_id is not None:
        store.get("product", product_id, "product")
    scheme = get_enum(params, "billing_scheme", ("per_unit", "tiered"), "per_unit")
    recurring_raw = get_dict(params, "recurring")
    recurring: dict[str, Any] | None = None
    if recurring_raw:
        interval = get_enum(recurring_raw, "interval", ("day", "week", "month", "year"))
        if interval is None:
            raise missing("recurring[interval]")
        usage = get_enum(recurring_raw, "usage_type", ("licensed", "metered"), "licensed")
        meter_id = get_str(recurring_raw, "meter")
        if usage == "metered" and meter_id is None:
            raise invalid(
                "You must specify a meter when creating a metered price.", "recurring[meter]"
            )
        if usage == "licensed" and meter_id is not None:
            raise invalid("A meter can only be set on metered prices.", "recurring[meter]")
        if meter_id is not None:
            store.get("billing.meter", meter_id, "recurring[meter]")
        recurring = {
            "interval": interval,
            "interval_count": get_int(
                recurring_raw, "interval_count", param="recurring[interval_count]"
            )
            or 1,
            "meter": meter_id,
            "trial_period_days": None,
            "usage_type": usage,
        }
    transform = get_dict(params, "transform_quantity")
    tiers: list[dict[str, Any]] | None = None
    tiers_mode: str | None = None
    unit_amount: int | None = None
    unit_dec: Decimal | None = None
    if scheme == "tiered":
        if transform:
            raise invalid("transform_quantity cannot be combined with tiers.", "transform_quantity")
        tiers_mode = get_enum(params, "tiers_mode", ("graduated", "volume"))
        if tiers_mode is None:
            raise missing("tiers_mode")
        tiers = _parse_tiers(params)
    else:
        if "tiers" in params:
            raise invalid("tiers can only be set when billing_scheme=tiered.", "tiers")
        unit_amount, unit_dec = _amount_pair(params, "", "unit_amount", "unit_amount_decimal")
        if unit_dec is None:
            raise missing("unit_amount")
    lookup_key = _check_lookup_key(store, params, None)
    if product_id is None:
        product_id = _new_product(store, product_data, now)["id"]
    price = {
        "id": new_id("price"),
        "object": "price",
        "active": get_bool(params, "active") is not False,
        "billing_scheme": scheme,
        "created": now,
        "currency": currency,
        "custom_unit_amount": None,
        "livemode": False,
        "lookup_key": lookup_key,
        "metadata": merge_metadata({}, params),
        "nickname": get_str(params, "nickname"),
        "product": product_id,
        "recurring": recurring,
        "tax_behavior": get_str(params, "tax_behavior") or "unspecified",
        "tiers_mode": tiers_mode,
        "transform_quantity": (
            {"divide_by": get_int(transform, "divide_by"), "round": get_str(transform, "round")}
            if transform
            else None
        ),
        "type": "recurring" if recurring else "one_time",
        "unit_amount": unit_amount,
        "unit_amount_decimal": None if unit_dec is None else decimal_str(unit_dec),
        "_tiers": tiers,
    }
    store.add(price)
    return store.render(price, get_list(params, "expand"))


def render_price(_store: Store, price: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = {k: copy.deepcopy(v) for k, v in price.items() if not k.startswith("_")}
    if "tiers" in expand and price.get("_tiers") is not None:
        out["tiers"] = copy.deepcopy(price["_tiers"])
    return out


RENDERERS["price"] = render_price


@route("GET", "/v1/prices/{id}")
def retrieve_price(store: Store, params: Params, price_id: str) -> dict[str, Any]:
    return store.render(store.get("price", price_id), get_list(params, "expand"))


@route("POST", "/v1/prices/{id}")
def update_price(store: Store, params: Params, price_id: str) -> dict[str, Any]:
    price = store.get("price", price_id)
    lookup_key = _check_lookup_key(store, params, price_id)
    if "lookup_key" in params:
        price["lookup_key"] = lookup_key
    if "active" in params:
        price["active"] = bool(get_bool(params, "active"))
    if "nickname" in params:
        price["nickname"] = get_str(params, "nickname")
    for immutable in ("unit_amount", "unit_amount_decimal", "tiers", "recurring", "currency"):
        if immutable in params:
            raise invalid(f"Received unknown parameter: {immutable}", immutable)
    price["metadata"] = merge_metadata(price["metadata"], params)
    return store.render(price, get_list(params, "expand"))


@route("GET", "/v1/prices")
def list_prices(store: Store, params: Params) -> dict[str, Any]:
    product = get_str(params, "product")
    active = get_bool(params, "active")
    type_ = get_str(params, "type")
    lookup_keys = get_list(params, "lookup_keys")
    items = [
        p
        for p in store.table("price").values()
        if (product is None or p["product"] == product)
        and (active is None or p["active"] == active)
        and (type_ is None or p["type"] == type_)
        and (not lookup_keys or p["lookup_key"] in lookup_keys)
    ]
    return store.list_response("/v1/prices", items, params)
