"""The beat schedule: the recurring work, each entry with why it runs when it does."""

from __future__ import annotations

from typing import Any

from celery.schedules import crontab

OUTBOX_RELAY_SECONDS = 10.0

BEAT_SCHEDULE: dict[str, dict[str, Any]] = {
    # New orgs of the ledger get their Stripe customer and subscription within a minute.
    "provision-new-orgs": {"task": "billing.orgs.sweep", "schedule": 60.0},
    # Seat changes are normally scheduled at the end of their coalescing window; the sweep
    # catches any schedule lost to a restart, and brings renewals into their lead window.
    "seat-sync-sweep": {"task": "billing.seats.sweep", "schedule": 300.0},
    # Orgs with new usage have their period-to-date totals pushed every hour.
    "usage-sweep": {"task": "billing.usage.sweep", "schedule": crontab(minute=15)},
    # Every org once an hour: resource-hours grow without new reports, and a usage period
    # that just ended gets its final total inside Stripe's one-hour finalization grace.
    "usage-close-due": {"task": "billing.usage.close_due", "schedule": crontab(minute=5)},
    # The calendar month close, just after midnight UTC on the 1st, inside the grace period.
    "month-close": {
        "task": "billing.usage.close_period",
        "schedule": crontab(day_of_month="1", hour="0", minute="2"),
    },
    # Every Stripe invoice of the last days, so a missed webhook is caught within 15 minutes.
    "reconciliation-sweep": {"task": "billing.reconciliation.sweep", "schedule": 15 * 60.0},
    # Stripe's prices compared with the price book (read-only; drift is reported).
    "reconciliation-check-prices": {
        "task": "billing.reconciliation.check_prices",
        "schedule": 6 * 3600.0,
    },
    # Monthly quota counters written to the database: a lost Redis forgets at most a minute.
    "quota-checkpoint": {"task": "billing.quotas.checkpoint", "schedule": 60.0},
    # Task messages kept in the outbox while the broker was away are published within seconds
    # of its return (a process that publishes successfully also relays at once).
    "outbox-relay": {"task": "billing.outbox.relay", "schedule": OUTBOX_RELAY_SECONDS},
    # Webhook events whose handling failed (inline, or its task was lost) are handled again,
    # through the same task, while their draft is still in Stripe's grace period.
    "webhook-redrive": {"task": "billing.reconciliation.redrive_events", "schedule": 300.0},
    # Alerts reach the webhook within a minute of the event; failed attempts back off.
    "alerts-deliver": {"task": "billing.alerts.deliver", "schedule": 60.0},
    # The month close must be done 30 minutes into Stripe's one-hour grace period: checked
    # every five minutes, so a late close alerts by 00:35 on the 1st.
    "alerts-check-close": {"task": "billing.alerts.check_close", "schedule": 300.0},
}


def beat_schedule() -> dict[str, dict[str, Any]]:
    """Every recurring task of the worker (tasks are referenced by their fixed names)."""
    return dict(BEAT_SCHEDULE)
