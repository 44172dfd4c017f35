"""The org page (`/orgs/{org_id}`, HTML for a login session) and its JSON (`/api/orgs/{org_id}`).

One page answers "what is this customer on and what were they billed": plan and term with the
plan changes (and what is scheduled), the seat timeline, the credits and their balance, every
invoice with its reconciliation, daily usage of the last and the current period per meter,
quotas for books that have them, and links to the Stripe dashboard (test or live, as the key)
and to each hosted invoice.
"""

from __future__ import annotations

from typing import Any

from markupsafe import Markup
from sqlmodel import Session
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from billing.core.periods import Period, isoformat_z
from billing.ledger.credit_ledger import credit_ledger
from billing.pricing.book_cache import BookCache
from billing.reconciliation.org_summary import OrgSummary, org_summary
from billing.reconciliation.queries import reconciliation_json
from worker.web.auth import bearer_role, cookie_login
from worker.web.charts import daily_bars
from worker.web.common import TEMPLATES, json_error, services_of
from worker.web.login import login_page
from worker.web.services import WebServices
from worker.web.support import page_context

BOOKS = BookCache()  # the bundled price books, read once per process
MAX_ORG_ID_LENGTH = 200  # models.ledger.Org.id


def dashboard_base(livemode: bool) -> str:
    """The Stripe dashboard's address for the key's mode."""
    return "https://dashboard.stripe.com/" + ("" if livemode else "test/")


def summary_json(summary: OrgSummary, livemode: bool) -> dict[str, Any]:
    org, terms = summary.org, summary.terms
    base = dashboard_base(livemode)
    current_term = next(
        (
            t
            for t in summary.seat_terms
            if t.period_start <= summary.current_period.period_start < t.period_end
        ),
        None,
    )
    return {
        "org_id": org.id,
        "book": org.book,
        "plan": org.plan,
        "interval": org.interval,
        "term_start": isoformat_z(org.term_start_at),
        "current_term": None
        if current_term is None
        else {
            "period_start": isoformat_z(current_term.period_start),
            "period_end": isoformat_z(current_term.period_end),
        },
        "currency": terms.currency if terms else "usd",
        "seat_unit_amount": terms.seat_unit_amount if terms else None,
        "minimum_amount": terms.minimum_amount if terms else None,
        "plan_changes": _plan_changes_json(summary),
        "scheduled": summary.scheduled,
        "seat_changes": [
            {"at": isoformat_z(c.at), "seat_count": c.seat_count} for c in summary.seat_changes
        ],
        "stripe": {
            "livemode": livemode,
            "customer_id": summary.stripe_customer_id,
            "subscription_id": summary.stripe_subscription_id,
            "customer_url": f"{base}customers/{summary.stripe_customer_id}"
            if summary.stripe_customer_id
            else None,
            "subscription_url": f"{base}subscriptions/{summary.stripe_subscription_id}"
            if summary.stripe_subscription_id
            else None,
        },
        "invoices": [
            {
                **reconciliation_json(row.reconciliation),
                "number": row.facts.number,
                "hosted_invoice_url": row.facts.hosted_invoice_url,
                "dashboard_url": f"{base}invoices/{row.reconciliation.stripe_invoice_id}",
            }
            for row in summary.invoices
        ],
        "usage": _usage_json(summary),
        "quotas": _quotas_json(summary),
    }


def _plan_changes_json(summary: OrgSummary) -> list[dict[str, Any]]:
    return [
        {
            "at": isoformat_z(c.at),
            "book": c.book,
            "plan": c.plan or None,  # None: canceled from `at`
            "interval": c.interval or None,
            "requested_at": isoformat_z(c.requested_at) if c.requested_at else None,
        }
        for c in summary.plan_changes
    ]


def _usage_json(summary: OrgSummary) -> dict[str, Any]:
    return {
        "last_period": _period(summary.last_period),
        "current_period": _period(summary.current_period),
        "meters": [
            {
                "meter": m.meter,
                "display_name": m.display_name,
                "unit": m.unit,
                "days": {d.isoformat(): str(q) for d, q in sorted(m.days.items())},
            }
            for m in summary.usage
        ],
    }


def _quotas_json(summary: OrgSummary) -> list[dict[str, Any]]:
    return [
        {
            "quota": q.quota,
            "limit": q.limit,
            "mode": q.mode,
            "used": q.used,
            "events": [
                {
                    "decision": e.decision,
                    "first_at": isoformat_z(e.first_at),
                    "last_at": isoformat_z(e.last_at),
                    "occurrence_count": e.occurrence_count,
                }
                for e in q.denied_or_exceeded
            ],
        }
        for q in summary.quotas
    ]


def _period(period: Period) -> dict[str, str]:
    return {"start": isoformat_z(period.period_start), "end": isoformat_z(period.period_end)}


def _load(services: WebServices, org_id: str) -> tuple[OrgSummary, dict[str, Any]] | None:
    if not org_id or len(org_id) > MAX_ORG_ID_LENGTH:
        return None
    with Session(services.engine) as session:
        summary = org_summary(session, org_id, services.clock(), BOOKS)
        if summary is None:
            return None
        data = summary_json(summary, services.stripe_livemode)
        # The credit ledger (issue 14): granted, applied per invoice, remaining, lapsed.
        data["credits"] = credit_ledger(session.connection(), org_id, services.clock()).as_json()
        return summary, data


def _charts(summary: OrgSummary) -> dict[str, Markup]:
    span = Period(summary.last_period.period_start, summary.current_period.period_end)
    boundary = summary.current_period.period_start.date()
    return {
        m.meter: Markup(daily_bars(m.days, span, boundary, m.unit))  # noqa: S704 - built escaped
        for m in summary.usage
    }


async def org_page(request: Request) -> Response:
    services = services_of(request)
    login = await cookie_login(request, services)
    if login is None:
        return login_page(request, 401, "Log in to see orgs.")
    found = await run_in_threadpool(_load, services, request.path_params["org_id"])
    if found is None:
        return TEMPLATES.TemplateResponse(
            request,
            "missing.html",
            {**page_context(login), "what": f"org {request.path_params['org_id']!r}"},
            status_code=404,
        )
    summary, data = found
    return TEMPLATES.TemplateResponse(
        request,
        "org.html",
        {"org": data, "charts": _charts(summary), **page_context(login)},
    )


async def org_json(request: Request) -> Response:
    services = services_of(request)
    if bearer_role(request, services) is None:
        return json_error(401, "authentication required (Authorization: Bearer TOKEN)")
    found = await run_in_threadpool(_load, services, request.path_params["org_id"])
    if found is None:
        return json_error(404, f"no org {request.path_params['org_id']!r} in the ledger")
    return JSONResponse(found[1])


routes = [
    Route("/orgs/{org_id}", org_page, methods=["GET"]),
    Route("/api/orgs/{org_id}", org_json, methods=["GET"]),
]
