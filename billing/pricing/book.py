"""Price books: the TOML format, its validation, and the terms a plan or contract resolves to."""

from __future__ import annotations

import functools
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from decimal import Decimal
from enum import StrEnum
from pathlib import Path
from types import MappingProxyType
from typing import Any

from billing.core.meters import Interval, Meter, Quota, QuotaMode
from billing.core.money import parse_decimal
from billing.pricing.book_examples import BookExample, parse_examples
from billing.pricing.book_format import Validator
from billing.pricing.credits import WELCOME_CREDIT, WelcomeCredit, parse_welcome_credit
from billing.pricing.lifecycle import LifecyclePolicy, parse_lifecycle

BOOKS_DIR = Path(__file__).parent / "books"
DEFAULT_BOOK = "devtools"
_BOOK_KEYS = {
    "name",
    "currency",
    "default_plan",
    "seat_policy",
    "meters",
    "plans",
    "contracts",
    "examples",
    "lifecycle",
    WELCOME_CREDIT,
}


class PriceBookError(ValueError):
    """A price book failed validation; `problems` lists every (key, problem) found."""

    def __init__(self, source: str, problems: list[tuple[str, str]]) -> None:
        self.source = source
        self.problems = problems
        lines = [f"{source}: {key}: {problem}" for key, problem in problems]
        super().__init__("\n".join(lines))


class UnknownTermsError(LookupError):
    """A plan, interval, meter or contract the book does not define was asked for."""


class SeatIncrease(StrEnum):
    PRORATE = "prorate"  # charge added seats for the rest of the term
    NEXT_TERM = "next_term"  # no proration: added seats are billed from the renewal


class SeatDecrease(StrEnum):
    AT_RENEWAL = "at_renewal"  # keep billing the term's high-water mark until renewal
    IMMEDIATE = "immediate"  # credit the unused time of removed seats


@dataclass(frozen=True)
class SeatPolicy:
    increase: SeatIncrease = SeatIncrease.PRORATE
    decrease: SeatDecrease = SeatDecrease.AT_RENEWAL


@dataclass(frozen=True)
class Tier:
    """One graduated tier: units up to `up_to` (None = no limit) at `unit_amount_decimal`."""

    up_to: int | None
    unit_amount_decimal: Decimal
    flat_amount: int = 0


@dataclass(frozen=True)
class MeterPrice:
    """Graduated pricing of one meter; `per` units share one unit amount (3,600 s = an hour)."""

    meter: Meter
    tiers: tuple[Tier, ...]
    per: int = 1

    @property
    def included(self) -> int:
        """Units billed at zero before any charge applies (the free first tier, if any)."""
        first = self.tiers[0]
        if first.up_to is not None and first.unit_amount_decimal == 0 and first.flat_amount == 0:
            return first.up_to
        return 0


@dataclass(frozen=True)
class QuotaLimit:
    quota: Quota
    limit: int | None  # None = unlimited
    mode: QuotaMode = QuotaMode.HARD


@dataclass(frozen=True)
class MeterDefinition:
    meter: Meter
    display_name: str
    unit: str


@dataclass(frozen=True)
class Terms:
    """What one org (or a quote) is billed under: a plan, an interval, any contract overrides."""

    book: str
    plan: str
    interval: Interval
    currency: str
    seat_unit_amount: int | None  # per seat per interval; None when the plan has no seats
    meters: Mapping[Meter, MeterPrice]
    minimum_amount: int  # monthly minimum of the usage charge, in minor units
    quotas: Mapping[Quota, QuotaLimit]
    seat_policy: SeatPolicy
    contract_org: str | None = None

    @property
    def has_seats(self) -> bool:
        return self.seat_unit_amount is not None


