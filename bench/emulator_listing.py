"""Benchmark: one page of the emulator's account-wide invoice list at scale.

The month close's sweep lists every invoice created since the month ended, 100 a page. Stripe
serves a page in constant time; the emulator must too, or a 100,000-org close measures the
emulator. Builds an in-process emulator store of `--invoices` invoices (the routes the HTTP
server calls, no HTTP), then times pages of 100 (newest first, `created[gte]`, `starting_after`)
three ways in the same run:
- the emulator's `GET /v1/invoices` (`Store.list_table`: from the cursor's place);
- the floor: rendering the same 100 invoices and nothing else;
- the whole-table filter (`Store.list_response` over every invoice), how lists worked before.
Prints milliseconds per page (medians) and the ratio to the floor; `--json` prints one object.
Usage: .venv/bin/python bench/emulator_listing.py [--invoices 200000] [--pages 20] [--json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from typing import Any

from rich.console import Console
from rich.progress import track

from stripe_emulator.catalog import create_customer
from stripe_emulator.invoicing import create_invoice, list_invoices
from stripe_emulator.store import Store

START = 1_790_812_800  # 2026-10-01T00:00:00Z
CUSTOMERS = 1_000


def _store(invoices: int, console: Console) -> Store:
    store = Store(frozen_time=START)
    customers = [create_customer(store, {})["id"] for _ in range(CUSTOMERS)]
    for index in track(range(invoices), description="drafting", console=console):
        store.frozen_time = START + index  # one a second: `created` grows with the list
        create_invoice(store, {"customer": customers[index % CUSTOMERS]})
    return store


def _pages(store: Store, params: dict[str, Any], pages: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {"list": [], "floor": [], "whole_table": []}
    table = store.table("invoice")
    after: str | None = None
    for _ in range(pages):
        cursor = {"starting_after": after} if after else {}
        started = time.perf_counter()
        page = list_invoices(store, {**params, **cursor})
        timings["list"].append(time.perf_counter() - started)
        started = time.perf_counter()
        for item in page["data"]:
            store.render(table[item["id"]], [])
        timings["floor"].append(time.perf_counter() - started)
        started = time.perf_counter()
        store.list_response("/v1/invoices", list(table.values()), {**params, **cursor})
        timings["whole_table"].append(time.perf_counter() - started)
        after = page["data"][-1]["id"]
    return timings


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--invoices", type=int, default=200_000)
    parser.add_argument("--pages", type=int, default=20)
    parser.add_argument("--json", action="store_true")
    args = parser.parse_args()
    console = Console(stderr=True)
    store = _store(args.invoices, console)
    timings = _pages(store, {"limit": "100", "created": {"gte": str(START)}}, args.pages)
    ms = {name: round(statistics.median(values) * 1000, 2) for name, values in timings.items()}
    result = {
        "invoices": args.invoices,
        "pages": args.pages,
        "page_ms": ms["list"],
        "floor_render_ms": ms["floor"],
        "ratio_to_floor": round(ms["list"] / ms["floor"], 2),
        "whole_table_filter_ms": ms["whole_table"],
    }
    if args.json:
        print(json.dumps(result))
        return
    for key, value in result.items():
        console.print(f"{key:>24}: {value}")


if __name__ == "__main__":
    main()
