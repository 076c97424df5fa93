"""``hearth models pull``: download a model repository from Hugging Face or ModelScope."""

from __future__ import annotations

from enum import StrEnum

import typer
from rich.console import Console
from rich.filesize import decimal
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from hearth.config import load_settings
from hearth.hub import pull as hub
from hearth.hub.local import MODELS_FILE

console = Console()
err = Console(stderr=True)


class Source(StrEnum):
    hf = "hf"
    modelscope = "modelscope"


def pull(
    repo: str = typer.Argument(
        ..., help="Repository id as in the model page URL, e.g. Qwen/Qwen2.5-0.5B-Instruct-GGUF."
    ),
    file: list[str] = typer.Option(
        None,
        "--file",
        "-f",
        help="Glob over paths in the repo, case-insensitive, e.g. '*q4_k_m.gguf'; repeat for "
        "several. Default: every file.",
    ),
    revision: str = typer.Option(
        None,
        "--revision",
        "-r",
        help="Branch, tag or commit. Default: main on hf, master on modelscope.",
    ),
    source: Source = typer.Option(
        Source.hf,
        "--source",
        "-s",
        help="hf (honours HF_ENDPOINT, e.g. https://hf-mirror.com, and HF_TOKEN) or "
        "modelscope (honours MODELSCOPE_ENDPOINT).",
    ),
) -> None:
    """Download model files, resuming interrupted ones and checking sha256; GGUF files
    become servable models.

    Example: hearth models pull Qwen/Qwen2.5-0.5B-Instruct-GGUF --file '*q4_k_m.gguf'
    then: hearth serve --model qwen2.5-0.5b-instruct-q4_k_m
    """
    settings = load_settings()
    plan = hub.plan(settings, repo, patterns=file or (), revision=revision, source=source.value)
    err.print(
        f"[bold]{plan.source}:{plan.repo}[/] @ {plan.listing.revision}: {len(plan.files)} "
        f"file(s), {decimal(plan.total)} → {plan.directory}"
    )
    if not file and plan.total > hub.LARGE_PULL:
        err.print(
            f"[yellow]warning:[/] that is the whole repository ({decimal(plan.total)}); to "
            "pick one quantisation, stop now (Ctrl-C) and pass --file, e.g. --file '*q4_k_m*'."
        )
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    try:
        with Progress(*columns, console=err) as progress:
            result = hub.download(settings, plan, progress=progress)
    except KeyboardInterrupt:
        err.print("interrupted: run the same command again to resume where it stopped.")
        raise typer.Exit(130) from None
    for done in result.fetched:
        if done.skipped:
            how = "already downloaded and verified"
        elif done.resumed_from:
            how = f"resumed at {decimal(done.resumed_from)}, verified"
        else:
            how = "downloaded, verified"
        console.print(f"  ✓ {done.file.path} ({decimal(done.path.stat().st_size)}): {how}")
    console.print(f"Files are in {plan.directory}")
    for name, path in result.registered.items():
        console.print(
            f"Registered [bold]{name}[/] in {settings.home / MODELS_FILE}; serve it with "
            f"`hearth serve --model {name}`"
        )
        if path.is_dir():
            console.print(
                f"  It is served with transformers (PyTorch), which is slow on a CPU. For "
                f"llama.cpp's speed convert it: `hearth models convert {plan.repo} --type "
                "q8_0` (or f16), then serve the name it prints."
            )
    if not result.registered:
        console.print(
            "No GGUF file and no Hugging Face model directory (config.json and *.safetensors) "
            "among these files, so nothing new to serve was registered."
        )
