"""Retrieval: vector, keyword or hybrid (reciprocal rank fusion), with a relevance gate.

The gate is on the query, not on each hit: when even the closest chunk is less similar than
``threshold``, the query is small talk or out of the knowledge base's domain and nothing
is returned ("你好" must not pull documents into the prompt). Otherwise hybrid search fuses
the two rankings, so a product code found only by keywords and a paraphrase found only by
meaning both make it to the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from hearth.errors import UserError
from hearth.rag.embed import Embedder
from hearth.rag.keywords import terms
from hearth.rag.stores.base import Filters, Store
from hearth.types import Chunk, Hit

Mode = Literal["hybrid", "vector", "keyword"]
MODES: tuple[str, ...] = ("hybrid", "vector", "keyword")
RRF_K = 60  # the usual constant: damps the weight of the very first ranks
DEFAULT_THRESHOLD = 0.80  # e5 cosine; tuned on the sample corpus (see tests/rag)
CANDIDATES = 4  # each ranking contributes k × CANDIDATES candidates to the fusion


@dataclass(frozen=True)
class Result:
    rank: int
    chunk: Chunk
    score: float  # fused (hybrid) or the mode's own score
    vector_score: float | None
    keyword_score: float | None

    def citation(self) -> str:
        """``file.pdf p.3 § Heading > Sub`` — what a reader needs to find the passage."""
        parts = [self.chunk.document]
        if self.chunk.page is not None:
            parts.append(f"p.{self.chunk.page}")
        if self.chunk.headings:
            parts.append("§ " + " > ".join(self.chunk.headings))
        return " ".join(parts)


def search(
    store: Store,
    embedder: Embedder,
    kb: str,
    query: str,
    *,
    k: int = 5,
    mode: str = "hybrid",
    filters: Filters = Filters(),
    threshold: float | None = DEFAULT_THRESHOLD,
) -> list[Result]:
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", param="mode")
    if k < 1:
        raise UserError("k must be at least 1", param="k")
    query = query.strip()
    if not query:
        raise UserError("the query is empty", param="query")
    n = k * CANDIDATES if mode == "hybrid" else k
    vector_hits: list[Hit] = []
    if mode in ("hybrid", "vector"):
        vector_hits = store.vector_search(kb, embedder.query(query), n, filters)
        best = vector_hits[0].score if vector_hits else 0.0
        if threshold is not None and best < threshold:
            return []
    keyword_hits: list[Hit] = []
    if mode in ("hybrid", "keyword"):
        words = terms(query)
        keyword_hits = store.keyword_search(kb, words, n, filters) if words else []
    if mode == "vector":
        return _results(vector_hits, {h.chunk_id: h.score for h in vector_hits}, {})
    if mode == "keyword":
        return _results(keyword_hits, {}, {h.chunk_id: h.score for h in keyword_hits})
    return fuse(vector_hits, keyword_hits)[:k]


def fuse(vector_hits: list[Hit], keyword_hits: list[Hit]) -> list[Result]:
    """Reciprocal rank fusion: score = Σ 1 / (RRF_K + rank) over the rankings."""
    scores: dict[int, float] = {}
    chunks: dict[int, Hit] = {}
    for hits in (vector_hits, keyword_hits):
        for rank, hit in enumerate(hits, start=1):
            scores[hit.chunk_id] = scores.get(hit.chunk_id, 0.0) + 1.0 / (RRF_K + rank)
            chunks.setdefault(hit.chunk_id, hit)
    order = sorted(scores, key=lambda cid: scores[cid], reverse=True)
    fused = [Hit(chunks[cid].chunk, scores[cid], cid) for cid in order]
    return _results(
        fused,
        {h.chunk_id: h.score for h in vector_hits},
        {h.chunk_id: h.score for h in keyword_hits},
    )


def _results(hits: list[Hit], vector: dict[int, float], keyword: dict[int, float]) -> list[Result]:
    return [
        Result(i, h.chunk, h.score, vector.get(h.chunk_id), keyword.get(h.chunk_id))
        for i, h in enumerate(hits, start=1)
    ]
