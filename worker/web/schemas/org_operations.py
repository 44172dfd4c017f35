"""The operations of the org, credit, status and metrics endpoints (worker/web/orgs.py,
credits.py, status.py, metrics.py), in the table of worker/web/schemas/operations.py's types;
openapi.py describes both tables (kept apart so neither module outgrows the layout limit)."""

from __future__ import annotations

from worker.web.schemas import org_replies as o
from worker.web.schemas.operations import (
    BEARER,
    FORM,
    JSON,
    LOGIN_PAGE,
    SEE_OTHER,
    SESSION,
    TOO_LARGE_FORM,
    UNAUTHENTICATED,
    Operation,
    Reply,
    json_error,
    page,
    path,
    text,
)

SEEDED_ORG = "org_acme"  # the example the documents show (and schemathesis tries first)
ORG_ID = {
    **path("org_id", "The org's id.", {"type": "string", "minLength": 1}),
    "example": SEEDED_ORG,
}
NO_ORG = json_error("No such org in the ledger.")

ORG_OPERATIONS: tuple[Operation, ...] = (
    Operation(
        "get",
        "/metrics",
        "meta",
        "Prometheus metrics",
        description="Backlogs, push lag, held drafts, reconciliations, the close, scheduled "
        "runs (from the database) and task and Stripe counters (from Redis), read at scrape "
        "time. No org data and no login: keep it on the internal network.",
        replies={200: text("The Prometheus text exposition format.")},
    ),
    Operation(
        "get",
        "/status",
        "pages",
        "The worker's status (page)",
        security=(SESSION,),
        replies={
            200: page("The schedule, backlogs, held drafts and the latest close."),
            401: LOGIN_PAGE,
            403: text("A support login: the status view needs an admin token."),
        },
    ),
    Operation(
        "get",
        "/api/status",
        "status",
        "The worker's status",
        description="The object `billing status --json` prints. Admin token.",
        security=(BEARER,),
        replies={
            200: Reply("The status.", {JSON: o.StatusReply}),
            401: UNAUTHENTICATED,
            403: json_error("A support token: the status view needs an admin token."),
        },
    ),
    Operation(
        "get",
        "/orgs/{org_id}",
        "pages",
        "One org (page)",
        description="Plan and term, seats, invoices with their reconciliations, daily usage and "
        "quotas, with links to the Stripe dashboard.",
        security=(SESSION,),
        parameters=(ORG_ID,),
        replies={200: page("The org."), 401: LOGIN_PAGE, 404: page("No such org.")},
    ),
    Operation(
        "get",
        "/api/orgs/{org_id}",
        "orgs",
        "One org: plan, seats, invoices, usage and quotas",
        security=(BEARER,),
        parameters=(ORG_ID,),
        replies={200: Reply("The org.", {JSON: o.OrgReply}), 401: UNAUTHENTICATED, 404: NO_ORG},
    ),
    Operation(
        "get",
        "/api/orgs/{org_id}/credits",
        "orgs",
        "An org's credits and their balances",
        description="The object `billing credit list --json` prints: each grant with what was "
        "applied, what remains and what lapsed, and each credit applied to an invoice.",
        security=(BEARER,),
        parameters=(ORG_ID,),
        replies={
            200: Reply("The credit ledger.", {JSON: o.CreditLedgerReply}),
            401: UNAUTHENTICATED,
            404: NO_ORG,
        },
    ),
    Operation(
        "post",
        "/api/admin/orgs/{org_id}/credits",
        "admin",
        "Grant a goodwill credit now",
        description="As `billing credit grant`: one `credit` event dated now. Sending the same "
        "`id` again is refused (409), never a second credit. Admin token.",
        security=(BEARER,),
        parameters=(ORG_ID,),
        body={JSON: o.CreditGrantBody},
        replies={
            201: Reply("Granted.", {JSON: o.CreditGranted}),
            401: UNAUTHENTICATED,
            403: json_error("A support token: granting a credit needs an admin token."),
            404: Reply("No such org: nothing stored.", {JSON: o.CreditRefusal}),
            409: Reply("The id was granted before: nothing stored.", {JSON: o.CreditRefusal}),
            413: text("The body is over 4 KiB (not read)."),
            422: Reply("A bad or unknown field: nothing stored.", {JSON: o.CreditRefusal}),
        },
    ),
    Operation(
        "post",
        "/api/admin/orgs/{org_id}/subscription",
        "admin",
        "Change an org's plan or cancel its subscription",
        description="As `billing org change|cancel` (SPEC §10): an upgrade now, a downgrade at "
        "the end of the term, a cancellation at term end or now. Admin token.",
        security=(BEARER,),
        parameters=(ORG_ID,),
        body={JSON: o.SubscriptionBody},
        replies={
            201: Reply("Stored: the org's plan ledger.", {JSON: o.SubscriptionChanged}),
            401: UNAUTHENTICATED,
            403: json_error("A support token: changing a subscription needs an admin token."),
            404: json_error("No such org: nothing stored."),
            413: text("The body is over 4 KiB (not read)."),
            422: json_error("A bad or refused field (named): nothing stored."),
        },
    ),
    Operation(
        "post",
        "/admin/orgs/{org_id}/subscription",
        "admin",
        "Change plan or cancel (the org page's forms)",
        description="A cancellation needs the org id typed again in `confirm`.",
        security=(SESSION,),
        parameters=(ORG_ID,),
        body={FORM: o.SubscriptionForm},
        replies={
            303: SEE_OTHER,
            401: LOGIN_PAGE,
            403: text("Cross-site, a stale CSRF token, or a support login."),
            404: text("No such org: nothing stored."),
            413: TOO_LARGE_FORM,
            422: text("A bad or refused field, or no confirmation: nothing stored."),
        },
    ),
)
