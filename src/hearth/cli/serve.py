from __future__ import annotations

import logging
from dataclasses import replace

import typer
from rich.console import Console

from hearth.config import Settings, load_settings
from hearth.server.auth import exposure_warning
from hearth.storage.calllog import open_calllog
from hearth.storage.keys import KeyStore

console = Console()


def serve(
    host: str = typer.Option(None, help="Address to bind (default 127.0.0.1; 0.0.0.0 exposes it)."),
    port: int = typer.Option(None, help="Port to listen on (default 8000)."),
    model: list[str] = typer.Option(
        None,
        "--model",
        "-m",
        help="Model to serve; repeat for several. The first is the default. "
        "Default: every registered model, with qwen2.5-0.5b-instruct preloaded.",
    ),
    preload: bool = typer.Option(True, help="Load the default model before taking requests."),
    log_level: str = typer.Option("info", help="uvicorn log level."),
    access_log: bool = typer.Option(
        True,
        help="Print a line per HTTP request. The call log keeps every model call either way "
        "(`hearth usage`); off saves ~10% of a busy gateway's CPU.",
    ),
) -> None:
    """Start the OpenAI-compatible API server.

    Example: hearth serve --model qwen2.5-0.5b-instruct --model multilingual-e5-small
    then: curl http://127.0.0.1:8000/v1/models
    """
    import uvicorn

    from hearth.server import create_app

    settings = load_settings()
    if _sync_adapters(settings):
        settings = load_settings()  # adapters trained on another replica, now registered here
    if model:
        settings = settings.with_served(model)
    settings = replace(
        settings,
        host=host or settings.host,
        port=port if port is not None else settings.port,
    )
    logging.basicConfig(level=log_level.upper(), format="%(levelname)s %(name)s: %(message)s")
    base = f"http://{settings.host}:{settings.port}/v1"
    console.print(f"[bold]hearth[/] OpenAI-compatible API at [cyan]{base}[/]")
    for name in settings.served_models():
        spec = settings.models[name]
        mark = " (default)" if name == settings.default_model else ""
        console.print(f"  • {name}{mark} — {spec.engine}: {spec.description}")
    console.print(f"  home: {settings.home}  call log: {settings.db_url}")
    warning = exposure_warning(settings.host, settings.auth or _any_key(settings.db_url))
    if warning:
        console.print(f"[bold yellow]warning:[/] {warning}")
    app = create_app(settings, preload=[settings.default_model] if preload else [], freeze_gc=True)
    uvicorn.run(
        app, host=settings.host, port=settings.port, log_level=log_level, access_log=access_log
    )


def _sync_adapters(settings: Settings) -> list[str]:
    """With a PostgreSQL database: the fine-tuned adapters every replica shares, here."""
    from hearth.storage.db import dialect_of

    if dialect_of(settings.db_url) != "postgresql":
        return []  # nothing to share (and no need to import the training side)
    from hearth.finetune.store import sync

    changed = sync(settings)
    if changed:
        console.print(f"adapters from the shared database: {', '.join(changed)}")
    return changed


def _any_key(db_url: str) -> bool:
    log = open_calllog(db_url)
    try:
        return bool(KeyStore(log.db).all())
    finally:
        log.close()
