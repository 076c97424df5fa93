from __future__ import annotations

import dataclasses
import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from hearth.config import load_settings
from hearth.errors import UserError
from hearth.storage.calllog import GROUPS, ModerationRow, open_calllog, parse_groups

console = Console()


def parse_day(text: str | None) -> dt.date | None:
    if not text:
        return None
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise UserError(f"--since must be a date like 2026-01-31, got {text!r}") from e


def usage(
    since: str = typer.Option(None, help="First day to include, YYYY-MM-DD (UTC)."),
    by: str = typer.Option(
        "day,model", help=f"Group by some of: {', '.join(GROUPS)} (comma-separated)."
    ),
    moderation: bool = typer.Option(
        False, "--moderation", help="Summarise moderation hits (by app, list, category, action)."
    ),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Calls, tokens and cost from the call log, by day and model (or --by key, --by app
    ...); --moderation for the sensitive-word hits instead."""
    groups = parse_groups(by)
    start = parse_day(since)
    log = open_calllog(load_settings().db_url)
    try:
        if moderation:
            _moderation(log.moderation(start), as_json)
            return
        rows = log.usage(start, by=groups)
    finally:
        log.close()
    columns = _columns(groups)
    if as_json:
        typer.echo(json.dumps([_row(dataclasses.asdict(r), columns) for r in rows], indent=2))
        return
    if not rows:
        console.print("No calls logged yet. Start the server with `hearth serve` and make one.")
        return
    table = Table(title="hearth usage")
    for col in columns:
        table.add_column(col)
    for col in ("calls", "errors", "prompt", "completion", "total", "cost"):
        table.add_column(col, justify="right")
    for r in rows:
        cells = [str(getattr(r, c) or "-") for c in columns]
        table.add_row(
            *cells,
            str(r.calls),
            str(r.errors),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.total_tokens),
            f"{r.cost:.4f}",
        )
    console.print(table)


def _moderation(rows: list[ModerationRow], as_json: bool) -> None:
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2, ensure_ascii=False))
        return
    if not rows:
        console.print("No moderation hits logged.")
        return
    table = Table(title="hearth moderation hits")
    for col in ("app", "list", "category", "action", "direction"):
        table.add_column(col)
    table.add_column("hits", justify="right")
    table.add_column("calls", justify="right")
    for r in rows:
        table.add_row(
            r.app or "-",
            r.list,
            r.category or "-",
            r.action,
            r.direction,
            str(r.hits),
            str(r.calls),
        )
    console.print(table)


_GROUPED = ("day", "model", "key", "key_name", "app")


def _columns(groups: tuple[str, ...]) -> list[str]:
    """The row fields a grouping fills: a key comes with its name."""
    return [c for g in groups for c in (("key", "key_name") if g == "key" else (g,))]


def _row(row: dict[str, object], columns: list[str]) -> dict[str, object]:
    """The grouping columns asked for, then the totals."""
    return {k: v for k, v in row.items() if k in columns or k not in _GROUPED}
