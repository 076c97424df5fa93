"""The pgvector store's own tests: its HNSW index, and keyword search at scale: per-term
chunk counts (kb_terms) and the choice of candidate words, so that common words do not make
a search rank a large share of the knowledge base. The shared suite (test_stores.py) checks
that results stay exact while a query's words match few chunks; here ``keyword_candidates``
is set small to force the other paths on a small, real database."""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import pytest

from hearth.rag.stores.base import Filters, NewDocument
from hearth.rag.stores.pgvector_sql import plan_keywords
from hearth.types import Chunk, DocumentRecord
from tests.rag.storekit import doc, unit

DIM = 8  # the HNSW test uses storekit's documents, of 16 dimensions


def document(name: str, texts: Sequence[str]) -> NewDocument:
    chunks = [Chunk(name, i, t, 0, len(t), len(t)) for i, t in enumerate(texts)]
    vectors = np.random.default_rng(len(name)).standard_normal((len(texts), DIM))
    record = DocumentRecord(name, f"sha-{name}-{len(texts)}", "txt", name, len(texts), 0.0)
    return NewDocument(record, chunks, vectors.astype(np.float32), list(texts))


# -- choosing the candidate words (no database) -------------------------------------------
def test_a_small_knowledge_base_uses_every_word() -> None:
    plan = plan_keywords([("年假", 40), ("policy", 900), ("missing", 0)], total=1000, cap=5000)
    assert plan is not None
    assert (plan.candidates, plan.join) == (["年假", "policy"], "any")
    assert set(plan.weights) == {"年假", "policy"}  # a word no chunk holds plays no part
    assert plan.weights["年假"] > plan.weights["policy"] > 0


def test_rare_words_choose_the_candidates_and_common_ones_only_score() -> None:
    counts = [("the", 600_000), ("hx-2040", 3), ("年假", 4_000), ("policy", 90_000)]
    plan = plan_keywords(counts, total=1_000_000, cap=5000)
    assert plan is not None
    assert (plan.candidates, plan.join) == (["hx-2040", "年假"], "any")
    assert list(plan.weights) == ["hx-2040", "年假", "policy", "the"]  # rarest first
    weights = list(plan.weights.values())
    assert weights == sorted(weights, reverse=True)
    # BM25's IDF
    assert plan.weights["the"] == pytest.approx(math.log(1 + 400_000.5 / 600_000.5))


def test_only_common_words_take_the_chunks_holding_all_of_them() -> None:
    plan = plan_keywords([("policy", 90_000), ("leave", 50_000)], total=1_000_000, cap=5000)
    assert plan is not None
    assert (sorted(plan.candidates), plan.join) == (["leave", "policy"], "all")


def test_no_word_occurs() -> None:
    assert plan_keywords([("x", 0), ("y", 0)], total=10, cap=5) is None
    assert plan_keywords([], total=10, cap=5) is None


# -- on a real PostgreSQL -----------------------------------------------------------------
def _counts(url: str, query: str, kb: str) -> dict[str, int]:
    import psycopg

    with psycopg.connect(url) as conn:
        return dict(conn.execute(query, (kb,)).fetchall())


def _recount(url: str, kb: str) -> dict[str, int]:
    """Chunks per term, counted afresh from the chunks."""
    return _counts(
        url,
        "SELECT u.lexeme, count(*) FROM kb_chunks c JOIN knowledge_bases k ON k.id = c.kb_id,"
        " unnest(c.terms) u WHERE k.name = %s GROUP BY u.lexeme",
        kb,
    )


def _kept(url: str, kb: str) -> dict[str, int]:
    """Chunks per term, as the store keeps them."""
    return _counts(
        url,
        "SELECT t.term, t.chunks FROM kb_terms t JOIN knowledge_bases k ON k.id = t.kb_id "
        "WHERE k.name = %s AND t.chunks > 0",
        kb,
    )


def test_term_counts_follow_writes_replacements_and_deletes(pg_url: str) -> None:
    from hearth.rag.stores.pgvector import PgVectorStore

    with PgVectorStore(pg_url) as store:
        store.create_kb("kb", "m", DIM)
        store.create_kb("other", "m", DIM)
        store.write("other", [document("a", ["年假 policy"])])
        store.write(
            "kb",
            [
                document("a", ["年假 policy", "病假 policy hx-2040", "年假 年假 年假"]),
                document("b", ["出差 policy", "年假 出差"]),
                document("a", ["年假 replaced", "policy"]),  # the same name again in one batch
            ],
        )
        assert _kept(pg_url, "kb") == _recount(pg_url, "kb")
        assert _kept(pg_url, "kb")["年假"] == 2  # in chunks, not occurrences
        store.write("kb", [document("b", ["只有 一个"])])  # replaced
        assert _kept(pg_url, "kb") == _recount(pg_url, "kb")
        assert "出差" not in _kept(pg_url, "kb")
        assert store.delete_document("kb", "a")
        assert _kept(pg_url, "kb") == _recount(pg_url, "kb") == {"只有": 1, "一个": 1}
        assert _kept(pg_url, "other") == {"年假": 1, "policy": 1}  # untouched
        store.drop_kb("kb")
    import psycopg

    with psycopg.connect(pg_url) as conn:
        assert conn.execute("SELECT count(*) FROM kb_terms").fetchone() == (2,)  # other's


