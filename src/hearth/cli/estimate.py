"""``hearth models estimate`` (memory to serve or fine-tune a model) and ``hearth models info``
(what a GGUF or config.json says about a model). The arithmetic lives in
``hearth.tokens.memory``, the file reading in ``hearth.hub.gguf_info``.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hearth.config import ModelSpec, load_settings
from hearth.errors import InvalidRequest
from hearth.hub.gguf_info import ModelFacts, NotAModelFile, read_facts, resolve
from hearth.tokens.memory import (
    GB,
    Estimate,
    Shape,
    Train,
    dtype_name,
    estimate_inference,
    estimate_training,
    is_dtype,
    parse_params,
    typical_shape,
)

console = Console()

MODEL_HELP = "Registered model name, a .gguf file, or a Hugging Face config.json / directory."


def estimate(
    model: str | None = typer.Argument(None, help=MODEL_HELP, show_default=False),
    params: str | None = typer.Option(
        None, "--params", help="Parameter count instead of a model: 7b, 0.5b, 135m, 7e9."
    ),
    dtype: str | None = typer.Option(
        None,
        "--dtype",
        help="Weight format: fp32, fp16, bf16, int8, nf4, or a GGUF type (q8_0, q4_k_m, q4_0…). "
        "Default: the file's own tensors; fp16 for --params; bf16 (nf4 for qlora) to train.",
    ),
    context: int | None = typer.Option(
        None, "--context", min=1, help="Tokens per sequence. Default: registered, else 4096."
    ),
    parallel: int | None = typer.Option(
        None, "--parallel", min=1, help="Sequences served at once. Default: registered, else 1."
    ),
    batch: int | None = typer.Option(
        None,
        "--batch",
        min=1,
        help="Training: sequences per step (default 1). Serving: tokens per forward pass "
        "(llama.cpp ubatch, default 512).",
    ),
    train: Train | None = typer.Option(None, "--train", help="Estimate fine-tuning instead."),
    lora_rank: int = typer.Option(8, "--lora-rank", min=1, help="LoRA / QLoRA adapter rank."),
    checkpointing: bool = typer.Option(
        True, "--checkpointing/--no-checkpointing", help="Gradient checkpointing (training)."
    ),
    kv_dtype: str = typer.Option("f16", "--kv-dtype", help="KV cache type: f16, q8_0, q4_0…"),
    as_json: bool = typer.Option(False, "--json", help="Print byte counts as JSON."),
) -> None:
    """Estimate memory: weights, KV cache, activations, gradients, optimizer state, total."""
    shape, facts, spec = _load(model, params)
    context = context or (spec.context if spec else 4096)
    if train is not None:
        batch = batch or 1
        result = estimate_training(
            shape,
            train,
            dtype=dtype,
            context=context,
            batch=batch,
            lora_rank=lora_rank,
            checkpointing=checkpointing,
        )
        used = dtype_name(dtype or ("nf4" if train is Train.QLORA else "bf16"))
        extra: dict[str, Any] = {"checkpointing": checkpointing}
        if train is not Train.FULL:
            extra["lora_rank"] = lora_rank
    else:
        parallel = parallel or (spec.parallel if spec else 1)
        batch = batch or 512
        file_weights = facts.weights_bytes if facts and dtype is None else None
        used = dtype_name(dtype) if dtype else _default_dtype(facts)
        result = estimate_inference(
            shape,
            dtype=used,
            context=context,
            parallel=parallel,
            ubatch=batch,
            kv_dtype=kv_dtype,
            weights=file_weights,
        )
        if file_weights is not None and facts is not None:
            used = f"{facts.file_type} (tensor bytes in the file)"
        extra = {"parallel": parallel, "kv_dtype": dtype_name(kv_dtype)}
    inputs: dict[str, Any] = {
        "model": model,
        "path": facts.path if facts else None,
        "params": shape.params,
        "train": train.value if train else None,
        "dtype": used,
        "context": context,
        "batch": batch,
        **extra,
        "shape": {k: v for k, v in asdict(shape).items() if k not in ("params", "source")},
        "shape_source": shape.source,
        "shapes_assumed": params is not None,
    }
    if as_json:
        out = {**result.components(), "unit": "bytes", "inputs": inputs}
        typer.echo(json.dumps({**out, "notes": list(result.notes)}, indent=2))
        return
    _print_estimate(result, inputs)


def _load(
    model: str | None, params: str | None
) -> tuple[Shape, ModelFacts | None, ModelSpec | None]:
    if params is not None and model is None:
        return typical_shape(parse_params(params)), None, None
    if model is not None and params is None:
        settings = load_settings()
        facts = read_facts(resolve(model, settings))
        return shape_from_facts(facts), facts, settings.models.get(model)
    raise InvalidRequest(
        "give either a MODEL (registered name, .gguf, config.json) or --params 7b, not both "
        "and not neither; e.g. `hearth models estimate --params 7b`.",
        param="model",
    )


def shape_from_facts(facts: ModelFacts) -> Shape:
    """The memory-relevant shape of a model file; an error if the file lacks one."""
    if not (facts.layers and facts.heads and facts.embedding_length and facts.head_dim):
        raise NotAModelFile(
            f"{facts.path} does not record layers, attention heads and embedding length, so its "
            "KV cache cannot be estimated; use --params with the model's size instead.",
            param="model",
        )
    return Shape(
        params=facts.params,
        layers=facts.layers,
        hidden=facts.embedding_length,
        heads=facts.heads,
        kv_heads=facts.kv_heads or facts.heads,
        head_dim=facts.head_dim,
        ffn=facts.feed_forward_length or 4 * facts.embedding_length,
        vocab=facts.vocab_size or 0,
        tied_embeddings=bool(facts.tied_embeddings),
        source=facts.path,
    )


def _default_dtype(facts: ModelFacts | None) -> str:
    """The file's own dtype when we know its bits per weight (HF configs), else fp16."""
    if facts is not None and is_dtype(facts.file_type):
        return dtype_name(facts.file_type)
    return "fp16"


