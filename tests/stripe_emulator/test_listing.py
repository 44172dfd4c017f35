"""Account-wide invoice lists page from their cursor (Stripe: newest first, `starting_after`,
`ending_before`, `created` ranges), with the same pages a filter of the whole table gives."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import stripe

from stripe_emulator import EmulatorConfig, EmulatorServer
from tests.stripe_emulator.conftest import JAN_1_2026, make_client


@pytest.fixture
def account() -> Iterator[tuple[stripe.StripeClient, EmulatorServer]]:
    with EmulatorServer(EmulatorConfig(frozen_time=JAN_1_2026)) as server:
        yield make_client(server.url), server


def _invoices(client: stripe.StripeClient, server: EmulatorServer) -> list[tuple[str, int]]:
    """Nine invoices of three customers, created an hour apart: (id, created), oldest first."""
    customers = [client.v1.customers.create({"email": f"c{i}@list.example"}).id for i in range(3)]
    made = []
    for hour in range(9):
        server.state.configure(frozen_time=JAN_1_2026 + hour * 3600)
        invoice = client.v1.invoices.create({"customer": customers[hour % 3]})
        assert invoice.id is not None
        made.append((invoice.id, invoice.created))
    return made


def _all_pages(client: stripe.StripeClient, params: dict[str, object]) -> list[list[str]]:
    pages: list[list[str]] = []
    after: str | None = None
    while True:
        page = client.v1.invoices.list({**params, **({"starting_after": after} if after else {})})
        pages.append([invoice.id for invoice in page.data if invoice.id])
        if not page.has_more:
            return pages
        after = page.data[-1].id


def test_account_wide_pages_run_newest_first_from_their_cursor(
    account: tuple[stripe.StripeClient, EmulatorServer],
) -> None:
    client, server = account
    made = _invoices(client, server)
    newest_first = [invoice_id for invoice_id, _ in reversed(made)]

    assert _all_pages(client, {"limit": 4}) == [
        newest_first[:4],
        newest_first[4:8],
        newest_first[8:],
    ]
    since = made[3][1]  # created[gte]: the six newest
    assert _all_pages(client, {"limit": 4, "created": {"gte": since}}) == [
        newest_first[:4],
        newest_first[4:6],
    ]
    back = client.v1.invoices.list({"limit": 2, "ending_before": newest_first[4]})
    assert [invoice.id for invoice in back.data] == newest_first[2:4]


def test_an_unknown_cursor_is_refused_naming_the_parameter(
    account: tuple[stripe.StripeClient, EmulatorServer],
) -> None:
    client, _ = account
    with pytest.raises(stripe.InvalidRequestError) as info:
        client.v1.invoices.list({"starting_after": "in_missing"})
    assert info.value.param == "starting_after"
    assert info.value.code == "resource_missing"
