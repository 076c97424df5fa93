"""SQL, schema and wire format of the pgvector store (hearth.rag.stores.pgvector)."""

from __future__ import annotations

import math
import struct
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import psycopg
from numpy.typing import NDArray
from psycopg import sql
from psycopg.adapt import Dumper
from psycopg.pq import Format
from psycopg.rows import dict_row
from psycopg.types import TypeInfo

from hearth.errors import ConfigError, KnowledgeBaseNotFound
from hearth.rag.stores.base import Filters, NewDocument
from hearth.rag.stores.common import Migration, pending

Conn = psycopg.Connection[Any]
Row = dict[str, Any]

# APPEND ONLY, like hearth.storage.migrations: databases in the field already ran these.
MIGRATIONS: list[Migration] = [
    (
        1,
        "create knowledge bases",
        """
        CREATE EXTENSION IF NOT EXISTS vector;
        CREATE TABLE knowledge_bases (
            id BIGSERIAL PRIMARY KEY,
            name TEXT NOT NULL UNIQUE,
            embed_model TEXT NOT NULL,
            dim INTEGER NOT NULL CHECK (dim > 0),
            description TEXT NOT NULL DEFAULT '',
            created DOUBLE PRECISION NOT NULL
        );
        CREATE TABLE kb_documents (
            id BIGSERIAL PRIMARY KEY,
            kb_id BIGINT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
            name TEXT NOT NULL,
            sha256 TEXT NOT NULL,
            format TEXT NOT NULL,
            title TEXT NOT NULL,
            chunks INTEGER NOT NULL,
            added DOUBLE PRECISION NOT NULL,
            tags TEXT[] NOT NULL DEFAULT '{}',
            UNIQUE (kb_id, name)
        );
        CREATE TABLE kb_chunks (
            id BIGSERIAL PRIMARY KEY,
            kb_id BIGINT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
            document_id BIGINT NOT NULL REFERENCES kb_documents (id) ON DELETE CASCADE,
            position INTEGER NOT NULL,
            text TEXT NOT NULL,
            start_char INTEGER NOT NULL,
            end_char INTEGER NOT NULL,
            tokens INTEGER NOT NULL,
            page INTEGER,
            headings TEXT[] NOT NULL DEFAULT '{}',
            embedding vector NOT NULL,
            terms tsvector NOT NULL
        );
        CREATE INDEX kb_chunks_kb ON kb_chunks (kb_id);
        CREATE INDEX kb_chunks_document ON kb_chunks (document_id);
        """,
    ),
    (
        2,
        "keyword statistics: chunks per term",
        """
        CREATE TABLE kb_terms (
            kb_id BIGINT NOT NULL REFERENCES knowledge_bases (id) ON DELETE CASCADE,
            term TEXT NOT NULL,
            chunks BIGINT NOT NULL,
            PRIMARY KEY (kb_id, term)
        );
        INSERT INTO kb_terms (kb_id, term, chunks)
        SELECT c.kb_id, u.lexeme, count(*) FROM kb_chunks c, unnest(c.terms) u
        GROUP BY c.kb_id, u.lexeme;
        """,
    ),
]

KB_SELECT = """
SELECT k.id, k.name, k.embed_model, k.dim, k.description, k.created,
       (SELECT count(*) FROM kb_documents d WHERE d.kb_id = k.id) AS documents,
       (SELECT coalesce(sum(d.chunks), 0) FROM kb_documents d WHERE d.kb_id = k.id) AS chunks
FROM knowledge_bases k
"""
HIT_COLUMNS = """c.id, c.position, c.text, c.start_char, c.end_char, c.tokens, c.page,
       c.headings, d.name AS document"""
