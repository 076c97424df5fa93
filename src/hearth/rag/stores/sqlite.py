"""The embedded knowledge-base store: one SQLite file (WAL) holding knowledge bases,
documents, chunks with their vectors, and an FTS5 keyword index over segmented text.

Each ``write()`` and ``delete_document()`` is one ``BEGIN IMMEDIATE`` transaction, so a crash
(even ``kill -9``) leaves every document fully present or absent. Vector search is exact, over
an in-process copy of the vectors (see ``sqlite_vectors``); keyword search is FTS5 BM25.
Tables carry a ``kb_`` prefix so the file can be the hearth home's main database.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from hearth.errors import KnowledgeBaseExists, KnowledgeBaseNotFound
from hearth.rag.stores.base import Filters, KnowledgeBase, NewDocument
from hearth.rag.stores.common import (
    Migration,
    Space,
    chunk_from_row,
    document_vectors,
    fts5_query,
    keyword_texts,
    knowledge_base_from_row,
    query_vector,
    record_from_row,
    search_terms,
)
from hearth.rag.stores.sqlite_vectors import VectorCache
from hearth.storage.db import Database, SQLiteDatabase
from hearth.storage.migrations import migrate
from hearth.types import DocumentRecord, Hit

# APPEND ONLY, like hearth.storage.migrations: files in the field already ran these.
MIGRATIONS: list[Migration] = [
    (
        1,
        "create knowledge bases",
        """
        CREATE TABLE knowledge_bases (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            name TEXT NOT NULL UNIQUE,
            embed_model TEXT NOT NULL,
            dim INTEGER NOT NULL CHECK (dim > 0),
            description TEXT NOT NULL DEFAULT '',
            created REAL NOT NULL,
            -- bumped in the same transaction as every change to the chunks: the
            -- in-process vector copy compares it to know when to refresh
            version INTEGER NOT NULL DEFAULT 0
        );
        CREATE TABLE kb_documents (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kb_id INTEGER NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            format TEXT NOT NULL,
            title TEXT NOT NULL,
            chunks INTEGER NOT NULL,
            added REAL NOT NULL,
            tags TEXT NOT NULL DEFAULT '[]',
            UNIQUE (kb_id, name)
        );
        -- AUTOINCREMENT: chunk ids are never reused, which the vector copy relies on.
        CREATE TABLE kb_chunks (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            kb_id INTEGER NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
            document_id INTEGER NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            text TEXT NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            page INTEGER,
            headings TEXT NOT NULL DEFAULT '[]',
            embedding BLOB NOT NULL
        );
        CREATE INDEX kb_chunks_kb ON kb_chunks (kb_id, id);
        CREATE INDEX kb_chunks_document ON kb_chunks (document_id);
        """,
    ),
]

# One full-text table per knowledge base, created with it: a query then touches only its own
# knowledge base's index, and BM25's statistics are that knowledge base's. (A shared table
# with a kb column to filter on measured 2-4x slower at 100k chunks.) rowid = kb_chunks.id.
# The text arrives segmented (hearth.rag.keywords), so the tokenizer splits it at spaces and
# keeps the joiners of codes like hx-2040 and c++. Changing this definition needs a migration
# that rebuilds the table of every existing knowledge base.
_TERMS_TABLE = """
CREATE VIRTUAL TABLE {table} USING fts5(
    terms, tokenize = "unicode61 remove_diacritics 2 tokenchars '-.+#_'"
)
"""
# Searches racing a stream of writes give up on a perfectly fresh answer after this many
# rounds and return what they have (a few chunks fewer than asked for).
_ATTEMPTS = 3

_KB = """
SELECT k.id, k.name, k.embed_model, k.dim, k.description, k.created, k.version,
       (SELECT count(*) FROM kb_documents d WHERE d.kb_id = k.id) AS documents,
       (SELECT coalesce(sum(d.chunks), 0) FROM kb_documents d WHERE d.kb_id = k.id) AS chunks
FROM knowledge_bases k
"""
_HIT = """
SELECT c.id, c.position, c.text, c.start_char, c.end_char, c.tokens, c.page, c.headings,
       d.name AS document
