"""Knowledge-base ingestion and retrieval quality.

    .venv/bin/python bench/rag.py            # 1,000 mixed documents
    .venv/bin/python bench/rag.py --docs 200 # quicker

1. Ingestion of N mixed documents (md, txt, html, docx, pdf made from the bundled sample
   corpus, each copy made unique) end to end — walk, hash, parse, split, embed, write —
   in chunks per second, next to the bundled embedder alone on the very same chunk texts
   (its rate is the roof). Goal: end to end ≥ 0.9x the embedder alone.
2. hit@1/3/5 and MRR of hybrid, vector and keyword search on the sample QA set.
Search latency at 100k / 1M chunks is bench/rag_search.py's.
Prints a table and writes bench/results/rag.json.
"""

from __future__ import annotations

import argparse
import io
import random
import shutil
import sys
import tempfile
import time
from pathlib import Path

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, write_json
from hearth.evals.retrieval import CUTOFFS, evaluate, load_qa
from hearth.rag.embed import E5Embedder
from hearth.rag.ingest import BATCH_CHUNKS, embed_text, ingest
from hearth.rag.parse import parse
from hearth.rag.split import split
from hearth.rag.stores.sqlite import SQLiteStore

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "hearth" / "data" / "kb_sample"
console = Console()


def make_corpus(folder: Path, count: int, seed: int = 1) -> None:
    """``count`` documents cycling through the sample's formats, each with unique bytes."""
    sources = sorted((SAMPLE / "docs").iterdir())
    rng = random.Random(seed)
    for i in range(count):
        src = sources[i % len(sources)]
        out = folder / f"{i:04d}_{src.name}"
        tag = f"文档编号 {i} · document {i} · {rng.randrange(10**9)}"
        if src.suffix in (".md", ".txt"):
            raw = src.read_bytes()
            encoding = "gbk" if _is_gbk(raw) else "utf-8"
            out.write_bytes(raw + f"\n\n{tag}\n".encode(encoding))
        elif src.suffix == ".html":
            out.write_text(
                src.read_text(encoding="utf-8").replace("</body>", f"<p>{tag}</p></body>"),
                encoding="utf-8",
            )
        elif src.suffix == ".docx":
            import docx

            document = docx.Document(str(src))
            document.add_paragraph(tag)
            document.save(str(out))
        else:
            from pypdf import PdfReader, PdfWriter

            writer = PdfWriter(clone_from=PdfReader(str(src)))
            writer.add_metadata({"/Subject": tag})
            buffer = io.BytesIO()
            writer.write(buffer)
            out.write_bytes(buffer.getvalue())


def _is_gbk(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return True
    return False


def embedder_alone(emb: E5Embedder, folder: Path) -> tuple[int, float]:
    """The same chunk texts ingestion embeds, embedded with nothing else going on."""
    texts = []
    for path in sorted(folder.iterdir()):
        doc = parse(path)
        texts += [embed_text(c) for c in split(doc, path.name, emb.count_tokens)]
    started = time.perf_counter()
    for i in range(0, len(texts), BATCH_CHUNKS):
        emb.passages(texts[i : i + BATCH_CHUNKS])
    return len(texts), time.perf_counter() - started


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--docs", type=int, default=1000)
    args = ap.parse_args()
    emb = E5Embedder()
    work = Path(tempfile.mkdtemp(prefix="hearth-bench-rag-"))
    try:
        folder = work / "docs"
        folder.mkdir()
        make_corpus(folder, args.docs)
        store = SQLiteStore(work / "kb.db")
        store.create_kb("bench", emb.model, emb.dim)
        report = ingest(store, emb, "bench", [folder])
        alone_chunks, alone_s = embedder_alone(emb, folder)
        qa_store = SQLiteStore(work / "qa.db")
        qa_store.create_kb("qa", emb.model, emb.dim)
        ingest(qa_store, emb, "qa", [SAMPLE / "docs"])
        scores = evaluate(qa_store, emb, "qa", load_qa(SAMPLE / "qa.jsonl"))
    finally:
        shutil.rmtree(work, ignore_errors=True)
    end_to_end = report.chunks_per_second
    alone = alone_chunks / alone_s
    ratio = end_to_end / alone
    table = Table(title=f"knowledge bases: {args.docs} documents, {report.chunks} chunks")
    for col in ("figure", "value", "goal", ""):
        table.add_column(col)
    table.add_row("ingestion end to end, chunks/s", f"{end_to_end:.1f}", "", "")
    table.add_row("embedder alone, chunks/s", f"{alone:.1f}", "", "")
    table.add_row(
        "end to end / embedder", f"{ratio:.2f}x", "≥ 0.9x", "PASS" if ratio >= 0.9 else "FAIL"
    )
    table.add_row(
        "failed files", str(len(report.failed)), "0", "PASS" if not report.failed else "FAIL"
    )
    for s in scores:
        hits = " / ".join(f"{s.hit_at[c]:.3f}" for c in CUTOFFS)
        table.add_row(f"{s.mode}: hit@1/3/5, MRR", f"{hits}, {s.mrr:.3f}", "", "")
    console.print(table)
    path = write_json(
        "rag.json",
        {
            "machine": machine_info(),
            "documents": args.docs,
            "chunks": report.chunks,
            "ingest_seconds": report.seconds,
            "ingest_chunks_per_second": end_to_end,
            "embedder_alone_chunks": alone_chunks,
            "embedder_alone_seconds": alone_s,
            "embedder_alone_chunks_per_second": alone,
            "ratio": ratio,
            "failed": report.failed,
            "retrieval": [
                {"mode": s.mode, "questions": s.questions, "mrr": s.mrr}
                | {f"hit@{c}": s.hit_at[c] for c in CUTOFFS}
                for s in scores
            ],
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
