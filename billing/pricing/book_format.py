"""The price book's TOML format: the keys each table allows and the rules of every value."""

from __future__ import annotations

from collections.abc import Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from billing.core.meters import Interval, Meter, Quota, QuotaMode
from billing.core.money import MAX_DECIMAL_PLACES, decimal_places, parse_decimal

if TYPE_CHECKING:
    from billing.pricing.book import MeterDefinition

_PLAN_KEYS = {
    "display_name",
    "seat_unit_amount",
    "minimum_amount",
    "meters",
    "quotas",
    "retention_days",
    "negotiated",
}
_CONTRACT_KEYS = {
    "plan",
    "effective_at",
    "interval",
    "seat_unit_amount",
    "minimum_amount",
    "meters",
    "quotas",
    "note",
}
_METER_PRICE_KEYS = {"included", "unit_amount_decimal", "tiers", "per"}


class Validator:
    """Collects every problem of a book as (key, problem) pairs instead of stopping at one."""

    def __init__(self) -> None:
        self.problems: list[tuple[str, str]] = []

    def problem(self, key: str, text: str) -> None:
        self.problems.append((key, text))

    def keys(self, table: Mapping[str, Any], prefix: str, allowed: set[str]) -> None:
        for key in table:
            if key not in allowed:
                where = f"{prefix}.{key}" if prefix else key
                self.problem(where, f"unknown key (allowed: {', '.join(sorted(allowed))})")

    def string(self, table: Mapping[str, Any], prefix: str, key: str) -> str | None:
        where = f"{prefix}.{key}" if prefix else key
        value = table.get(key)
        if not isinstance(value, str) or not value:
            self.problem(where, "a non-empty string is required")
            return None
        return value

    def non_negative_int(self, value: object, key: str) -> int | None:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            self.problem(key, f"must be a non-negative integer (minor units), got {value!r}")
            return None
        return value

    def unit_decimal(self, value: object, key: str) -> Decimal | None:
        try:
            result = parse_decimal(value)
        except ValueError as exc:
            self.problem(key, str(exc))
            return None
        if result < 0:
            self.problem(key, f"must not be negative, got {value!r}")
            return None
        if decimal_places(result) > MAX_DECIMAL_PLACES:
            self.problem(
                key,
                f"has more than {MAX_DECIMAL_PLACES} decimal places, which Stripe cannot express",
            )
            return None
        return result

    def plan_table(
        self, raw: object, key: str, meters: Mapping[Meter, MeterDefinition], *, is_contract: bool
    ) -> bool:
        before = len(self.problems)
        if not isinstance(raw, dict):
            self.problem(key, "must be a table")
            return False
        self.keys(raw, key, _CONTRACT_KEYS if is_contract else _PLAN_KEYS)
        if "display_name" in raw and not isinstance(raw["display_name"], str):
            self.problem(f"{key}.display_name", "must be a string")
        if "interval" in raw and raw["interval"] not in set(Interval):
            self.problem(f"{key}.interval", f"{raw['interval']!r} is not one of: month, year")
        seats = raw.get("seat_unit_amount")
        if seats is not None:
            if is_contract and isinstance(seats, int) and not isinstance(seats, bool):
                self.non_negative_int(seats, f"{key}.seat_unit_amount")
            elif not isinstance(seats, dict) or not seats:
                self.problem(
                    f"{key}.seat_unit_amount",
                    "must be a table of interval = amount, e.g. { year = 900 }",
                )
            else:
                for interval, amount in seats.items():
                    if interval not in set(Interval):
                        self.problem(
                            f"{key}.seat_unit_amount.{interval}",
                            "unknown interval (allowed: month, year)",
                        )
                    self.non_negative_int(amount, f"{key}.seat_unit_amount.{interval}")
        if "minimum_amount" in raw:
            self.non_negative_int(raw["minimum_amount"], f"{key}.minimum_amount")
        if "retention_days" in raw:
            self.non_negative_int(raw["retention_days"], f"{key}.retention_days")
        if "negotiated" in raw and not isinstance(raw["negotiated"], bool):
            self.problem(f"{key}.negotiated", "must be true or false")
        meter_prices = raw.get("meters", {})
        if not isinstance(meter_prices, dict):
            self.problem(f"{key}.meters", "must be a table of [.meters.METER] tables")
        else:
            for code, price in meter_prices.items():
                where = f"{key}.meters.{code}"
                if code not in set(Meter) or Meter(code) not in meters:
                    self.problem(
                        where,
                        "unknown meter (declare it under [meters] with a known "
                        f"code: {', '.join(m.value for m in Meter)})",
                    )
                    continue
                self.meter_price(price, where, partial=is_contract)
        quotas = raw.get("quotas", {})
        if not isinstance(quotas, dict):
            self.problem(f"{key}.quotas", "must be a table")
        else:
            for name, value in quotas.items():
                self.quota(name, value, f"{key}.quotas.{name}")
        return len(self.problems) == before

    def meter_price(self, raw: object, key: str, *, partial: bool) -> None:
        if not isinstance(raw, dict):
            self.problem(key, "must be a table")
            return
        self.keys(raw, key, _METER_PRICE_KEYS)
        if "tiers" in raw and ({"included", "unit_amount_decimal"} & raw.keys()):
            self.problem(key, "give either tiers or included/unit_amount_decimal, not both")
            return
        if "per" in raw and (
            isinstance(raw["per"], bool) or not isinstance(raw["per"], int) or raw["per"] < 1
        ):
            self.problem(f"{key}.per", f"must be a positive integer, got {raw['per']!r}")
        if "tiers" in raw:
            self.tiers(raw["tiers"], f"{key}.tiers")
            return
        if "included" in raw:
            self.non_negative_int(raw["included"], f"{key}.included")
        if "unit_amount_decimal" in raw:
            self.unit_decimal(raw["unit_amount_decimal"], f"{key}.unit_amount_decimal")
        elif not partial:
            self.problem(f"{key}.unit_amount_decimal", "is required (or give tiers)")

    def tiers(self, raw: object, key: str) -> None:
        if not isinstance(raw, list) or not raw:
            self.problem(key, "must be a non-empty array of tables")
            return
        previous = 0
        for index, tier in enumerate(raw):
            where = f"{key}[{index}]"
            if not isinstance(tier, dict):
                self.problem(where, "must be a table")
                return
            self.keys(tier, where, {"up_to", "unit_amount_decimal", "flat_amount"})
            up_to = tier.get("up_to")
            last = index == len(raw) - 1
            if last and up_to != "inf":
                self.problem(f"{where}.up_to", 'the last tier must have up_to = "inf"')
            elif not last:
                if isinstance(up_to, bool) or not isinstance(up_to, int) or up_to <= previous:
                    self.problem(
                        f"{where}.up_to",
                        "must be an integer greater than the "
                        f"previous tier's up_to ({previous}), got {up_to!r}",
                    )
                else:
                    previous = up_to
            if "unit_amount_decimal" not in tier:
                self.problem(f"{where}.unit_amount_decimal", "is required")
            else:
                self.unit_decimal(tier["unit_amount_decimal"], f"{where}.unit_amount_decimal")
            if "flat_amount" in tier:
                self.non_negative_int(tier["flat_amount"], f"{where}.flat_amount")

    def quota(self, name: str, value: object, key: str) -> None:
        if name not in set(Quota):
            self.problem(key, f"unknown quota (allowed: {', '.join(q.value for q in Quota)})")
            return
        table = value if isinstance(value, dict) else {"limit": value}
        self.keys(table, key, {"limit", "mode"})
        limit = table.get("limit")
        if limit != "unlimited":
            self.non_negative_int(limit, f"{key}.limit" if isinstance(value, dict) else key)
        if table.get("mode", "hard") not in set(QuotaMode):
            self.problem(f"{key}.mode", "must be 'hard' or 'soft'")
