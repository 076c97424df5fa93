"""`hearth kb`: knowledge bases from the terminal."""

from __future__ import annotations

import asyncio
import dataclasses
import json
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from hearth.config import load_settings
from hearth.errors import UserError
from hearth.rag import ingest as ingest_mod
from hearth.rag.embed import E5_NAME, embedder_for
from hearth.rag.kb import embedder_of, open_store
from hearth.rag.stores.base import Filters, Store

app = typer.Typer(
    help="Knowledge bases: add pdf/docx/md/txt/html files, search them, ask questions with "
    "cited answers.",
    no_args_is_help=True,
)
console = Console()


def _store() -> Store:
    return open_store(load_settings().knowledge_url)


def _emit(data: Any) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


@app.command()
def create(
    name: str,
    embedder: str = typer.Option(
        E5_NAME, help="Bundled 'multilingual-e5-small', or MODEL@URL of an /v1/embeddings API."
    ),
    description: str = typer.Option("", help="What this knowledge base holds."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Create an empty knowledge base. Example: hearth kb create handbook"""
    emb = embedder_for(embedder)
    store = _store()
    kb = store.create_kb(name, emb.model, emb.dim, description)
    if as_json:
        _emit(dataclasses.asdict(kb))
    else:
        console.print(
            f"created [bold]{name}[/] ({emb.model}, {emb.dim} dimensions). "
            f"Next: hearth kb add {name} PATH"
        )


@app.command("list")
def list_kbs(as_json: bool = typer.Option(False, "--json")) -> None:
    """List knowledge bases with their document and chunk counts."""
    kbs = _store().list_kbs()
    if as_json:
        _emit([dataclasses.asdict(k) for k in kbs])
        return
    if not kbs:
        console.print("No knowledge bases yet. Create one: hearth kb create NAME")
        return
    table = Table(title="knowledge bases")
    for col in ("name", "documents", "chunks", "embedder", "description"):
        table.add_column(col)
    for k in kbs:
        table.add_row(k.name, str(k.documents), str(k.chunks), k.embed_model, k.description)
    console.print(table)


@app.command()
def add(
    name: str,
    paths: list[Path] = typer.Argument(..., help="Files or folders (searched recursively)."),
    tag: list[str] = typer.Option(None, "--tag", help="Tag the documents; filter on it later."),
    max_tokens: int = typer.Option(256, help="Largest chunk, in the embedder's tokens."),
    overlap: int = typer.Option(32, help="Tokens carried over between chunks."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Add files and folders; unchanged files are skipped, changed ones replaced.

    A file that cannot be read or parsed is reported with the reason and the rest go on;
    the exit status is then 1 (0 when every file was added or unchanged).

    Example: hearth kb add handbook ./docs --tag hr
    """
    if max_tokens < 16 or not 0 <= overlap < max_tokens // 2:
        raise UserError("need --max-tokens ≥ 16 and 0 ≤ --overlap < max-tokens/2")
    missing = [str(p) for p in paths if not p.exists()]
    if missing:
        raise UserError(f"{', '.join(missing)}: no such file or folder")
    store = _store()
    kb = store.get_kb(name)
    emb = embedder_of(kb)
    columns = (
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("files · {task.fields[chunks]} chunks · {task.fields[rate]:.1f} chunks/s"),
        TimeElapsedColumn(),
    )
    with Progress(*columns, console=Console(stderr=True), disable=as_json) as bar:
        task = bar.add_task("ingesting", total=None, chunks=0, rate=0.0)

        def on_progress(p: ingest_mod.Progress) -> None:
            elapsed = bar.tasks[0].elapsed or 1e-9
            bar.update(
                task,
                total=p.files_total,
                completed=p.files_done,
                chunks=p.chunks,
                rate=p.chunks / elapsed,
                description=p.current[-40:],
            )

        report = ingest_mod.ingest(
            store,
            emb,
            name,
            paths,
            tags=tag or (),
            max_tokens=max_tokens,
            overlap=overlap,
            on_progress=on_progress,
        )
    if as_json:
        _emit(dataclasses.asdict(report) | {"chunks_per_second": report.chunks_per_second})
    else:
        console.print(
            f"added {len(report.added)}, replaced {len(report.replaced)}, unchanged "
            f"{len(report.skipped)}, failed {len(report.failed)}: {report.chunks} chunks in "
            f"{report.seconds:.1f}s ({report.chunks_per_second:.1f} chunks/s)"
        )
        for doc, reason in report.failed:
            console.print(f"  [red]✗[/] {doc}: {reason}")
    if report.failed:
        raise typer.Exit(1)


@app.command()
def docs(name: str, as_json: bool = typer.Option(False, "--json")) -> None:
    """List the documents of a knowledge base."""
    records = _store().documents(name)
    if as_json:
        _emit([dataclasses.asdict(r) for r in records])
        return
    table = Table(title=f"{name}: {len(records)} documents")
    for col in ("document", "format", "chunks", "title", "tags"):
        table.add_column(col)
    for r in records:
        table.add_row(r.name, r.format, str(r.chunks), r.title, ", ".join(r.tags))
    console.print(table)


@app.command()
def rm(
    name: str,
    documents: list[str] = typer.Argument(None, help="Documents to remove; none: the whole KB."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Remove a whole knowledge base."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Remove documents (with their chunks and vectors), or a whole knowledge base."""
    store = _store()
    if documents:
        removed = {d: store.delete_document(name, d) for d in documents}
        missing = [d for d, ok in removed.items() if not ok]
        if as_json:
            _emit({"removed": [d for d, ok in removed.items() if ok], "missing": missing})
        else:
            console.print(f"removed {len(documents) - len(missing)} documents")
        if missing:
            raise UserError(f"not in '{name}': {', '.join(missing)} (see `hearth kb docs {name}`)")
        return
    store.get_kb(name)
    if not yes:
        raise UserError(f"removing the whole knowledge base '{name}' needs --yes")
    store.drop_kb(name)
    if as_json:
        _emit({"removed": name})
    else:
        console.print(f"removed knowledge base {name}")


@app.command("search")
def search_cmd(
    name: str,
    query: str,
    k: int = typer.Option(5, "--k", "-k", help="How many chunks."),
    mode: str = typer.Option("hybrid", help="hybrid, vector or keyword."),
    translate: bool = typer.Option(
        False,
        help="Also search with the query in the other language (Chinese <-> English), "
        "translated by the chat model: finds documents written in the other language.",
    ),
    model: str = typer.Option(None, "--model", "-m", help="Chat model that translates."),
    gate: bool = typer.Option(True, help='Small talk ("你好", "thanks") finds nothing.'),
    threshold: float = typer.Option(None, help="Optional floor on vector similarity."),
    doc: list[str] = typer.Option(None, "--doc", help="Only these documents."),
    tag: list[str] = typer.Option(None, "--tag", help="Only documents with these tags."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Ranked chunks with citations. Example: hearth kb search handbook "年假有几天" """
    from hearth.cli.kb_ask import retrieve

    settings = load_settings()
    filters = Filters(tuple(doc or ()), tuple(tag or ()))
    options = {"k": k, "mode": mode, "filters": filters, "gate": gate, "threshold": threshold}
    translator = (model or settings.default_model) if translate else None
    results = asyncio.run(retrieve(settings, name, query, translator, **options))
    if as_json:
        _emit([r.as_dict() for r in results])
        return
    if not results:
        console.print("Nothing relevant found.")
    for r in results:
        console.print(f"[bold][{r.rank}][/] {r.citation()}  [dim]score {r.score:.3f}[/]")
        console.print("    " + r.chunk.text[:300].replace("\n", " "), markup=False)


@app.command()
def ask(
    name: str,
    question: str,
    model: str = typer.Option(None, "--model", "-m", help="Chat model (default: the default)."),
    k: int = typer.Option(5, "--k", "-k", help="Chunks to retrieve."),
    translate: bool = typer.Option(
        True, help="Also search with the question in the other language (Chinese <-> English)."
    ),
    max_tokens: int = typer.Option(512, help="Longest answer, in tokens."),
    as_json: bool = typer.Option(False, "--json"),
) -> None:
    """Answer from the knowledge base, streaming, then list the numbered sources."""
    from hearth.cli.kb_ask import run_ask

    settings = load_settings()
    asyncio.run(
        run_ask(
            settings,
            name,
            model or settings.default_model,
            question,
            k=k,
            translate=translate,
            max_tokens=max_tokens,
            as_json=as_json,
            console=console,
        )
    )