@dataclass(frozen=True)
class PriceBook:
    name: str
    currency: str
    source: str
    default_plan: str
    seat_policy: SeatPolicy
    meter_definitions: Mapping[Meter, MeterDefinition]
    plans: Mapping[str, Mapping[str, Any]] = field(repr=False)
    contracts: Mapping[str, Mapping[str, Any]] = field(repr=False)
    examples: tuple[BookExample, ...] = ()  # worked examples for the formula document
    lifecycle: LifecyclePolicy = field(default_factory=lambda: LifecyclePolicy(()))
    welcome_credit: WelcomeCredit | None = None  # granted to every new org (pricing.credits)

    def plan_intervals(self, plan: str) -> tuple[Interval, ...]:
        raw = self._plan(plan)
        seats = raw.get("seat_unit_amount")
        if not seats:
            return (Interval.MONTH,)
        return tuple(Interval(key) for key in seats)

    def plan_display_name(self, plan: str) -> str:
        return str(self._plan(plan).get("display_name", plan))

    def terms(
        self,
        plan: str,
        interval: Interval | str | None = None,
        org_id: str | None = None,
        at: datetime | None = None,
    ) -> Terms:
        """Resolve the terms of `plan`, with `org_id`'s contract when the book has one on that
        plan (SPEC §10: the org may sit on any plan; the contract applies while it is on the
        contract's plan). `at` given, a contract's `effective_at` after it does not apply yet."""
        contract = self.contracts.get(org_id) if org_id is not None else None
        if contract is not None and (
            contract["plan"] != plan or (at is not None and at < _effective_at(contract))
        ):
            contract = None
        raw = _merge_plan(self._plan(plan), contract)
        return _build_terms(self, plan, raw, interval, org_id if contract else None)

    def is_contract_move(self, org_id: str, plan: str, at: datetime) -> bool:
        """Whether `plan` at `at` puts the org on its negotiated contract (always immediate)."""
        contract = self.contracts.get(org_id)
        return contract is not None and contract["plan"] == plan and at >= _effective_at(contract)

    def contract_plan(self, org_id: str) -> str | None:
        contract = self.contracts.get(org_id)
        return None if contract is None else str(contract["plan"])

    def _plan(self, plan: str) -> Mapping[str, Any]:
        try:
            return self.plans[plan]
        except KeyError:
            known = ", ".join(sorted(self.plans))
            raise UnknownTermsError(
                f"unknown plan {plan!r} in book {self.name!r} (plans: {known})"
            ) from None


def _effective_at(contract: Mapping[str, Any]) -> datetime:
    effective = contract.get("effective_at")
    return effective if isinstance(effective, datetime) else datetime.min.replace(tzinfo=UTC)


# --------------------------------------------------------------------------- loading


def resolve_book_path(name_or_path: str | Path) -> Path:
    """A bundled book's name (`devtools`, `zenaton`) or a path to a TOML file."""
    candidate = Path(name_or_path)
    if candidate.suffix == ".toml" or candidate.exists():
        return candidate
    bundled = BOOKS_DIR / f"{name_or_path}.toml"
    if not bundled.exists():
        known = ", ".join(sorted(p.stem for p in BOOKS_DIR.glob("*.toml")))
        raise UnknownTermsError(f"unknown price book {str(name_or_path)!r} (bundled: {known})")
    return bundled


def load_book(name_or_path: str | Path = DEFAULT_BOOK) -> PriceBook:
    """Load and validate a price book; raises PriceBookError naming file, key and problem.

    A book is parsed once per file content: the same text gives the same (frozen) book, and
    every service of every job asks for it."""
    path = resolve_book_path(name_or_path)
    source = str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise PriceBookError(source, [("(file)", "file not found")]) from None
    except UnicodeDecodeError as exc:
        problem = f"not UTF-8 text (byte 0x{exc.object[exc.start]:02x} at offset {exc.start})"
        raise PriceBookError(source, [("(file)", problem)]) from None
    except (OSError, ValueError) as exc:  # a directory, no permission, a NUL in the path
        problem = f"cannot be read: {exc.strerror if isinstance(exc, OSError) else exc}"
        raise PriceBookError(source, [("(file)", problem)]) from None
    return _parsed_book(text, source)


@functools.lru_cache(maxsize=64)
def _parsed_book(text: str, source: str) -> PriceBook:
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise PriceBookError(source, [("(syntax)", str(exc))]) from None
    return parse_book(data, source)