# The inner query is the shape pgvector's planner turns into an HNSW index scan: ORDER BY the
# distance to a parameter, LIMIT, and the literal kb_id that the partial index is keyed on.
NEAREST = (
    "SELECT "
    + HIT_COLUMNS
    + """, 1 - n.distance AS score
FROM (
    SELECT id, embedding::vector({dim}) <=> %(q)s AS distance
    FROM kb_chunks
    WHERE kb_id = {kb} {documents}
    ORDER BY embedding::vector({dim}) <=> %(q)s
    LIMIT %(k)s
) n JOIN kb_chunks c ON c.id = n.id JOIN kb_documents d ON d.id = c.document_id
ORDER BY n.distance, c.id
"""
)
# Keyword search, in two steps. The candidates are the chunks matching the query's rarer
# terms, at most {cap} of them (GIN finds them); only those are scored, each term weighted by
# its IDF from kb_terms, and only the k winners are joined to their documents.
KEYWORDS = (
    "SELECT "
    + HIT_COLUMNS
    + """, r.score
FROM (
    SELECT m.id, {score} AS score
    FROM (
        SELECT c.id, c.terms FROM kb_chunks c
        WHERE c.kb_id = {kb} AND c.terms @@ ({candidates}) {documents}
        LIMIT {cap}
    ) m
    ORDER BY score DESC, m.id
    LIMIT %(k)s
) r JOIN kb_chunks c ON c.id = r.id JOIN kb_documents d ON d.id = c.document_id
ORDER BY r.score DESC, r.id
"""
)
# Chunks holding each query word. A word the parser splits ("hx-2040" -> hx-2040, hx, 2040)
# is a phrase; no chunk can hold it more often than its rarest lexeme. No lexeme: 0.
TERM_CHUNKS = """
SELECT w.word, coalesce((
    SELECT min(coalesce(t.chunks, 0))
    FROM unnest(to_tsvector('simple', w.word)) u
    LEFT JOIN kb_terms t ON t.kb_id = %(kb)s AND t.term = u.lexeme
), 0) AS chunks
FROM unnest(%(words)s::text[]) WITH ORDINALITY AS w(word, n)
ORDER BY w.n
"""
# kb_terms upkeep, inside write()/delete's transaction (which holds the knowledge base's row
# lock, so two writers never race on one term's count).
TERMS_ADD = """
INSERT INTO kb_terms (kb_id, term, chunks)
SELECT %(kb)s, u.lexeme, count(*) FROM kb_chunks c, unnest(c.terms) u
WHERE c.document_id = ANY(%(documents)s)
GROUP BY u.lexeme ORDER BY u.lexeme
ON CONFLICT (kb_id, term) DO UPDATE SET chunks = kb_terms.chunks + EXCLUDED.chunks
"""
TERMS_REMOVE = """
WITH gone AS (
    SELECT u.lexeme, count(*) AS n
    FROM kb_documents d JOIN kb_chunks c ON c.document_id = d.id, unnest(c.terms) u
    WHERE d.kb_id = %(kb)s AND d.name = ANY(%(names)s)
    GROUP BY u.lexeme
)
UPDATE kb_terms t SET chunks = t.chunks - gone.n
FROM gone WHERE t.kb_id = %(kb)s AND t.term = gone.lexeme
"""


@dataclass(frozen=True)
class KeywordPlan:
    """Which words find the candidates ("any" of them, or "all" when every one is common)
    and each present word's weight."""

    candidates: list[str]
    join: str
    weights: dict[str, float]


def plan_keywords(counts: Sequence[tuple[str, int]], total: int, cap: int) -> KeywordPlan | None:
    """Choose the candidate words from each word's chunk count (``counts``), out of ``total``.

    All words find candidates while together they match at most ``cap`` chunks, so a small
    knowledge base is searched exactly. Past that, the rarest words that fit under ``cap``
    do, and the common ones only add to the scores of what those found (as a stop word
    would, but weighted rather than ignored). When even the rarest word is in more than
    ``cap`` chunks, the candidates are the chunks holding all the words, at most ``cap``.
    None: no word occurs at all.
    """
    present = sorted(((w, n) for w, n in counts if n > 0), key=lambda pair: pair[1])
    if not present:
        return None
    total = max(total, present[-1][1])
    # BM25's IDF: rare words weigh more, a word in every chunk still a little.
    weights = {w: math.log(1 + (total - n + 0.5) / (n + 0.5)) for w, n in present}
    if min(sum(n for _, n in present), total) <= cap:
        return KeywordPlan([w for w, _ in present], "any", weights)
    rare, found = [], 0
    for word, n in present:
        if found + n > cap:
            break
        rare.append(word)
        found += n
    if rare:
        return KeywordPlan(rare, "any", weights)
    return KeywordPlan([w for w, _ in present], "all", weights)


