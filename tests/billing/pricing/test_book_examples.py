"""A price book's `[[examples]]`: the bundled books list the seeds' own, and a bad example is
refused at load time with its key."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from billing.core.meters import Interval, Meter
from billing.pricing.book import BOOKS_DIR, PriceBookError, load_book


def test_the_bundled_books_list_the_seeds_examples() -> None:
    devtools = load_book("devtools")
    assert [(e.plan, e.interval, e.seat_count, dict(e.usage)) for e in devtools.examples] == [
        ("free", None, None, {Meter.COPILOT_MESSAGES: Decimal(80)}),
        ("free", None, None, {Meter.RUNNER_MINUTES: Decimal(120)}),
        ("team", None, None, {Meter.IAC_RESOURCE_HOURS: Decimal(1_600_000)}),
        ("team", Interval.YEAR, 10, {}),
    ]
    zenaton = load_book("zenaton")
    assert [(e.plan, dict(e.usage)) for e in zenaton.examples] == [
        ("payg", {Meter.EXECUTION_TIME: Decimal(803_520)})
    ]


@pytest.mark.parametrize(
    ("example", "key", "problem"),
    [
        ('title = "x"\nplan = "gold"', "examples[0].plan", "'gold' is not one of the book's plans"),
        (
            'title = "x"\nplan = "team"\ninterval = "month"',
            "examples[0].interval",
            "not offered with interval 'month'",
        ),
        ('title = "x"\nplan = "free"\nseats = -1', "examples[0].seats", "non-negative integer"),
        (
            'title = "x"\nplan = "free"\nusage = { execution_time = 5 }',
            "examples[0].usage.execution_time",
            "is not a meter the example's plan bills",
        ),
        (
            'title = "x"\nplan = "free"\nusage = { copilot_messages = 1.5 }',
            "examples[0].usage.copilot_messages",
            "not a float",
        ),
        (
            'title = "x"\nplan = "free"\nusage = { copilot_messages = -2 }',
            "examples[0].usage.copilot_messages",
            "must not be negative",
        ),
        ('plan = "free"', "examples[0].title", "a non-empty string is required"),
        ('title = "x"\nplan = "free"\ncost = 3', "examples[0].cost", "unknown key"),
    ],
)
def test_a_bad_example_is_refused_with_its_key(
    tmp_path: Path, example: str, key: str, problem: str
) -> None:
    text = (BOOKS_DIR / "devtools.toml").read_text(encoding="utf-8")
    text = text[: text.index("[[examples]]")] + f"[[examples]]\n{example}\n"
    path = tmp_path / "book.toml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PriceBookError) as caught:
        load_book(path)
    assert [(k, p) for k, p in caught.value.problems if k == key and problem in p], (
        caught.value.problems
    )
