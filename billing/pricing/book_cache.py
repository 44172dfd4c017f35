"""A per-run cache of loaded price books and of the terms each org resolves to."""

from __future__ import annotations

from collections.abc import Callable

from billing.pricing.book import PriceBook, Terms, load_book


class BookCache:
    """Loads each price book once; unknown books raise UnknownTermsError or PriceBookError."""

    def __init__(self, loader: Callable[[str], PriceBook] = load_book) -> None:
        self._loader = loader
        self._books: dict[str, PriceBook] = {}
        self._terms: dict[tuple[str, str, str | None, str | None], Terms] = {}

    def book(self, name: str) -> PriceBook:
        if name not in self._books:
            self._books[name] = self._loader(name)
        return self._books[name]

    def terms(self, book_name: str, plan: str, interval: str | None, org_id: str) -> Terms:
        """Terms of `org_id` on `plan` (its contract included), memoised per distinct terms."""
        book = self.book(book_name)
        contract = org_id if org_id in book.contracts else None
        key = (book_name, plan, interval, contract)
        if key not in self._terms:
            self._terms[key] = book.terms(plan, interval, contract)
        return self._terms[key]
