"""Python's cyclic garbage collector paused around one bulk batch of the ledger."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def collector_paused() -> Iterator[None]:
    """Pause Python's cyclic garbage collector for one batch.

    A batch makes a few objects per line and frees them by reference counting; the collector
    would only walk them, again and again as they pile up (a third of the time of a 200,000-line
    batch, measured with bench/ingest.py). It is switched back on, as it was, when the batch ends.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
