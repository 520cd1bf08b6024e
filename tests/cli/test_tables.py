"""Tables never wrap identifiers: a table when they fit, stacked rows when not, TSV in a pipe."""

from __future__ import annotations

import io

from rich.console import Console

from cavra.cli.render import delivery_table
from cavra.cli.tables import Col, Grid

JOB = "job_01a252867ff9a97a7e695f91"
ERROR = "gave up after 2 attempts: HTTP 503 " + "and a long explanation " * 6


def grid() -> Grid:
    g = Grid(
        [Col("job"), Col("provider"), Col("runs", "num", "right"), Col("last error", "text")], title="jobs"
    )
    g.add_row(JOB, "webhook-release", "2", ERROR)
    return g


def render(g: Grid, *, width: int, terminal: bool) -> str:
    out = io.StringIO()
    Console(file=out, width=width, force_terminal=terminal, color_system=None).print(g)
    return out.getvalue()


def test_wide_terminal_is_a_table_with_whole_ids() -> None:
    text = render(grid(), width=160, terminal=True)
    assert "┃" in text or "│" in text
    assert JOB in text and "webhook-release" in text  # on one line each
    assert "explanation" in text


def test_narrow_terminal_stacks_rows_instead_of_cutting_ids() -> None:
    text = render(grid(), width=60, terminal=True)
    assert "│" not in text
    lines = text.splitlines()
    assert any(line.endswith(JOB) for line in lines), text
    assert any(line.strip() == "provider  webhook-release" for line in lines), text


def test_a_pipe_gets_tab_separated_rows() -> None:
    text = render(grid(), width=100_000, terminal=False)  # the CLI's stdout console off a terminal
    assert text.splitlines() == [
        "# jobs",
        "job\tprovider\truns\tlast error",
        f"{JOB}\twebhook-release\t2\t{' '.join(ERROR.split())}",
    ]


def test_delivery_table_keeps_remote_ids_whole_at_80_columns() -> None:
    record = {
        "event_type": "cavra.release.promotion_audit",
        "event_id": "evt_d067d51c42e20e2735ad5b9fce90f679",
        "deliveries": [
            {
                "provider": "webhook",
                "status": "delivered",
                "status_code": 200,
                "attempt_count": 1,
                "remote_id": "msg_594600797758bb228cd1393f25d9fe8c",
            }
        ],
    }
    text = render(delivery_table(record), width=80, terminal=True)
    assert "msg_594600797758bb228cd1393f25d9fe8c" in text


def test_delivery_summary_names_every_stored_record() -> None:
    from cavra.cli.release_render import delivery_summary

    several = {"delivery_ids": ["dlv_a", "dlv_b"], "deliveries": [{}, {}]}
    assert delivery_summary(several, "sqlite:///x.db").plain == "stored dlv_a, dlv_b in sqlite:///x.db"
    one = {"delivery_id": "dlv_a", "metadata_kind": "release-connector-delivery", "record_sha256": "ab" * 32}
    assert delivery_summary(one, "x.json").plain.startswith(
        "stored dlv_a (release-connector-delivery) in x.json"
    )
    assert "None" not in delivery_summary({}, "x.json").plain
