"""``cavra templates show PROVIDER``: print the default message templates of a provider (Slack, Teams,
Jira, ServiceNow, webhook) as a ``templates:`` block to copy into a destination of the connectors file."""

from __future__ import annotations

from typing import Annotated

import typer

from cavra.cli.common import console, handled
from cavra.governance import service as governance

app = typer.Typer(help="Message templates: show the defaults to copy and edit.", no_args_is_help=True)


@app.command("show")
def show(
    provider: Annotated[
        str,
        typer.Argument(help=f"The provider: {', '.join(governance.TEMPLATE_PROVIDERS)}."),
    ],
) -> None:
    """Print PROVIDER's default templates (they render exactly what CAVRA sends without templates)."""
    with handled():
        text = governance.default_templates(provider.strip().lower())
    console.print(text, markup=False, highlight=False, end="", soft_wrap=True)
