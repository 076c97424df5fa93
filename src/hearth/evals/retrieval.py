"""hit@1/3/5 and MRR of a knowledge base's retrieval, per search mode, on a QA set, over all
questions and per direction (the question's language -> the answer's: zh→en, en→zh ...).

A QA line is ``{"question": ..., "document": "file name", "answer_contains": "..."}``; a
retrieved chunk is a hit when it comes from that document and, if ``answer_contains`` is
given, holds that text. The small-talk gate is off here: this measures ranking. Other
phrasings of a question (its translation) can be given, as search takes them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from hearth.errors import UserError
from hearth.rag.answer import language
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
    group: str = "all"  # or a direction such as "en→zh"


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


def direction(qa: QA) -> str:
    """ "en→zh": an English question whose answer is Chinese text ("?" without an answer)."""
    target = language(qa.answer_contains) if qa.answer_contains else "?"
    return f"{language(qa.question)}→{target}"


def evaluate(
    store: Store,
    embedder: Embedder,
    kb: str,
    qa: list[QA],
    *,
    modes: tuple[str, ...] = MODES,
    phrasings: Mapping[str, Sequence[str]] | None = None,
) -> list[Scores]:
    """Scores per mode: over all questions, then per direction when there are several."""
    k = max(CUTOFFS)
    groups = sorted({direction(item) for item in qa})
    out = []
    for mode in modes:
        ranks: list[int | None] = []
        for item in qa:
            also = (phrasings or {}).get(item.question, ())
            results = search(
                store, embedder, kb, item.question, k=k, mode=mode, gate=False, also=also
            )
            ranks.append(next((r.rank for r in results if is_hit(r, item)), None))
        out.append(_scores(mode, "all", ranks))
        if len(groups) > 1:
            for group in groups:
                picked = [r for r, item in zip(ranks, qa, strict=True) if direction(item) == group]
                out.append(_scores(mode, group, picked))
    return out


def _scores(mode: str, group: str, ranks: list[int | None]) -> Scores:
    hit_at = {c: sum(1 for r in ranks if r is not None and r <= c) / len(ranks) for c in CUTOFFS}
    mrr = sum(1.0 / r for r in ranks if r is not None) / len(ranks)
    return Scores(mode, len(ranks), hit_at, mrr, group)
