"""The JSON of the org, credit and status endpoints (worker/web/orgs.py, credits.py, status.py),
as their builders write it (orgs.summary_json, credit_ledger.CreditLedger.as_json,
status_view.status_json, goodwill.grant_goodwill), for GET /openapi.json."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.config import JsonDict

from billing.ledger.credit_ledger import GrantStatus
from worker.web.schemas.replies import Reconciliation

DATE_TIME: JsonDict = {"format": "date-time"}
Cents = int


class Term(BaseModel):
    period_start: str = Field(json_schema_extra=DATE_TIME)
    period_end: str = Field(json_schema_extra=DATE_TIME)


class PlanChange(BaseModel):
    at: str = Field(json_schema_extra=DATE_TIME)
    book: str
    plan: str
    interval: str | None


class SeatChange(BaseModel):
    at: str = Field(json_schema_extra=DATE_TIME)
    seat_count: int


class StripeLinks(BaseModel):
    livemode: bool = Field(description="The configured Stripe key's mode (the dashboard's).")
    customer_id: str | None
    subscription_id: str | None
    customer_url: str | None
    subscription_url: str | None


class OrgInvoice(Reconciliation):
    """An invoice's latest reconciliation, with Stripe's number and links."""

    number: str | None
    hosted_invoice_url: str | None
    dashboard_url: str


class UsagePeriod(BaseModel):
    start: str = Field(json_schema_extra=DATE_TIME)
    end: str = Field(json_schema_extra=DATE_TIME)


class MeterUsage(BaseModel):
    meter: str
    display_name: str
    unit: str
    days: dict[str, str] = Field(description="Quantity (an exact decimal) by day, `YYYY-MM-DD`.")


class OrgUsage(BaseModel):
    last_period: UsagePeriod
    current_period: UsagePeriod
    meters: list[MeterUsage]


class QuotaEvent(BaseModel):
    decision: str
    first_at: str = Field(json_schema_extra=DATE_TIME)
    last_at: str = Field(json_schema_extra=DATE_TIME)
    occurrence_count: int


class OrgQuota(BaseModel):
    quota: str
    limit: int | None = Field(description="null: unlimited.")
    mode: str
    used: int
    events: list[QuotaEvent] = Field(description="Checks denied or over the limit.")


class OrgReply(BaseModel):
    """What the org is on and what it was billed (worker/web/orgs.py)."""

    org_id: str
    book: str
    plan: str
    interval: str | None
    term_start: str = Field(json_schema_extra=DATE_TIME)
    current_term: Term | None
    currency: str
    seat_unit_amount: Cents | None = Field(description="Minor units (cents).")
    minimum_amount: Cents | None = Field(description="Minor units (cents).")
    plan_changes: list[PlanChange]
    seat_changes: list[SeatChange]
    stripe: StripeLinks
    invoices: list[OrgInvoice]
    usage: OrgUsage
    quotas: list[OrgQuota]


class CreditGrantRow(BaseModel):
    id: str
    amount: Cents
    at: str = Field(json_schema_extra=DATE_TIME)
    expires_at: str | None = Field(json_schema_extra=DATE_TIME)
    reason: str
    applied: Cents
    remaining: Cents
    lapsed: Cents
    status: GrantStatus


class AppliedCreditRow(BaseModel):
    period_start: str = Field(json_schema_extra=DATE_TIME)
    period_end: str = Field(json_schema_extra=DATE_TIME)
    stripe_invoice_id: str
    stripe_invoice_item_id: str | None
    amount: Cents
    charge_amount: Cents
    status: str
    grants: dict[str, Cents] = Field(description="Cents paid by each grant, by grant id.")


class CreditLedgerReply(BaseModel):
    """`billing credit list --json`: the org's grants and their balances now, in cents."""

    org: str
    granted: Cents
    remaining: Cents
    lapsed: Cents
    grants: list[CreditGrantRow]
    applied: list[AppliedCreditRow]


