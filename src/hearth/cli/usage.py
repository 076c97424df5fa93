from __future__ import annotations

import dataclasses
import datetime as dt
import json

import typer
from rich.console import Console
from rich.table import Table

from hearth.config import load_settings
from hearth.errors import UserError
from hearth.storage.calllog import open_calllog

console = Console()


def usage(
    since: str = typer.Option(None, help="First day to include, YYYY-MM-DD (UTC)."),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Calls, tokens and cost by model and day, from the call log."""
    start = None
    if since:
        try:
            start = dt.date.fromisoformat(since)
        except ValueError as e:
            raise UserError(f"--since must be a date like 2026-01-31, got {since!r}") from e
    settings = load_settings()
    log = open_calllog(settings.db_url)
    try:
        rows = log.usage(start)
    finally:
        log.close()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(r) for r in rows], indent=2))
        return
    table = Table(title="hearth usage")
    for col in ("day", "model", "calls", "errors", "prompt", "completion", "total", "cost"):
        table.add_column(col, justify="right" if col not in ("day", "model") else "left")
    for r in rows:
        table.add_row(
            r.day,
            r.model,
            str(r.calls),
            str(r.errors),
            str(r.prompt_tokens),
            str(r.completion_tokens),
            str(r.total_tokens),
            f"{r.cost:.4f}",
        )
    if not rows:
        console.print("No calls logged yet. Start the server with `hearth serve` and make one.")
        return
    console.print(table)
