"""A runtime checker of outgoing Stripe parameters against stripe-python's `stripe.params` types.

stripe-python 16 ships generated TypedDicts for every request. The checker walks a params dict
against one of them and reports unknown keys, values of the wrong type, and strings that are not
one of the allowed `Literal`s. Generated unions such as `Literal['none', 'create_prorations']|str`
keep a bare `str` for forward compatibility; the checker is strict and ignores that escape hatch
when the union names non-empty literals, so a misspelt enum value is caught.
"""

from __future__ import annotations

import importlib
import re
import types
import typing
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from decimal import Decimal
from typing import Any, NotRequired, Required, get_args, get_origin

import stripe
from stripe._stripe_object import UntypedStripeObject
from stripe._stripe_service import StripeService
from typing_extensions import is_typeddict

_LOCALNS: dict[str, Any] = {
    **vars(typing),
    "StripeContext": stripe.StripeContext,
    "Decimal": Decimal,
    "UntypedStripeObject": UntypedStripeObject,
    "NotRequired": NotRequired,
    "Required": Required,
}


class StripeParamsError(AssertionError):
    """The params do not fit the TypedDict; `problems` lists (path, problem) pairs."""

    def __init__(self, type_name: str, problems: list[tuple[str, str]]) -> None:
        self.problems = problems
        text = "; ".join(f"{path or '(root)'}: {problem}" for path, problem in problems)
        super().__init__(f"{type_name}: {text}")


def params_type(name: str) -> type:
    """`"PriceCreateParams"` or `"billing.MeterCreateParams"` to the TypedDict class."""
    module_name, _, class_name = name.rpartition(".")
    module = importlib.import_module(
        f"stripe.params.{module_name}" if module_name else "stripe.params"
    )
    td = getattr(module, class_name)
    assert is_typeddict(td), name
    return typing.cast(type, td)


def check_params(type_or_name: type | str, params: typing.Mapping[str, Any]) -> None:
    """Raise StripeParamsError unless `params` fits the TypedDict exactly (no unknown keys)."""
    td = params_type(type_or_name) if isinstance(type_or_name, str) else type_or_name
    problems: list[tuple[str, str]] = []
    _check_typeddict(td, params, "", problems)
    if problems:
        raise StripeParamsError(td.__name__, problems)


def _hints(td: type) -> dict[str, Any]:
    module = importlib.import_module(td.__module__)
    localns = {**_LOCALNS, **vars(module)}
    return typing.get_type_hints(td, globalns=vars(module), localns=localns, include_extras=True)


def _check_typeddict(td: type, value: Any, path: str, problems: list[tuple[str, str]]) -> None:
    if not isinstance(value, typing.Mapping):
        problems.append((path, f"expected object {td.__name__}, got {value!r}"))
        return
    hints = _hints(td)
    required = getattr(td, "__required_keys__", frozenset())
    problems.extend(
        (_join(path, key), "required parameter missing") for key in required if key not in value
    )
    for key, item in value.items():
        if key not in hints:
            problems.append((_join(path, key), f"unknown parameter for {td.__name__}"))
            continue
        _check_value(hints[key], item, _join(path, key), problems)


def _join(path: str, key: str | int) -> str:
    if isinstance(key, int):
        return f"{path}[{key}]"
    return f"{path}.{key}" if path else key


def _strip(annotation: Any) -> Any:
    while get_origin(annotation) in (NotRequired, Required, typing.NotRequired, typing.Required):
        annotation = get_args(annotation)[0]
    return annotation


def _check_value(annotation: Any, value: Any, path: str, problems: list[tuple[str, str]]) -> None:
    annotation = _strip(annotation)
    attempts: list[tuple[str, str]] = []
    if not _fits(annotation, value, path, attempts):
        if attempts:
            problems.extend(attempts)
        else:
            problems.append((path, f"{value!r} does not fit {_describe(annotation)}"))


def _alternatives(annotation: Any) -> list[Any]:
    origin = get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        result: list[Any] = []
        for arg in get_args(annotation):
            result.extend(_alternatives(arg))
        return result
    return [annotation]


def _fits(annotation: Any, value: Any, path: str, problems: list[tuple[str, str]]) -> bool:
    """True when `value` fits; detailed problems are only recorded for a single candidate."""
    options = _alternatives(_strip(annotation))
    literals = [v for opt in options if get_origin(opt) is typing.Literal for v in get_args(opt)]
    strict_strings = any(isinstance(v, str) and v != "" for v in literals)
    if isinstance(value, str) and strict_strings:
        if value in literals:
            return True
        problems.append((path, f"{value!r} is not one of {sorted(map(str, literals))}"))
        return False
    if value in literals and not isinstance(value, bool):
        return True
    candidates = [opt for opt in options if get_origin(opt) is not typing.Literal]
    structured = [c for c in candidates if is_typeddict(c) or get_origin(c) in (list, dict)]
    for candidate in candidates:
        trial: list[tuple[str, str]] = []
        if _fits_one(candidate, value, path, trial) and not trial:
            return True
        if len(structured) == 1 and candidate is structured[0] and isinstance(value, dict | list):
            problems.extend(trial)
    return False


