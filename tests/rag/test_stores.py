"""The store protocol's suite: every test that takes ``store`` runs on SQLite and on
PostgreSQL + pgvector (see conftest.py). Each store's own tests: test_sqlite_store.py,
test_pgvector.py."""

from __future__ import annotations

import numpy as np
import pytest

from hearth.errors import EmbeddingMismatch, KnowledgeBaseExists, KnowledgeBaseNotFound
from hearth.rag.keywords import query_terms, terms
from hearth.rag.stores.base import Filters, Store
from hearth.types import Chunk
from tests.rag.storekit import DIM, HANDBOOK, doc, names, unit


# -- knowledge bases ----------------------------------------------------------------------
def test_create_get_list_drop(store: Store) -> None:
    created = store.create_kb("handbook", "e5-small", DIM, "员工手册")
    assert (created.name, created.embed_model, created.dim) == ("handbook", "e5-small", DIM)
    assert (created.description, created.documents, created.chunks) == ("员工手册", 0, 0)
    assert created.created > 0
    store.create_kb("faq", "e5-small", DIM)
    assert store.get_kb("handbook") == created
    assert [kb.name for kb in store.list_kbs()] == ["faq", "handbook"]
    store.drop_kb("handbook")
    assert [kb.name for kb in store.list_kbs()] == ["faq"]
    with pytest.raises(KnowledgeBaseNotFound):
        store.get_kb("handbook")


