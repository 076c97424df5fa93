"""`hearth eval`: measure retrieval (and later, models)."""

from __future__ import annotations

import json
from pathlib import Path

import typer
from rich.console import Console
from rich.table import Table

from hearth.config import load_settings
from hearth.evals.retrieval import CUTOFFS, evaluate, load_qa
from hearth.rag.kb import embedder_of, open_store

app = typer.Typer(help="Evaluate retrieval quality.", no_args_is_help=True)
console = Console()


@app.command()
def retrieval(
    kb: str,
    qa_file: Path = typer.Argument(..., help="JSONL: question, document, answer_contains."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """hit@1/3/5 and MRR for vector, keyword and hybrid search side by side.

    Example: hearth eval retrieval handbook qa.jsonl
    """
    qa = load_qa(qa_file)
    store = open_store(load_settings().knowledge_url)
    scores = evaluate(store, embedder_of(store.get_kb(kb)), kb, qa)
    if as_json:
        rows = [
            {"mode": s.mode, "questions": s.questions, "mrr": s.mrr}
            | {f"hit@{c}": s.hit_at[c] for c in CUTOFFS}
            for s in scores
        ]
        typer.echo(json.dumps(rows, indent=2))
        return
    table = Table(title=f"retrieval on {kb}: {len(qa)} questions")
    table.add_column("mode")
    for c in CUTOFFS:
        table.add_column(f"hit@{c}", justify="right")
    table.add_column("MRR", justify="right")
    for s in scores:
        table.add_row(s.mode, *(f"{s.hit_at[c]:.3f}" for c in CUTOFFS), f"{s.mrr:.3f}")
    console.print(table)
