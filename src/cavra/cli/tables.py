"""Tables that read and copy well: identifiers and paths never wrap; free text gives way instead.

A :class:`Grid` is a Rich renderable, so commands print it with ``console.print`` like any table. It picks
its form from where it is printed:

* a terminal wide enough for every identifier column: a table; ids, times, paths and counts keep one line
  (``no_wrap``), and only the free-text columns (errors, messages) wrap;
* a terminal too narrow for that: stacked rows, ``name: value`` one per line, so ``webhoo|k`` never
  happens and every id can be double-clicked whole;
* not a terminal (a pipe or a file): tab-separated rows with a header line, for ``cut``/``awk``
  (``--json`` gives the full machine form).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Literal

from rich.console import Console, ConsoleOptions, RenderResult
from rich.segment import Segment
from rich.table import Table
from rich.text import Text

Kind = Literal["id", "num", "text"]

#: the narrowest a free-text column may become before a grid stacks its rows instead
_MIN_TEXT = 16
#: border and padding per column (│ + one space each side) and the closing border
_PER_COLUMN, _EDGE = 3, 1


@dataclass(frozen=True)
class Col:
    name: str
    kind: Kind = "id"
    justify: Literal["left", "right"] = "left"


def _plain(cell: str | Text) -> str:
    text = cell.plain if isinstance(cell, Text) else cell
    return " ".join(text.split())  # one line, no tabs: one cell of a TSV row


class Grid:
    """A table of ``columns`` (name, kind) with an optional title and caption."""

    def __init__(self, columns: Sequence[Col | str], *, title: str | None = None) -> None:
        self.columns = [c if isinstance(c, Col) else Col(c) for c in columns]
        self.title = title
        self.caption: str | None = None
        self.rows: list[list[str | Text]] = []

    def add_row(self, *cells: str | Text) -> None:
        if len(cells) != len(self.columns):
            raise ValueError(f"{len(cells)} cells for {len(self.columns)} columns")
        self.rows.append(list(cells))

    def _fixed_widths(self) -> list[int]:
        widths = []
        for i, col in enumerate(self.columns):
            cells = [len(_plain(r[i])) for r in self.rows]
            widths.append(max([len(col.name), *cells]))
        return widths

    def needed_width(self) -> int:
        widths = self._fixed_widths()
        total = _EDGE
        for col, width in zip(self.columns, widths, strict=True):
            total += _PER_COLUMN + (min(width, _MIN_TEXT) if col.kind == "text" else width)
        return total

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        if not console.is_terminal:
            yield from self._tsv()
        elif self.needed_width() <= options.max_width:
            yield self._table()
        else:
            yield from self._stacked()

    def _tsv(self) -> Iterable[Segment]:
        if self.title:
            yield Segment(f"# {self.title}\n")
        yield Segment("\t".join(c.name for c in self.columns) + "\n")
        for row in self.rows:
            yield Segment("\t".join(_plain(cell) for cell in row) + "\n")
        if self.caption:
            yield Segment(f"# {self.caption}\n")

    def _table(self) -> Table:
        table = Table(title=self.title, title_justify="left", caption=self.caption, caption_justify="left")
        for col, width in zip(self.columns, self._fixed_widths(), strict=True):
            if col.kind == "text":
                table.add_column(col.name, overflow="fold", ratio=1, min_width=min(width, _MIN_TEXT))
            else:
                table.add_column(col.name, no_wrap=True, min_width=width, justify=col.justify)
        for row in self.rows:
            table.add_row(*row)
        return table

    def _stacked(self) -> Iterable[Text | str]:
        if self.title:
            yield Text(self.title, style="italic")
        label = max(len(c.name) for c in self.columns)
        for n, row in enumerate(self.rows):
            if n:
                yield ""
            for col, cell in zip(self.columns, row, strict=True):
                if not _plain(cell):
                    continue
                line = Text(f"{col.name.rjust(label)}  ", style="bold")
                line.append(cell if isinstance(cell, Text) else Text(cell))
                yield line
        if self.caption:
            yield Text(self.caption, style="dim")
