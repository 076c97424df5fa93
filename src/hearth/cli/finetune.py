"""`hearth finetune`: check data, train LoRA / DPO adapters, list and remove them."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn
from rich.table import Table

from hearth.config import DEFAULT_MODEL, load_settings

app = typer.Typer(
    help="Fine-tune a local model with LoRA (or DPO) on your own examples, then serve the "
    "adapter like any other model.\n\nExample:\n\n  hearth finetune check facts.jsonl\n\n"
    "  hearth finetune run smollm2-135m-instruct facts.jsonl --name facts --steps 40 --lr 1e-3",
    no_args_is_help=True,
)
console = Console()

DATA_HELP = (
    "JSON or JSONL files: alpaca (instruction/input/output), sharegpt (conversations), "
    "OpenAI messages, or preference pairs (prompt/chosen/rejected)."
)


@app.command()
def check(
    data: list[Path] = typer.Argument(
        ..., help=DATA_HELP + " A registered model's name first is taken as --model."
    ),
    model: str = typer.Option(
        None, "--model", "-m", help=f"Base model whose tokenizer counts [default: {DEFAULT_MODEL}]."
    ),
    max_len: int = typer.Option(1024, "--max-len", min=8, help="Longest example in tokens."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Validate training data: problems by file and line, examples and tokens counted with
    the model's own tokenizer, and one example rendered with its chat template (the parts
    the loss trains on marked). Exits 1 when any record has a problem."""
    from hearth.finetune.prepare import prepare
    from hearth.finetune.run import check_base

    settings = load_settings()
    if model is None:
        model = DEFAULT_MODEL
        # `check BASE DATA...`, as `run` takes them, when the first is a model, not a file.
        if len(data) > 1 and not data[0].exists() and str(data[0]) in settings.models:
            model, data = str(data[0]), data[1:]
    check_base(settings, model)
    prepared = prepare(settings, model, data, max_len=max_len)
    report = {**prepared.summary(), "model": model, "max_len": max_len}
    if as_json:
        report["sample"] = [{"text": t, "trained": trained} for t, trained in prepared.sample]
        typer.echo(json.dumps(report, ensure_ascii=False, indent=2))
    else:
        _show_check(report, prepared.sample)
    if report["problems"]:
        raise typer.Exit(1)


def _show_check(report: dict[str, Any], sample: list[tuple[str, bool]]) -> None:
    table = Table("file", "format", "examples")
    for file, formats in report["files"].items():
        for fmt, count in formats.items() or [("-", 0)]:
            table.add_row(file, fmt, str(count))
    console.print(table)
    tokens = report["tokens"]
    console.print(
        f"{report['usable']} of {report['examples']} examples usable; tokens ({report['model']}): "
        f"{tokens['total']} in all, {tokens['trained']} trained on, longest {tokens['max']}, "
        f"mean {tokens['mean']}"
    )
    if report["too_long"]:
        console.print(
            f"[yellow]{len(report['too_long'])} example(s) longer than --max-len "
            f"{report['max_len']} are left out:[/] {', '.join(report['too_long'][:5])}"
        )
    for p in report["problems"]:
        console.print(f"[red]{escape(p['at'])}[/]: {escape(p['message'])}")
    if sample:
        console.print("\nOne example as the model sees it ([green]green[/]: trained on):")
        console.print(
            "".join(f"[green]{escape(t)}[/]" if trained else escape(t) for t, trained in sample),
            highlight=False,
        )


