"""What an ingest returns: per event type, the lines stored and the duplicates, or the errors."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass

from billing.ledger.formats import LineError

Progress = Callable[[str, int, int], None]  # (phase, done, total)


class ConcurrentIngestError(RuntimeError):
    """Another batch stored some of this batch's usage ids between the check and the insert:
    their contents were not compared, so this batch must be rolled back and sent again."""


@dataclass(frozen=True)
class IngestOutcome:
    """Per event type: lines stored and lines that were duplicates; errors when rejected."""

    stored: Mapping[str, int]
    duplicates: Mapping[str, int]
    errors: tuple[LineError, ...] = ()
    conflicts: tuple[LineError, ...] = ()  # those of `errors` that are conflicting usage ids

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def only_conflicts(self) -> bool:
        """Refused for conflicting usage ids alone (HTTP answers 409 rather than 422)."""
        return bool(self.errors) and len(self.conflicts) == len(self.errors)
