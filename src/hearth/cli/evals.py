"""`hearth eval`: measure retrieval (and later, models)."""

from __future__ import annotations

import asyncio
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
    translate: bool = typer.Option(
        False, help="Search with each question's translation too, as `kb search --translate`."
    ),
    model: str = typer.Option(None, "--model", "-m", help="Chat model that translates."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """hit@1/3/5 and MRR for vector, keyword and hybrid search side by side, over all
    questions and per direction (zh→zh, en→zh, zh→en, en→en).

    Example: hearth eval retrieval handbook qa.jsonl --translate
    """
    from hearth.cli.kb_ask import translations

    qa = load_qa(qa_file)
    settings = load_settings()
    store = open_store(settings.knowledge_url)
    embedder = embedder_of(store.get_kb(kb))
    phrasings = None
    if translate:
        questions = [item.question for item in qa]
        phrasings = asyncio.run(translations(settings, model or settings.default_model, questions))
    scores = evaluate(store, embedder, kb, qa, phrasings=phrasings)
    if as_json:
        rows = [
            {"mode": s.mode, "group": s.group, "questions": s.questions, "mrr": s.mrr}
            | {f"hit@{c}": s.hit_at[c] for c in CUTOFFS}
            for s in scores
        ]
        typer.echo(json.dumps(rows, indent=2, ensure_ascii=False))
        return
    table = Table(title=f"retrieval on {kb}: {len(qa)} questions")
    table.add_column("mode")
    table.add_column("questions")
    for c in CUTOFFS:
        table.add_column(f"hit@{c}", justify="right")
    table.add_column("MRR", justify="right")
    for s in scores:
        label = s.mode if s.group == "all" else f"  {s.group}"
        hits = (f"{s.hit_at[c]:.3f}" for c in CUTOFFS)
        table.add_row(label, str(s.questions), *hits, f"{s.mrr:.3f}")
    console.print(table)
