"""The `billing` command line: the composition of every sub-command, and how it fails."""

from __future__ import annotations

import logging
import sys
import traceback
from contextvars import ContextVar
from importlib.metadata import version
from typing import Annotated

import typer
from pydantic import ValidationError

# typer >= 0.24 vendors click as typer._click; its exceptions are not re-exported.
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from models.db import SchemaRevisionError
from worker.commands.book import book_app
from worker.commands.common import CliError
from worker.commands.credit import credit_app
from worker.commands.demo import demo_command
from worker.commands.failures import describe_failure
from worker.commands.ledger import ingest_command, preview_command
from worker.commands.ops import beat_command, close_command, db_app, sync_app, worker_command
from worker.commands.org import org_app
from worker.commands.quota import quota_app
from worker.commands.quote import quote_command
from worker.commands.reconcile import reconcile_command, reconciliations_app
from worker.commands.serve import serve_command
from worker.commands.simulate import simulate_command
from worker.commands.status import status_command
from worker.commands.stripe import stripe_app, stripe_emulator_command
from worker.logging import configure_logging
from worker.settings import Settings, describe_settings_error, get_settings

# Set by `billing -v`: a failure then shows its traceback above the one-line error.
VERBOSE: ContextVar[bool] = ContextVar("verbose", default=False)

app = typer.Typer(
    name="billing",
    help="Stripe billing worker: pricing, ledger, Stripe sync and reconciliation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(value: bool) -> None:
    if value:
        typer.echo(f"billing {version('billing-worker')}")
        raise typer.Exit


@app.callback()
def _root(
    verbose: Annotated[
        bool, typer.Option("--verbose", "-v", help="Log at INFO; show failures' tracebacks.")
    ] = False,
    _version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version."
        ),
    ] = False,
) -> None:
    """Stripe billing worker: pricing, ledger, Stripe sync and reconciliation."""
    VERBOSE.set(verbose)
    try:
        settings = get_settings()
    except ValidationError as exc:
        raise CliError(describe_settings_error(exc)) from exc
    # Logs go to stderr (stdout carries tables and JSON); warnings only unless asked.
    configure_logging(settings, logging.INFO if verbose else logging.WARNING)


app.command("quote")(quote_command)
app.add_typer(book_app, name="book")
app.command("ingest")(ingest_command)
app.command("preview")(preview_command)
app.add_typer(org_app, name="org")
app.add_typer(credit_app, name="credit")
app.add_typer(stripe_app, name="stripe")
app.add_typer(quota_app, name="quota")
app.command("stripe-emulator")(stripe_emulator_command)
app.command("reconcile")(reconcile_command)
app.add_typer(reconciliations_app, name="reconciliations")
app.command("serve")(serve_command)
app.add_typer(sync_app, name="sync")
app.add_typer(db_app, name="db")
app.command("close")(close_command)
app.command("status")(status_command)
app.command("demo")(demo_command)
app.command("simulate")(simulate_command)
app.command("worker")(worker_command)
app.command("beat")(beat_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI. User errors, and failures of configuration or of the services it needs
    (database, Redis, Stripe), become one line on stderr and exit code 2 (`-v`: traceback too)."""
    VERBOSE.set(False)
    try:
        result = app(args=argv, standalone_mode=False)
    except CliError as exc:
        return _fail(str(exc), exc.__cause__)
    except SchemaRevisionError as exc:
        return _fail(str(exc), exc)
    except NoArgsIsHelpError as exc:
        typer.echo(exc.ctx.get_help() if exc.ctx else exc.format_message(), err=True)
        return 2
    except ClickException as exc:
        typer.echo(f"billing: error: {exc.format_message()}", err=True)
        return 2
    except typer.Abort:
        typer.echo("billing: aborted", err=True)
        return 130
    except typer.Exit as exc:
        return int(exc.exit_code)
    except Exception as exc:
        message = describe_failure(exc, _settings_or_none())
        if message is None:
            raise  # a bug: its traceback is the report
        return _fail(message, exc)
    return result if isinstance(result, int) else 0


def _fail(message: str, exc: BaseException | None) -> int:
    if exc is not None and VERBOSE.get():
        traceback.print_exception(exc, file=sys.stderr)
    typer.echo(f"billing: error: {message}", err=True)
    return 2


def _settings_or_none() -> Settings | None:
    try:
        return get_settings()
    except ValidationError:
        return None


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