def _print_estimate(result: Estimate, inputs: dict[str, Any]) -> None:
    name = inputs["model"] or f"a {_count(inputs['params'])}-parameter model"
    mode = f"{inputs['train']} fine-tuning" if inputs["train"] else "serving"
    table = Table(title=f"Memory for {mode}: {name}")
    table.add_column("component")
    table.add_column("GB", justify="right")
    table.add_column("bytes", justify="right")
    for name, size in result.components().items():
        style = "bold" if name == "total" else None
        table.add_row(name.replace("_", " "), f"{size / GB:.2f}", f"{size:,}", style=style)
    console.print(table)
    skip = {"model", "path", "shape", "shape_source", "shapes_assumed", "params", "train"}
    used = ", ".join(f"{k}={v}" for k, v in inputs.items() if k not in skip)
    console.print(f"{mode}, {_count(inputs['params'])} params, {used}", highlight=False)
    shape = inputs["shape"]
    dims = (
        f"{shape['layers']} layers, {shape['heads']} heads, {shape['kv_heads']} KV heads, "
        f"head dim {shape['head_dim']}, {shape['hidden']} hidden"
    )
    if inputs["shapes_assumed"]:
        console.print(
            f"[yellow]Shapes are assumed[/] ({inputs['shape_source'].removeprefix('assumed: ')}:"
            f" {dims}); pass a GGUF or config.json for exact figures."
        )
    else:
        console.print(f"Shapes from {inputs['shape_source']}: {dims}.", highlight=False)
    for note in result.notes:
        console.print(f"[dim]{note}[/]")
    console.print("[dim]GB = 10^9 bytes. Tensors only; the runtime adds 0.5-2 GB.[/]")


def info(
    model: str = typer.Argument(..., help=MODEL_HELP, show_default=False),
    as_json: bool = typer.Option(False, "--json", help="Print JSON."),
) -> None:
    """Show what a model file says: architecture, size, quantisation, tokenizer, template."""
    facts = read_facts(resolve(model, load_settings()))
    if as_json:
        typer.echo(json.dumps(facts.to_dict(), ensure_ascii=False, indent=2))
        return
    table = Table(title=f"{model}", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    for name, value in _info_rows(facts):
        table.add_row(name, value)
    console.print(table)
    if facts.tensor_mix:
        mix = Table(title="tensor types")
        for col in ("type", "tensors", "params", "GB", "share of bytes"):
            mix.add_column(col, justify="left" if col == "type" else "right")
        total = sum(m.bytes for m in facts.tensor_mix) or 1
        for m in facts.tensor_mix:
            share = f"{100 * m.bytes / total:.1f}%"
            mix.add_row(m.type, str(m.tensors), _count(m.params), f"{m.bytes / GB:.3f}", share)
        console.print(mix)
    if facts.chat_template:
        lines = facts.chat_template.splitlines()
        console.print(f"[bold]chat template[/] ({len(lines)} lines), first lines:")
        console.print("\n".join(lines[:5]), markup=False, highlight=False)


def _info_rows(facts: ModelFacts) -> list[tuple[str, str]]:
    def show(value: object) -> str:
        return "—" if value in (None, "") else str(value)

    weights = f"{facts.weights_bytes / GB:.3f} GB" if facts.weights_bytes else "—"
    exact = "" if facts.format == "gguf" else " (computed from the config's shapes)"
    tokenizer = facts.tokenizer + (f" (pre: {facts.tokenizer_pre})" if facts.tokenizer_pre else "")
    rope = ", ".join(f"{k}={_num(v)}" for k, v in facts.rope.items())
    template = "none"
    if facts.chat_template:
        template = f"present, {len(facts.chat_template.splitlines())} lines"
    return [
        ("path", facts.path),
        ("format", facts.format),
        ("architecture", show(facts.architecture)),
        ("name", show(facts.name)),
        ("parameters", f"{facts.params:,} ({_count(facts.params)}){exact}"),
        ("weights", weights),
        ("quantisation" if facts.format == "gguf" else "dtype", show(facts.file_type)),
        ("context length", show(facts.context_length)),
        ("embedding length", show(facts.embedding_length)),
        ("feed-forward length", show(facts.feed_forward_length)),
        ("layers", show(facts.layers)),
        ("heads / KV heads", f"{show(facts.heads)} / {show(facts.kv_heads)}"),
        ("head dim", show(facts.head_dim)),
        ("tied embeddings", show(facts.tied_embeddings)),
        ("tokenizer", show(tokenizer)),
        ("vocabulary", show(facts.vocab_size)),
        ("rope", show(rope)),
        ("chat template", template),
    ]


def _num(value: object) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _count(n: int) -> str:
    for size, suffix in ((10**12, "T"), (10**9, "B"), (10**6, "M"), (10**3, "K")):
        if n >= size:
            return f"{n / size:.2f}{suffix}"
    return str(n)
