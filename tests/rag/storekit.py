"""Helpers the store test files share: small documents with chunks, vectors and tags."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from hearth.rag.stores.base import NewDocument
from hearth.types import Chunk, DocumentRecord

DIM = 16


def unit(rng: np.random.Generator, n: int, dim: int = DIM) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def doc(
    name: str,
    texts: Sequence[str],
    vectors: np.ndarray | None = None,
    tags: tuple[str, ...] = (),
    sha: str | None = None,
    keywords: Sequence[str] = (),
) -> NewDocument:
    chunks = [
        Chunk(name, i, text, i * 100, i * 100 + len(text), len(text) // 2, page=i + 1,
              headings=("第一章", f"part {i}"))
        for i, text in enumerate(texts)
    ]  # fmt: skip
    if vectors is None:
        vectors = unit(np.random.default_rng(abs(hash(name)) % 2**32), len(texts))
    record = DocumentRecord(name, sha or f"sha-{name}", "md", name.title(), len(chunks), 1.5, tags)
    return NewDocument(record, chunks, vectors, keywords)


def names(hits: Sequence[Any]) -> list[str]:
    return [h.chunk.document for h in hits]


HANDBOOK = [
    doc("leave.md", ["员工每年享有年假十五天，年假需提前一周申请。",
                     "Annual leave must be requested one week in advance."], tags=("hr",)),
    doc("sick.md", ["病假需要提供医院证明。",
                    "Sick leave requires a doctor's note."], tags=("hr",)),
    doc("products.md", ["HX-2040 型号的电池容量为 5000 mAh。",
                        "The HX-3000 replaces the older model."], tags=("sales",)),
    doc("travel.md", ["出差报销需要在三十天内提交。", "Submit travel expenses within 30 days."]),
]  # fmt: skip
