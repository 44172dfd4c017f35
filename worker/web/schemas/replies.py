"""The bodies the endpoints answer (and the Stripe event, quota check and forms they take), as the
handlers in worker/web/ build and read them, for GET /openapi.json."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from billing.core.meters import QuotaMode
from billing.reconciliation.match import Status
from worker.web.health import Health


class ErrorReply(BaseModel):
    """Every JSON refusal but the quote API's and the quota check's."""

    error: str = Field(description="What is wrong, naming the field or the header.")


class LineProblem(BaseModel):
    line: int = Field(description="1-based: the event's line, or its index in the array + 1.")
    field: str = Field(description="The event's field, `(json)`, `type` or `body`.")
    message: str


class IngestRefusal(BaseModel):
    """Nothing of the batch was stored; every problem found is listed."""

    error: str
    errors: list[LineProblem]


class IngestResult(BaseModel):
    """Lines stored, and lines already stored before (sent again), per event type."""

    stored: dict[str, int]
    duplicates: dict[str, int]


class StripeEvent(BaseModel):
    """A Stripe event snapshot as Stripe sends it (signed in `Stripe-Signature`)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=255, examples=["evt_1"])
    object: Literal["event"] = "event"
    type: str = Field(min_length=1, examples=["invoice.finalized"])
    created: int = Field(description="Unix seconds.")
    livemode: bool = Field(description="Must be the mode of the configured Stripe key.")
    api_version: str | None = None
    data: dict[str, Any] = Field(description="`object`: the invoice, subscription, ...")


class WebhookReceived(BaseModel):
    received: Literal[True]
    duplicate: bool = Field(description="This event id was received before: nothing to do.")


class StripeThinEvent(BaseModel):
    """A thin (v2) event notification from an event destination (signed in `Stripe-Signature`)."""

    model_config = ConfigDict(extra="allow")

    id: str = Field(min_length=1, max_length=255, examples=["evt_test_1"])
    object: Literal["v2.core.event"] = "v2.core.event"
    type: str = Field(min_length=1, examples=["v1.billing.meter.error_report_triggered"])
    created: str = Field(description="ISO 8601.")
    livemode: bool = Field(description="Must be the mode of the configured Stripe key.")
    related_object: dict[str, Any] | None = Field(
        default=None, description="`id`, `type`, `url` of the meter."
    )


class ThinEventReceived(BaseModel):
    received: Literal[True]
    duplicate: bool = Field(description="This event id was stored before: nothing to do.")
    outcome: Literal["stored", "duplicate", "ignored"] = Field(
        description="`ignored`: not a meter error report."
    )
    rows: int = Field(description="Sample errors stored.")
    linked: int = Field(description="Of them, tied to one of our usage pushes.")


class ResyncAccepted(BaseModel):
    accepted: Literal[True]
    detail: str = Field(description="Which task was enqueued (or run inline).")


class HealthReply(BaseModel):
    status: Health
    database_reachable: bool
    webhook_secret_set: bool
    warnings: list[str]


class Reconciliation(BaseModel):
    """One comparison of one Stripe invoice with the ledger (billing.reconciliation.queries)."""

    id: int
    stripe_invoice_id: str
    stripe_customer_id: str
    org_id: str | None
    invoice_status: str | None
    billing_reason: str | None
    period: str | None = Field(description="`YYYY-MM` for a calendar month.")
    period_start: str | None = Field(json_schema_extra={"format": "date-time"})
    period_end: str | None = Field(json_schema_extra={"format": "date-time"})
    currency: str
    status: Status
    expected_total_amount: int = Field(description="Minor units (cents).")
    stripe_total_amount: int = Field(description="Minor units (cents).")
    trigger: str
    held: bool
    note: str | None
    created_at: str = Field(json_schema_extra={"format": "date-time"})


class ReconciliationLine(BaseModel):
    component: str
    status: str
    expected_quantity: str | None = Field(description="An exact decimal.")
    expected_amount: int | None
    stripe_quantity: str | None = Field(description="An exact decimal.")
    stripe_amount: int | None
    difference_amount: int = Field(description="Stripe's minus the expected, minor units.")
    explanation: str
    trace: Any = Field(description="How the expected side was computed, step by step.")


class ReconciliationDetail(Reconciliation):
    lines: list[ReconciliationLine]


class PriceCheckSummary(BaseModel):
    book: str
    checked_at: str = Field(json_schema_extra={"format": "date-time"})
    verified_count: int
    drift_count: int
    findings: Any


class FilterRefusal(BaseModel):
    error: str
    field: str = Field(description="The query parameter: q, status, org, period or before.")


class ReconciliationList(BaseModel):
    reconciliations: list[Reconciliation] = Field(description="The latest first, one page.")
    next_before: int | None = Field(description="`before` of the next page; null: the last.")
    counts: dict[str, int] = Field(description="The latest result of each invoice, by status.")
    price_check: PriceCheckSummary | None = Field(description="The latest price drift check.")


class QuotaCheck(BaseModel):
    """The body of a quota check (worker/web/quotas.py validates it field by field)."""

    model_config = ConfigDict(
        json_schema_extra={"examples": [{"org": "org_acme", "quota": "tasks_per_month"}]}
    )

    org: str = Field(min_length=1)
    quota: str = Field(min_length=1, description="A quota the org's plan defines.")
    amount: int = Field(default=1, ge=1)
    consume: bool = Field(default=True, description="false: ask without counting.")


class QuotaDecisionReply(BaseModel):
    allowed: bool
    limit: int | None = Field(description="null: unlimited.")
    used: int
    remaining: int | None = Field(description="null: unlimited.")
    mode: QuotaMode


class QuotaError(BaseModel):
    error: str
    field: str | None


class LoginForm(BaseModel):
    token: str = Field(description="A support or admin token.")
    csrf_token: str = Field(description="The form's hidden field (also in a cookie).")
    next: str = Field(default="/", description="A path of this site to go to afterwards.")


class LogoutForm(BaseModel):
    csrf_token: str = Field(description="The session's CSRF token.")


class ResyncForm(BaseModel):
    org: str = Field(min_length=1)
    what: Literal["seats", "usage"]
    back: str = Field(default="/reconciliations", description="A path of this site.")
    csrf_token: str = Field(description="The session's CSRF token.")
