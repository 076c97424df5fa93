"""The small-talk gate on the whole bilingual sample with the real embedder: chit-chat
retrieves nothing, and no real question is turned away, in either language."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.evals.retrieval import load_qa
from hearth.rag.embed import E5Embedder
from hearth.rag.ingest import ingest
from hearth.rag.retrieve import is_small_talk, search
from hearth.rag.stores.sqlite import SQLiteStore

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "hearth" / "data" / "kb_sample"
QUESTIONS = [
    qa.question for name in ("qa.jsonl", "qa_crosslingual.jsonl") for qa in load_qa(SAMPLE / name)
]
SMALL_TALK = (SAMPLE / "smalltalk.txt").read_text(encoding="utf-8").splitlines()


@pytest.fixture(scope="module")
def sample(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[SQLiteStore, E5Embedder]]:
    store = SQLiteStore(tmp_path_factory.mktemp("gate") / "kb.db")
    embedder = E5Embedder()
    store.create_kb("sample", embedder.model, embedder.dim)
    report = ingest(store, embedder, "sample", [SAMPLE / "docs"])
    assert not report.failed
    yield store, embedder
    store.close()


def test_small_talk_retrieves_nothing(sample: tuple[SQLiteStore, E5Embedder]) -> None:
    store, embedder = sample
    found = {
        line: len(search(store, embedder, "sample", line, mode=mode))
        for line in SMALL_TALK
        for mode in ("hybrid", "vector")
    }
    assert {line: n for line, n in found.items() if n} == {}
    assert all(is_small_talk(store, embedder, "sample", line) for line in SMALL_TALK)


def test_no_real_question_is_turned_away(sample: tuple[SQLiteStore, E5Embedder]) -> None:
    """Questions about documents in the other language included: their best match scores
    lower than a same-language one, which a similarity floor used to read as small talk."""
    store, embedder = sample
    turned_away = [q for q in QUESTIONS if not search(store, embedder, "sample", q)]
    assert turned_away == []
    assert not any(is_small_talk(store, embedder, "sample", q) for q in QUESTIONS)


def test_a_translation_brings_the_other_language_in(
    sample: tuple[SQLiteStore, E5Embedder],
) -> None:
    """The second phrasing is searched too: an English question finds the Chinese passage
    through its translation, ranked against the original's own results."""
    store, embedder = sample
    for question, translation, document in (
        (
            "Who led the construction of the Dujiangyan irrigation system?",
            "都江堰是谁主持修建的？",
            "chengdu.md",
        ),
        ("里斯本大地震发生在哪一天？", "When was Lisbon destroyed by an earthquake?", "lisbon.txt"),
    ):
        alone = search(store, embedder, "sample", question)
        both = search(store, embedder, "sample", question, also=[translation])
        assert alone[0].chunk.document != document
        assert both[0].chunk.document == document
    # the same-language answer stays first when the translation adds nothing better
    english = "Can a WAL-mode database live on NFS?"
    with_noise = search(
        store, embedder, "sample", english, also=["WAL 模式的数据库能放在 NFS 上吗？"]
    )
    assert with_noise[0].chunk.document == "sqlite_wal.md"
