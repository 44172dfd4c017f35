"""Configuration and infrastructure failures: one line on stderr, exit 2, never a secret."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from pathlib import Path

import pytest

from models.db import migrate
from worker.cli import main
from worker.commands.failures import describe_failure, mask_url
from worker.settings import Settings, get_settings

LIVE_KEY = "sk_live_51SECRETKEYVALUE"
WEBHOOK_SECRET = "whsec_SECRETWEBHOOKVALUE"


def closed_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A fresh, migrated SQLite ledger, no Stripe key; settings re-read from the patched
    environment."""
    url = f"sqlite:///{tmp_path / 'billing.db'}"
    migrate(url)
    monkeypatch.setenv("BILLING_DATABASE_URL", url)
    monkeypatch.delenv("STRIPE_API_KEY", raising=False)
    monkeypatch.delenv("BILLING_STRIPE_WEBHOOK_SECRET", raising=False)
    get_settings.cache_clear()
    yield monkeypatch
    get_settings.cache_clear()


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    get_settings.cache_clear()
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def assert_one_line_error(code: int, err: str, *fragments: str) -> None:
    assert code == 2
    assert err.startswith("billing: error: "), err
    assert err.count("\n") == 1, err
    for fragment in fragments:
        assert fragment in err


@pytest.mark.parametrize(
    ("variables", "expected"),
    [
        (
            {
                "STRIPE_API_KEY": LIVE_KEY,
                "BILLING_STRIPE_WEBHOOK_SECRET": WEBHOOK_SECRET,
                "BILLING_ADMIN_TOKENS": "admin-token-SECRET",
            },
            "live keys are refused outside production",
        ),
        # A pasted leading space must not hide that the key is live.
        ({"STRIPE_API_KEY": f" {LIVE_KEY}"}, "live keys are refused outside production"),
        ({"STRIPE_API_KEY": f"{LIVE_KEY}\n"}, "live keys are refused outside production"),
        ({"STRIPE_API_KEY": "pk_test_SECRETKEYVALUE"}, "STRIPE_API_KEY is not a Stripe secret key"),
        (
            {"BILLING_ENVIRONMENT": "prodSECRET", "STRIPE_API_KEY": LIVE_KEY},
            "BILLING_ENVIRONMENT: Input should be 'development', 'test' or 'production'",
        ),
        (
            {"BILLING_STRIPE_TIMEOUT_SECONDS": "30sSECRET"},
            "BILLING_STRIPE_TIMEOUT_SECONDS: Input should be a valid number",
        ),
    ],
)
@pytest.mark.parametrize("verbose", [False, True])
def test_bad_settings_are_one_line_and_never_show_the_values(
    env: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    variables: dict[str, str],
    expected: str,
    verbose: bool,
) -> None:
    for name, value in variables.items():
        env.setenv(name, value)
    code, out, err = run(capsys, *(["-v"] if verbose else []), "quote", "--plan", "free")
    last_line = err.splitlines()[-1] + "\n"
    assert_one_line_error(code, last_line, "billing: error: invalid configuration: ", expected)
    assert out == ""
    assert "SECRET" not in err
    if verbose:
        assert "Traceback (most recent call last)" in err
    else:
        assert err == last_line


def test_a_live_key_is_accepted_in_production(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BILLING_ENVIRONMENT", "production")
    env.setenv("STRIPE_API_KEY", f"  {LIVE_KEY} ")
    code, out, _err = run(capsys, "quote", "--plan", "free", "--json")
    assert code == 0
    assert '"total": 0' in out
    assert get_settings().stripe_api_key is not None
    assert get_settings().stripe_api_key.get_secret_value() == LIVE_KEY  # stripped


def test_blank_secrets_count_as_unset() -> None:
    settings = Settings(stripe_api_key="   ", stripe_webhook_secret="")  # type: ignore[arg-type]
    assert settings.stripe_api_key is None
    assert settings.stripe_webhook_secret is None


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://billing:hunter2@127.0.0.1:{port}/billing",
            "database postgresql://billing:***@127.0.0.1:{port}/billing: connection failed",
        ),
        (
            "sqlite:////nonexistent-folder/billing.db",
            "the database at sqlite:////nonexistent-folder/billing.db does not exist",
        ),
    ],
)
def test_database_unreachable_is_one_line_without_the_password(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], url: str, shown: str
) -> None:
    port = closed_port()
    env.setenv("BILLING_DATABASE_URL", url.format(port=port))
    code, out, err = run(capsys, "reconciliations", "list")
    assert_one_line_error(code, err, shown.format(port=port))
    assert "hunter2" not in err
    assert out == ""


def test_verbose_shows_the_traceback_above_the_line(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env.setenv("BILLING_DATABASE_URL", f"postgresql://billing@127.0.0.1:{closed_port()}/billing")
    code, _out, err = run(capsys, "-v", "reconciliations", "list")
    assert code == 2
    assert "Traceback (most recent call last)" in err
    assert "OperationalError" in err
    assert err.splitlines()[-1].startswith("billing: error: database postgresql://")


def _ledger_with_org(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    events = tmp_path / "events.jsonl"
    events.write_text(
        '{"type": "org", "org": "acme", "book": "zenaton", "plan": "payg",'
        ' "at": "2026-02-01T00:00:00Z"}\n'
    )
    assert main(["ingest", str(events)]) == 0
    capsys.readouterr()


@pytest.mark.parametrize(
    "args",
    [
        ["sync", "seats", "--org", "acme"],  # enqueued through the broker
        ["quota", "check", "--org", "acme", "--quota", "tasks_per_month"],  # counted in Redis
    ],
)
def test_redis_unreachable_is_one_line_without_the_password(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], tmp_path: Path, args: list[str]
) -> None:
    _ledger_with_org(capsys, tmp_path)
    port = closed_port()
    env.setenv("BILLING_REDIS_URL", f"redis://:hunter2@127.0.0.1:{port}/0")
    code, _out, err = run(capsys, *args)
    assert_one_line_error(code, err, f"Redis at redis://:***@127.0.0.1:{port}/0 unreachable")
    assert "Connection refused" in err
    assert "hunter2" not in err


def test_stripe_unreachable_is_one_line_without_stripes_boilerplate(
    env: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    port = closed_port()
    env.setenv("BILLING_STRIPE_API_BASE", f"http://127.0.0.1:{port}")
    env.setenv("BILLING_STRIPE_BUDGET", "none")
    env.setenv("BILLING_STRIPE_MAX_NETWORK_RETRIES", "0")
    code, _out, err = run(capsys, "stripe", "sync-catalog")
    assert_one_line_error(
        code, err, f"billing: error: Stripe at http://127.0.0.1:{port} unreachable: "
    )
    assert "Connection refused" in err
    assert "support@stripe.com" not in err


def test_a_bug_is_not_dressed_up_as_an_infrastructure_failure() -> None:
    assert describe_failure(KeyError("plan"), None) is None
    assert describe_failure(RuntimeError("wrapped", ValueError()), None) is None


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("postgresql://billing:pw@db:5432/billing", "postgresql://billing:***@db:5432/billing"),
        ("redis://:pw@redis:6379/0", "redis://:***@redis:6379/0"),
        ("redis://redis:6379/0", "redis://redis:6379/0"),
        ("sqlite:///billing.db", "sqlite:///billing.db"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked
