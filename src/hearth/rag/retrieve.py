"""Retrieval: vector, keyword or hybrid (reciprocal rank fusion), with a relevance gate.

The gate is on the query, not on each hit, and it has two signals, because similarity
alone does not separate them: with e5, "谢谢" is as close to some handbook chunk (0.87) as a
real question is to its answer. A query is small talk, and retrieves nothing, when

- even the closest chunk is less similar than ``threshold`` (out of the domain), or
- it is clearly closer to everyday chit-chat ("你好", "thanks", "how are you" ...) than to
  anything in the knowledge base, or about as close and none of its words occurs in it.

Otherwise hybrid search fuses the two rankings, so a product code found only by keywords
and a paraphrase found only by meaning both make it to the top.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from hearth.errors import UserError
from hearth.rag.embed import Embedder
from hearth.rag.keywords import terms
from hearth.rag.stores.base import Filters, Store
from hearth.types import Chunk, Hit

Mode = Literal["hybrid", "vector", "keyword"]
MODES: tuple[str, ...] = ("hybrid", "vector", "keyword")
RRF_K = 60  # the usual constant: damps the weight of the very first ranks
DEFAULT_THRESHOLD = 0.80  # e5 cosine below which nothing in the KB is about the query
CANDIDATES = 4  # each ranking contributes k × CANDIDATES candidates to the fusion
CLEAR_GAP = 0.03  # closer to chit-chat than to the KB by this much: small talk
NEAR_GAP = 0.03  # within this, small talk unless a query word occurs in the KB

# Everyday chit-chat, both languages: what a greeting or a thank-you looks like to e5.
SMALL_TALK = (
    "你好",
    "您好",
    "嗨",
    "哈喽",
    "早上好",
    "中午好",
    "晚上好",
    "晚安",
    "在吗",
    "有人吗",
    "谢谢",
    "多谢",
    "谢谢你的帮助",
    "不客气",
    "没关系",
    "再见",
    "拜拜",
    "回头见",
    "好的",
    "嗯嗯",
    "哈哈",
    "明白了",
    "你是谁",
    "你叫什么名字",
    "你能做什么",
    "你好吗",
    "最近怎么样",
    "辛苦了",
    "没事了",
    "我们聊聊天吧",
    "今天心情不错",
    "hello",
    "hi",
    "hey",
    "good morning",
    "good afternoon",
    "good evening",
    "good night",
    "thanks",
    "thank you",
    "thanks a lot",
    "you're welcome",
    "no problem",
    "bye",
    "goodbye",
    "see you",
    "ok",
    "okay",
    "cool",
    "great",
    "lol",
    "who are you",
    "what's your name",
    "what can you do",
    "how are you",
    "how's it going",
    "nice to meet you",
    "let's chat",
)


@dataclass(frozen=True)
class Result:
    rank: int
    chunk: Chunk
    score: float  # fused (hybrid) or the mode's own score
    vector_score: float | None
    keyword_score: float | None

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready: the CLI's --json and the HTTP API show the same fields."""
        c = self.chunk
        return {
            "rank": self.rank,
            "score": self.score,
            "vector_score": self.vector_score,
            "keyword_score": self.keyword_score,
            "citation": self.citation(),
            "document": c.document,
            "page": c.page,
            "section": list(c.headings),
            "start": c.start,
            "end": c.end,
            "text": c.text,
        }

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
    words = terms(query)
    # Vector mode reads keyword hits only for the small-talk gate.
    wanted = mode != "vector" or threshold is not None
    keyword_hits = store.keyword_search(kb, words, n, filters) if words and wanted else []
    vector_hits: list[Hit] = []
    if mode in ("hybrid", "vector"):
        vector = embedder.query(query)
        vector_hits = store.vector_search(kb, vector, n, filters)
        if threshold is not None and _small_talk(
            embedder, vector, vector_hits, keyword_hits, threshold
        ):
            return []
    if mode == "vector":
        return _results(vector_hits, {h.chunk_id: h.score for h in vector_hits}, {})
    if mode == "keyword":
        return _results(keyword_hits, {}, {h.chunk_id: h.score for h in keyword_hits})
    return fuse(vector_hits, keyword_hits)[:k]


_exemplars: dict[str, np.ndarray] = {}


def _small_talk(
    embedder: Embedder,
    vector: np.ndarray,
    vector_hits: list[Hit],
    keyword_hits: list[Hit],
    threshold: float,
) -> bool:
    best = vector_hits[0].score if vector_hits else 0.0
    if best < threshold:
        return True
    if embedder.model not in _exemplars:
        _exemplars[embedder.model] = np.stack([embedder.query(t) for t in SMALL_TALK])
    gap = float((_exemplars[embedder.model] @ vector).max()) - best
    return gap > CLEAR_GAP or (gap > -NEAR_GAP and not keyword_hits)


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