def test_duplicate_create_is_an_error(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    with pytest.raises(KnowledgeBaseExists, match="hearth kb"):
        store.create_kb("kb", "other", DIM * 2)
    assert store.get_kb("kb").embed_model == "m"


def test_missing_kb_is_an_error_everywhere(store: Store) -> None:
    calls = [
        lambda: store.get_kb("nope"),
        lambda: store.drop_kb("nope"),
        lambda: store.document_hashes("nope"),
        lambda: store.documents("nope"),
        lambda: store.write("nope", [doc("a", ["x"])]),
        lambda: store.delete_document("nope", "a"),
        lambda: store.count_chunks("nope"),
        lambda: store.vector_search("nope", np.ones(DIM), 3),
        lambda: store.keyword_search("nope", ["x"], 3),
    ]
    for call in calls:
        with pytest.raises(KnowledgeBaseNotFound, match="hearth kb create nope"):
            call()


def test_dropping_and_recreating_starts_empty(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    store.write("kb", [doc("a", ["年假 rules", "more"])])
    store.drop_kb("kb")
    store.create_kb("kb", "m", DIM)
    assert store.count_chunks("kb") == 0
    assert store.documents("kb") == []
    assert store.vector_search("kb", np.ones(DIM), 5) == []
    assert store.keyword_search("kb", ["年假"], 5) == []


# -- documents ----------------------------------------------------------------------------
def test_write_and_read_back(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    store.write(
        "kb", [doc("b.md", ["one", "two", "three"], tags=("hr", "2024")), doc("a.md", ["x"])]
    )
    records = store.documents("kb")
    assert [r.name for r in records] == ["a.md", "b.md"]
    b = records[1]
    assert (b.sha256, b.format, b.title, b.chunks, b.added, b.tags) == (
        "sha-b.md", "md", "B.Md", 3, 1.5, ("hr", "2024"),
    )  # fmt: skip
    assert store.document_hashes("kb") == {"a.md": "sha-a.md", "b.md": "sha-b.md"}
    assert store.count_chunks("kb") == 4
    kb = store.get_kb("kb")
    assert (kb.documents, kb.chunks) == (2, 4)
    # Chunks come back whole: text, offsets, page and headings.
    vectors = unit(np.random.default_rng(1), 3)
    store.write("kb", [doc("b.md", ["one", "two", "three"], vectors)])
    hit = store.vector_search("kb", vectors[1], 1)[0]
    assert hit.chunk == Chunk("b.md", 1, "two", 100, 103, 1, page=2, headings=("第一章", "part 1"))
    assert hit.chunk_id > 0


def test_kbs_are_separate(store: Store) -> None:
    store.create_kb("one", "m", DIM)
    store.create_kb("two", "m", DIM)
    v = unit(np.random.default_rng(2), 1)
    store.write("one", [doc("same-name", ["年假 in one"], v)])
    store.write("two", [doc("same-name", ["病假 in two"], v)])
    assert [h.chunk.text for h in store.vector_search("one", v[0], 5)] == ["年假 in one"]
    assert store.keyword_search("one", ["病假"], 5) == []
    store.delete_document("one", "same-name")
    assert store.count_chunks("two") == 1


def test_replacing_a_document_leaves_nothing_behind(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    old = unit(np.random.default_rng(3), 3)
    store.write("kb", [doc("policy", ["old 年假 policy", "old alpha", "old beta"], old, sha="v1")])
    store.write("kb", [doc("other", ["unrelated text"])])
    new = unit(np.random.default_rng(4), 1)
    store.write("kb", [doc("policy", ["new 病假 policy"], new, sha="v2")])
    assert store.document_hashes("kb") == {"policy": "v2", "other": "sha-other"}
    assert store.count_chunks("kb") == 2
    assert store.get_kb("kb").chunks == 2
    texts = [h.chunk.text for h in store.vector_search("kb", old[0], 10)]
    assert sorted(texts) == ["new 病假 policy", "unrelated text"]
    assert store.keyword_search("kb", ["年假", "alpha", "old"], 10) == []
    assert [h.chunk.text for h in store.keyword_search("kb", ["病假"], 10)] == ["new 病假 policy"]


def test_delete_document(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    vectors = unit(np.random.default_rng(5), 2)
    store.write("kb", [doc("gone", ["年假 HX-2040", "second"], vectors), doc("kept", ["年假"])])
    assert store.delete_document("kb", "gone") is True
    assert store.delete_document("kb", "gone") is False
    assert [r.name for r in store.documents("kb")] == ["kept"]
    assert store.count_chunks("kb") == 1
    assert names(store.vector_search("kb", vectors[0], 10)) == ["kept"]
    assert names(store.keyword_search("kb", query_terms("年假 HX-2040"), 10)) == ["kept"]


# -- vector search ------------------------------------------------------------------------
def test_vector_search_is_exact_on_small_data(store: Store) -> None:
    rng = np.random.default_rng(6)
    store.create_kb("kb", "m", DIM)
    data = unit(rng, 60)
    store.write("kb", [doc(f"d{i}", [f"c{j}" for j in range(10)], data[i * 10 : i * 10 + 10])
                       for i in range(6)])  # fmt: skip
    for query in unit(rng, 5):
        hits = store.vector_search("kb", query, 7)
        order = np.argsort(-(data @ query))[:7]
        assert [(h.chunk.document, h.chunk.text) for h in hits] == [
            (f"d{i // 10}", f"c{i % 10}") for i in order
        ]
        best = sorted(data @ query, reverse=True)[:7]
        assert [h.score for h in hits] == pytest.approx(best, abs=1e-5)


def test_vector_scores_are_cosines_higher_is_better(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    data = unit(np.random.default_rng(7), 5)
    store.write("kb", [doc("d", list("abcde"), data)])
    hits = store.vector_search("kb", data[2] * 3.0, 5)  # an unnormalised query is normalised
    assert hits[0].chunk.text == "c"
    assert hits[0].score == pytest.approx(1.0, abs=1e-5)
    scores = [h.score for h in hits]
    assert scores == sorted(scores, reverse=True)
    assert all(-1.0 - 1e-6 <= s <= 1.0 + 1e-6 for s in scores)
    assert store.vector_search("kb", data[0], 0) == []
    assert len(store.vector_search("kb", data[0], 50)) == 5


def test_vector_search_filters(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    rng = np.random.default_rng(8)
    store.write("kb", [
        doc("hr-2024", ["a", "b"], unit(rng, 2), tags=("hr", "2024")),
        doc("hr-2023", ["c", "d"], unit(rng, 2), tags=("hr",)),
        doc("it", ["e", "f"], unit(rng, 2), tags=("it",)),
    ])  # fmt: skip
    query = unit(rng, 1)[0]
    by_doc = store.vector_search("kb", query, 10, Filters(documents=("it", "hr-2023")))
    assert sorted(names(by_doc)) == ["hr-2023", "hr-2023", "it", "it"]
    by_tag = store.vector_search("kb", query, 10, Filters(tags=("2024", "it")))
    assert sorted(names(by_tag)) == ["hr-2024", "hr-2024", "it", "it"]
    both = store.vector_search("kb", query, 10, Filters(documents=("hr-2023", "it"), tags=("hr",)))
    assert sorted(names(both)) == ["hr-2023", "hr-2023"]
    assert store.vector_search("kb", query, 10, Filters(tags=("nobody",))) == []
    # A filter keeps the exact order among the chunks it lets through.
    one = store.vector_search("kb", query, 1, Filters(documents=("it",)))
    assert names(one) == ["it"]
    assert one[0].score == by_doc[names(by_doc).index("it")].score


def test_wrong_dimension_is_an_error(store: Store) -> None:
    store.create_kb("kb", "e5-small", DIM)
    with pytest.raises(EmbeddingMismatch, match="e5-small"):
        store.write("kb", [doc("a", ["x"], unit(np.random.default_rng(9), 1, DIM + 1))])
    with pytest.raises(EmbeddingMismatch, match=f"{DIM}-dimensional"):
        store.vector_search("kb", np.ones(DIM * 2), 3)
    assert store.count_chunks("kb") == 0


# -- keyword search -----------------------------------------------------------------------
def test_keyword_search_finds_chinese_english_and_codes(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    store.write("kb", HANDBOOK)  # no keywords given: the store segments the chunk text

    def top(query: str, k: int = 5, filters: Filters = Filters()) -> list[str]:
        return [h.chunk.text for h in store.keyword_search("kb", query_terms(query), k, filters)]

    assert top("年假")[0] == "员工每年享有年假十五天，年假需提前一周申请。"
    assert top("怎么申请年假？")[0] == "员工每年享有年假十五天，年假需提前一周申请。"
    assert top("病假")[0] == "病假需要提供医院证明。"
    assert top("doctor")[0] == "Sick leave requires a doctor's note."
    assert top("Travel EXPENSES") == ["Submit travel expenses within 30 days."]
    assert top("HX-2040")[0] == "HX-2040 型号的电池容量为 5000 mAh。"
    assert top("hx-3000")[0] == "The HX-3000 replaces the older model."
    assert top("2040") == ["HX-2040 型号的电池容量为 5000 mAh。"]
    assert top("不存在的词 xylophone") == []
    assert top("leave", filters=Filters(documents=("sick.md",))) == [
        "Sick leave requires a doctor's note."
    ]
    assert set(top("leave", filters=Filters(tags=("hr",)))) == {
        "Annual leave must be requested one week in advance.",
        "Sick leave requires a doctor's note.",
    }
    assert top("leave", k=1) != [] and len(top("leave", k=1)) == 1
    assert store.keyword_search("kb", [], 5) == []
    assert store.keyword_search("kb", ["-", "，", '"'], 5) == []  # nothing searchable


def test_keyword_scores_higher_is_better(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    store.write(
        "kb", [doc("d", ["年假 年假 年假 规定", "年假 其他 内容 说明", "无关 内容 说明 文字"])]
    )
    hits = store.keyword_search("kb", ["年假"], 5)
    assert [h.chunk.index for h in hits] == [0, 1]
    assert hits[0].score > hits[1].score > 0


def test_caller_segmented_keywords_are_indexed(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    store.write("kb", [doc("d", ["图片里的文字"], keywords=["发票 报销"])])
    assert names(store.keyword_search("kb", ["报销"], 5)) == ["d"]


def test_terms_segment_chinese_and_keep_codes() -> None:
    assert terms("中华人民共和国") == ["中华", "华人", "人民", "共和", "共和国", "中华人民共和国"]
    assert "年假" in terms("员工年假申请")  # not in jieba's dictionary: rebuilt from 年 + 假
    assert terms("The HX-2040 and C++ in Node.js") == [
        "hx-2040", "hx", "2040", "c++", "node.js", "node", "js",
    ]  # fmt: skip
    assert terms("ＨＸ－２０４０") == ["hx-2040", "hx", "2040"]  # full-width folded
    assert terms("的 了 is the，。！") == []
    assert query_terms("年假 年假") == ["年", "假", "年假"]


# -- atomicity ----------------------------------------------------------------------------
def test_a_failing_batch_writes_nothing(store: Store) -> None:
    store.create_kb("kb", "m", DIM)
    rng = np.random.default_rng(10)
    store.write("kb", [doc("keep", ["old 年假 text"], unit(rng, 1), sha="old")])
    batch = [
        doc("first", ["first 病假"], unit(rng, 1)),
        doc("keep", ["replacement 出差"], unit(rng, 1), sha="new"),
        doc("third", ["bad"], unit(rng, 1, DIM + 3)),  # fails after two documents went in
    ]
    with pytest.raises(EmbeddingMismatch):
        store.write("kb", batch)
    assert store.document_hashes("kb") == {"keep": "old"}
    assert store.count_chunks("kb") == 1
    assert store.keyword_search("kb", ["病假"], 5) == []
    assert store.keyword_search("kb", ["出差"], 5) == []
    assert names(store.keyword_search("kb", ["年假"], 5)) == ["keep"]
    assert names(store.vector_search("kb", batch[0].vectors[0], 5)) == ["keep"]
