"""Sending planned meter events to Stripe (one org's push, or a chunk's), each recorded before and
after.

Two transports (`Settings.stripe_meter_transport`):

- `stream` (the default): the meter events go to Stripe's v2 meter event stream
  (billing.stripe_gateway.meter_stream) in requests of up to 100 events, each carrying whole orgs'
  events (one org's push is one request; a month-close chunk of 50 orgs a few). All rows are
  committed `started` before the first request; each request's rows are marked `done` ("accepted
  by the meter event stream") once it is accepted, or `failed` with Stripe's error. The stream
  validates asynchronously, so acceptance is not proof: Stripe's meter event summaries are
  (`push_org(verify=True)`, and the reconciliation). A retried request carries the same
  identifiers and values, which Stripe drops as repeats within 24 h, and the `last` formula makes
  a later repeat harmless. A transient error leaves the rows `started` for the next run to send
  again unchanged.
- `v1`: one `POST /v1/billing/meter_events` per event, the fallback. It is also used for an org
  whenever the account refuses a meter event session (`MeterStreamUnavailable`: 401, 403 or 404
  on the session, e.g. an account or restricted key without v2 access; the gateway remembers
  the refusal for five minutes). Stripe's error code for an identifier it already has is not
  documented (SPEC §4.1), so a 400 is never read as "delivered" by its code: the meter's summary
  for the period is read, and the event counts as delivered only if Stripe's value for the
  period equals the value sent; otherwise the row is `failed` with Stripe's error. (While
  Stripe is still aggregating, a delivered repeat can read as failed: the next push then sends
  the same total as a new revision, which the `last` formula makes harmless.)
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal
from typing import Literal, Protocol

import structlog
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.alerts.triggers import note_failed_write
from billing.core.components import MINIMUM_TOPUP
from billing.core.errors import MeterStreamUnavailable, PermanentBillingError
from billing.core.keys import event_name, meter_key
from billing.core.locks import confirming_only
from billing.core.meters import Meter
from billing.core.periods import Period
from billing.ledger.stripe_writes import mark, write_to_stripe
from billing.pricing.book import Terms
from billing.pricing.charge import meter_value
from billing.setup.catalog import catalog_entries
from billing.stripe_gateway.meter_stream import STREAM_BATCH
from billing.stripe_gateway.ports import MeterSummaryReader
from billing.stripe_gateway.records import (
    MeterEventInput,
    StripeMeterEvent,
)
from billing.usage.periods import ceil_to
from billing.usage.push_results import MeterPushAction, MeterPushResult, meter_result
from models.push_records import UsagePeriod, UsagePush
from models.stripe_records import WriteStatus

log = structlog.get_logger(__name__)

MeterTransport = Literal["stream", "v1"]
STREAM_NOTE = "accepted by the meter event stream"
_HTTP_BAD_REQUEST = 400


class MeterGateway(MeterSummaryReader, Protocol):
    """The meter calls of the Stripe gateway."""

    def create_meter_event(
        self,
        *,
        event_name: str,
        stripe_customer_id: str,
        value: int | Decimal,
        timestamp_at: datetime,
        identifier: str,
        idempotency_key: str | None = None,
    ) -> StripeMeterEvent: ...

    def send_meter_events(self, events: Sequence[MeterEventInput]) -> None: ...


@dataclass(frozen=True)
class MeterSend:
    """A meter event to send: its period state and its `usage_pushes` row."""

    meter: str  # a Meter, or MINIMUM_TOPUP (billing.usage.topup)
    period: Period
    state: UsagePeriod
    push: UsagePush


@dataclass(frozen=True)
class OrgMeters:
    """Whose meter events these are."""

    org_id: str
    stripe_customer_id: str
    terms: Terms
    now: datetime


class MeterSender:
    """`send(session, org, sends)`: the org's planned meter events to Stripe, one result each."""

    def __init__(self, engine: Engine, gateway: MeterGateway, transport: MeterTransport) -> None:
        self.engine = engine
        self.gateway = gateway
        self.transport = transport

    def send(
        self, session: Session, org: OrgMeters, sends: Sequence[MeterSend]
    ) -> list[MeterPushResult]:
        return self.send_many(session, [(org, sends)])[0]

    def send_many(
        self, session: Session, planned: Sequence[tuple[OrgMeters, Sequence[MeterSend]]]
    ) -> list[list[MeterPushResult]]:
        """The meter events of several orgs' pushes, one result list per org. All rows are
        committed `started` first (with whatever else the pushes planned); on the stream, each
        request then carries whole orgs' events, up to STREAM_BATCH of them (an org with more
        is split)."""
        results: list[list[MeterPushResult]] = [[] for _ in planned]
        for org, sends in planned:
            for send in sends:
                mark(send.push, WriteStatus.STARTED, org.now)
                session.add(send.push)
        session.commit()  # every row the pushes planned recorded before the first request
        if self.transport != "stream":
            for index, (org, sends) in enumerate(planned):
                results[index] = [self._v1(session, org, send) for send in sends]
            return results
        for batch in _batches(planned, STREAM_BATCH):
            # The request's writes confirm the locks of its orgs (of a chunk that holds more).
            with confirming_only({planned[index][0].org_id for index, _ in batch}):
                sent = self._stream(session, planned, batch)
            for index, batch_results in sent.items():
                results[index].extend(batch_results)
        return results

    def summary_value(
        self, org: OrgMeters, meter: str, period_start_at: datetime, period_end_at: datetime
    ) -> Decimal | None:
        """Stripe's aggregated value of the meter for the period (None: no meter in Stripe)."""
        entries = catalog_entries(self.engine, [meter_key(org.terms.book, meter)])
        stripe_meter_id = next(iter(entries.values())).stripe_meter_id if entries else None
        if stripe_meter_id is None:
            return None
        summaries = self.gateway.list_meter_event_summaries(
            stripe_meter_id,
            stripe_customer_id=org.stripe_customer_id,
            start_at=period_start_at.replace(second=0, microsecond=0),
            end_at=ceil_to(period_end_at, timedelta(minutes=1)),
        )
        return summaries[0].aggregated_value if summaries else Decimal(0)

    # ------------------------------------------------------------------ stream

    def _stream(
        self,
        session: Session,
        planned: Sequence[tuple[OrgMeters, Sequence[MeterSend]]],
        batch: Sequence[tuple[int, Sequence[MeterSend]]],
    ) -> dict[int, list[MeterPushResult]]:
        """One stream request for a batch (of (org index, sends)), its rows already `started`;
        sent through v1 instead when the account refuses the stream."""
        try:
            self.gateway.send_meter_events(
                [self._input(planned[index][0], send) for index, sends in batch for send in sends]
            )
        except MeterStreamUnavailable as exc:
            log.warning("usage.stream_unavailable", error=str(exc))
            return {
                index: [self._v1(session, planned[index][0], send) for send in sends]
                for index, sends in batch
            }
        except PermanentBillingError as exc:
            failed: dict[int, list[MeterPushResult]] = {}
            for index, sends in batch:
                now = planned[index][0].now
                for send in sends:
                    mark(send.push, WriteStatus.FAILED, now, note=str(exc))
                    note_failed_write(session, send.push, now)
                    session.add(send.push)
                failed[index] = [self._result(s, MeterPushAction.FAILED, str(exc)) for s in sends]
            session.commit()
            return failed
        sent: dict[int, list[MeterPushResult]] = {}
        for index, sends in batch:
            now = planned[index][0].now
            for send in sends:
                mark(send.push, WriteStatus.DONE, now, note=STREAM_NOTE)
                _note_sent(session, send, now)
                session.add(send.push)
            sent[index] = [self._result(send, MeterPushAction.SENT) for send in sends]
        session.commit()
        return sent

    @staticmethod
    def _input(org: OrgMeters, send: MeterSend) -> MeterEventInput:
        return MeterEventInput(
            event_name=event_name(org.terms.book, send.meter),
            stripe_customer_id=org.stripe_customer_id,
            value=meter_value(send.push.quantity, unit_per(org.terms, send.meter)),
            timestamp_at=send.push.event_timestamp_at,
            identifier=send.push.identifier,
        )

    # ------------------------------------------------------------------ v1

    def _v1(self, session: Session, org: OrgMeters, send: MeterSend) -> MeterPushResult:
        """One v1 meter event (its row `started` before, `done` or `failed` after)."""
        event = self._input(org, send)
        outcome = write_to_stripe(
            session,
            send.push,
            org.now,
            lambda: self._create_or_confirm(org, send, event),
            on_done=lambda _: _note_sent(session, send, org.now),
        )
        action = MeterPushAction.FAILED if outcome.error else MeterPushAction.SENT
        return self._result(send, action, outcome.error)

    def _create_or_confirm(
        self, org: OrgMeters, send: MeterSend, event: MeterEventInput
    ) -> StripeMeterEvent | None:
        """Create the event; after a 400, None if Stripe's summary already holds its value."""
        try:
            return self.gateway.create_meter_event(
                event_name=event.event_name,
                stripe_customer_id=event.stripe_customer_id,
                value=event.value,
                timestamp_at=event.timestamp_at,
                identifier=event.identifier,
            )
        except PermanentBillingError as exc:
            if exc.http_status != _HTTP_BAD_REQUEST:
                raise
            held = self.summary_value(
                org, send.meter, send.period.period_start, send.period.period_end
            )
            if held is None or held != Decimal(event.value):
                raise
            log.info(
                "usage.confirmed_by_summary",
                org_id=org.org_id,
                meter=send.meter,
                identifier=event.identifier,
                value=str(held),
            )
            return None

    @staticmethod
    def _result(
        send: MeterSend, action: MeterPushAction, error: str | None = None
    ) -> MeterPushResult:
        return meter_result(
            send.meter,
            send.period,
            send.state,
            send.push.quantity,
            action,
            revision=send.push.revision,
            error=error,
        )


def _batches(
    planned: Sequence[tuple[OrgMeters, Sequence[MeterSend]]], size: int
) -> Iterator[list[tuple[int, Sequence[MeterSend]]]]:
    """(org index, sends) groups of at most `size` events, each org's events kept together
    unless they alone are more than `size`."""
    batch: list[tuple[int, Sequence[MeterSend]]] = []
    count = 0
    for index, (_, sends) in enumerate(planned):
        for offset in range(0, len(sends), size):
            part = sends[offset : offset + size]
            if count + len(part) > size:
                yield batch
                batch, count = [], 0
            batch.append((index, part))
            count += len(part)
    if batch:
        yield batch


def unit_per(terms: Terms, meter: str) -> int:
    """How many ledger units one unit of the meter's price is (the top-up's unit is a cent)."""
    return 1 if meter == MINIMUM_TOPUP else terms.meters[Meter(meter)].per


def _note_sent(session: Session, send: MeterSend, now: datetime) -> None:
    state, push = send.state, send.push
    state.sent_quantity = push.quantity
    state.sent_revision = push.revision
    state.sent_at = now
    state.ledger_quantity = push.quantity
    state.updated_at = now
    session.add(state)
