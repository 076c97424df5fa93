"""Exact vector search for the SQLite store: an in-process copy of each knowledge base's
vectors, refreshed from the database whenever the knowledge base's ``version`` moves.

Why a copy in memory and not an index in the file: on two cores a search over 100k x 384
float32 takes about 8 ms (16 ms with the other core busy) and is exact, while the in-SQLite
options measured slower or worse (bench/rag_search.py): sqlite-vec's brute-force KNN about
65 ms, its binary-quantised KNN plus float re-scoring 12-37 ms with recall@10 of 0.2-0.5 on
unstructured vectors. (HNSW via usearch was tried too: recall@10 under 0.4 on such vectors,
and minutes to build.) The file stays the single source of truth: every write bumps the
version in the same transaction, and a search compares versions before trusting the copy,
so another process's writes are seen on the next search. The cost is memory: 4 x dim bytes
per chunk (150 MB for 100k chunks of 384 dims), plus up to a quarter more as room to grow;
past that scale, use the pgvector store.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray

from hearth.storage.db import Database

IDs = NDArray[np.int64]
Matrix = NDArray[np.float32]

# Rows whose document is gone stay in the matrix, masked, until they are this share of it;
# then the copy is compacted. Replacing a document thus costs a refresh of its new rows, not
# a copy of the whole matrix.
MAX_DEAD_SHARE = 0.25


@dataclass(frozen=True)
class KnowledgeBaseVectors:
    """One refresh's view. Views share a buffer, but each reads only its own first rows,
    and later refreshes only write past them, so a search never sees a half-done refresh."""

    version: int
    ids: IDs  # chunk ids, ascending
    documents: IDs  # the document id of each row
    live: NDArray[np.bool_]  # False where the row's document has been deleted or replaced
    buffer: Matrix  # (capacity, dim); rows [0, len(ids)) are this view's unit vectors

    @property
    def matrix(self) -> Matrix:
        return self.buffer[: len(self.ids)]

    def nearest(
        self, query: Matrix, k: int, documents: IDs | None = None
    ) -> list[tuple[int, float]]:
        """``(chunk id, cosine)`` of the ``k`` best rows, best first; only ``documents``."""
        if k <= 0 or not len(self.ids):
            return []
        scores = self.matrix @ query
        keep = self.live if documents is None else self.live & np.isin(self.documents, documents)
        scores[~keep] = -np.inf
        k = min(k, len(scores))
        top = np.argpartition(-scores, k - 1)[:k]
        top = top[np.argsort(-scores[top], kind="stable")]
        return [(int(self.ids[i]), float(scores[i])) for i in top if scores[i] != -np.inf]


class VectorCache:
    """The vectors of each knowledge base this process has searched, by knowledge-base id.

    A refresh reads only what changed, relying on three facts of the SQLite store: ids come
    from AUTOINCREMENT and are never reused; a chunk's vector never changes and a chunk is
    only ever removed together with its document (replacing a document writes a new document
    row); and SQLite serialises writers, so ids are allocated in commit order and nothing
    appears below the cached maximum later. So: mask the cached rows whose document is gone,
    and append the rows above the cached maximum.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._kbs: dict[int, KnowledgeBaseVectors] = {}

    def get(self, db: Database, kb_id: int, dim: int, version: int) -> KnowledgeBaseVectors:
        cached = self._kbs.get(kb_id)
        if cached is not None and cached.version == version:
            return cached
        with self._lock:
            cached = self._kbs.get(kb_id)
            if cached is None or cached.version != version:
                # Labelled with the version read before the refresh: if a write lands in
                # between, the copy is newer than its label and the next search refreshes
                # again, which costs little and is never wrong.
                cached = _refresh(db, kb_id, dim, version, cached)
                self._kbs[kb_id] = cached
        return cached

    def forget(self, kb_id: int) -> None:
        with self._lock:
            self._kbs.pop(kb_id, None)

    def clear(self) -> None:
        with self._lock:
            self._kbs.clear()


def _refresh(
    db: Database, kb_id: int, dim: int, version: int, cached: KnowledgeBaseVectors | None
) -> KnowledgeBaseVectors:
    known = int(cached.ids[-1]) if cached is not None and len(cached.ids) else -1
    rows = db.query(
        "SELECT id, document_id, embedding FROM kb_chunks WHERE kb_id = ? AND id > ? ORDER BY id",
        (kb_id, known),
    )
    # Read after the new rows: a document deleted in between is then missing here and its
    # rows are masked. (A document added in between is picked up by the next refresh, which
    # the version change triggers.)
    alive = [r["id"] for r in db.query("SELECT id FROM kb_documents WHERE kb_id = ?", (kb_id,))]
    new_ids = np.fromiter((r["id"] for r in rows), dtype=np.int64, count=len(rows))
    new_docs = np.fromiter((r["document_id"] for r in rows), dtype=np.int64, count=len(rows))
    added = np.frombuffer(b"".join(r["embedding"] for r in rows), dtype=np.float32)
    added = added.reshape(len(rows), dim)
    if cached is None:
        ids, documents, buffer = new_ids, new_docs, added.copy()
    else:
        ids = np.concatenate([cached.ids, new_ids])
        documents = np.concatenate([cached.documents, new_docs])
        buffer = _append(cached.buffer, len(cached.ids), added)
    live = np.isin(documents, np.asarray(alive, dtype=np.int64))
    if (~live).sum() > MAX_DEAD_SHARE * len(live):
        ids, documents, buffer = ids[live], documents[live], buffer[: len(live)][live]
        live = np.ones(len(ids), dtype=bool)
    return KnowledgeBaseVectors(version, ids, documents, live, buffer)


def _append(buffer: Matrix, used: int, rows: Matrix) -> Matrix:
    """``rows`` written after the first ``used`` rows, in place when there is room."""
    if used + len(rows) > len(buffer):
        # Room for a quarter more: appends stay amortised O(new rows) at 25% extra memory.
        grown = np.empty((used + len(rows) + (used + len(rows)) // 4, buffer.shape[1]), np.float32)
        grown[:used] = buffer[:used]
        buffer = grown
    buffer[used : used + len(rows)] = rows
    return buffer
