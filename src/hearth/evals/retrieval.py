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
from hearth.rag.stores.base import Filters, Store

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


def direction(qa: QA, document_language: str) -> str:
    """ "en→zh": an English question about a Chinese document."""
    return f"{language(qa.question)}→{document_language}"


def document_languages(
    store: Store, embedder: Embedder, kb: str, documents: set[str]
) -> dict[str, str]:
    """ "zh" for a document whose text is mostly Chinese, else "en", read from a few of its
    chunks (an answer like an e-mail address says nothing of the document's language)."""
    out = {}
    for name in sorted(documents):
        hits = store.vector_search(kb, embedder.query(name), 3, Filters(documents=(name,)))
        text = "".join(h.chunk.text for h in hits)
        han = sum(1 for c in text if "\u3400" <= c <= "\u9fff")
        letters = sum(1 for c in text if c.isalpha())
        out[name] = "zh" if letters and han / letters > 0.3 else "en"
    return out


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
    languages = document_languages(store, embedder, kb, {item.document for item in qa})
    directions = [direction(item, languages[item.document]) for item in qa]
    groups = sorted(set(directions))
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
                picked = [r for r, d in zip(ranks, directions, strict=True) if d == group]
                out.append(_scores(mode, group, picked))
    return out


def _scores(mode: str, group: str, ranks: list[int | None]) -> Scores:
    hit_at = {c: sum(1 for r in ranks if r is not None and r <= c) / len(ranks) for c in CUTOFFS}
    mrr = sum(1.0 / r for r in ranks if r is not None) / len(ranks)
    return Scores(mode, len(ranks), hit_at, mrr, group)