class CreditGrantBody(BaseModel):
    """A goodwill credit granted now (worker/web/credits.py checks it field by field)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "amount": 2500,
                    "reason": "Goodwill for the outage",
                    "expires_at": "2026-12-31T00:00:00Z",
                    "id": "support-ticket-42",
                }
            ]
        },
    )

    amount: int = Field(ge=1, le=2**31 - 1, description="Cents, above 0.")
    reason: str = Field(min_length=1, max_length=200, pattern=r"\S")
    expires_at: str | None = Field(
        default=None, json_schema_extra=DATE_TIME, description="After now; null: never."
    )
    id: str | None = Field(
        default=None,
        min_length=1,
        max_length=200,
        description="Makes a retry safe (default: `support:{org}:{unix now}`).",
    )


class CreditGranted(BaseModel):
    """The credit event stored."""

    id: str
    org: str
    amount: Cents
    at: str = Field(json_schema_extra=DATE_TIME)
    reason: str
    expires_at: str | None = Field(default=None, json_schema_extra=DATE_TIME)


class FieldProblem(BaseModel):
    field: str = Field(description="The request's field: `amount`, `reason`, `org`, `body`, ...")
    message: str


class CreditRefusal(BaseModel):
    """Nothing was stored; every problem is named."""

    error: str
    errors: list[FieldProblem]


class ScheduledTask(BaseModel):
    entry: str
    task: str
    every: str
    last_started_at: str | None = Field(json_schema_extra=DATE_TIME)
    last_finished_at: str | None = Field(json_schema_extra=DATE_TIME)
    last_outcome: str | None
    last_duration_ms: int | None
    last_error: str | None
    runs: int


class Backlogs(BaseModel):
    webhook_unhandled: int
    webhook_stuck: int
    webhook_oldest_age_seconds: int
    outbox_pending: int
    outbox_oldest_age_seconds: int
    pending_seat_windows: int
    alerts_pending: int
    alerts_failed: int


class HeldDraft(BaseModel):
    stripe_invoice_id: str
    org_id: str | None
    status: str
    difference_amount: Cents
    currency: str
    held_since: str = Field(json_schema_extra=DATE_TIME)
    held_seconds: int
    past_grace_period: bool
    reconciliation_id: int | None


class LastClose(BaseModel):
    period: str
    started_at: str = Field(json_schema_extra=DATE_TIME)
    finished_at: str | None = Field(json_schema_extra=DATE_TIME)
    duration_seconds: float | None = Field(description="null: still running.")
    org_count: int
    orgs_done: int
    failed_count: int


class StatusReply(BaseModel):
    """`billing status --json`: the schedule, the backlogs and the latest close."""

    now: str = Field(json_schema_extra=DATE_TIME)
    schedule: list[ScheduledTask]
    backlogs: Backlogs
    push_lag_seconds: dict[str, int] = Field(description="By meter.")
    reconciliations: dict[str, int] = Field(description="Invoices by latest status.")
    held_drafts: list[HeldDraft]
    last_close: LastClose | None


class SubscriptionBody(BaseModel):
    """A plan change or a cancellation (worker/web/subscription.py checks it field by field)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"action": "change", "plan": "free", "interval": "month", "seats": 3},
                {"action": "cancel", "when": "term_end"},
            ]
        },
    )
    action: Literal["change", "cancel"]
    plan: str | None = Field(default=None, description="change: the plan to move to.")
    interval: Literal["month", "year"] | None = None
    book: str | None = None
    seats: int | None = Field(default=None, ge=0)
    when: Literal["term_end", "now"] | None = Field(
        default=None, description="cancel: at the end of the term (default) or now."
    )


class SubscriptionForm(BaseModel):
    """The org page's forms: a change, or a cancellation confirmed by the org id typed again."""

    action: Literal["change", "cancel"]
    csrf_token: str = Field(description="The session's CSRF token.")
    plan: str | None = None
    interval: str | None = None
    seats: str | None = None
    when: Literal["term_end", "now"] | None = None
    confirm: str | None = Field(default=None, description="cancel: the org id, typed again.")


class PlanRow(BaseModel):
    at: str
    book: str
    plan: str | None = Field(description="None: canceled from `at`.")
    interval: str | None
    requested_at: str = Field(description="A change scheduled for a term end: when asked.")


class SubscriptionChanged(BaseModel):
    """The org's plan ledger after the change, and what is scheduled."""

    org: str
    plans: list[PlanRow]
    scheduled: str | None = Field(description='E.g. "Team until 2028-01-01, then Free".')
