"""Entry point: ``hearth <command>``. Subcommands live in their own modules."""

from __future__ import annotations

import sys

import typer
from rich.console import Console
from rich.markup import escape

from hearth.errors import HearthError

app = typer.Typer(
    name="hearth",
    help="A self-hosted platform for LLM applications: serve local models behind an "
    "OpenAI-compatible API, chat with them, and see what every call cost.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)
err = Console(stderr=True)


def _register() -> None:
    from hearth.cli import (
        apps,
        chat,
        conversations,
        convert,
        estimate,
        evals,
        finetune,
        kb,
        keys,
        models,
        pull,
        serve,
        tokens,
        usage,
    )

    models.app.command("pull")(pull.pull)
    models.app.command("convert")(convert.convert)
    models.app.command("estimate")(estimate.estimate)
    models.app.command("info")(estimate.info)
    app.command("serve")(serve.serve)
    app.command("chat")(chat.chat)
    app.command("usage")(usage.usage)
    app.add_typer(models.app, name="models")
    app.add_typer(tokens.app, name="tokens")
    app.add_typer(kb.app, name="kb")
    app.add_typer(keys.app, name="keys")
    app.add_typer(apps.app, name="apps")
    app.add_typer(conversations.app, name="conversations")
    app.add_typer(evals.app, name="eval")
    app.add_typer(finetune.app, name="finetune")


def main() -> None:
    _register()
    try:
        app()
    except HearthError as e:
        err.print(f"[bold red]error:[/] {escape(e.message)}")  # [brackets] are text here
        sys.exit(2 if e.status < 500 else 1)
    except KeyboardInterrupt:
        sys.exit(130)
