"""The closed set of usage meters, intervals and quotas the price books may refer to."""

from __future__ import annotations

from enum import StrEnum


class Meter(StrEnum):
    """A metered usage component; the value is the code used in books, events and Stripe."""

    COPILOT_MESSAGES = "copilot_messages"
    RUNNER_MINUTES = "runner_minutes"
    IAC_RESOURCE_HOURS = "iac_resource_hours"
    EXECUTION_TIME = "execution_time"  # seconds of task execution (zenaton book)


class Interval(StrEnum):
    """A seat billing interval (the term); usage is always billed monthly."""

    MONTH = "month"
    YEAR = "year"


class Quota(StrEnum):
    """A usage limit the product enforces; limits, not prices."""

    TASKS_PER_MONTH = "tasks_per_month"
    TASKS_PER_SECOND = "tasks_per_second"
    ENVIRONMENTS = "environments"


class QuotaMode(StrEnum):
    """Hard quotas deny; soft quotas only record the crossing for support."""

    HARD = "hard"
    SOFT = "soft"
