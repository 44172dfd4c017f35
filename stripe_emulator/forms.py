"""Decoding Stripe's bracketed form encoding into nested params, and typed access to them.

``items[0][price]=p&tiers[1][up_to]=inf&expand[]=a&metadata[k]=v`` becomes
``{"items": [{"price": "p"}], "tiers": [None, {"up_to": "inf"}], ...}`` with lists wherever every
key of a level is an index (``[]`` appends).  All leaf values stay strings, as on the wire.
"""

from __future__ import annotations

import re
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import parse_qsl

from stripe_emulator.errors import invalid, missing

Params = dict[str, Any]
_TOKEN = re.compile(r"\[([^\]]*)\]")


def _tokens(key: str) -> list[str]:
    head, _, rest = key.partition("[")
    if not rest:
        return [head]
    return [head, *_TOKEN.findall("[" + rest)]


def _listify(node: Any) -> Any:
    if not isinstance(node, dict):
        return node
    converted = {k: _listify(v) for k, v in node.items()}
    if converted and all(k.isdigit() for k in converted):
        size = max(int(k) for k in converted) + 1
        out: list[Any] = [None] * size
        for k, v in converted.items():
            out[int(k)] = v
        return [v for v in out if v is not None]
    return converted


def decode(encoded: str) -> Params:
    """Decode a query string or form body into nested params."""
    root: dict[str, Any] = {}
    for key, value in parse_qsl(encoded, keep_blank_values=True):
        node = root
        tokens = _tokens(key)
        for i, token in enumerate(tokens):
            last = i == len(tokens) - 1
            name = token
            if name == "":
                name = str(len(node))
            if last:
                node[name] = value
            else:
                child = node.get(name)
                if not isinstance(child, dict):
                    child = {}
                    node[name] = child
                node = child
    result = _listify(root)
    assert isinstance(result, dict)
    return result


def fingerprint(params: Params) -> str:
    """A stable text form of params for idempotency comparisons."""
    return repr(sorted((k, repr(v)) for k, v in params.items() if k != "expand"))


def get_str(params: Params, key: str, *, required: bool = False) -> str | None:
    value = params.get(key)
    if value is None or value == "":
        if required:
            raise missing(key)
        return None
    if not isinstance(value, str):
        raise invalid(f"Invalid string: {value!r}", key, "parameter_invalid_string")
    return value


def req_str(params: Params, key: str) -> str:
    value = get_str(params, key, required=True)
    assert value is not None
    return value


def get_int(
    params: Params, key: str, *, required: bool = False, param: str | None = None
) -> int | None:
    value = params.get(key)
    name = param or key
    if value is None or value == "":
        if required:
            raise missing(name)
        return None
    if isinstance(value, int):
        return value
    if not isinstance(value, str) or not re.fullmatch(r"-?\d+", value):
        raise invalid(f"Invalid integer: {value}", name, "parameter_invalid_integer")
    return int(value)


def get_decimal(params: Params, key: str, *, param: str | None = None) -> Decimal | None:
    value = params.get(key)
    name = param or key
    if value is None or value == "":
        return None
    try:
        result = Decimal(str(value))
    except InvalidOperation as exc:
        raise invalid(f"Invalid decimal: {value}", name, "parameter_invalid_decimal") from exc
    if not result.is_finite():
        raise invalid(f"Invalid decimal: {value}", name, "parameter_invalid_decimal")
    return result


def get_bool(params: Params, key: str) -> bool | None:
    value = params.get(key)
    if value is None or value == "":
        return None
    if value in ("true", True):
        return True
    if value in ("false", False):
        return False
    raise invalid(f"Invalid boolean: {value}", key, "parameter_invalid_boolean")


def get_enum(
    params: Params, key: str, choices: tuple[str, ...], default: str | None = None
) -> str | None:
    value = get_str(params, key)
    if value is None:
        return default
    if value not in choices:
        raise invalid(
            f"Invalid {key}: must be one of {', '.join(choices)}", key, "parameter_invalid"
        )
    return value


def get_dict(params: Params, key: str) -> Params:
    value = params.get(key)
    if value is None or value == "":
        return {}
    if not isinstance(value, dict):
        raise invalid(f"Invalid hash: {key}", key, "parameter_invalid")
    return value


def get_list(params: Params, key: str) -> list[Any]:
    value = params.get(key)
    if value is None or value == "":
        return []
    if isinstance(value, dict) and not value:
        return []
    if not isinstance(value, list):
        raise invalid(f"Invalid array: {key}", key, "parameter_invalid")
    return value


def merge_metadata(current: dict[str, str], params: Params) -> dict[str, str]:
    """Apply Stripe's metadata update rules: ``metadata=`` clears, ``metadata[k]=`` unsets k."""
    if "metadata" not in params:
        return current
    raw = params["metadata"]
    if raw == "":
        return {}
    if not isinstance(raw, dict):
        raise invalid("Invalid hash: metadata", "metadata")
    merged = dict(current)
    for k, v in raw.items():
        if v == "":
            merged.pop(k, None)
        else:
            merged[k] = str(v)
    return merged


def decimal_str(value: Decimal) -> str:
    """Stripe's decimal_string format: plain notation, no exponent, no trailing zeros."""
    text = format(value.normalize(), "f")
    if "." in text:
        text = text.rstrip("0").rstrip(".")
    return text or "0"
