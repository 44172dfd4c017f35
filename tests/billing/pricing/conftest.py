"""The two bundled price books, loaded once per test module of the pricing tests."""

from __future__ import annotations

import pytest

from billing.pricing.book import PriceBook, load_book


@pytest.fixture(scope="module")
def devtools() -> PriceBook:
    return load_book("devtools")


@pytest.fixture(scope="module")
def zenaton() -> PriceBook:
    return load_book("zenaton")
