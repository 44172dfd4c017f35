"""The invoice mirror: a later state is never overwritten by an earlier one, and the push trusts
a mirrored answer only while Stripe cannot have finalized the invoice behind its back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from sqlalchemy.engine import Engine
from sqlmodel import Session

from billing.core.periods import Period
from billing.stripe_gateway.records import StripeInvoice, StripeInvoiceLine
from billing.usage.invoice_mirror import mirrored_periods, upsert_invoices
from models.db import unit_of_work
from models.invoice_mirror import MirrorSource, StripeInvoiceMirror, StripeInvoiceSweep

OCT = Period(datetime(2026, 10, 1, tzinfo=UTC), datetime(2026, 11, 1, tzinfo=UTC))
END = OCT.period_end
SUB = "sub_1"
ITEM = "si_meter"


def invoice(status: str, *, created_at: datetime = END, complete_id: str = "in_1") -> StripeInvoice:
    line = StripeInvoiceLine(
        stripe_invoice_line_id="il_1",
        amount=1234,
        currency="usd",
        description="Copilot messages",
        quantity_decimal=Decimal("617.5"),
        stripe_price_id="price_m",
        proration=False,
        stripe_subscription_item_id=ITEM,
        stripe_invoice_item_id=None,
        period_start_at=OCT.period_start,
        period_end_at=OCT.period_end,
    )
    return StripeInvoice(
        stripe_invoice_id=complete_id,
        stripe_customer_id="cus_1",
        stripe_subscription_id=SUB,
        status=status,
        billing_reason="subscription_cycle",
        currency="usd",
        subtotal_amount=1234,
        total_amount=1234,
        amount_due=1234,
        auto_advance=True,
        period_start_at=OCT.period_start,
        period_end_at=OCT.period_end,
        created_at=created_at,
        lines=(line,),
    )


def store(
    engine: Engine,
    inv: StripeInvoice,
    observed_at: datetime,
    *,
    complete: bool = True,
    source: MirrorSource = MirrorSource.WEBHOOK,
) -> None:
    with unit_of_work(engine) as session:
        upsert_invoices(
            session, [(inv, complete)], source=source, observed_at=observed_at, now=observed_at
        )


def status_of(engine: Engine, stripe_invoice_id: str = "in_1") -> str:
    with Session(engine) as session:
        row = session.get(StripeInvoiceMirror, stripe_invoice_id)
        assert row is not None
        return row.status


def answer(engine: Engine, now: datetime) -> dict[datetime, StripeInvoice] | None:
    with Session(engine) as session:
        return mirrored_periods(session, SUB, {ITEM}, [OCT], now)


def sweep(engine: Engine, started_at: datetime, *, created_from_at: datetime, done: bool) -> None:
    with unit_of_work(engine) as session:
        session.add(
            StripeInvoiceSweep(
                created_from_at=created_from_at,
                started_at=started_at,
                finished_at=started_at if done else None,
            )
        )


def test_a_state_further_along_is_never_replaced_by_an_earlier_one(engine: Engine) -> None:
    store(engine, invoice("open"), END + timedelta(minutes=61))
    # A sweep that listed the draft before the finalization event arrived, written after it.
    store(engine, invoice("draft"), END + timedelta(minutes=70), source=MirrorSource.SWEEP)
    assert status_of(engine) == "open"
    # `paid` moves on even when its event is older than the stored observation.
    store(engine, invoice("paid"), END + timedelta(minutes=60))
    assert status_of(engine) == "paid"
    store(engine, invoice("open"), END + timedelta(minutes=90))
    assert status_of(engine) == "paid"


def test_a_mirrored_draft_is_trusted_only_well_inside_stripes_hour(engine: Engine) -> None:
    store(engine, invoice("draft"), END)
    found = answer(engine, END + timedelta(minutes=10))
    assert found is not None
    assert found[OCT.period_start].status == "draft"
    # Stripe may finalize it from an hour after its creation: past 50 minutes, ask Stripe.
    assert answer(engine, END + timedelta(minutes=49)) is not None
    assert answer(engine, END + timedelta(minutes=50)) is None


def test_a_final_invoice_is_trusted_at_any_age_with_its_lines(engine: Engine) -> None:
    store(engine, invoice("open"), END + timedelta(hours=1))
    found = answer(engine, END + timedelta(days=3))
    assert found is not None
    (line,) = found[OCT.period_start].lines
    assert (line.quantity_decimal, line.amount, line.stripe_subscription_item_id) == (
        Decimal("617.5"),
        1234,
        ITEM,
    )
    assert line.period_start_at == OCT.period_start


@pytest.mark.parametrize(
    ("started_after_end", "created_from_before_end", "done", "now_after_end", "trusted"),
    [
        (timedelta(minutes=5), timedelta(minutes=1), True, timedelta(minutes=10), True),
        (timedelta(minutes=5), timedelta(minutes=1), False, timedelta(minutes=10), False),
        (timedelta(minutes=5), timedelta(minutes=1), True, timedelta(minutes=55), False),
        (timedelta(minutes=-5), timedelta(minutes=10), True, timedelta(minutes=10), False),
        (timedelta(minutes=5), timedelta(0), True, timedelta(minutes=10), False),
        (timedelta(minutes=15), timedelta(days=31), True, timedelta(minutes=10), False),
    ],
    ids=[
        "finished-covering-sweep",
        "unfinished",
        "sweep-too-old",
        "started-before-the-period-ended",
        "listed-too-late-a-start",
        "started-after-now",
    ],
)
def test_no_invoice_is_trusted_only_from_a_recent_finished_sweep_after_the_period_end(
    engine: Engine,
    started_after_end: timedelta,
    created_from_before_end: timedelta,
    done: bool,
    now_after_end: timedelta,
    trusted: bool,
) -> None:
    sweep(
        engine,
        END + started_after_end,
        created_from_at=END - created_from_before_end,
        done=done,
    )
    found = answer(engine, END + now_after_end)
    assert (found == {}) if trusted else (found is None)


def test_an_invoice_whose_lines_were_cut_short_is_not_trusted(engine: Engine) -> None:
    store(engine, invoice("open"), END + timedelta(hours=1), complete=False)
    assert answer(engine, END + timedelta(hours=2)) is None
    # A sweep lists it whole later: trusted from then on.
    store(engine, invoice("open"), END + timedelta(hours=3), source=MirrorSource.SWEEP)
    assert answer(engine, END + timedelta(hours=4)) is not None


def test_a_void_invoice_bills_nothing_and_a_draft_beside_it_is_the_answer(engine: Engine) -> None:
    store(engine, invoice("void", complete_id="in_0"), END + timedelta(minutes=1))
    store(engine, invoice("draft", complete_id="in_1"), END + timedelta(minutes=2))
    found = answer(engine, END + timedelta(minutes=5))
    assert found is not None
    assert found[OCT.period_start].stripe_invoice_id == "in_1"
