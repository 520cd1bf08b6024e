"""The ``cavra`` command: one Typer app with a sub-app per command group."""

from __future__ import annotations

import logging
import os
import sys

import typer

from cavra import __version__
from cavra.cli import db, deliveries, destinations, evidence, integration, release
from cavra.cli import emulate as emulate_mod
from cavra.cli import serve as serve_mod
from cavra.cli import worker as worker_mod

app = typer.Typer(
    name="cavra",
    help="CAVRA Connectors: deliver governance evidence to SIEM, ChatOps, ITSM and endpoint management.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
app.add_typer(integration.app, name="integration")
app.add_typer(release.app, name="release")
app.add_typer(evidence.app, name="evidence")
app.add_typer(db.app, name="db")
app.add_typer(deliveries.app, name="deliveries")
app.add_typer(destinations.app, name="destinations")
app.command("emulate")(emulate_mod.emulate)
app.command("serve")(serve_mod.serve)
app.command("api-token")(serve_mod.api_token)
app.command("worker")(worker_mod.worker)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"cavra {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    version: bool = typer.Option(
        False, "--version", callback=_version, is_eager=True, help="Print the version."
    ),
) -> None:
    """CAVRA Connectors."""
    logging.basicConfig(
        level=os.environ.get("CAVRA_LOG_LEVEL", "WARNING").upper(),
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )


def main() -> None:
    """Entry point. Anything unexpected becomes one line on stderr (details with CAVRA_LOG_LEVEL=DEBUG)."""
    try:
        app(standalone_mode=True)
    except SystemExit:
        raise
    except Exception as exc:  # last resort: never a traceback on a user's terminal
        logging.getLogger("cavra").debug("unexpected error", exc_info=True)
        from cavra.redaction import Redactor

        message = Redactor().scrub(f"{type(exc).__name__}: {exc}")
        sys.stderr.write(f"error: internal error ({message}); run with CAVRA_LOG_LEVEL=DEBUG for details\n")
        raise SystemExit(70) from None
