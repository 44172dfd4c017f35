"""The quota check the product calls before starting a task or creating an environment.

`QuotaService.check(org_id, quota, now)` answers with a `QuotaDecision`; the org's limits come
from its price-book terms (plan, then contract overrides). Hard quotas deny, soft ones allow
and record. How each quota is counted:

- `tasks_per_second`: a sliding one-second window in Redis on Redis's clock, one string of
  10 ms buckets under `{org}:tpsw` (`billing.quotas.window`); exact across processes (a unit
  counts for one second and at most 11 ms more, never less).
- `tasks_per_month`: a Redis counter per org and calendar month of `now` (UTC), checkpointed to
  `quota_usage` and re-seeded from it when the key is missing (Redis flushed or restarted).
  Guarantee: `quota_usage.used` never exceeds the true count, and after every consuming check
  that takes the count across a multiple of `checkpoint_units` the stored count is at least
  that multiple (a failed write is logged and caught up by the next); so a lost Redis key
  forgets fewer than `checkpoint_units` units of the month (none with `checkpoint_units=1`,
  which is write-through; none counted before the last `checkpoint_all` run) and never resets
  it to zero, and a seed never double counts (the script installs it at most once). The count
  may run ahead of tasks actually started (an allowed check whose task then fails is still
  counted): it is a limit, not a bill.
- `environments`: the org's live environments in `quota_environments`;
  `environment_created` checks and records one under a per-org lock, `check` only answers
  whether `amount` more would fit (it never consumes).

Support records (`quota_events`): one row per org, quota, month and decision (`denied`, or
`exceeded` for a soft quota allowed past its limit), created by the first such consuming check
of the month and updated by later ones at most once per second per org, quota and decision
(a Redis gate), so a denied burst costs one database write per second, not one per check.
Checks with `consume=False` are questions and record nothing.

Speed: each org's quota is prepared once per month and terms refresh (`_Prepared`: its limit,
its gate and its script call encoded in advance), so a check is a dictionary lookup, one
`EVALSHA` and a `QuotaDecision`.

Rolling deploy from the release that kept the window as a sorted set and a hash (`{org}:tps`,
`{org}:tps:sum`): the new window has a new key, so while workers of both releases serve an
org, each release counts only its own admissions, and the org can be admitted up to twice its
per-second limit in a second (its limit from each release); from the last old worker's stop
the new window alone counts, and the old keys expire two seconds after their last check.
Month counters and gates keep their keys and values: they stay exact through the deploy.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta

import redis
import structlog
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError
from sqlmodel import Session, col, func, select

from billing.core.locks import org_lock
from billing.core.meters import Quota, QuotaMode
from billing.core.periods import Period, month_period_of, require_aware, to_unix
from billing.pricing.book import PriceBookError, QuotaLimit, UnknownTermsError
from billing.pricing.book_cache import BookCache
from billing.quotas import store
from billing.quotas.counters import GATE_MILLISECONDS, MAX_AMOUNT, CheckCall, QuotaCounters
from models.db import unit_of_work
from models.ledger import Org
from models.quota_records import QuotaEnvironment, QuotaEvent, QuotaEventDecision

log = structlog.get_logger(__name__)

DEFAULT_KEY_PREFIX = "billing:quota"
DEFAULT_CHECKPOINT_UNITS = 100
DEFAULT_TERMS_TTL = timedelta(seconds=60)
# The per-second window's key (`billing.quotas.window`); releases before it kept a sorted set
# and a hash under `tps` and `tps:sum` (see the module docstring on a rolling deploy).
WINDOW_KEY_SUFFIX = "tpsw"


class QuotaRequestError(ValueError):
    """A check named an unknown org or quota, or a bad amount; `field` says which input."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        super().__init__(message)


