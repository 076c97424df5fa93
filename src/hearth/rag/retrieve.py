"""Retrieval: vector, keyword or hybrid (score fusion), with a small-talk gate,
in one language or across Chinese and English.

The gate looks for evidence of chit-chat, not for a lack of similarity: a query is small
talk, and retrieves nothing, when

- it is clearly closer to everyday chit-chat ("你好", "thanks", "how are you" ...) than to
  anything in the knowledge base, or
- it is closer to chit-chat, very like it, and none of its words occurs in the knowledge
  base.

An absolute similarity floor would also drop real questions in the other language: e5 puts
an English question about a Chinese document at 0.75-0.80, where a greeting sits beside a
handbook chunk at 0.85. (``threshold`` still sets such a floor for those who want one.)

A query may come with other phrasings of itself (``also``: its translation into the other
language). Each phrasing is searched; vector scores are compared as z-scores within their
own phrasing's candidates, because e5's similarities between Chinese texts run higher than
between English ones, and a chunk keeps its best; the keyword search takes the words of
every phrasing. Hybrid search then adds the two standardised scores (vector, and keyword at
half weight), so a product code found only by keywords and a paraphrase found only by
meaning both make it to the top.
"""

from __future__ import annotations

from collections.abc import Sequence
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
KEYWORD_WEIGHT = 0.5  # hybrid: a keyword z-score counts half a vector z-score
CANDIDATES = 4  # each ranking contributes k × CANDIDATES candidates to the fusion
CLEAR_GAP = 0.03  # closer to chit-chat than to the KB by this much: small talk
CHITCHAT = 0.88  # this like chit-chat, closer to it, and no word in the KB: small talk

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
    gate: bool = True,
    threshold: float | None = None,
    also: Sequence[str] = (),
) -> list[Result]:
    """The ``k`` best chunks for ``query`` (and its other phrasings ``also``); nothing for
    small talk when ``gate`` is on, or when no chunk reaches ``threshold``."""
    query = _checked(query, k, mode)
    phrasings = list(dict.fromkeys([query, *(a.strip() for a in also if a.strip())]))
    # z-scores need a spread of candidates: hybrid and several phrasings take more.
    n = k * CANDIDATES if mode == "hybrid" or len(phrasings) > 1 else k
    words = list(dict.fromkeys(w for p in phrasings for w in terms(p)))
    # The gate reads keyword hits too, so vector mode searches them only for it.
    wanted = mode != "vector" or gate
    keyword_hits = store.keyword_search(kb, words, n, filters) if words and wanted else []
    vector_hits: list[Scored] = []
    if mode in ("hybrid", "vector"):
        vectors = [embedder.query(p) for p in phrasings]
        per_phrasing = [store.vector_search(kb, v, n, filters) for v in vectors]
        if gate and _small_talk(embedder, vectors[0], per_phrasing[0], keyword_hits):
            return []
        vector_hits = _best_of(per_phrasing)
        best = max((s.hit.score for s in vector_hits), default=0.0)
        if threshold is not None and best < threshold:
            return []
    if mode == "vector":
        return _results([s.hit for s in vector_hits[:k]], vector_hits, [])
    if mode == "keyword":
        return _results(keyword_hits, [], _standardised(keyword_hits))
    return fuse(vector_hits, _standardised(keyword_hits))[:k]


def _checked(query: str, k: int, mode: str) -> str:
    if mode not in MODES:
        raise UserError(f"mode must be one of {', '.join(MODES)}, got {mode!r}", param="mode")
    if k < 1:
        raise UserError("k must be at least 1", param="k")
    query = query.strip()
    if not query:
        raise UserError("the query is empty", param="query")
    return query


@dataclass(frozen=True)
class Scored:
    """A hit and its z-score among its ranking's candidates."""

    hit: Hit
    z: float


def _standardised(hits: list[Hit]) -> list[Scored]:
    if not hits:
        return []
    scores = np.array([h.score for h in hits])
    mean, spread = float(scores.mean()), float(scores.std()) or 1.0
    return [Scored(h, (h.score - mean) / spread) for h in hits]


def _best_of(rankings: list[list[Hit]]) -> list[Scored]:
    """One vector ranking from each phrasing's: a chunk at its best z-score within a
    phrasing (e5's Chinese similarities run higher than its English ones), shown with
    that phrasing's similarity."""
    best: dict[int, Scored] = {}
    for hits in rankings:
        for scored in _standardised(hits):
            known = best.get(scored.hit.chunk_id)
            if known is None or scored.z > known.z:
                best[scored.hit.chunk_id] = scored
    return sorted(best.values(), key=lambda s: s.z, reverse=True)


def is_small_talk(
    store: Store, embedder: Embedder, kb: str, query: str, filters: Filters = Filters()
) -> bool:
    """The gate alone, on the query as written: worth asking before paying for a
    translation of it."""
    vector = embedder.query(query.strip())
    words = terms(query)
    keyword_hits = store.keyword_search(kb, words, 1, filters) if words else []
    return _small_talk(embedder, vector, store.vector_search(kb, vector, 1, filters), keyword_hits)


_exemplars: dict[str, np.ndarray] = {}


def _small_talk(
    embedder: Embedder, vector: np.ndarray, vector_hits: list[Hit], keyword_hits: list[Hit]
) -> bool:
    if embedder.model not in _exemplars:
        _exemplars[embedder.model] = np.stack([embedder.query(t) for t in SMALL_TALK])
    chitchat = float((_exemplars[embedder.model] @ vector).max())
    gap = chitchat - (vector_hits[0].score if vector_hits else 0.0)
    return gap > CLEAR_GAP or (gap > 0 and chitchat >= CHITCHAT and not keyword_hits)


def fuse(vector: list[Scored], keyword: list[Scored]) -> list[Result]:
    """Score fusion over standardised scores: z(vector) + KEYWORD_WEIGHT × z(keyword), a
    chunk missing from one ranking taking one below that ranking's lowest. Unlike rank
    fusion, a clear first place by meaning is not overtaken by chunks that are middling
    in both rankings."""
    hits = {s.hit.chunk_id: s.hit for s in [*keyword, *vector]}
    vz = {s.hit.chunk_id: s.z for s in vector}
    kz = {s.hit.chunk_id: s.z for s in keyword}
    v_floor = min(vz.values(), default=0.0) - 1.0
    k_floor = min(kz.values(), default=0.0) - 1.0
    scores = {cid: vz.get(cid, v_floor) + KEYWORD_WEIGHT * kz.get(cid, k_floor) for cid in hits}
    order = sorted(scores, key=lambda cid: scores[cid], reverse=True)
    return _results([Hit(hits[c].chunk, scores[c], c) for c in order], vector, keyword)


def _results(hits: list[Hit], vector: list[Scored], keyword: list[Scored]) -> list[Result]:
    """Results in ``hits``' order, each with its similarity and its keyword score."""
    v = {s.hit.chunk_id: s.hit.score for s in vector}
    kw = {s.hit.chunk_id: s.hit.score for s in keyword}
    return [
        Result(i, h.chunk, h.score, v.get(h.chunk_id), kw.get(h.chunk_id))
        for i, h in enumerate(hits, start=1)
    ]
