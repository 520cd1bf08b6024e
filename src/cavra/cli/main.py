"""The ``cavra`` command: one Typer app with a sub-app per command group."""

from __future__ import annotations

import logging
import os
import sys

import typer
import typer.main

from cavra import __version__
from cavra.cli import db, deliveries, destinations, events, evidence, integration, release, routes
from cavra.cli import emulate as emulate_mod
from cavra.cli import init as init_mod
from cavra.cli import serve as serve_mod
from cavra.cli import templates as templates_mod
from cavra.cli import worker as worker_mod
from cavra.cli.usage import Abort, ClickException, NoArgsIsHelp, conventional_metavars, usage_message

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
app.command("init")(init_mod.init)
app.add_typer(events.app, name="events")
app.add_typer(routes.app, name="routes")
app.add_typer(destinations.app, name="destinations")
app.add_typer(templates_mod.app, name="templates")
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
        code = conventional_metavars(typer.main.get_command(app)).main(standalone_mode=False)
    except SystemExit:
        raise
    except Abort:
        sys.stderr.write("error: interrupted\n")
        raise SystemExit(130) from None
    except NoArgsIsHelp as exc:
        exc.show()  # a group without a command prints its help, as before
        raise SystemExit(exc.exit_code) from None
    except ClickException as exc:
        sys.stderr.write(f"error: {usage_message(exc, sys.argv[1:])}\n")
        raise SystemExit(exc.exit_code) from None
    except Exception as exc:  # last resort: never a traceback on a user's terminal
        logging.getLogger("cavra").debug("unexpected error", exc_info=True)
        from cavra.redaction import Redactor

        message = Redactor().scrub(f"{type(exc).__name__}: {exc}")
        sys.stderr.write(f"error: internal error ({message}); run with CAVRA_LOG_LEVEL=DEBUG for details\n")
        raise SystemExit(70) from None
    raise SystemExit(code if isinstance(code, int) else 0)
