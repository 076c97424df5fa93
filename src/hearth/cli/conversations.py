"""`hearth conversations`: the conversations the server remembers — list, show, rm."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from contextlib import contextmanager

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from hearth.config import load_settings
from hearth.storage.calllog import open_calllog
from hearth.storage.conversations import ConversationStore

app = typer.Typer(
    help="Conversations held by the server (POST /v1/conversations, or a `conversation` on "
    "chat completions and responses): list them, show one's turns, remove one.",
    no_args_is_help=True,
)
console = Console()


@contextmanager
def _store() -> Iterator[ConversationStore]:
    log = open_calllog(load_settings().db_url)
    try:
        yield ConversationStore(log.db)
    finally:
        log.close()


def _when(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%d %H:%M")


@app.command("list")
def list_(
    limit: int = typer.Option(50, "--limit", "-n", min=1),
    as_json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """The most recently updated conversations first."""
    with _store() as store:
        convs = store.recent(limit=limit)
    if as_json_:
        typer.echo(json.dumps([{"id": c.id, "created": c.created, "updated": c.updated,
                                "items": c.next_seq, "metadata": c.metadata, "key_id": c.key_id}
                               for c in convs], ensure_ascii=False, indent=2))  # fmt: skip
        return
    table = Table(title="conversations")
    for col in ("id", "updated (UTC)", "items", "metadata"):
        table.add_column(col)
    for c in convs:
        table.add_row(c.id, _when(c.updated), str(c.next_seq), escape(json.dumps(c.metadata)))
    console.print(table)


@app.command("show")
def show(
    id: str,
    as_json_: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """One conversation's items, oldest first."""
    with _store() as store:
        conv = store.get(id)
        items = store.items(id)
    if as_json_:
        typer.echo(json.dumps({"id": conv.id, "metadata": conv.metadata, "items": [
            {"id": i.id, "role": i.role, "content": i.content, "created": i.created}
            for i in items]}, ensure_ascii=False, indent=2))  # fmt: skip
        return
    console.print(f"[bold]{conv.id}[/] {escape(json.dumps(conv.metadata))}")
    for i in items:
        console.print(f"[bold]{i.role}[/]: {escape(i.content)}")


@app.command("rm")
def rm(id: str) -> None:
    """Remove a conversation and everything it remembers."""
    with _store() as store:
        store.delete(id)
    console.print(f"removed conversation '{id}'")