@dataclass(frozen=True)
class QuotaDecision:
    """The answer to one check; `limit` and `remaining` are None when the quota is unlimited.

    `used` includes this check's amount when it was allowed and consumed; otherwise it is the
    usage before the check. `recorded_event` is true when the check was written to
    `quota_events`.
    """

    org_id: str
    quota: Quota
    allowed: bool
    limit: int | None
    used: int
    mode: QuotaMode
    amount: int
    recorded_event: bool = False

    @property
    def remaining(self) -> int | None:
        return None if self.limit is None else max(self.limit - self.used, 0)


@dataclass(frozen=True)
class _Prepared:
    """One org's counted quota from `starts_at` until `ends_at` (its month, or its cached terms,
    ends): the limit, the Redis call and the gate of its decision; `period` for a month's."""

    quota: Quota
    limit: int | None
    mode: QuotaMode
    call: CheckCall
    gate: str
    starts_at: datetime
    ends_at: datetime
    period: Period | None


def _require_amount(amount: object) -> None:
    if isinstance(amount, bool) or not isinstance(amount, int) or amount < 1:
        raise QuotaRequestError("amount", f"amount must be a positive integer, got {amount!r}")
    if amount > MAX_AMOUNT:
        raise QuotaRequestError("amount", f"amount must be at most {MAX_AMOUNT:,}, got {amount:,}")


def parse_quota(name: str) -> Quota:
    """The quota named `name`; QuotaRequestError listing the known ones otherwise."""
    try:
        return Quota(name)
    except ValueError:
        known = ", ".join(q.value for q in Quota)
        raise QuotaRequestError("quota", f"unknown quota {name!r} (quotas: {known})") from None


