"""The Celery app's configuration: delivery guarantees and a beat schedule of real tasks."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

import worker.tasks.alerts
import worker.tasks.orgs
import worker.tasks.outbox
import worker.tasks.quotas
import worker.tasks.reconciliation
import worker.tasks.seats
import worker.tasks.usage
from billing.core.locks import LockBusyError
from worker.celery_app import TASK_MODULES, app, make_celery
from worker.dispatch import BillingTask
from worker.settings import Settings
from worker.tasks.common import RETRYABLE, TASK_OPTIONS

_ = (
    worker.tasks.alerts,
    worker.tasks.orgs,
    worker.tasks.outbox,
    worker.tasks.quotas,
    worker.tasks.reconciliation,
    worker.tasks.seats,
    worker.tasks.usage,
)


def test_every_beat_entry_runs_a_registered_task() -> None:
    schedule = app.conf.beat_schedule
    assert {
        "month-close",
        "usage-close-due",
        "seat-sync-sweep",
        "reconciliation-sweep",
        "reconciliation-check-prices",
        "quota-checkpoint",
        "outbox-relay",
        "webhook-redrive",
    } <= set(schedule)
    for name, entry in schedule.items():
        assert entry["task"] in app.tasks, name


def test_every_task_module_is_included() -> None:
    names = {name for name in app.tasks if name.startswith("billing.")}
    assert {task.rsplit(".", 1)[0].split(".", 1)[1] for task in names} == {
        module.rsplit(".", 1)[1] for module in TASK_MODULES
    }


def test_every_task_shares_one_set_of_retry_options() -> None:
    tasks = {name: task for name, task in app.tasks.items() if name.startswith("billing.")}
    assert "billing.reconciliation.handle_event" in tasks
    for name, task in tasks.items():
        options = {option: getattr(task, option) for option in TASK_OPTIONS}
        assert options == TASK_OPTIONS, name
    # A busy org lock is retried, not failed: the webhook's usage push now takes it.
    assert LockBusyError in RETRYABLE
    # ...and every publish of theirs (a retry's included) falls back to the outbox.
    assert all(isinstance(task, BillingTask) for task in tasks.values())


def test_delivery_settings_survive_a_killed_worker() -> None:
    conf = app.conf
    assert conf.task_acks_late is True
    assert conf.task_reject_on_worker_lost is True
    assert conf.worker_prefetch_multiplier == 1
    assert conf.task_serializer == "json"
    assert conf.accept_content == ["json"]
    # A redelivered message must not overlap a still-running first attempt.
    assert conf.broker_transport_options["visibility_timeout"] > conf.task_time_limit
    assert conf.task_soft_time_limit < conf.task_time_limit


def test_the_broker_is_redis_unless_billing_broker_url_names_rabbitmq() -> None:
    redis_url = "redis://cache:6379/0"
    assert make_celery(Settings(redis_url=redis_url)).conf.broker_url == redis_url
    conf = make_celery(
        Settings(redis_url=redis_url, broker_url="amqp://guest:guest@rabbit:5672//")
    ).conf
    assert conf.broker_url == "amqp://guest:guest@rabbit:5672//"
    assert conf.result_backend == redis_url  # results stay in Redis
    assert conf.task_default_queue_type == "quorum"
    assert conf.task_default_exchange_type == "topic"  # native delayed delivery needs it
    assert conf.broker_transport_options == {"confirm_publish": True}
    assert (conf.task_acks_late, conf.task_reject_on_worker_lost) == (True, True)
    assert conf.worker_prefetch_multiplier == 1


def test_live_key_is_refused_outside_production() -> None:
    with pytest.raises(ValidationError, match="live keys are refused outside production"):
        Settings(stripe_api_key="sk_live_x", environment="development")  # type: ignore[arg-type]
    assert Settings(stripe_api_key="sk_live_x", environment="production")  # type: ignore[arg-type]
