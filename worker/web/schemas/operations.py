"""Every HTTP endpoint of the web app as an OpenAPI operation: method, path, who may call it,
what it takes and every status it can answer (tests/worker/test_openapi.py checks that this
table and the app's routes name the same endpoints)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from billing.core.meters import Meter
from billing.reconciliation.match import Status
from worker.web.schemas import replies as r
from worker.web.schemas.events import batch_type
from worker.web.schemas.quote import QuoteBody, QuoteErrors, QuoteReply

JSON = "application/json"
HTML = "text/html"
TEXT = "text/plain"
JSON_LINES = "application/x-ndjson"
FORM = "application/x-www-form-urlencoded"

BEARER = "bearerToken"
SESSION = "session"
SIGNATURE = "stripeSignature"
SECURITY_SCHEMES: Mapping[str, dict[str, str]] = {
    BEARER: {
        "type": "http",
        "scheme": "bearer",
        "description": "A support or admin token (BILLING_SUPPORT_TOKENS, BILLING_ADMIN_TOKENS).",
    },
    SESSION: {
        "type": "apiKey",
        "in": "cookie",
        "name": "billing_session",
        "description": "The session POST /login opens; its forms also carry `csrf_token` and "
        "must come from this site (Origin or Referer).",
    },
    SIGNATURE: {
        "type": "apiKey",
        "in": "header",
        "name": "Stripe-Signature",
        "description": "Stripe's signature of the raw body with the endpoint's webhook secret.",
    },
}

# A body or an answer by media type: a pydantic model (a reference to its schema), another type
# pydantic describes, a schema written here, or None (no schema).
Content = Mapping[str, Any]


@dataclass(frozen=True)
class Reply:
    description: str
    content: Content = field(default_factory=dict)
    headers: Mapping[str, str] = field(default_factory=dict)  # name: description


@dataclass(frozen=True)
class Operation:
    method: str
    path: str
    tag: str
    summary: str
    replies: Mapping[int, Reply]
    description: str = ""
    security: tuple[str, ...] = ()  # any one of these; empty: public
    optional_security: bool = False  # also answers without credentials
    body: Content | None = None
    parameters: tuple[dict[str, Any], ...] = ()


def query(name: str, description: str, schema: dict[str, Any] | None = None) -> dict[str, Any]:
    return {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": schema or {"type": "string"},
    }


def path(name: str, description: str, schema: dict[str, Any]) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": description,
        "schema": schema,
    }


def json_error(description: str) -> Reply:
    return Reply(description, {JSON: r.ErrorReply})


def page(description: str) -> Reply:
    return Reply(description, {HTML: {"type": "string"}})


def text(description: str) -> Reply:
    return Reply(description, {TEXT: {"type": "string"}})


SEE_OTHER = Reply("Redirected (the form's next page).", headers={"Location": "Where to go."})
TOO_LARGE_FORM = text("The form is over its size limit (not read).")
UNAUTHENTICATED = json_error("No valid bearer token.")
CROSS_SITE = text("Refused: not sent from a page of this site, or a stale CSRF token.")
LOGIN_PAGE = page("Not logged in (or the session's token was revoked): the login form.")
FILTERS = (
    query("q", "Search invoice, customer and org ids, and notes."),
    query("status", "Only this status.", {"enum": [status.value for status in Status]}),
    query("org", "Only this org id."),
    query("period", "Only this period (`YYYY-MM`)."),
    query("before", "The next page: `next_before` of the previous one (a row id)."),
)
ROW_ID = path("id", "The reconciliation's id.", {"type": "integer", "minimum": 1})
EVENTS_DESCRIPTION = (
    "A batch of `billing ingest` events, all or nothing: a JSON array, or JSON Lines (one event "
    "per line). Each event is one of the types below, told apart by `type`. Usage ids make a "
    "resend safe: the same id with the same content is a duplicate, with other content a "
    "conflict (409). Admin token."
)


def _ingest(path_: str, summary: str) -> Operation:
    return Operation(
        "post",
        path_,
        "events",
        summary,
        description=EVENTS_DESCRIPTION,
        security=(BEARER,),
        body={JSON: batch_type(), JSON_LINES: {"type": "string"}},
        replies={
            200: Reply("Stored (and duplicates counted).", {JSON: r.IngestResult}),
            401: UNAUTHENTICATED,
            403: json_error("A support token: ingestion needs an admin token."),
            409: Reply("Every problem is a conflicting usage id.", {JSON: r.IngestRefusal}),
            413: json_error("The body is over 20 MiB: split the batch."),
            422: Reply("Invalid events: each problem by line and field.", {JSON: r.IngestRefusal}),
            503: json_error("Another ingest raced this one: nothing stored, send it again."),
        },
    )


OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/openapi.json",
        "meta",
        "This document",
        replies={200: Reply("OpenAPI 3.1.", {JSON: {"type": "object"}})},
    ),
    _ingest("/api/usage", "Ingest events"),
    _ingest("/api/events", "Ingest events (the same endpoint as /api/usage)"),
    Operation(
        "post",
        "/stripe/webhook",
        "webhook",
        "Receive a Stripe event",
        description="Verified against the raw body, stored once in the inbox, then handled. "
        "A redelivered event id is acknowledged and dropped.",
        security=(SIGNATURE,),
        body={JSON: r.StripeEvent},
        replies={
            200: Reply("Received (or a duplicate).", {JSON: r.WebhookReceived}),
            400: json_error("Invalid signature, or not an event this endpoint takes."),
            413: json_error("The body is over 1 MiB (not read)."),
        },
    ),
    Operation(
        "post",
        "/stripe/thin-events",
        "webhook",
        "Receive a Stripe thin event (meter error reports)",
        description="Verified against the raw body with the event destination's secret; a "
        "`v1.billing.meter.error_report_triggered` or `v1.billing.meter.no_meter_found` event "
        "is fetched from Stripe and stored once, tied to the usage pushes it names.",
        security=(SIGNATURE,),
        body={JSON: r.StripeThinEvent},
        replies={
            200: Reply("Received (or a duplicate, or ignored).", {JSON: r.ThinEventReceived}),
            400: json_error("Invalid signature, or not a thin event this endpoint takes."),
            413: json_error("The body is over 1 MiB (not read)."),
            502: json_error("Stripe could not be read; Stripe delivers the event again."),
        },
    ),
    Operation(
        "post",
        "/api/quote",
        "pricing",
        "Price a quote",
        description="What `billing quote --json` prints, from the same engine. Public and "
        "rate-limited; quoting a contract (`contract`) needs a support or admin token.",
        security=(BEARER,),
        optional_security=True,
        body={JSON: QuoteBody},
        replies={
            200: Reply("The quote.", {JSON: QuoteReply}),
            400: Reply("The body is not a JSON object.", {JSON: QuoteErrors}),
            401: Reply("A contract was asked for without a token.", {JSON: QuoteErrors}),
            413: Reply("The body is over 16 KiB.", {JSON: QuoteErrors}),
            422: Reply("Bad fields, each named.", {JSON: QuoteErrors}),
            429: Reply(
                "Over the rate limit.", {JSON: QuoteErrors}, {"Retry-After": "Seconds to wait."}
            ),
        },
    ),
    Operation(
        "get",
        "/pricing",
        "pricing",
        "The pricing calculator page",
        description="A GET form: book, plan, interval, seats and one quantity per meter code.",
        parameters=(
            query("book", "The price book."),
            query("plan", "The plan."),
            query("interval", "The seats' term.", {"enum": ["month", "year"]}),
            query("seats", "Seats.", {"type": "string", "pattern": "^[0-9]{0,8}$"}),
            *(query(meter.value, "One month's quantity.") for meter in Meter),
            query("form_book", "The book the submitted form was drawn for."),
        ),
        replies={
            200: page("The page, with the quote."),
            400: page("The page, each problem beside its input."),
            429: Reply(
                "Over the rate limit.",
                {HTML: {"type": "string"}},
                {"Retry-After": "Seconds to wait."},
            ),
        },
    ),
    Operation(
        "get",
        "/pricing/formulas",
        "pricing",
        "The formula document of a price book",
        parameters=(
            query("book", "The price book."),
            query("format", "`markdown`, or the page.", {"enum": ["markdown", "html"]}),
        ),
        replies={
            200: Reply("The document.", {HTML: {"type": "string"}, "text/markdown": None}),
            404: text("No such book."),
        },
    ),
    Operation(
        "get",
        "/api/reconciliations",
        "reconciliations",
        "List reconciliations",
        security=(BEARER,),
        parameters=FILTERS,
        replies={
            200: Reply("The list.", {JSON: r.ReconciliationList}),
            400: Reply("A malformed filter (named in `field`).", {JSON: r.FilterRefusal}),
            401: UNAUTHENTICATED,
        },
    ),
    Operation(
        "get",
        "/api/reconciliations/{id}",
        "reconciliations",
        "One reconciliation, line by line",
        security=(BEARER,),
        parameters=(ROW_ID,),
        replies={
            200: Reply("The reconciliation.", {JSON: r.ReconciliationDetail}),
            401: UNAUTHENTICATED,
            404: json_error("No such reconciliation."),
        },
    ),
    Operation(
        "post",
        "/api/quotas/check",
        "quotas",
        "Check (and count) a quota",
        description="Whether the org may use `amount` more of the quota now; counted unless "
        "`consume` is false. Admin token: a consuming check counts usage.",
        security=(BEARER,),
        body={JSON: r.QuotaCheck},
        replies={
            200: Reply("Allowed or denied.", {JSON: r.QuotaDecisionReply}),
            400: Reply("The body is not a JSON object.", {JSON: r.QuotaError}),
            401: UNAUTHENTICATED,
            403: json_error("A support token: quota checks need an admin token."),
            404: Reply("No such org.", {JSON: r.QuotaError}),
            413: Reply("The body is over 16 KiB.", {JSON: r.QuotaError}),
            422: Reply("A bad or unknown field.", {JSON: r.QuotaError}),
        },
    ),
    Operation(
        "post",
        "/api/admin/orgs/{org_id}/resync/{what}",
        "admin",
        "Re-sync an org's seats or usage to Stripe",
        security=(BEARER,),
        parameters=(
            path("org_id", "The org.", {"type": "string", "minLength": 1}),
            path("what", "What to re-sync.", {"enum": ["seats", "usage"]}),
        ),
        replies={
            202: Reply("Enqueued (or run inline).", {JSON: r.ResyncAccepted}),
            401: UNAUTHENTICATED,
            403: json_error("A support token: re-sync needs an admin token."),
            422: json_error("`what` is neither seats nor usage."),
            503: json_error("The task cannot run in this process."),
        },
    ),
    Operation(
        "post",
        "/admin/resync",
        "admin",
        "Re-sync (the reconciliation page's form)",
        security=(SESSION,),
        body={FORM: r.ResyncForm},
        replies={
            303: SEE_OTHER,
            401: LOGIN_PAGE,
            403: text("Cross-site, a stale CSRF token, or a support login."),
            413: TOO_LARGE_FORM,
            422: page("`what` or `org` is wrong: what failed and what to do."),
            502: page("The task raised: what failed and what to do."),
            503: page("The task cannot run in this process: what failed and what to do."),
        },
    ),
    Operation(
        "get",
        "/healthz",
        "meta",
        "Whether this process can serve",
        replies={
            200: Reply("Serving (status ok, or degraded with warnings).", {JSON: r.HealthReply}),
            503: Reply("The database does not answer.", {JSON: r.HealthReply}),
        },
    ),
    Operation("get", "/", "pages", "Home: to the reconciliations", replies={303: SEE_OTHER}),
    Operation(
        "get",
        "/reconciliations",
        "pages",
        "Reconciliations (page)",
        security=(SESSION,),
        parameters=FILTERS,
        replies={
            200: page("The list."),
            400: page("The page, saying which filter is malformed."),
            401: LOGIN_PAGE,
        },
    ),
    Operation(
        "get",
        "/reconciliations/{id}",
        "pages",
        "One reconciliation (page)",
        security=(SESSION,),
        parameters=(ROW_ID,),
        replies={200: page("The reconciliation."), 401: LOGIN_PAGE, 404: page("No such one.")},
    ),
    Operation("get", "/login", "pages", "The login form", replies={200: page("The form.")}),
    Operation(
        "post",
        "/login",
        "pages",
        "Log in with a token",
        body={FORM: r.LoginForm},
        replies={
            303: SEE_OTHER,
            401: page("The token is not valid: the form again."),
            403: Reply(
                "A stale form (the form again), or a cross-site request (text).",
                {HTML: {"type": "string"}, TEXT: {"type": "string"}},
            ),
            413: TOO_LARGE_FORM,
        },
    ),
    Operation(
        "post",
        "/logout",
        "pages",
        "Log out",
        security=(SESSION,),
        optional_security=True,
        body={FORM: r.LogoutForm},
        replies={303: SEE_OTHER, 403: CROSS_SITE, 413: TOO_LARGE_FORM},
    ),
)