def _fits_one(annotation: Any, value: Any, path: str, problems: list[tuple[str, str]]) -> bool:
    origin = get_origin(annotation)
    if annotation is Any:
        return True
    if is_typeddict(annotation):
        if not isinstance(value, dict):
            return False
        _check_typeddict(annotation, value, path, problems)
        return not problems
    if origin is list:
        if not isinstance(value, list):
            return False
        (item_type,) = get_args(annotation)
        for index, item in enumerate(value):
            if not _fits(item_type, item, _join(path, index), problems):
                if not problems:
                    problems.append((_join(path, index), f"{item!r} is invalid"))
                return False
        return True
    if origin is dict or (
        origin is not None and getattr(origin, "__name__", "") == "UntypedStripeObject"
    ):
        if not isinstance(value, dict):
            return False
        args = get_args(annotation)
        value_type = args[-1] if args else Any
        return all(
            _fits(value_type, item, _join(path, str(k)), problems) for k, item in value.items()
        )
    if annotation is bool:
        return isinstance(value, bool)
    if annotation is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if annotation is float:
        return isinstance(value, int | float | Decimal) and not isinstance(value, bool)
    if annotation is Decimal:
        return isinstance(value, Decimal | str | int) and not isinstance(value, bool)
    if annotation is str:
        return isinstance(value, str)
    if isinstance(annotation, type):
        return isinstance(value, annotation)
    return False


def _describe(annotation: Any) -> str:
    names = []
    for option in _alternatives(_strip(annotation)):
        if is_typeddict(option):
            names.append(f"object {option.__name__}")
        elif get_origin(option) is typing.Literal:
            names.append(" | ".join(repr(v) for v in get_args(option)))
        else:
            names.append(getattr(option, "__name__", str(option)))
    return " or ".join(names)


# --------------------------------------------------------------------------- recording

# (HTTP method, path pattern) -> the stripe.params TypedDict that describes the request.
PARAMS_BY_ROUTE: tuple[tuple[str, str, str], ...] = (
    ("post", r"/v1/customers", "CustomerCreateParams"),
    ("get", r"/v1/customers", "CustomerListParams"),
    ("get", r"/v1/customers/[^/]+", "CustomerRetrieveParams"),
    ("post", r"/v1/products", "ProductCreateParams"),
    ("get", r"/v1/products", "ProductListParams"),
    ("get", r"/v1/products/[^/]+", "ProductRetrieveParams"),
    ("post", r"/v1/billing/meters", "billing.MeterCreateParams"),
    ("get", r"/v1/billing/meters", "billing.MeterListParams"),
    ("get", r"/v1/billing/meters/[^/]+/event_summaries", "billing.MeterEventSummaryListParams"),
    ("post", r"/v1/billing/meter_events", "billing.MeterEventCreateParams"),
    ("post", r"/v1/prices", "PriceCreateParams"),
    ("get", r"/v1/prices", "PriceListParams"),
    ("get", r"/v1/prices/[^/]+", "PriceRetrieveParams"),
    ("post", r"/v1/subscriptions", "SubscriptionCreateParams"),
    ("get", r"/v1/subscriptions", "SubscriptionListParams"),
    ("get", r"/v1/subscriptions/[^/]+", "SubscriptionRetrieveParams"),
    ("get", r"/v1/subscription_items", "SubscriptionItemListParams"),
    ("post", r"/v1/subscription_items/[^/]+", "SubscriptionItemUpdateParams"),
    ("post", r"/v1/invoiceitems", "InvoiceItemCreateParams"),
    ("post", r"/v1/invoices/create_preview", "InvoiceCreatePreviewParams"),
    ("get", r"/v1/invoices", "InvoiceListParams"),
    ("get", r"/v1/invoices/[^/]+", "InvoiceRetrieveParams"),
    ("get", r"/v1/invoices/[^/]+/lines", "InvoiceLineItemListParams"),
    ("post", r"/v1/invoices/[^/]+/finalize", "InvoiceFinalizeInvoiceParams"),
    ("post", r"/v1/invoices/[^/]+", "InvoiceUpdateParams"),
)


def params_type_for(method: str, path: str) -> str:
    path = path.split("?", 1)[0]
    for route_method, pattern, name in PARAMS_BY_ROUTE:
        if route_method == method.lower() and re.fullmatch(pattern, path):
            return name
    raise AssertionError(f"no stripe.params type known for {method.upper()} {path}")


@dataclass
class RecordedCall:
    method: str
    path: str
    params: dict[str, Any]
    params_type: str


@contextmanager
def checking_stripe_params() -> Iterator[list[RecordedCall]]:
    """Record every service call made through stripe-python and check its params on the way.

    Patches `StripeService._request`, the single funnel of `client.v1.*` methods, so the dict
    checked is exactly the one handed to the library (not a re-parse of the form body).
    """
    original = StripeService._request
    calls: list[RecordedCall] = []

    def recording(self: Any, method: str, url: str, params: Any = None, **kwargs: Any) -> Any:
        name = params_type_for(method, url)
        recorded = dict(params or {})
        calls.append(RecordedCall(method.lower(), url, recorded, name))
        check_params(name, recorded)
        return original(self, method, url, params, **kwargs)

    StripeService._request = recording  # type: ignore[method-assign]
    try:
        yield calls
    finally:
        StripeService._request = original  # type: ignore[method-assign]
