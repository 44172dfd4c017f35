"""The `billing` command line: the composition of every sub-command."""

from __future__ import annotations

import logging
import sys
from typing import Annotated

import typer

# typer >= 0.24 vendors click as typer._click; its exceptions are not re-exported.
from typer._click.exceptions import ClickException, NoArgsIsHelpError

from models.db import SchemaRevisionError
from worker.commands.common import CliError
from worker.commands.demo import demo_command
from worker.commands.ledger import ingest_command, preview_command
from worker.commands.ops import beat_command, close_command, db_app, sync_app, worker_command
from worker.commands.quota import quota_app
from worker.commands.quote import quote_command
from worker.commands.reconcile import reconcile_command, reconciliations_app
from worker.commands.serve import serve_command
from worker.commands.simulate import simulate_command
from worker.commands.stripe import stripe_app, stripe_emulator_command
from worker.logging import configure_logging
from worker.settings import get_settings

app = typer.Typer(
    name="billing",
    help="Stripe billing worker: pricing, ledger, Stripe sync and reconciliation.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


@app.callback()
def _root(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Log at INFO.")] = False,
) -> None:
    """Stripe billing worker: pricing, ledger, Stripe sync and reconciliation."""
    # Logs go to stderr (stdout carries tables and JSON); warnings only unless asked.
    configure_logging(get_settings(), logging.INFO if verbose else logging.WARNING)


app.command("quote")(quote_command)
app.command("ingest")(ingest_command)
app.command("preview")(preview_command)
app.add_typer(stripe_app, name="stripe")
app.add_typer(quota_app, name="quota")
app.command("stripe-emulator")(stripe_emulator_command)
app.command("reconcile")(reconcile_command)
app.add_typer(reconciliations_app, name="reconciliations")
app.command("serve")(serve_command)
app.add_typer(sync_app, name="sync")
app.add_typer(db_app, name="db")
app.command("close")(close_command)
app.command("demo")(demo_command)
app.command("simulate")(simulate_command)
app.command("worker")(worker_command)
app.command("beat")(beat_command)


def main(argv: list[str] | None = None) -> int:
    """Run the CLI; user errors become one line on stderr and exit code 2."""
    try:
        result = app(args=argv, standalone_mode=False)
    except (CliError, SchemaRevisionError) as exc:
        typer.echo(f"billing: error: {exc}", err=True)
        return 2
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
    return result if isinstance(result, int) else 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


if __name__ == "__main__":
    run()
