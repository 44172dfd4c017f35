"""The gateway's account-wide invoice reads: one page of every invoice created since an instant,
and the invoice a webhook event carries.

A mixin of `StripeGateway` (billing/stripe_gateway/gateway.py), which provides the client and
the paging helpers; kept apart only to keep each module short.

Stripe facts relied on (https://docs.stripe.com/api/invoices/list): `GET /v1/invoices` without
`customer` or `subscription` lists every invoice of the account, newest first, at most 100 a
page, filtered by `created[gte]`; each invoice in a list carries only the first lines of
`lines` (`has_more` says there are more: https://docs.stripe.com/api/invoices/object#invoice_
object-lines), and the rest come from `GET /v1/invoices/{id}/lines`.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import stripe

from billing.stripe_gateway import convert
from billing.stripe_gateway.records import StripeInvoice
from billing.stripe_gateway.webhooks import WebhookEvent, event_object

ACCOUNT_PAGE_SIZE = 100  # Stripe's largest page


@dataclass(frozen=True)
class InvoicePage:
    """One page of the account's invoices, each with all of its lines.

    `next_starting_after` is the cursor of the next page (None: this was the last);
    `line_requests` counts the invoices whose cut line list had to be fetched whole.
    """

    invoices: tuple[StripeInvoice, ...]
    next_starting_after: str | None
    line_requests: int


@dataclass(frozen=True)
class EventInvoice:
    """The invoice an `invoice.*` event carries, as it was at the event.

    `lines_complete` is false when the payload held only the first lines of a longer list.
    """

    invoice: StripeInvoice
    lines_complete: bool


class InvoiceReads:
    @property
    def client(self) -> stripe.StripeClient:
        raise NotImplementedError

    def _page(self, list_page: Callable[[Any], Any], params: dict[str, Any]) -> Any:
        raise NotImplementedError

    def _all_pages(self, list_page: Callable[[Any], Any], base: Mapping[str, Any]) -> list[Any]:
        raise NotImplementedError

    def list_account_invoices(
        self, *, created_from_at: datetime, starting_after: str | None = None
    ) -> InvoicePage:
        """One page (up to 100) of every invoice of the account created at or after
        `created_from_at`, newest first; continue with `starting_after=page.next_starting_
        after`. One request, plus one per invoice whose lines Stripe cut short (rare)."""
        params: dict[str, Any] = {
            "created": {"gte": convert.to_unix(created_from_at)},
            "limit": ACCOUNT_PAGE_SIZE,
        }
        if starting_after is not None:
            params["starting_after"] = starting_after
        # The page's JSON as plain dicts: building stripe-python's objects for 100 invoices and
        # their lines cost more than the rest of the sweep together.
        page = self._page(lambda p: self.client.raw_request("get", "/v1/invoices", **p), params)
        body = page.data if isinstance(page.data, Mapping) else {}
        rows = convert.list_data(body)
        invoices: list[StripeInvoice] = []
        line_requests = 0
        for row in rows:
            lines = convert.attr(row, "lines")
            data = convert.list_data(lines)
            if convert.attr(lines, "has_more") and data:
                line_requests += 1
                data.extend(self._rest_of_lines(_id(row), _id(data[-1])))
            invoices.append(convert.invoice(row, data))
        more = bool(convert.attr(body, "has_more")) and bool(rows)
        return InvoicePage(tuple(invoices), _id(rows[-1]) if more else None, line_requests)

    def _rest_of_lines(self, stripe_invoice_id: str, after_line_id: str) -> list[Any]:
        return self._all_pages(
            lambda p: self.client.v1.invoices.line_items.list(stripe_invoice_id, p),
            {"starting_after": after_line_id},
        )


def _id(obj: Any) -> str:
    return str(convert.attr(obj, "id"))


def event_invoice(event: WebhookEvent) -> EventInvoice | None:
    """The invoice of an `invoice.*` event (None: the event carries no invoice with an id,
    e.g. `invoice.upcoming`)."""
    if not event.type.startswith("invoice.") or event.stripe_object_type != "invoice":
        return None
    obj = event_object(event)
    if not isinstance(obj.get("id"), str) or not isinstance(obj.get("created"), int):
        return None
    invoice = stripe.Invoice.construct_from(obj, None)
    lines = convert.attr(invoice, "lines")
    return EventInvoice(
        convert.invoice(invoice, convert.list_data(lines)),
        lines_complete=not convert.attr(lines, "has_more"),
    )