def keyword_statement(
    kb_id: int, plan: KeywordPlan, cap: int, documents: sql.Composable
) -> sql.Composed:
    def phrase(word: str) -> sql.Composed:
        # A phrase, so a code like hx-2040 (split the same way in the index) matches whole.
        return sql.SQL("phraseto_tsquery('simple', {})").format(sql.Literal(word))

    join = sql.SQL(" || " if plan.join == "any" else " && ")
    score = sql.SQL(" + ").join(
        sql.SQL("{} * ts_rank(m.terms, {})").format(sql.Literal(round(weight, 6)), phrase(word))
        for word, weight in plan.weights.items()
    )
    return sql.SQL(KEYWORDS).format(
        score=score,
        kb=sql.Literal(kb_id),
        candidates=join.join(phrase(w) for w in plan.candidates),
        documents=documents,
        cap=sql.Literal(cap),
    )


INSERT_CHUNK = """
INSERT INTO kb_chunks (kb_id, document_id, position, text, start_char, end_char, tokens, page,
                       headings, embedding, terms)
VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, to_tsvector('simple', %s))
"""


# -- vectors on the wire ------------------------------------------------------------------
class Vector:
    """A query or chunk vector, sent in pgvector's binary format (no text round trip)."""

    __slots__ = ("array",)

    def __init__(self, array: NDArray[np.float32]) -> None:
        self.array = array


class VectorDumper(Dumper):
    format = Format.BINARY

    def dump(self, obj: Any) -> bytes:
        array: NDArray[np.float32] = obj.array
        # vector_recv: int16 dimensions, int16 unused, then big-endian float32s.
        return struct.pack(">HH", len(array), 0) + array.astype(">f4").tobytes()


def register_vector(conn: Conn) -> None:
    info = TypeInfo.fetch(conn, "vector")
    if info is None:
        raise ConfigError("the pgvector extension is missing from this database")
    dumper = type("VectorDumper", (VectorDumper,), {"oid": info.oid})
    conn.adapters.register_dumper(Vector, dumper)


# -- SQL helpers --------------------------------------------------------------------------
def fetch(conn: Conn, query: Any, params: Any = None) -> list[Row]:
    with conn.cursor(row_factory=dict_row) as cursor:
        cursor.execute(query, params)
        return cursor.fetchall()


def fetch_one(conn: Conn, query: Any, params: Any = None) -> Row:
    return fetch(conn, query, params)[0]


def kb_row(conn: Conn, name: str, lock: bool = False) -> Row:
    # FOR UPDATE cannot go with the aggregates in KB_SELECT: lock the row first, then read it.
    locked = "SELECT 1 FROM knowledge_bases WHERE name = %s FOR UPDATE"
    if lock and not fetch(conn, locked, (name,)):
        raise KnowledgeBaseNotFound(name)
    rows = fetch(conn, KB_SELECT + " WHERE k.name = %s", (name,))
    if not rows:
        raise KnowledgeBaseNotFound(name)
    return rows[0]


def create_indexes(kb_id: int, dim: int) -> sql.Composed:
    """The knowledge base's own partial indexes: HNSW over its vectors, GIN over its terms.

    Partial (``WHERE kb_id = N``, matched by the literal kb_id in every query) so that one
    knowledge base's searches never wade through another's entries, and so a knowledge base
    can drop and rebuild its indexes alone (bulk loads).
    """
    hnsw, gin = _index_names(kb_id)
    return sql.SQL(
        "CREATE INDEX IF NOT EXISTS {hnsw} ON kb_chunks "
        "USING hnsw ((embedding::vector({dim})) vector_cosine_ops) WHERE kb_id = {kb}; "
        "CREATE INDEX IF NOT EXISTS {gin} ON kb_chunks USING gin (terms) WHERE kb_id = {kb}"
    ).format(hnsw=hnsw, gin=gin, dim=sql.Literal(dim), kb=sql.Literal(kb_id))


def drop_indexes(kb_id: int) -> sql.Composed:
    return sql.SQL("DROP INDEX IF EXISTS {}, {}").format(*_index_names(kb_id))


def _index_names(kb_id: int) -> tuple[sql.Identifier, sql.Identifier]:
    return sql.Identifier(f"kb_chunks_hnsw_{kb_id}"), sql.Identifier(f"kb_chunks_terms_{kb_id}")


def documents_sql(kb_id: int, filters: Filters) -> tuple[sql.Composable, dict[str, Any]]:
    """``AND document_id IN (...)`` for the filters, or nothing."""
    if not (filters.documents or filters.tags):
        return sql.SQL(""), {}
    where: list[sql.Composable] = [sql.SQL("kb_id = {}").format(sql.Literal(kb_id))]
    params: dict[str, Any] = {}
    if filters.documents:
        where.append(sql.SQL("name = ANY(%(names)s)"))
        params["names"] = list(filters.documents)
    if filters.tags:
        where.append(sql.SQL("tags && %(tags)s::text[]"))
        params["tags"] = list(filters.tags)
    clause = sql.SQL("AND document_id IN (SELECT id FROM kb_documents WHERE {})").format(
        sql.SQL(" AND ").join(where)
    )
    return clause, params


def insert_document(
    conn: Conn, kb_id: int, doc: NewDocument, vectors: NDArray[np.float32], keywords: list[str]
) -> int:
    """Replace the document of that name with ``doc``; its id. The caller keeps kb_terms
    in step (:data:`TERMS_REMOVE` before, :data:`TERMS_ADD` after)."""
    rec = doc.record
    conn.execute("DELETE FROM kb_documents WHERE kb_id = %s AND name = %s", (kb_id, rec.name))
    doc_id = fetch_one(
        conn,
        "INSERT INTO kb_documents (kb_id, name, sha256, format, title, chunks, added, tags) "
        "VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
        (kb_id, rec.name, rec.sha256, rec.format, rec.title, rec.chunks, rec.added,
         list(rec.tags)),
    )["id"]  # fmt: skip
    rows = [
        (kb_id, doc_id, c.index, c.text, c.start, c.end, c.tokens, c.page, list(c.headings),
         Vector(v), text)
        for c, v, text in zip(doc.chunks, vectors, keywords, strict=True)
    ]  # fmt: skip
    with conn.cursor() as cursor:
        cursor.executemany(INSERT_CHUNK, rows)
    return int(doc_id)


def migrate(conn: Conn) -> None:
    with conn.transaction():
        # One migrator at a time across processes; the lock ends with the transaction.
        conn.execute("SELECT pg_advisory_xact_lock(hashtext('hearth knowledge-base schema'))")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS kb_schema_migrations "
            "(version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied DOUBLE PRECISION NOT NULL)"
        )
        applied = [r["version"] for r in fetch(conn, "SELECT version FROM kb_schema_migrations")]
        where = f"database {conn.info.dbname!r} on {conn.info.host}"
        for version, name, statements in pending(MIGRATIONS, applied, where):
            try:
                conn.execute(statements)
            except psycopg.errors.UndefinedFile as e:
                raise ConfigError(
                    f"{where}: the server has no pgvector extension ({e}). Install pgvector "
                    "on the PostgreSQL server (https://github.com/pgvector/pgvector), then retry."
                ) from e
            except psycopg.errors.InsufficientPrivilege as e:
                raise ConfigError(
                    f"{where}: cannot set up the knowledge-base schema ({e}). The pgvector "
                    "extension needs a privileged role once: run CREATE EXTENSION vector; in "
                    "this database as its owner or a superuser, then retry."
                ) from e
            conn.execute(
                "INSERT INTO kb_schema_migrations (version, name, applied) VALUES (%s, %s, %s)",
                (version, name, time.time()),
            )