def parse_book(data: Mapping[str, Any], source: str) -> PriceBook:
    """Validate a parsed TOML document; every problem is collected before raising."""
    v = Validator()
    v.keys(data, "", _BOOK_KEYS)
    name = v.string(data, "", "name")
    currency = v.string(data, "", "currency")
    if currency is not None and (
        len(currency) != 3 or not currency.isalpha() or currency != currency.lower()
    ):
        v.problem("currency", "must be a lowercase ISO 4217 code such as 'usd'")
    seat_policy = _parse_seat_policy(v, data.get("seat_policy", {}))
    meter_definitions = _parse_meter_definitions(v, data.get("meters"))
    plans_raw = data.get("plans")
    plans: dict[str, Mapping[str, Any]] = {}
    if not isinstance(plans_raw, dict) or not plans_raw:
        v.problem("plans", "at least one [plans.NAME] table is required")
    else:
        plans = {
            plan: raw
            for plan, raw in plans_raw.items()
            if v.plan_table(raw, f"plans.{plan}", meter_definitions, is_contract=False)
        }
    default_plan = data.get("default_plan", next(iter(plans), ""))
    if plans and default_plan not in plans:
        v.problem("default_plan", f"{default_plan!r} is not one of the book's plans")
    contracts = _parse_contracts(v, data.get("contracts", {}), plans, meter_definitions)
    lifecycle = parse_lifecycle(v, data.get("lifecycle", {}), list(plans))
    welcome_credit = parse_welcome_credit(v, data.get(WELCOME_CREDIT))
    if v.problems:
        raise PriceBookError(source, v.problems)
    assert name is not None
    assert currency is not None
    book = PriceBook(
        name=name,
        currency=currency,
        source=source,
        default_plan=str(default_plan),
        seat_policy=seat_policy,
        meter_definitions=MappingProxyType(meter_definitions),
        plans=MappingProxyType(plans),
        contracts=MappingProxyType(contracts),
        lifecycle=lifecycle,
        welcome_credit=welcome_credit,
    )
    # Resolve every plan/interval and contract once so a book that loads always prices.
    for plan in plans:
        for interval in book.plan_intervals(plan):
            book.terms(plan, interval)
    for org_id, raw in contracts.items():
        book.terms(str(raw["plan"]), raw.get("interval"), org_id)
    examples = parse_examples(v, data.get("examples", []), book)
    if v.problems:
        raise PriceBookError(source, v.problems)
    return replace(book, examples=examples)


# --------------------------------------------------------------------------- validation


def _parse_contracts(
    v: Validator,
    raw_contracts: object,
    plans: Mapping[str, Mapping[str, Any]],
    meter_definitions: Mapping[Meter, MeterDefinition],
) -> dict[str, Mapping[str, Any]]:
    """The valid `[contracts.ORG_ID]` tables: each names one of the book's plans and, with an
    interval, one its seats are priced in."""
    contracts: dict[str, Mapping[str, Any]] = {}
    if not isinstance(raw_contracts, dict):
        v.problem("contracts", "must be a table of [contracts.ORG_ID] tables")
        return contracts
    for org_id, raw in raw_contracts.items():
        key = f"contracts.{org_id}"
        if not isinstance(raw, dict):
            v.problem(key, "must be a table")
            continue
        plan = raw.get("plan")
        if plan not in plans:
            v.problem(f"{key}.plan", f"{plan!r} is not one of the book's plans")
            continue
        if not v.plan_table(raw, key, meter_definitions, is_contract=True):
            continue
        effective = raw.get("effective_at")
        if effective is not None and not (
            isinstance(effective, datetime) and effective.tzinfo is not None
        ):
            v.problem(
                f"{key}.effective_at", "must be a TOML offset date-time, e.g. 2027-01-01T00:00:00Z"
            )
            continue
        merged = _merge_plan(plans[str(plan)], raw)
        interval = raw.get("interval")
        seats = merged.get("seat_unit_amount") or {}
        if interval is not None and seats and interval not in seats:
            v.problem(
                f"{key}.interval",
                f"{interval!r} has no seat price in plan {plan!r} or the contract",
            )
        contracts[str(org_id)] = raw
    return contracts


def _parse_seat_policy(v: Validator, raw: object) -> SeatPolicy:
    if not isinstance(raw, dict):
        v.problem("seat_policy", "must be a table")
        return SeatPolicy()
    v.keys(raw, "seat_policy", {"increase", "decrease"})
    increase = raw.get("increase", SeatIncrease.PRORATE.value)
    decrease = raw.get("decrease", SeatDecrease.AT_RENEWAL.value)
    if increase not in set(SeatIncrease):
        v.problem("seat_policy.increase", "must be 'prorate' or 'next_term'")
        increase = SeatIncrease.PRORATE.value
    if decrease not in set(SeatDecrease):
        v.problem("seat_policy.decrease", "must be 'at_renewal' or 'immediate'")
        decrease = SeatDecrease.AT_RENEWAL.value
    return SeatPolicy(SeatIncrease(increase), SeatDecrease(decrease))


