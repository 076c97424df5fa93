"""The store protocol. Both backends pass the same test suite (tests/rag/test_stores.py).

Vectors are L2-normalised float32, so cosine similarity is a dot product (stores normalise
what they are given, so scores are cosines in both backends; zero or non-finite vectors are
refused). A knowledge base records its embedding model and dimension; writing or searching
with vectors of another dimension is an error (``EmbeddingMismatch``).
Every write of a document (its record, chunks, vectors and keyword index rows) happens in
one transaction, so a crash at any moment leaves each document either fully present or
absent, and re-running an ingestion finishes the job.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol

import numpy as np

from hearth.types import Chunk, DocumentRecord, Hit


@dataclass(frozen=True)
class KnowledgeBase:
    name: str
    embed_model: str
    dim: int
    created: float
    description: str = ""
    documents: int = 0
    chunks: int = 0


@dataclass(frozen=True)
class Filters:
    documents: tuple[str, ...] = ()  # only these document names
    tags: tuple[str, ...] = ()  # only documents carrying any of these tags


@dataclass(frozen=True)
class NewDocument:
    record: DocumentRecord
    chunks: Sequence[Chunk]
    vectors: np.ndarray  # shape (len(chunks), dim), float32, normalised
    # Per chunk: segmented text for the keyword index, " ".join(hearth.rag.keywords.terms(t)).
    # Empty: the store segments each chunk's text itself.
    keywords: Sequence[str] = field(default_factory=tuple)


class Store(Protocol):
    def create_kb(
        self, name: str, embed_model: str, dim: int, description: str = ""
    ) -> KnowledgeBase:
        """Create; an existing name is an error (``KnowledgeBaseExists``)."""
        ...

    def get_kb(self, name: str) -> KnowledgeBase:
        """``KnowledgeBaseNotFound`` when missing (message names ``hearth kb create``)."""
        ...

    def list_kbs(self) -> list[KnowledgeBase]: ...

    def drop_kb(self, name: str) -> None:
        """Remove it with everything in it; ``KnowledgeBaseNotFound`` when missing."""
        ...

    def document_hashes(self, kb: str) -> dict[str, str]:
        """name -> sha256 of every stored document, to skip unchanged files."""
        ...

    def write(self, kb: str, documents: Sequence[NewDocument]) -> None:
        """Insert or replace these documents, all in one transaction.

        Each record's ``chunks`` must equal its number of chunks. A bad document anywhere in
        the batch (wrong dimension, mismatched counts) raises and writes none of the batch.
        """
        ...

    def delete_document(self, kb: str, name: str) -> bool:
        """Remove a document with its chunks, vectors and keyword rows; False if absent."""
        ...

    def documents(self, kb: str) -> list[DocumentRecord]: ...

    def vector_search(
        self, kb: str, vector: np.ndarray, k: int, filters: Filters = Filters()
    ) -> list[Hit]:
        """Nearest chunks by cosine similarity (score in [-1, 1], higher is closer)."""
        ...

    def keyword_search(
        self, kb: str, terms: Sequence[str], k: int, filters: Filters = Filters()
    ) -> list[Hit]:
        """Chunks matching any of the (already segmented) terms, best first (BM25-like).

        Terms come from ``hearth.rag.keywords.query_terms(query)``; each must match whole
        (``hx-2040`` is one term), and terms of punctuation alone are ignored.
        """
        ...

    def count_chunks(self, kb: str) -> int: ...

    def close(self) -> None: ...