@app.command()
def run(
    base: str = typer.Argument(..., help="A registered GGUF model, e.g. smollm2-135m-instruct."),
    data: list[Path] = typer.Argument(..., help=DATA_HELP),
    name: str = typer.Option(..., "--name", "-n", help="The adapter's model name."),
    method: str = typer.Option("lora", "--method", help="lora, qlora or dpo."),
    steps: int = typer.Option(0, "--steps", min=0, help="Optimizer steps (overrides --epochs)."),
    epochs: float = typer.Option(3.0, "--epochs", min=0.01, help="Passes over the data."),
    lr: float = typer.Option(2e-4, "--lr", min=0.0, help="Learning rate."),
    rank: int = typer.Option(8, "--rank", min=1, help="LoRA rank."),
    alpha: float = typer.Option(16.0, "--alpha", min=0.0, help="LoRA alpha (scale = alpha/rank)."),
    batch_size: int = typer.Option(4, "--batch-size", min=1),
    max_len: int = typer.Option(1024, "--max-len", min=8, help="Longest example in tokens."),
    seed: int = typer.Option(0, "--seed"),
    threads: int = typer.Option(0, "--threads", min=0, help="torch threads (0: one per core)."),
    save_every: int = typer.Option(50, "--save-every", min=1, help="Checkpoint every N steps."),
    beta: float = typer.Option(0.1, "--beta", min=0.0, help="DPO's beta."),
    eval_data: Path = typer.Option(
        None, "--eval-data", help="Multiple-choice JSONL: evaluate base and adapter on it after."
    ),
    resume: bool = typer.Option(False, "--resume", help="Continue an interrupted run."),
    as_json: bool = typer.Option(False, "--json", help="Print the manifest as JSON."),
) -> None:
    """Train an adapter on BASE in a subprocess (progress: step, loss, tokens/s, time left),
    write it as a llama.cpp adapter GGUF with a manifest under $HEARTH_HOME/adapters/NAME,
    check that the served adapter agrees with the trained model, and register NAME as a
    model `hearth serve` serves. Ctrl-C leaves nothing registered; --resume continues."""
    from hearth.finetune.run import Options, train

    settings = load_settings()
    options = Options(
        method=method,
        steps=steps,
        epochs=epochs,
        lr=lr,
        rank=rank,
        alpha=alpha,
        batch_size=batch_size,
        max_len=max_len,
        seed=seed,
        threads=threads,
        save_every=save_every,
        beta=beta,
    )
    with _Bar(quiet=as_json) as bar:
        manifest = train(settings, base, data, name, options, resume=resume, progress=bar.update)
    if eval_data is not None:
        from hearth.cli.evals import before_after

        manifest = before_after(settings, manifest, eval_data, quiet=as_json)
    if as_json:
        typer.echo(json.dumps(manifest.to_json(), ensure_ascii=False, indent=2))
        return
    last = manifest.loss_curve[-1]["loss"] if manifest.loss_curve else float("nan")
    console.print(
        f"[green]adapter '{manifest.name}'[/] over {manifest.base}: {manifest.examples} examples, "
        f"{len(manifest.loss_curve)} steps, final loss {last:.4f}, {manifest.seconds:.0f}s, "
        f"peak memory {manifest.peak_rss_mib:.0f} MiB; served logprobs within "
        f"{manifest.check.get('max_abs_diff')} nats of the trained model.\n"
        f"Serve it: hearth serve (model '{manifest.name}')"
    )


class _Bar:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total} steps"),
            TextColumn("{task.fields[info]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=Console(stderr=True),
            disable=quiet,
        )
        self.task = self.progress.add_task("preparing", total=None, info="")

    def __enter__(self) -> _Bar:
        self.progress.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.progress.stop()

    def update(self, event: dict[str, Any]) -> None:
        kind = event["event"]
        if kind == "preparing":
            self.progress.update(self.task, description="tokenizing")
        elif kind == "loaded":
            self.progress.update(self.task, description="training", info="model loaded")
        elif kind == "step":
            info = f"loss {event['loss']:.4f} {event['tokens_per_s']:.0f} tok/s"
            self.progress.update(
                self.task,
                description="training",
                total=event["max_steps"],
                completed=event["step"],
                info=info,
            )
        elif kind == "checking":
            self.progress.update(self.task, description="checking the adapter")


@app.command("list")
def list_adapters(as_json: bool = typer.Option(False, "--json")) -> None:
    """Adapters trained here (and, with a PostgreSQL database, by every machine on it), and
    runs that were interrupted (resume with --resume)."""
    from hearth.finetune.store import listing, sync

    settings = load_settings()
    sync(settings)
    done, unfinished = listing(settings.home)
    if as_json:
        typer.echo(
            json.dumps(
                {"adapters": [m.to_json() for m in done], "unfinished": unfinished},
                ensure_ascii=False,
                indent=2,
            )
        )
        return
    table = Table("name", "base", "method", "examples", "steps", "final loss", "created")
    for m in done:
        loss = f"{m.loss_curve[-1]['loss']:.4f}" if m.loss_curve else "-"
        table.add_row(
            m.name, m.base, m.method, str(m.examples), str(len(m.loss_curve)), loss, m.created
        )
    console.print(table if done else "No adapters yet: `hearth finetune run --help`.")
    for name in unfinished:
        console.print(
            f"[yellow]unfinished run '{name}'[/]: continue it with `hearth finetune run "
            f"... --name {name} --resume`, or `hearth finetune rm {name}`"
        )


@app.command()
def show(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """An adapter's manifest: base and its hashes, data, hyper-parameters, loss curve."""
    from hearth.finetune.store import read

    manifest = read(load_settings().home, name).to_json()
    if as_json:
        typer.echo(json.dumps(manifest, ensure_ascii=False, indent=2))
        return
    for key, value in manifest.items():
        if key == "loss_curve":
            value = " ".join(f"{p['loss']:.3f}" for p in value[:: max(1, len(value) // 20)])
        console.print(f"[bold]{key}[/]: {escape(str(value))}", highlight=False)


@app.command()
def rm(name: str) -> None:
    """Unregister and delete an adapter (or an unfinished run)."""
    from hearth.errors import UserError
    from hearth.finetune.store import remove

    if not remove(load_settings(), name):
        raise UserError(f"no adapter '{name}'; `hearth finetune list` shows them")
    console.print(f"removed adapter '{name}'")
