"""``cavra routes test``: which routes an event matches, where it goes, and what each destination would be
sent (redacted); nothing is sent. ``--cases FILE`` checks a file of cases (event + expected destinations)
for CI. Exit codes: 0 as expected, 1 a case did not hold, 2 bad input (config, event or cases file)."""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer
from rich.table import Table
from rich.text import Text

from cavra.cli.common import EXIT_FAILED, EXIT_OK, console, handled, print_json
from cavra.config import load_config
from cavra.errors import InputError
from cavra.events import load_event_file
from cavra.governance import service as governance

app = typer.Typer(
    help="Test the routes of the connectors file without sending anything.", no_args_is_help=True
)


@app.command("test")
def routes_test(
    event_file: Annotated[
        str | None, typer.Argument(metavar="EVENT.json", help="The event to route (a JSON object).")
    ] = None,
    config: Annotated[
        str | None,
        typer.Option("--config", help="Connector config with routes; default $CAVRA_CONNECTOR_CONFIG."),
    ] = None,
    cases: Annotated[
        str | None,
        typer.Option(
            "--cases", metavar="FILE", help="A YAML/JSON file of cases: event + expected destinations."
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print the answer as JSON.")] = False,
) -> None:
    """Route EVENT.json (or every case of --cases FILE) and show the decision; nothing is sent."""
    with handled():
        if (event_file is None) == (cases is None):
            raise InputError("give EVENT.json or --cases FILE (one of them)")
        if cases is not None:
            loaded_cases = governance.load_route_cases(cases)
            answer = governance.run_route_cases(load_config(config), loaded_cases)
        else:
            assert event_file is not None
            event = load_event_file(event_file)
            answer = governance.test_route(load_config(config), event)
    if as_json:
        print_json(answer)
    elif cases is not None:
        console.print(cases_table(answer))
    else:
        console.print(decision_table(answer))
        for item in answer["destinations"]:
            if "group" in item:
                console.print(f"[bold]{item['destination']}[/] {item['group']['note']}", highlight=False)
            if "request" in item:
                console.print(f"[bold]{item['destination']}[/] would be sent:", highlight=False)
                console.print(json.dumps(item["request"], indent=2, ensure_ascii=False), markup=False)
            if "rendered" in item:
                print_rendered(item["destination"], item["rendered"])
    ok = answer["success"] if cases is not None else True
    raise typer.Exit(EXIT_OK if ok else EXIT_FAILED)


def print_rendered(destination: str, shown: dict[str, Any]) -> None:
    """The message people would read, and whether it keeps the provider's limits."""
    if "error" in shown:
        console.print(f"[bold]{destination}[/] message: {shown['error']}", highlight=False)
        return
    console.print(f"[bold]{destination}[/] message (what people read):", highlight=False)
    console.print(json.dumps(shown["message"], indent=2, ensure_ascii=False), markup=False)
    limits = shown["limits"]
    style = "green" if limits == "ok" else "bold red"
    console.print(f"  provider limits: [{style}]{limits}[/]", highlight=False)
    if "template_warning" in shown:
        console.print(f"  [yellow]template warning:[/] {shown['template_warning']}", highlight=False)


def decision_table(answer: dict[str, Any]) -> Table:
    title = f"{answer['event_id']} ({answer['event_type']}): {answer['status']}"
    table = Table(title=title, title_justify="left")
    table.add_column("#", justify="right")
    table.add_column("route")
    table.add_column("destinations")
    table.add_column("continue")
    for r in answer["routes"]:
        label = f"{r['name']} (default)" if r["default"] else r["name"]
        table.add_row(str(r["index"]), label, ", ".join(r["destinations"]), "yes" if r["continue"] else "")
    return table


def cases_table(answer: dict[str, Any]) -> Table:
    table = Table(
        title=f"{answer['cases']} cases: {answer['passed']} passed, {answer['failed']} failed",
        title_justify="left",
    )
    for col in ("case", "result", "expected", "got", "routes"):
        table.add_column(col, overflow="fold")
    for r in answer["results"]:
        verdict = Text("pass", style="green") if r["passed"] else Text("FAIL", style="bold red")
        table.add_row(
            r["name"],
            verdict,
            ", ".join(r["expected"]) or "(unrouted)",
            ", ".join(r["got"]) or "(unrouted)",
            ", ".join(r["routes"]),
        )
    return table
