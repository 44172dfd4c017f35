"""Settings: the only reader of environment variables (prefix BILLING_, plus STRIPE_API_KEY)."""

from __future__ import annotations

from enum import StrEnum
from functools import lru_cache
from typing import Literal

from pydantic import Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict


class Environment(StrEnum):
    DEVELOPMENT = "development"
    TEST = "test"
    PRODUCTION = "production"


class Settings(BaseSettings):
    """Configuration of every process (CLI, worker, beat, web), read once from the environment."""

    # Errors never show the values they refused: a bad setting may sit next to a secret.
    model_config = SettingsConfigDict(
        env_prefix="BILLING_", extra="ignore", hide_input_in_errors=True
    )

    environment: Environment = Environment.DEVELOPMENT
    # SQLite file in the working folder unless told otherwise; PostgreSQL in production,
    # e.g. postgresql+psycopg://billing@db/billing
    database_url: str = "sqlite:///billing.db"
    redis_url: str = "redis://127.0.0.1:6379/0"
    book: str = "devtools"  # bundled book name or path to a TOML price book

    stripe_api_key: SecretStr | None = Field(default=None, validation_alias="STRIPE_API_KEY")
    # Base URL of the Stripe API; set to the emulator's URL for offline runs.
    stripe_api_base: str = "https://api.stripe.com"
    stripe_meter_events_base: str | None = None  # defaults to stripe_api_base when set
    # How usage reaches Stripe's meters: "stream" (the v2 meter event stream, one request per
    # org's push, 10,000 requests/s) or "v1" (one POST /v1/billing/meter_events per event, 1,000/s).
    # With "stream", an account that refuses meter event sessions falls back to v1 by itself.
    stripe_meter_transport: Literal["stream", "v1"] = "stream"
    stripe_max_network_retries: int = 2
    stripe_timeout_seconds: float = 30.0
    stripe_webhook_secret: SecretStr | None = None
    # Signing secret of the thin event destination (`billing stripe create-event-destination`)
    # that receives Stripe's meter error reports at /stripe/thin-events.
    stripe_event_destination_secret: SecretStr | None = None
    stripe_requests_per_second: int = 25  # Stripe's test-mode limit; 100 in live mode
    # Where the request budget lives: "redis" (shared by every process), "local" (one process,
    # the in-process demo), "none" (unit tests).
    stripe_budget: Literal["redis", "local", "none"] = "redis"

    # The Celery broker: Redis (the default: BILLING_REDIS_URL) or RabbitMQ
    # (amqp://user:password@host:5672/vhost: quorum queues, publisher confirms). Redis stays
    # for results, the request budget, locks and quotas whatever the broker.
    broker_url: str | None = None
    # The queue every task goes to (tests give each run its own on a shared RabbitMQ).
    broker_queue: str = "billing"
    # Seconds before the Redis broker hands an unacknowledged task (its worker died) to another
    # worker. Must exceed the longest task's hard time limit, or a slow task runs twice at once.
    broker_visibility_timeout: int = 900
    task_soft_time_limit: int = 240
    task_time_limit: int = 300

    # Quota checks: a monthly counter is checkpointed to the database every this many units;
    # a lost Redis key forgets fewer than this many (1 = write-through, see billing/quotas.py).
    quota_checkpoint_units: int = 100
    quota_key_prefix: str = "billing:quota"

    # Web process (`billing serve`): comma-separated bearer tokens. Support tokens read the
    # reconciliation pages; admin tokens also trigger re-syncs. Empty = nobody gets in.
    support_tokens: SecretStr = SecretStr("")
    admin_tokens: SecretStr = SecretStr("")
    # The login form opens a server-side session (the cookie holds only its random id), kept
    # in Redis ("redis": every web process) or in the process ("local": one process, no Redis).
    web_session_store: Literal["redis", "local"] = "redis"
    web_session_hours: float = Field(default=8.0, gt=0)  # from login; logout ends it sooner
    # The session cookie's Secure flag: "auto" = in production, or when the request came over
    # https (X-Forwarded-Proto from a proxy uvicorn trusts); "always"; "never".
    web_cookie_secure: Literal["auto", "always", "never"] = "auto"
    # Run webhook handling and admin re-syncs inside the web process instead of sending them to
    # Celery (tests and the offline demo, where there is no broker). They run the same jobs
    # (worker/jobs.py) under the same per-org locks, so Redis is still needed.
    web_inline_tasks: bool = False
    # A draft invoice whose reconciliation has one of these statuses is held (auto_advance off).
    reconciliation_hold_on: str = "mismatched,missing_in_stripe,unexpected_in_stripe"
    # A draft whose meter summaries do not show the usage totals we pushed yet (Stripe aggregates
    # asynchronously) is `awaiting_usage`, re-checked this many seconds later (and by every
    # sweep) until this many minutes after its period ended; then it is judged as it is (held
    # if wrong). Keep the deadline well inside Stripe's one-hour finalization grace period.
    reconciliation_recheck_seconds: float = Field(default=60.0, gt=0)
    reconciliation_usage_deadline_minutes: float = Field(default=20.0, gt=0, lt=60)
    # The periodic sweep re-reads invoices created this many hours back (missed webhooks).
    reconciliation_sweep_hours: int = 72
    # Where the per-org locks live: "redis" (every process and machine) or "local" (threads of
    # one process: the in-process demo and simulation, which have no Redis).
    org_locks: Literal["redis", "local"] = "redis"
    # Seconds a per-org Redis lock outlives a holder that stopped renewing it (a killed worker).
    # A held lock is renewed every third of this, so it need not cover the longest task.
    org_lock_timeout_seconds: float = Field(default=60.0, gt=0)
    # Alerts (held drafts, wrong final invoices, failed pushes, price drift, a late close) are
    # POSTed here as JSON: "slack" (an incoming webhook's {"text", "blocks"}) or "generic"
    # (the alert's fields). The URL is a secret (a Slack webhook URL lets anyone post). Unset:
    # alerts are still recorded and shown by `billing status`, and sent once it is set.
    alert_webhook_url: SecretStr | None = None
    alert_webhook_format: Literal["slack", "generic"] = "slack"
    alert_webhook_timeout_seconds: float = Field(default=10.0, gt=0)
    # The support pages' public base URL (https://billing.example.com), for links in alerts.
    public_url: str | None = None
    # Simulation only (`billing simulate` on Celery workers): the Redis key holding the
    # simulated instant (ISO 8601) that worker/clock.py reads instead of the wall clock.
    simulated_clock_key: str | None = None

    @field_validator("alert_webhook_url")
    @classmethod
    def _check_alert_url(cls, value: SecretStr | None) -> SecretStr | None:
        """Only http(s): the URL is opened by urllib, which would also read file:// URLs."""
        if value is not None and not value.get_secret_value().startswith(("https://", "http://")):
            raise ValueError("must be an http:// or https:// URL")
        return value

    @field_validator(
        "stripe_api_key",
        "stripe_webhook_secret",
        "stripe_event_destination_secret",
        "alert_webhook_url",
        mode="before",
    )
    @classmethod
    def _strip_secret(cls, value: object) -> object:
        """Whitespace around a pasted key is never part of it (and must not hide `sk_live_`)."""
        if isinstance(value, SecretStr):
            value = value.get_secret_value()
        if isinstance(value, str):
            return value.strip() or None
        return value

    @model_validator(mode="after")
    def _check_stripe_key(self) -> Settings:
        """A Stripe secret key, and a live one only in production."""
        key = self.stripe_api_key.get_secret_value() if self.stripe_api_key else ""
        if key and (not key.startswith(SECRET_KEY_PREFIXES) or any(c.isspace() for c in key)):
            raise ValueError(
                "STRIPE_API_KEY is not a Stripe secret key: it must start with "
                f"{', '.join(SECRET_KEY_PREFIXES)}"
            )
        if key.startswith(LIVE_KEY_PREFIXES) and self.environment is not Environment.PRODUCTION:
            raise ValueError(
                "STRIPE_API_KEY is a live key but BILLING_ENVIRONMENT is "
                f"{self.environment.value!r}: live keys are refused outside production"
            )
        return self

    @property
    def stripe_livemode(self) -> bool:
        """Whether the key is a live one: Stripe's webhook events must then say `livemode:
        true`. A test key, or none (the emulator), takes test-mode events only."""
        key = self.stripe_api_key.get_secret_value() if self.stripe_api_key else ""
        return key.startswith(LIVE_KEY_PREFIXES)


SECRET_KEY_PREFIXES = ("sk_test_", "sk_live_", "rk_test_", "rk_live_")
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")


def describe_settings_error(exc: ValidationError) -> str:
    """One line naming each refused environment variable and why, never the value refused."""
    problems = []
    for error in exc.errors(include_url=False, include_input=False, include_context=False):
        field = str(error["loc"][0]) if error["loc"] else ""
        if field.lower() == "stripe_api_key":
            variable = "STRIPE_API_KEY"
        elif field in Settings.model_fields:
            variable = f"BILLING_{field.upper()}"
        else:
            variable = field
        message = str(error["msg"]).removeprefix("Value error, ")
        problems.append(f"{variable}: {message}" if variable else message)
    return "invalid configuration: " + "; ".join(problems)


def split_tokens(value: SecretStr) -> tuple[str, ...]:
    """`a, b,,c` → ("a", "b", "c"): the configured tokens, blanks dropped."""
    return tuple(part.strip() for part in value.get_secret_value().split(",") if part.strip())


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
