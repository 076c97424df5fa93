from __future__ import annotations

import json
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hearth.config import load_settings
from hearth.hub.bundled import BUNDLED

app = typer.Typer(help="List and inspect the models hearth knows.", no_args_is_help=True)
console = Console()


@app.command("list")
def list_models(as_json: bool = typer.Option(False, "--json", help="Print JSON.")) -> None:
    """List registered models: engine, context, slots, prices and where the file is."""
    settings = load_settings()
    rows: list[dict[str, Any]] = []
    for name, spec in settings.models.items():
        path = spec.path
        if not path and spec.bundled in BUNDLED:
            path = str(settings.models_dir / BUNDLED[spec.bundled].filename)
        rows.append(
            {
                "name": name,
                "engine": spec.engine,
                "default": name == settings.default_model,
                "context": spec.context,
                "parallel": spec.parallel,
                "price_input_per_1k": spec.price.input,
                "price_output_per_1k": spec.price.output,
                "path": path or spec.url,
                "description": spec.description,
            }
        )
    if as_json:
        typer.echo(json.dumps(rows, ensure_ascii=False, indent=2))
        return
    table = Table(title="hearth models")
    for col in ("name", "engine", "context", "slots", "price in/out per 1K", "description"):
        table.add_column(col)
    for r in rows:
        name = r["name"] + (" *" if r["default"] else "")
        price = f"{r['price_input_per_1k']:g} / {r['price_output_per_1k']:g}"
        table.add_row(
            name, r["engine"], str(r["context"]), str(r["parallel"]), price, r["description"]
        )
    console.print(table)
    console.print("* default model. Add models in " + str(settings.home / "config.toml"))
