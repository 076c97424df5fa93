"""hit@1/3/5 and MRR of a knowledge base's retrieval, per search mode, on a QA set.

A QA line is ``{"question": ..., "document": "file name", "answer_contains": "..."}``; a
retrieved chunk is a hit when it comes from that document and, if ``answer_contains`` is
given, holds that text. The relevance gate is off here: this measures ranking.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import UserError
from hearth.rag.embed import Embedder
from hearth.rag.retrieve import MODES, Result, search
from hearth.rag.stores.base import Store

CUTOFFS = (1, 3, 5)


@dataclass(frozen=True)
class QA:
    question: str
    document: str
    answer_contains: str = ""


@dataclass(frozen=True)
class Scores:
    mode: str
    questions: int
    hit_at: dict[int, float]
    mrr: float


def load_qa(path: Path) -> list[QA]:
    items = []
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as e:
        raise UserError(f"cannot read {path}: {e.strerror or e}") from e
    for number, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
            items.append(QA(raw["question"], raw["document"], raw.get("answer_contains", "")))
        except (json.JSONDecodeError, KeyError, TypeError) as e:
            raise UserError(
                f"{path}:{number}: expected a JSON object with question and document ({e})"
            ) from e
    if not items:
        raise UserError(f"{path} has no questions")
    return items


def is_hit(result: Result, qa: QA) -> bool:
    return result.chunk.document == qa.document and qa.answer_contains in result.chunk.text


def evaluate(
    store: Store, embedder: Embedder, kb: str, qa: list[QA], *, modes: tuple[str, ...] = MODES
) -> list[Scores]:
    k = max(CUTOFFS)
    out = []
    for mode in modes:
        ranks: list[int | None] = []
        for item in qa:
            results = search(store, embedder, kb, item.question, k=k, mode=mode, threshold=None)
            ranks.append(next((r.rank for r in results if is_hit(r, item)), None))
        hit_at = {c: sum(1 for r in ranks if r is not None and r <= c) / len(qa) for c in CUTOFFS}
        mrr = sum(1.0 / r for r in ranks if r is not None) / len(qa)
        out.append(Scores(mode, len(qa), hit_at, mrr))
    return out