FROM kb_chunks c JOIN kb_documents d ON d.id = c.document_id
"""


class SQLiteStore:
    """Knowledge bases in one SQLite file, e.g. ``SQLiteStore(home / "hearth.db")``."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path).expanduser().resolve()
        self._db: Database = SQLiteDatabase("sqlite:///" + str(self.path))
        self._vectors = VectorCache()
        try:
            # Bookkeeping of its own, so the store can share a file with hearth.storage's.
            migrate(self._db, list(MIGRATIONS), table="kb_schema_migrations")
        except BaseException:
            self._db.close()
            raise

    # -- knowledge bases ------------------------------------------------------------------
    def create_kb(
        self, name: str, embed_model: str, dim: int, description: str = ""
    ) -> KnowledgeBase:
        with self._db.transaction():
            if self._db.query("SELECT 1 FROM knowledge_bases WHERE name = ?", (name,)):
                raise KnowledgeBaseExists(name)
            kb_id = self._db.query(
                "INSERT INTO knowledge_bases (name, embed_model, dim, description, created) "
                "VALUES (?, ?, ?, ?, ?) RETURNING id",
                (name, embed_model, dim, description, time.time()),
            )[0]["id"]
            self._db.execute(_TERMS_TABLE.format(table=_terms(kb_id)))
        return self.get_kb(name)

    def get_kb(self, name: str) -> KnowledgeBase:
        return knowledge_base_from_row(self._kb_row(name))

    def list_kbs(self) -> list[KnowledgeBase]:
        return [knowledge_base_from_row(row) for row in self._db.query(_KB + " ORDER BY k.name")]

    def drop_kb(self, name: str) -> None:
        with self._db.transaction():
            kb_id = self._kb_row(name)["id"]
            self._db.execute(f"DROP TABLE {_terms(kb_id)}")
            # Documents and chunks go with it (ON DELETE CASCADE).
            self._db.execute("DELETE FROM knowledge_bases WHERE id = ?", (kb_id,))
        self._vectors.forget(kb_id)

    # -- documents ------------------------------------------------------------------------
    def document_hashes(self, kb: str) -> dict[str, str]:
        kb_id = self._kb_row(kb)["id"]
        rows = self._db.query("SELECT name, sha256 FROM kb_documents WHERE kb_id = ?", (kb_id,))
        return {row["name"]: row["sha256"] for row in rows}

    def documents(self, kb: str) -> list[DocumentRecord]:
        kb_id = self._kb_row(kb)["id"]
        rows = self._db.query("SELECT * FROM kb_documents WHERE kb_id = ? ORDER BY name", (kb_id,))
        return [record_from_row(row, json.loads(row["tags"])) for row in rows]

    def write(self, kb: str, documents: Sequence[NewDocument]) -> None:
        # Segment outside the transaction: jieba is the slow part, and the write lock
        # blocks every other writer of the file while it is held.
        keywords = [keyword_texts(doc) for doc in documents]
        with self._db.transaction():
            row = self._kb_row(kb)
            space = Space(kb, row["embed_model"], row["dim"])
            for doc, texts in zip(documents, keywords, strict=True):
                # Checked document by document inside the transaction: a bad document late
                # in the batch rolls back the ones before it.
                vectors = document_vectors(doc, space)
                self._delete_document(row["id"], doc.record.name)
                self._insert_document(row["id"], doc, vectors, texts)
            if documents:
                self._bump(row["id"])

    def delete_document(self, kb: str, name: str) -> bool:
        with self._db.transaction():
            kb_id = self._kb_row(kb)["id"]
            found = self._delete_document(kb_id, name)
            if found:
                self._bump(kb_id)
        return found

    def count_chunks(self, kb: str) -> int:
        kb_id = self._kb_row(kb)["id"]
        rows = self._db.query("SELECT count(*) AS n FROM kb_chunks WHERE kb_id = ?", (kb_id,))
        return int(rows[0]["n"])

    # -- search ---------------------------------------------------------------------------
    def vector_search(
        self, kb: str, vector: np.ndarray, k: int, filters: Filters = Filters()
    ) -> list[Hit]:
        def rank() -> list[tuple[int, float]]:
            row = self._kb_row(kb)
            query = query_vector(vector, Space(kb, row["embed_model"], row["dim"]))
            vectors = self._vectors.get(self._db, row["id"], row["dim"], row["version"])
            allowed = None
            if filters.documents or filters.tags:
                sql, params = _documents_sql(row["id"], filters)
                allowed = np.asarray([r["id"] for r in self._db.query(sql, params)], np.int64)
            return vectors.nearest(query, k, allowed)

        return self._hits(rank)

    def keyword_search(
        self, kb: str, terms: Sequence[str], k: int, filters: Filters = Filters()
    ) -> list[Hit]:
        words = search_terms(terms)

        def rank() -> list[tuple[int, float]]:
            kb_id = self._kb_row(kb)["id"]
            if not words or k <= 0:
                return []
            table = _terms(kb_id)
            where, params = f"{table} MATCH ?", [fts5_query(words)]
            if filters.documents or filters.tags:
                sql, extra = _documents_sql(kb_id, filters)
                where += f" AND rowid IN (SELECT id FROM kb_chunks WHERE document_id IN ({sql}))"
                params += extra
            # Ranked inside the full-text table; only the k winners are read in full.
            rows = self._db.query(
                f"SELECT rowid AS id, -bm25({table}) AS score FROM {table} "
                f"WHERE {where} ORDER BY score DESC, rowid LIMIT ?",
                (*params, k),
            )
            return [(row["id"], row["score"]) for row in rows]

        return self._hits(rank)

    def close(self) -> None:
        self._vectors.clear()
        self._db.close()

    def __enter__(self) -> SQLiteStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- helpers --------------------------------------------------------------------------
    def _kb_row(self, name: str) -> dict[str, Any]:
        rows = self._db.query(_KB + " WHERE k.name = ?", (name,))
        if not rows:
            raise KnowledgeBaseNotFound(name)
        return rows[0]

    def _bump(self, kb_id: int) -> None:
        self._db.execute("UPDATE knowledge_bases SET version = version + 1 WHERE id = ?", (kb_id,))

    def _delete_document(self, kb_id: int, name: str) -> bool:
        rows = self._db.query(
            "SELECT id FROM kb_documents WHERE kb_id = ? AND name = ?", (kb_id, name)
        )
        if not rows:
            return False
        doc_id = rows[0]["id"]
        # FTS5 rows have no foreign key; they go first, while the chunks still name them.
        self._db.execute(
            f"DELETE FROM {_terms(kb_id)} WHERE rowid IN "
            "(SELECT id FROM kb_chunks WHERE document_id = ?)",
            (doc_id,),
        )
        self._db.execute("DELETE FROM kb_documents WHERE id = ?", (doc_id,))
        return True

    def _insert_document(
        self, kb_id: int, doc: NewDocument, vectors: np.ndarray, keywords: list[str]
    ) -> None:
        rec = doc.record
        doc_id = self._db.query(
            "INSERT INTO kb_documents (kb_id, name, sha256, format, title, chunks, added, tags) "
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
            (kb_id, rec.name, rec.sha256, rec.format, rec.title, rec.chunks, rec.added,
             json.dumps(list(rec.tags), ensure_ascii=False)),
        )[0]["id"]  # fmt: skip
        for chunk, vector, text in zip(doc.chunks, vectors, keywords, strict=True):
            chunk_id = self._db.query(
                "INSERT INTO kb_chunks (kb_id, document_id, position, text, start_char, "
                "end_char, tokens, page, headings, embedding) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING id",
                (kb_id, doc_id, chunk.index, chunk.text, chunk.start, chunk.end, chunk.tokens,
                 chunk.page, json.dumps(list(chunk.headings), ensure_ascii=False),
                 vector.tobytes()),
            )[0]["id"]  # fmt: skip
            self._db.execute(
                f"INSERT INTO {_terms(kb_id)} (rowid, terms) VALUES (?, ?)", (chunk_id, text)
            )

    def _hits(self, rank: Callable[[], list[tuple[int, float]]]) -> list[Hit]:
        """The chunks of a ranking of ``(chunk id, score)``, in its order.

        Ranking and reading are separate statements (WAL readers never wait for writers,
        nor hold them up), so a write can commit in between; a ranked chunk that is gone by
        the time it is read means exactly that, and the search goes round again.
        """
        for _ in range(_ATTEMPTS):
            best = rank()
            if not best:
                return []
            marks = ", ".join("?" * len(best))
            rows = self._db.query(_HIT + f" WHERE c.id IN ({marks})", [i for i, _ in best])
            if len(rows) == len(best):
                break
        by_id = {row["id"]: row for row in rows}
        return [
            Hit(chunk_from_row(by_id[i], json.loads(by_id[i]["headings"])), score, i)
            for i, score in best
            if i in by_id
        ]


def _terms(kb_id: int) -> str:
    return f"kb_terms_{int(kb_id)}"


def _documents_sql(kb_id: int, filters: Filters) -> tuple[str, list[Any]]:
    sql = "SELECT id FROM kb_documents WHERE kb_id = ?"
    params: list[Any] = [kb_id]
    if filters.documents:
        sql += f" AND name IN ({', '.join('?' * len(filters.documents))})"
        params += filters.documents
    if filters.tags:
        marks = ", ".join("?" * len(filters.tags))
        sql += f" AND EXISTS (SELECT 1 FROM json_each(tags) WHERE value IN ({marks}))"
        params += filters.tags
    return sql, params
