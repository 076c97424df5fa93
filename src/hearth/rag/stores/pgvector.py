"""The scale store: PostgreSQL with pgvector, configured by URL.

Vectors live in one ``vector`` column (knowledge bases differ in dimension); each knowledge
base gets its own partial HNSW index over ``embedding::vector(dim)`` with
``vector_cosine_ops``, as pgvector recommends for mixed dimensions. Keyword search is a
partial GIN index per knowledge base over ``to_tsvector('simple', segmented text)``, scored
by ``ts_rank`` per query word weighted by the word's IDF; ``kb_terms`` keeps how many chunks
hold each term, so that a query's common words need not rank a large share of a big knowledge
base (see :func:`~hearth.rag.stores.pgvector_sql.plan_keywords`). Every ``write()`` is one
transaction that holds the knowledge base's row lock, so writers to one
knowledge base take turns and a crash leaves each document fully present or absent.
"""

from __future__ import annotations

import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np
import psycopg
from psycopg import sql
from psycopg_pool import ConnectionPool

from hearth.errors import ConfigError, InvalidRequest, KnowledgeBaseExists
from hearth.rag.stores.base import Filters, KnowledgeBase, NewDocument
from hearth.rag.stores.common import (
    Space,
    chunk_from_row,
    document_vectors,
    keyword_texts,
    knowledge_base_from_row,
    query_vector,
    record_from_row,
    search_terms,
)
from hearth.rag.stores.pgvector_sql import (
    KB_SELECT,
    NEAREST,
    TERM_CHUNKS,
    TERMS_ADD,
    TERMS_REMOVE,
    Conn,
    Row,
    Vector,
    create_indexes,
    documents_sql,
    drop_indexes,
    fetch,
    fetch_one,
    insert_document,
    kb_row,
    keyword_statement,
    migrate,
    plan_keywords,
    register_vector,
)
from hearth.types import DocumentRecord, Hit

# pgvector's HNSW index takes ``vector`` columns of at most this many dimensions.
MAX_HNSW_DIM = 2000


