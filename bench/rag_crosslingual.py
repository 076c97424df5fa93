"""Retrieval across Chinese and English on the bundled sample, with and without translated
queries, and what the translation costs.

    .venv/bin/python bench/rag_crosslingual.py

The sample (26 documents, about half Chinese, half English) is ingested with the bundled
embedder; its question sets (`qa.jsonl`, same language, and `qa_crosslingual.jsonl`,
questions in one language about documents in the other) are asked in hybrid, vector and
keyword mode: hit@1/3/5 and MRR per direction (question language → answer language), first
as written, then with each question's translation by the chat model (--model, default the
bundled qwen2.5) searched too. Also measured: the search itself per query (the embedding of
the query included, the model call not), the model call per new question, and the same
question again (cached); and that no line of `smalltalk.txt` retrieves anything either way.
Goal: hit@5 ≥ 0.95 overall and in each direction with translation; zero small-talk hits.
Prints a table and writes bench/results/rag_crosslingual.json.
"""

from __future__ import annotations

import argparse
import asyncio
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _common import machine_info, percentile, write_json
from hearth.cli.kb_ask import _chat
from hearth.config import DEFAULT_MODEL, load_settings
from hearth.engines.registry import ModelRegistry
from hearth.evals.retrieval import CUTOFFS, Scores, evaluate, load_qa
from hearth.hub import bundled
from hearth.rag.embed import E5Embedder
from hearth.rag.ingest import ingest
from hearth.rag.retrieve import search
from hearth.rag.stores.sqlite import SQLiteStore
from hearth.rag.translate import Translator

SAMPLE = Path(__file__).resolve().parents[1] / "src" / "hearth" / "data" / "kb_sample"


async def translate_all(model: str, home: Path, questions: list[str]) -> dict[str, Any]:
    """Each question's translation, timed cold (asked of the model) and warm (cached)."""
    settings = load_settings(home=home, env={})
    registry = ModelRegistry(settings)
    try:
        chat = _chat(await registry.get(model))
        translator = Translator()
        await translator.translate("warm-up: how are you?", chat)
        out: dict[str, list[str]] = {}
        cold, warm = [], []
        for question in questions:
            started = time.perf_counter()
            other = await translator.translate(question, chat)
            cold.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            await translator.translate(question, chat)
            warm.append((time.perf_counter() - started) * 1000)
            out[question] = [other] if other else []
        return {"phrasings": out, "cold_ms": cold, "warm_ms": warm}
    finally:
        await registry.close()


def timed_searches(
    store: SQLiteStore, emb: E5Embedder, questions: list[str], phrasings: dict[str, list[str]]
) -> list[float]:
    ms = []
    for q in questions:
        started = time.perf_counter()
        search(store, emb, "sample", q, also=phrasings.get(q, ()))
        ms.append((time.perf_counter() - started) * 1000)
    return ms


def as_rows(scores: list[Scores]) -> list[dict[str, Any]]:
    return [
        {"mode": s.mode, "group": s.group, "questions": s.questions, "mrr": round(s.mrr, 3)}
        | {f"hit@{c}": round(s.hit_at[c], 3) for c in CUTOFFS}
        for s in scores
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=DEFAULT_MODEL)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="hearth-bench-xl-"))
    try:
        bundled.ensure(args.model, work / "models")
        emb = E5Embedder()
        store = SQLiteStore(work / "kb.db")
        store.create_kb("sample", emb.model, emb.dim)
        ingest(store, emb, "sample", [SAMPLE / "docs"])
        qa = load_qa(SAMPLE / "qa.jsonl") + load_qa(SAMPLE / "qa_crosslingual.jsonl")
        small_talk = (SAMPLE / "smalltalk.txt").read_text(encoding="utf-8").splitlines()
        questions = [q.question for q in qa]
        translated = asyncio.run(translate_all(args.model, work, questions + small_talk))
        phrasings = translated["phrasings"]
        plain = evaluate(store, emb, "sample", qa)
        both = evaluate(store, emb, "sample", qa, phrasings=phrasings)
        search_plain = timed_searches(store, emb, questions, {})
        search_both = timed_searches(store, emb, questions, phrasings)
        talk_hits = {
            "as written": sum(1 for t in small_talk if search(store, emb, "sample", t)),
            "with translation": sum(
                1 for t in small_talk if search(store, emb, "sample", t, also=phrasings[t])
            ),
        }
        store.close()
    finally:
        shutil.rmtree(work, ignore_errors=True)
    report(args, plain, both, translated, search_plain, search_both, talk_hits, len(small_talk))


def report(
    args: argparse.Namespace,
    plain: list[Scores],
    both: list[Scores],
    translated: dict[str, Any],
    search_plain: list[float],
    search_both: list[float],
    talk_hits: dict[str, int],
    talk_lines: int,
) -> None:
    table = Table(title=f"retrieval across languages, {args.model} translating")
    for col in ("mode", "direction", "questions", "as written: hit@1/3/5", "translated: hit@1/3/5"):
        table.add_column(col)
    for a, b in zip(plain, both, strict=True):
        table.add_row(
            a.mode,
            a.group,
            str(a.questions),
            " / ".join(f"{a.hit_at[c]:.3f}" for c in CUTOFFS),
            " / ".join(f"{b.hit_at[c]:.3f}" for c in CUTOFFS),
        )
    Console(width=120).print(table)
    hybrid = [s for s in both if s.mode == "hybrid"]
    goal = all(s.hit_at[5] >= 0.95 for s in hybrid)
    print(f"goal hit@5 >= 0.95 overall and per direction (hybrid, translated): {goal}")
    cold, warm = translated["cold_ms"], translated["warm_ms"]
    timing = {
        "search_ms_p50_p95": [percentile(search_plain, 50), percentile(search_plain, 95)],
        "search_with_translation_ms_p50_p95": [
            percentile(search_both, 50),
            percentile(search_both, 95),
        ],
        "model_call_ms_p50_p95": [percentile(cold, 50), percentile(cold, 95)],
        "cached_ms_p50": percentile(warm, 50),
    }
    for name, value in timing.items():
        print(f"{name}: {value}")
    print(f"small-talk lines that retrieved anything (of {talk_lines}): {talk_hits}")
    path = write_json(
        "rag_crosslingual.json",
        {
            "machine": machine_info(),
            "model": args.model,
            "as_written": as_rows(plain),
            "translated": as_rows(both),
            "goal_met": goal,
            "timing": timing,
            "small_talk_lines": talk_lines,
            "small_talk_hits": talk_hits,
            "translations": translated["phrasings"],
        },
    )
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