class QuotaService:
    """Checks and counts quotas for every process alike: counters in Redis, records in SQL."""

    def __init__(
        self,
        client: redis.Redis,
        engine: Engine,
        books: BookCache,
        *,
        key_prefix: str = DEFAULT_KEY_PREFIX,
        checkpoint_units: int = DEFAULT_CHECKPOINT_UNITS,
        terms_ttl: timedelta = DEFAULT_TERMS_TTL,
    ) -> None:
        if checkpoint_units < 1:
            raise ValueError(f"checkpoint_units must be at least 1, got {checkpoint_units}")
        self._redis = client
        self._engine = engine
        self._books = books
        self._prefix = key_prefix
        self._checkpoint_units = checkpoint_units
        self._terms_ttl = terms_ttl
        self._counters = QuotaCounters(client)
        self._months: dict[tuple[int, int], tuple[Period, str]] = {}
        self._prepared: dict[tuple[str, Quota | str], _Prepared] = {}
        self._limits: dict[str, tuple[datetime, dict[Quota, QuotaLimit], str]] = {}

    # ------------------------------------------------------------------ checks

    def check(
        self,
        org_id: str,
        quota: Quota | str,
        now: datetime,
        *,
        amount: int = 1,
        consume: bool = True,
    ) -> QuotaDecision:
        """May `org_id` use `amount` more units of `quota` at `now`? Counts them when allowed
        and `consume` (environments are counted only by `environment_created`)."""
        if now.tzinfo is not UTC:
            now = require_aware(now, "now")
        prepared = self._prepared.get((org_id, quota))
        if prepared is None or not prepared.starts_at <= now < prepared.ends_at:
            named = quota if isinstance(quota, Quota) else parse_quota(quota)
            _require_amount(amount)
            if named is Quota.ENVIRONMENTS:
                return self._check_environments(org_id, amount, now)
            prepared = self._prepare(org_id, named, now)
            self._prepared[org_id, quota] = prepared  # also under the name it was given
        elif type(amount) is not int or not 0 < amount <= MAX_AMOUNT:
            _require_amount(amount)
        call = prepared.call
        reply = self._counters.run(
            call.hot if amount == 1 and consume is True else call.args(amount, bool(consume))
        )
        if reply < 0:
            reply = self._seed(org_id, prepared, amount, bool(consume))
        decision = QuotaDecision(
            org_id,
            prepared.quota,
            bool(reply & 2),
            prepared.limit,
            reply >> 2,
            prepared.mode,
            amount,
        )
        if prepared.period is not None and consume and reply & 2:
            self._checkpoint_crossed(org_id, prepared.period, decision.used, amount, now)
        if reply & 1:
            return self._record_gated(decision, prepared.gate, now)
        return decision

    def _check_environments(self, org_id: str, amount: int, now: datetime) -> QuotaDecision:
        limit = self.limit_of(org_id, Quota.ENVIRONMENTS, now)
        used = self.live_environments(org_id)
        hard = limit.mode is QuotaMode.HARD
        allowed = not hard or limit.limit is None or used + amount <= limit.limit
        return QuotaDecision(
            org_id, Quota.ENVIRONMENTS, allowed, limit.limit, used, limit.mode, amount
        )

    def _prepare(self, org_id: str, quota: Quota, now: datetime) -> _Prepared:
        """The org's counted `quota`, ready to check from `now` until its month or its cached
        terms end (the Redis call encoded once)."""
        prepared = self._prepared.get((org_id, quota))
        if prepared is not None and prepared.starts_at <= now < prepared.ends_at:
            return prepared  # prepared by a check that named it by its enum
        limit = self.limit_of(org_id, quota, now)
        terms_until = self._limits[org_id][0]
        period, label = self._month_of(now)
        hard = limit.mode is QuotaMode.HARD
        # A hard quota is only ever denied, a soft one only ever allowed past its limit.
        kind = QuotaEventDecision.DENIED if hard else QuotaEventDecision.EXCEEDED
        gate = self._gate_key(org_id, quota, kind, label)
        if quota is Quota.TASKS_PER_SECOND:
            key = self._key(org_id, WINDOW_KEY_SUFFIX)
            call = self._counters.window_call(key, gate, limit.limit, hard=hard)
        else:
            key = self._key(org_id, f"tpm:{label}")
            call = self._counters.month_call(key, gate, limit.limit, hard=hard)
        prepared = _Prepared(
            quota=quota,
            limit=limit.limit,
            mode=limit.mode,
            call=call,
            gate=gate,
            starts_at=period.period_start,
            ends_at=min(period.period_end, terms_until),
            period=period if quota is Quota.TASKS_PER_MONTH else None,
        )
        self._prepared[org_id, quota] = prepared
        return prepared

    def _month_of(self, now: datetime) -> tuple[Period, str]:
        """The calendar month of `now` (UTC) and its label, computed once per month."""
        month = self._months.get((now.year, now.month))
        if month is None:
            period = month_period_of(now)
            month = self._months[now.year, now.month] = (period, period.label())
        return month

    def limit_of(self, org_id: str, quota: Quota, now: datetime) -> QuotaLimit:
        """The org's limit for `quota` from its current terms (cached for `terms_ttl` of `now`)."""
        cached = self._limits.get(org_id)
        if cached is None or now >= cached[0]:
            limits, where = self._load_limits(org_id)
            cached = (now + self._terms_ttl, limits, where)
            self._limits[org_id] = cached
        _, limits, where = cached
        if quota not in limits:
            raise QuotaRequestError("quota", f"org {org_id!r} ({where}) has no {quota.value} quota")
        return limits[quota]

    def _load_limits(self, org_id: str) -> tuple[dict[Quota, QuotaLimit], str]:
        with Session(self._engine) as session:
            org = session.get(Org, org_id)
        if org is None:
            raise QuotaRequestError("org", f"unknown org {org_id!r}")
        try:
            terms = self._books.terms(org.book, org.plan, org.interval, org_id)
        except (UnknownTermsError, PriceBookError) as exc:
            raise QuotaRequestError("org", f"org {org_id!r}: {exc}") from None
        return dict(terms.quotas), f"book {org.book!r}, plan {org.plan!r}"

    # ------------------------------------------------------------------ monthly counts

    def _seed(self, org_id: str, prepared: _Prepared, amount: int, consume: bool) -> int:
        """Check again, installing the month's stored count in the missing Redis key."""
        period = prepared.period
        assert period is not None
        seed = self.stored_usage(org_id, Quota.TASKS_PER_MONTH, period)
        log.info("quota.counter_seeded", org_id=org_id, quota=prepared.quota.value, used=seed)
        reply = self._counters.run(
            prepared.call.seeding(amount, consume, seed, to_unix(period.period_end))
        )
        assert reply >= 0
        return reply

    def _checkpoint_crossed(
        self, org_id: str, period: Period, used: int, amount: int, now: datetime
    ) -> None:
        """Store the month's count when this admitted check took it across a multiple of
        `checkpoint_units`."""
        units = self._checkpoint_units
        if used // units > (used - amount) // units:
            try:
                self._checkpoint(org_id, Quota.TASKS_PER_MONTH, period, used, now)
            except SQLAlchemyError:
                # The check stands (Redis counted it); the next checkpoint catches up.
                log.exception("quota.checkpoint_failed", org_id=org_id, used=used)

    def checkpoint_all(self, now: datetime) -> int:
        """Store every Redis monthly counter of `now`'s month; returns how many were stored.

        For a periodic task: after it runs, a lost Redis key forgets only what was counted
        since (and still fewer than `checkpoint_units` units).
        """
        period = month_period_of(require_aware(now, "now"))
        head, tail = f"{self._prefix}:{{", f"}}:tpm:{period.label()}"
        stored = 0
        for raw_key in self._redis.scan_iter(match=f"{head}*{tail}", count=1_000):
            key = raw_key.decode() if isinstance(raw_key, bytes) else str(raw_key)
            value = self._redis.get(key)
            if value is None or not key.startswith(head) or not key.endswith(tail):
                continue
            org_id = key[len(head) : -len(tail)]
            self._checkpoint(org_id, Quota.TASKS_PER_MONTH, period, int(value), now)
            stored += 1
        log.info("quota.counters_checkpointed", period=period.label(), counters=stored)
        return stored

    def stored_usage(self, org_id: str, quota: Quota, period: Period) -> int:
        """The checkpointed count of `quota` for the org and period (0 when none)."""
        return store.stored_usage(self._engine, org_id, quota, period)

    def _checkpoint(
        self, org_id: str, quota: Quota, period: Period, used: int, now: datetime
    ) -> None:
        store.store_usage(self._engine, org_id, quota, period, used, now)

    # ------------------------------------------------------------------ environments

    def live_environments(self, org_id: str) -> int:
        with Session(self._engine) as session:
            return int(
                session.exec(
                    select(func.count()).where(
                        QuotaEnvironment.org_id == org_id,
                        col(QuotaEnvironment.deleted_at).is_(None),
                    )
                ).one()
            )

    def environment_created(self, org_id: str, environment_id: str, now: datetime) -> QuotaDecision:
        """Check the environments quota and, when allowed, count `environment_id` as live.

        Idempotent: an environment already live is allowed again without counting twice. A
        per-org Redis lock makes check-and-insert atomic across processes.
        """
        now = require_aware(now, "now")
        if not environment_id:
            raise QuotaRequestError("environment_id", "environment_id must be a non-empty string")
        limit = self.limit_of(org_id, Quota.ENVIRONMENTS, now)
        hard = limit.mode is QuotaMode.HARD
        with (
            org_lock(self._redis, "quota-environments", org_id, timeout_seconds=30),
            unit_of_work(self._engine) as session,
        ):
            row = session.exec(
                select(QuotaEnvironment).where(
                    QuotaEnvironment.org_id == org_id,
                    QuotaEnvironment.environment_id == environment_id,
                )
            ).first()
            live = self._live_in(session, org_id)
            if row is not None and row.deleted_at is None:
                return QuotaDecision(
                    org_id, Quota.ENVIRONMENTS, True, limit.limit, live, limit.mode, 1
                )
            allowed = not hard or limit.limit is None or live + 1 <= limit.limit
            if allowed:
                if row is None:
                    session.add(
                        QuotaEnvironment(
                            org_id=org_id, environment_id=environment_id, created_at=now
                        )
                    )
                else:
                    row.created_at, row.deleted_at = now, None
                    session.add(row)
                live += 1
        decision = QuotaDecision(
            org_id, Quota.ENVIRONMENTS, allowed, limit.limit, live, limit.mode, 1
        )
        log.info(
            "quota.environment_created" if allowed else "quota.environment_denied",
            org_id=org_id,
            environment_id=environment_id,
            live=live,
        )
        return self._maybe_record(decision, now)

    def environment_deleted(self, org_id: str, environment_id: str, now: datetime) -> bool:
        """Stop counting `environment_id`; False when it was not live (idempotent)."""
        now = require_aware(now, "now")
        with unit_of_work(self._engine) as session:
            row = session.exec(
                select(QuotaEnvironment).where(
                    QuotaEnvironment.org_id == org_id,
                    QuotaEnvironment.environment_id == environment_id,
                    col(QuotaEnvironment.deleted_at).is_(None),
                )
            ).first()
            if row is None:
                return False
            row.deleted_at = now
            session.add(row)
        log.info("quota.environment_deleted", org_id=org_id, environment_id=environment_id)
        return True

    @staticmethod
    def _live_in(session: Session, org_id: str) -> int:
        return int(
            session.exec(
                select(func.count()).where(
                    QuotaEnvironment.org_id == org_id,
                    col(QuotaEnvironment.deleted_at).is_(None),
                )
            ).one()
        )

    # ------------------------------------------------------------------ support records

    def events(self, org_id: str | None = None) -> Sequence[QuotaEvent]:
        """Recorded denials and crossings, newest first (optionally of one org)."""
        return store.events(self._engine, org_id)

    def _maybe_record(self, decision: QuotaDecision, now: datetime) -> QuotaDecision:
        """Record a consuming environments check that was denied or crossed the limit, at most
        once a second (the counters' script opens the gates of the other quotas itself)."""
        if decision.limit is None:
            return decision
        if not decision.allowed:
            kind = QuotaEventDecision.DENIED
        elif decision.used > decision.limit:
            kind = QuotaEventDecision.EXCEEDED
        else:
            return decision
        label = self._month_of(now)[1]
        gate = self._gate_key(decision.org_id, decision.quota, kind, label)
        if not self._redis.set(gate, b"1", nx=True, px=GATE_MILLISECONDS):
            return decision
        return self._record_gated(decision, gate, now)

    def _record_gated(self, decision: QuotaDecision, gate: str, now: datetime) -> QuotaDecision:
        """Write a consuming check that opened its gate `gate` to `quota_events`; the gate is
        closed again when the write fails, so the next such check tries again."""
        assert decision.limit is not None
        allowed = decision.allowed
        kind = QuotaEventDecision.EXCEEDED if allowed else QuotaEventDecision.DENIED
        try:
            store.record_event(
                self._engine,
                org_id=decision.org_id,
                quota=decision.quota,
                kind=kind,
                mode=decision.mode,
                limit=decision.limit,
                used=decision.used,
                amount=decision.amount,
                period=month_period_of(now),
                now=now,
            )
        except SQLAlchemyError:
            self._redis.delete(gate)
            log.exception("quota.event_record_failed", org_id=decision.org_id)
            return decision
        log.info(
            "quota.event_recorded",
            org_id=decision.org_id,
            quota=decision.quota.value,
            decision=kind.value,
            used=decision.used,
            limit=decision.limit,
        )
        return replace(decision, recorded_event=True)

    def _gate_key(self, org_id: str, quota: Quota, kind: QuotaEventDecision, label: str) -> str:
        """The key that lets one such decision a second into `quota_events` (month `label`)."""
        return self._key(org_id, f"gate:{quota.value}:{kind.value}:{label}")

    def _key(self, org_id: str, suffix: str) -> str:
        # The braces are a Redis Cluster hash tag: all of an org's keys share one slot.
        return f"{self._prefix}:{{{org_id}}}:{suffix}"