def _parse_meter_definitions(v: Validator, raw: object) -> dict[Meter, MeterDefinition]:
    result: dict[Meter, MeterDefinition] = {}
    if not isinstance(raw, dict) or not raw:
        v.problem("meters", "at least one [meters.CODE] table is required")
        return result
    for code, table in raw.items():
        key = f"meters.{code}"
        if code not in set(Meter):
            v.problem(key, f"unknown meter code (known: {', '.join(m.value for m in Meter)})")
            continue
        if not isinstance(table, dict):
            v.problem(key, "must be a table")
            continue
        v.keys(table, key, {"display_name", "unit"})
        display = v.string(table, key, "display_name")
        unit = v.string(table, key, "unit")
        if display and unit:
            result[Meter(code)] = MeterDefinition(Meter(code), display, unit)
    return result


# --------------------------------------------------------------------------- resolution


def _merge_plan(plan: Mapping[str, Any], contract: Mapping[str, Any] | None) -> dict[str, Any]:
    """Overlay a contract on its plan: scalar values replace, meter tables merge per meter."""
    merged = dict(plan)
    if contract is None:
        return merged
    for key in ("minimum_amount",):
        if key in contract:
            merged[key] = contract[key]
    if "seat_unit_amount" in contract:
        seats = contract["seat_unit_amount"]
        if isinstance(seats, int):
            interval = contract.get("interval") or next(
                iter(plan.get("seat_unit_amount") or {"year": 0})
            )
            merged["seat_unit_amount"] = {interval: seats}
        else:
            merged["seat_unit_amount"] = dict(seats)
    meters = {code: dict(price) for code, price in plan.get("meters", {}).items()}
    for code, override in contract.get("meters", {}).items():
        base = meters.get(code, {})
        if "tiers" in override:
            base = {
                k: val for k, val in base.items() if k not in ("included", "unit_amount_decimal")
            }
        elif base.get("tiers") is not None:
            base = {k: val for k, val in base.items() if k != "tiers"}
        meters[code] = {**base, **override}
    merged["meters"] = meters
    merged["quotas"] = {**plan.get("quotas", {}), **contract.get("quotas", {})}
    return merged


def _meter_price(meter: Meter, raw: Mapping[str, Any]) -> MeterPrice:
    per = int(raw.get("per", 1))
    if "tiers" in raw:
        tiers = tuple(
            Tier(
                up_to=None if tier["up_to"] == "inf" else int(tier["up_to"]),
                unit_amount_decimal=parse_decimal(tier["unit_amount_decimal"]),
                flat_amount=int(tier.get("flat_amount", 0)),
            )
            for tier in raw["tiers"]
        )
        return MeterPrice(meter, tiers, per)
    included = int(raw.get("included", 0))
    unit = parse_decimal(raw.get("unit_amount_decimal", 0))
    paid = Tier(up_to=None, unit_amount_decimal=unit)
    tiers = (Tier(up_to=included, unit_amount_decimal=Decimal(0)), paid) if included else (paid,)
    return MeterPrice(meter, tiers, per)


def _build_terms(
    book: PriceBook,
    plan: str,
    raw: Mapping[str, Any],
    interval: Interval | str | None,
    contract_org: str | None,
) -> Terms:
    seats: Mapping[str, int] = raw.get("seat_unit_amount") or {}
    contract = book.contracts.get(contract_org) if contract_org else None
    wanted = interval or (contract or {}).get("interval") or next(iter(seats), Interval.MONTH)
    if wanted not in set(Interval):
        raise UnknownTermsError(f"unknown interval {wanted!r} (allowed: month, year)")
    resolved = Interval(wanted)
    if seats and resolved.value not in seats:
        offered = ", ".join(seats)
        raise UnknownTermsError(
            f"plan {plan!r} in book {book.name!r} is not offered with interval "
            f"{resolved.value!r} (offered: {offered})"
        )
    meters = {
        Meter(code): _meter_price(Meter(code), price)
        for code, price in raw.get("meters", {}).items()
    }
    quotas: dict[Quota, QuotaLimit] = {}
    for name, value in raw.get("quotas", {}).items():
        table = value if isinstance(value, dict) else {"limit": value}
        limit = table["limit"]
        quotas[Quota(name)] = QuotaLimit(
            Quota(name),
            None if limit == "unlimited" else int(limit),
            QuotaMode(table.get("mode", "hard")),
        )
    return Terms(
        book=book.name,
        plan=plan,
        interval=resolved,
        currency=book.currency,
        seat_unit_amount=seats.get(resolved.value) if seats else None,
        meters=MappingProxyType(meters),
        minimum_amount=int(raw.get("minimum_amount", 0)),
        quotas=MappingProxyType(quotas),
        seat_policy=book.seat_policy,
        contract_org=contract_org,
    )