def test_upgrading_a_database_counts_the_terms_already_there(pg_url: str) -> None:
    import psycopg

    from hearth.rag.stores.pgvector import PgVectorStore

    with PgVectorStore(pg_url) as store:
        store.create_kb("kb", "m", DIM)
        store.write("kb", [document("a", ["年假 policy", "policy"])])
    with psycopg.connect(pg_url) as conn:  # as a database made before the counts existed
        conn.execute("DROP TABLE kb_terms")
        conn.execute("DELETE FROM kb_schema_migrations WHERE version = 2")
    with PgVectorStore(pg_url) as store:
        assert _kept(pg_url, "kb") == {"年假": 1, "policy": 2}
        assert [h.chunk.text for h in store.keyword_search("kb", ["年假"], 5)] == ["年假 policy"]


def test_common_words_past_the_cap(pg_url: str) -> None:
    from hearth.rag.stores.pgvector import PgVectorStore

    common = [f"policy leave filler{i}" for i in range(30)]
    special = ["policy hx-2040 leave", "hx-2040 only", "policy leave 年假", "年假 alone"]
    with PgVectorStore(pg_url, keyword_candidates=5) as store:
        store.create_kb("kb", "m", DIM)
        store.write("kb", [document("common", common), document("special", special)])

        def texts(words: list[str], k: int = 10) -> list[str]:
            return [h.chunk.text for h in store.keyword_search("kb", words, k)]

        # The rare code finds the candidates; the common words lift the chunk that has them.
        assert texts(["policy", "hx-2040", "leave"]) == ["policy hx-2040 leave", "hx-2040 only"]
        # Only common words: chunks holding all of them, at most keyword_candidates.
        found = texts(["policy", "leave"])
        assert 0 < len(found) <= 5
        assert all("policy" in t and "leave" in t for t in found)
        assert len(texts(["filler7"])) == 1  # a rare word alone is exact
        assert texts(["policy"], k=3) and len(texts(["policy"], k=50)) == 5
    with PgVectorStore(pg_url) as store:  # the default cap: exact at this size
        assert len(store.keyword_search("kb", ["policy"], 50)) == 32
        top = store.keyword_search("kb", ["年假", "policy"], 3)
        # The rare word outweighs the common one (plain ts_rank would tie them).
        assert [h.chunk.text for h in top[:2]] == ["policy leave 年假", "年假 alone"]


def test_keyword_candidates_must_be_positive(pg_url: str) -> None:
    from hearth.errors import InvalidRequest
    from hearth.rag.stores.pgvector import PgVectorStore

    with pytest.raises(InvalidRequest, match="keyword_candidates"):
        PgVectorStore(pg_url, keyword_candidates=0)


# -- the HNSW index ------------------------------------------------------------------------
def test_pgvector_uses_the_hnsw_index_and_bulk_load_restores_it(pg_url: str) -> None:
    import psycopg

    from hearth.rag.stores.pgvector import PgVectorStore

    rng = np.random.default_rng(12)
    with PgVectorStore(pg_url) as store:
        store.create_kb("kb", "m", 16)
        with store.bulk_load("kb"):
            store.write("kb", [doc(f"d{i}", ["x"] * 20, unit(rng, 20)) for i in range(10)])
        store.build_index("kb")  # idempotent
        query = unit(rng, 1)[0]
        assert len(store.vector_search("kb", query, 5, Filters(documents=("d3",)))) == 5
        with psycopg.connect(pg_url) as conn:
            indexes = [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes").fetchall()]
            assert {"kb_chunks_hnsw_1", "kb_chunks_terms_1"} <= set(indexes)
            conn.execute("SET enable_seqscan = off")
            conn.execute("SET enable_sort = off")  # the only other way to order: the index
            literal = "[" + ",".join(str(x) for x in query) + "]"
            plan = conn.execute(
                f"EXPLAIN SELECT id FROM kb_chunks WHERE kb_id = 1 "
                f"ORDER BY embedding::vector(16) <=> '{literal}' LIMIT 5"
            ).fetchall()
            assert "kb_chunks_hnsw_1" in str(plan)
        store.drop_kb("kb")
        with psycopg.connect(pg_url) as conn:
            indexes = [r[0] for r in conn.execute("SELECT indexname FROM pg_indexes").fetchall()]
            assert not {"kb_chunks_hnsw_1", "kb_chunks_terms_1"} & set(indexes)