class PgVectorStore:
    """Knowledge bases in PostgreSQL, e.g. ``PgVectorStore("postgresql://me@db/hearth")``.

    ``ef_search`` is HNSW's candidate list per query (raised to ``k`` when ``k`` is larger):
    higher finds more of the true nearest chunks and costs time. At 1M clustered 384-d
    chunks on two cores, 200 gave recall@10 0.97 at 8 ms p50 (100: 0.89-0.93 at 6 ms;
    40, pgvector's default: 0.63-0.81), see bench/rag_search.py. ``index_build_memory`` is
    ``maintenance_work_mem`` for building an index; the build is fast only while the graph
    fits in it (about 2 GB per million 384-dimensional chunks). ``keyword_candidates`` is
    the most chunks a keyword search scores: while a query's words together occur in no more
    chunks than that, every chunk holding any of them is ranked; past it, the rarer words
    choose the chunks and the common ones only add to their scores.
    """

    def __init__(
        self,
        url: str,
        *,
        ef_search: int = 200,
        index_build_memory: str = "1GB",
        keyword_candidates: int = 5000,
        pool_size: int = 4,
    ) -> None:
        if keyword_candidates < 1:
            raise InvalidRequest(
                "keyword_candidates must be at least 1", param="keyword_candidates"
            )
        self.ef_search = ef_search
        self.keyword_candidates = keyword_candidates
        self.index_build_memory = index_build_memory
        try:
            with psycopg.connect(url, autocommit=True) as conn:
                migrate(conn)
        except psycopg.OperationalError as e:
            raise ConfigError(
                f"cannot connect to the PostgreSQL knowledge-base store: {e}. Check the URL "
                "(postgresql://USER:PASSWORD@HOST:PORT/DATABASE) and that the server is up."
            ) from e
        self._pool: ConnectionPool[Conn] = ConnectionPool(
            url,
            min_size=1,
            max_size=pool_size,
            kwargs={"autocommit": True},
            configure=register_vector,
            open=True,
        )

    # -- knowledge bases ------------------------------------------------------------------
    def create_kb(
        self, name: str, embed_model: str, dim: int, description: str = ""
    ) -> KnowledgeBase:
        if not 0 < dim <= MAX_HNSW_DIM:
            raise InvalidRequest(
                f"knowledge base {name!r}: dimension {dim} is outside 1..{MAX_HNSW_DIM}, the "
                "range pgvector's HNSW index takes. Use an embedding model with fewer dimensions."
            )
        with self._pool.connection() as conn, conn.transaction():
            try:
                kb_id = fetch_one(
                    conn,
                    "INSERT INTO knowledge_bases (name, embed_model, dim, description, created) "
                    "VALUES (%s, %s, %s, %s, %s) RETURNING id",
                    (name, embed_model, dim, description, time.time()),
                )["id"]
            except psycopg.errors.UniqueViolation:
                raise KnowledgeBaseExists(name) from None
            conn.execute(create_indexes(kb_id, dim))
        return self.get_kb(name)

    def get_kb(self, name: str) -> KnowledgeBase:
        with self._pool.connection() as conn:
            return knowledge_base_from_row(kb_row(conn, name))

    def list_kbs(self) -> list[KnowledgeBase]:
        with self._pool.connection() as conn:
            return [
                knowledge_base_from_row(row) for row in fetch(conn, KB_SELECT + " ORDER BY k.name")
            ]

    def drop_kb(self, name: str) -> None:
        with self._pool.connection() as conn, conn.transaction():
            kb_id = kb_row(conn, name, lock=True)["id"]
            # Documents and chunks go with it (ON DELETE CASCADE).
            conn.execute("DELETE FROM knowledge_bases WHERE id = %s", (kb_id,))
            conn.execute(drop_indexes(kb_id))

    @contextmanager
    def bulk_load(self, kb: str) -> Iterator[None]:
        """Writes inside skip index upkeep; the indexes are rebuilt once at the end.

        Building the HNSW graph in one go is many times faster than growing it chunk by chunk
        (about 2 ms per chunk on two cores). Searches meanwhile are exact scans: correct,
        slower. Should the process die inside, :meth:`build_index` (or the next bulk load)
        restores the indexes.
        """
        with self._pool.connection() as conn:
            kb_id = kb_row(conn, kb)["id"]
            conn.execute(drop_indexes(kb_id))
        try:
            yield
        finally:
            self.build_index(kb)

    def build_index(self, kb: str) -> None:
        """Create the knowledge base's indexes (HNSW and keyword) where they are missing."""
        with self._pool.connection() as conn, conn.transaction():
            row = kb_row(conn, kb)
            conn.execute(
                "SELECT set_config('maintenance_work_mem', %s, true)", (self.index_build_memory,)
            )
            conn.execute(create_indexes(row["id"], row["dim"]))
            # Fresh statistics, or the planner may still think the knowledge base is empty
            # and scan it row by row instead of using the new indexes.
            conn.execute("ANALYZE kb_chunks")

    # -- documents ------------------------------------------------------------------------
    def document_hashes(self, kb: str) -> dict[str, str]:
        with self._pool.connection() as conn:
            kb_id = kb_row(conn, kb)["id"]
            rows = fetch(conn, "SELECT name, sha256 FROM kb_documents WHERE kb_id = %s", (kb_id,))
        return {row["name"]: row["sha256"] for row in rows}

    def documents(self, kb: str) -> list[DocumentRecord]:
        with self._pool.connection() as conn:
            kb_id = kb_row(conn, kb)["id"]
            rows = fetch(
                conn, "SELECT * FROM kb_documents WHERE kb_id = %s ORDER BY name", (kb_id,)
            )
        return [record_from_row(row, row["tags"]) for row in rows]

    def write(self, kb: str, documents: Sequence[NewDocument]) -> None:
        # Segment before the transaction: jieba is the slow part, and the row lock taken
        # below holds back every other writer of this knowledge base.
        keywords = [keyword_texts(doc) for doc in documents]
        with self._pool.connection() as conn, conn.transaction():
            row = kb_row(conn, kb, lock=True)
            space = Space(kb, row["embed_model"], row["dim"])
            names = [doc.record.name for doc in documents]
            conn.execute(TERMS_REMOVE, {"kb": row["id"], "names": names})  # replaced ones
            added = []
            for doc, texts in zip(documents, keywords, strict=True):
                # Checked inside the transaction: a bad document rolls back the ones before it.
                vectors = document_vectors(doc, space)
                added.append(insert_document(conn, row["id"], doc, vectors, texts))
            conn.execute(TERMS_ADD, {"kb": row["id"], "documents": added})

    def delete_document(self, kb: str, name: str) -> bool:
        with self._pool.connection() as conn, conn.transaction():
            kb_id = kb_row(conn, kb, lock=True)["id"]
            conn.execute(TERMS_REMOVE, {"kb": kb_id, "names": [name]})
            cursor = conn.execute(
                "DELETE FROM kb_documents WHERE kb_id = %s AND name = %s", (kb_id, name)
            )
            return cursor.rowcount > 0

    def count_chunks(self, kb: str) -> int:
        with self._pool.connection() as conn:
            kb_id = kb_row(conn, kb)["id"]
            row = fetch_one(conn, "SELECT count(*) AS n FROM kb_chunks WHERE kb_id = %s", (kb_id,))
        return int(row["n"])

    # -- search ---------------------------------------------------------------------------
    def vector_search(
        self, kb: str, vector: np.ndarray, k: int, filters: Filters = Filters()
    ) -> list[Hit]:
        if k <= 0:
            return []
        with self._pool.connection() as conn, conn.transaction():
            row = kb_row(conn, kb)
            query = query_vector(vector, Space(kb, row["embed_model"], row["dim"]))
            # strict_order: with a filter, keep walking the graph until k rows pass it
            # (pgvector 0.8 iterative scans) instead of returning fewer.
            conn.execute(
                "SELECT set_config('hnsw.ef_search', %s, true), "
                "set_config('hnsw.iterative_scan', 'strict_order', true)",
                (str(min(max(self.ef_search, k), 1000)),),
            )
            documents, params = documents_sql(row["id"], filters)
            statement = sql.SQL(NEAREST).format(
                dim=sql.Literal(row["dim"]), kb=sql.Literal(row["id"]), documents=documents
            )
            rows = fetch(conn, statement, {**params, "q": Vector(query), "k": k})
        return [_hit(r) for r in rows]

    def keyword_search(
        self, kb: str, terms: Sequence[str], k: int, filters: Filters = Filters()
    ) -> list[Hit]:
        words = search_terms(terms)
        with self._pool.connection() as conn:
            row = kb_row(conn, kb)
            if not words or k <= 0:
                return []
            counts = fetch(conn, TERM_CHUNKS, {"kb": row["id"], "words": words})
            plan = plan_keywords(
                [(r["word"], r["chunks"]) for r in counts], row["chunks"], self.keyword_candidates
            )
            if plan is None:
                return []
            documents, params = documents_sql(row["id"], filters)
            statement = keyword_statement(row["id"], plan, self.keyword_candidates, documents)
            rows = fetch(conn, statement, {**params, "k": k})
        return [_hit(r) for r in rows]

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PgVectorStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _hit(row: Row) -> Hit:
    return Hit(chunk_from_row(row, row["headings"]), float(row["score"]), row["id"])
