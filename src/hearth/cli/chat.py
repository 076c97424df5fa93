from __future__ import annotations

import asyncio

import typer
from rich.console import Console

from hearth.config import load_settings
from hearth.engines.registry import ModelRegistry
from hearth.engines.runner import Runner
from hearth.errors import UserError
from hearth.types import ChatRequest, GenerationParams, Message

console = Console()

HELP = "Commands: /reset clears the history, /exit quits (or Ctrl-D)."


def chat(
    model: str = typer.Option(None, "--model", "-m", help="Model to chat with."),
    system: str = typer.Option(None, "--system", "-s", help="System prompt."),
    max_tokens: int = typer.Option(512, help="Longest reply, in tokens."),
) -> None:
    """Chat with a model in the terminal, streaming, with history. /reset starts over."""
    settings = load_settings()
    name = model or settings.default_model
    registry = ModelRegistry(settings)
    registry.spec(name)  # unknown model: fail before loading anything
    asyncio.run(_loop(registry, name, system, max_tokens))


async def _loop(registry: ModelRegistry, name: str, system: str | None, max_tokens: int) -> None:
    with console.status(f"loading {name}…"):
        runner = await registry.get(name)
    console.print(f"[bold]{name}[/] ready. {HELP}")
    start = [Message("system", system)] if system else []
    history = list(start)
    try:
        while True:
            try:
                line = console.input("[bold green]you> [/]")
            except EOFError:
                break
            text = line.strip()
            if not text:
                continue
            if text in ("/exit", "/quit"):
                break
            if text == "/reset":
                history = list(start)
                console.print("[dim]history cleared[/]")
                continue
            if text.startswith("/"):
                console.print(f"[yellow]unknown command {text}[/]. {HELP}")
                continue
            history.append(Message("user", text))
            reply = await _answer(runner, history, max_tokens)
            history.append(Message("assistant", reply))
    finally:
        await registry.close()


async def _answer(runner: Runner, history: list[Message], max_tokens: int) -> str:
    request = ChatRequest(list(history), GenerationParams(max_tokens=max_tokens))
    parts: list[str] = []
    console.print("[bold cyan]ai> [/]", end="")
    try:
        async for chunk in runner.stream(lambda: runner.engine.stream_chat(request)):
            if chunk.text:
                parts.append(chunk.text)
                console.print(chunk.text, end="", markup=False, highlight=False)
            if chunk.usage:
                console.print(
                    f"\n[dim]{chunk.usage.prompt_tokens} prompt + "
                    f"{chunk.usage.completion_tokens} completion tokens[/]"
                )
    except UserError as e:
        console.print(f"\n[red]{e.message}[/]")
        history.pop()
    return "".join(parts)
