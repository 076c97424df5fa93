"""``hearth models convert``: a Hugging Face model directory to a servable GGUF."""

from __future__ import annotations

from enum import StrEnum

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from hearth.config import load_settings
from hearth.hub import convert as hub
from hearth.hub.local import MODELS_FILE

console = Console()
err = Console(stderr=True)


class Kind(StrEnum):
    f16 = "f16"
    bf16 = "bf16"
    q8_0 = "q8_0"
    q4_k_m = "q4_k_m"
    f32 = "f32"


def convert(
    source: str = typer.Argument(
        ...,
        help="A directory in Hugging Face layout (config.json, *.safetensors, tokenizer), or "
        "a repository pulled with `hearth models pull`, e.g. Qwen/Qwen2.5-0.5B-Instruct.",
    ),
    name: str = typer.Option(
        None, "--name", "-n", help="Model name to register. Default: <repo>-<type>."
    ),
    kind: Kind = typer.Option(
        Kind.f16,
        "--type",
        "-t",
        help="f16 (default; lossless for f16/bf16 checkpoints), bf16, q8_0 (half of f16, "
        "near-lossless), q4_k_m (a quarter, what most GGUF repos serve; needs "
        "hearth\\[quantize]), f32.",
    ),
) -> None:
    """Convert a safetensors model to GGUF with llama.cpp's own converter and register it.

    Example: hearth models pull Qwen/Qwen2.5-0.5B-Instruct
    then:    hearth models convert Qwen/Qwen2.5-0.5B-Instruct --type q8_0
    then:    hearth serve --model qwen2.5-0.5b-instruct-q8_0
    """
    settings = load_settings()
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("tensors"),
        TimeElapsedColumn(),
    )
    try:
        with Progress(*columns, console=err, transient=True) as progress:
            task = progress.add_task(f"converting to {kind.value}", total=None)

            def advance(done: int, total: int) -> None:
                progress.update(task, completed=done, total=total)

            result = hub.convert(
                settings.home,
                source,
                name=name,
                kind=kind.value,
                models_dir=settings.models_dir,
                say=lambda line: err.print(line),
                progress=advance,
            )
    except KeyboardInterrupt:
        err.print("interrupted: nothing was registered; run the same command again.")
        raise typer.Exit(130) from None
    millions = result.parameters / 1e6
    console.print(
        f"✓ {result.architecture}, {millions:,.0f}M parameters, {result.type}: "
        f"{decimal(result.bytes)} in {result.seconds:.0f} s → {result.path}"
    )
    if not result.chat_template:
        console.print(
            "[yellow]note:[/] the tokenizer config has no chat template, so the GGUF has "
            "none: chat requests will use llama.cpp's default (set one in the model's config)."
        )
    console.print(
        f"Registered [bold]{result.name}[/] in {settings.home / MODELS_FILE}; serve it with "
        f"`hearth serve --model {result.name}`"
    )
