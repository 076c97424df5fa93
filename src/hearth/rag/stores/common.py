"""What both stores share: checking a batch before it is written, query vectors and terms,
append-only migration bookkeeping, and rows back into domain values."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray

from hearth.errors import ConfigError, EmbeddingMismatch, InvalidRequest
from hearth.rag.keywords import terms
from hearth.rag.stores.base import KnowledgeBase, NewDocument
from hearth.types import Chunk, DocumentRecord

Migration = tuple[int, str, str]
Vectors = NDArray[np.float32]


@dataclass(frozen=True)
class Space:
    """The embedding space a knowledge base was created with."""

    kb: str
    model: str
    dim: int


def keyword_texts(doc: NewDocument) -> list[str]:
    """One segmented text per chunk: the caller's, or :func:`terms` of the chunk's text."""
    if not doc.keywords:
        return [" ".join(terms(chunk.text)) for chunk in doc.chunks]
    if len(doc.keywords) != len(doc.chunks):
        raise InvalidRequest(
            f"document {doc.record.name!r}: {len(doc.keywords)} keyword texts for "
            f"{len(doc.chunks)} chunks; give one per chunk, or none to segment the chunk text."
        )
    return list(doc.keywords)


def document_vectors(doc: NewDocument, space: Space) -> Vectors:
    """The document's vectors, checked against its chunks and the space, and normalised."""
    name = doc.record.name
    if doc.record.chunks != len(doc.chunks):
        raise InvalidRequest(
            f"document {name!r}: its record says {doc.record.chunks} chunks but "
            f"{len(doc.chunks)} were given; build the record from the chunks."
        )
    strays = sorted({c.document for c in doc.chunks if c.document != name})
    if strays:
        raise InvalidRequest(f"document {name!r}: chunks name other documents {strays}.")
    vectors = np.asarray(doc.vectors, dtype=np.float32)
    if vectors.ndim != 2 or vectors.shape[0] != len(doc.chunks):
        raise InvalidRequest(
            f"document {name!r}: vectors have shape {vectors.shape}; expected "
            f"({len(doc.chunks)}, {space.dim}), one row per chunk."
        )
    _check_dim(vectors.shape[1], space, f"document {name!r}")
    return _normalised(vectors, f"document {name!r}")


def query_vector(vector: np.ndarray, space: Space) -> NDArray[np.float32]:
    """A 1-D normalised float32 query, so scores are cosines whatever the caller sent."""
    query = np.asarray(vector, dtype=np.float32)
    if query.ndim == 2 and query.shape[0] == 1:
        query = query[0]
    if query.ndim != 1:
        raise InvalidRequest(f"query vector has shape {query.shape}; give one vector.")
    _check_dim(query.shape[0], space, "the query vector")
    out: NDArray[np.float32] = _normalised(query[None, :], "the query vector")[0]
    return out


def _check_dim(dim: int, space: Space, what: str) -> None:
    if dim != space.dim:
        raise EmbeddingMismatch(
            f"{what} has {dim} dimensions, but knowledge base {space.kb!r} holds "
            f"{space.dim}-dimensional vectors from {space.model!r}. Embed with "
            f"{space.model!r}, or create another knowledge base for the other model "
            "(`hearth kb create`).",
            param="vectors",
        )


def _normalised(vectors: Vectors, what: str) -> Vectors:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    if not np.all(np.isfinite(norms)) or np.any(norms == 0):
        raise InvalidRequest(
            f"{what}: vectors must be finite and non-zero (cosine similarity needs a "
            "direction); check the embedding model's output."
        )
    # Stored vectors are unit length whatever the embedder did, so a dot product is the
    # cosine in both backends and scores agree between them.
    out: Vectors = (vectors / norms).astype(np.float32)
    return out


def search_terms(query: Sequence[str]) -> list[str]:
    """Distinct terms that can match anything (a term of only punctuation cannot)."""
    wanted = (t.strip().lower() for t in query)
    return list(dict.fromkeys(t for t in wanted if any(ch.isalnum() for ch in t)))


def fts5_query(words: Sequence[str]) -> str:
    """An FTS5 expression matching any of ``words``, each quoted so it is taken literally."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def pending(migrations: Sequence[Migration], applied: Sequence[int], where: str) -> list[Migration]:
    """The migrations ``applied`` lacks; a version we do not know means a newer hearth."""
    versions = [version for version, _, _ in migrations]
    if versions != sorted(set(versions)) or (versions and versions[0] < 1):
        raise ValueError(f"migration versions must be unique and increasing from 1: {versions}")
    newer = sorted(set(applied) - set(versions))
    if newer:
        raise ConfigError(
            f"knowledge-base store {where} has schema version(s) {newer} that this hearth does "
            "not know; it was written by a newer hearth. Upgrade hearth (pip install -U hearth)."
        )
    return [m for m in migrations if m[0] not in applied]


def chunk_from_row(row: Mapping[str, Any], headings: Sequence[str]) -> Chunk:
    return Chunk(
        document=row["document"],
        index=row["position"],
        text=row["text"],
        start=row["start_char"],
        end=row["end_char"],
        tokens=row["tokens"],
        page=row["page"],
        headings=tuple(headings),
    )


def knowledge_base_from_row(row: Mapping[str, Any]) -> KnowledgeBase:
    return KnowledgeBase(
        name=row["name"],
        embed_model=row["embed_model"],
        dim=row["dim"],
        created=row["created"],
        description=row["description"],
        documents=int(row["documents"]),  # PostgreSQL's sum() is a Decimal
        chunks=int(row["chunks"]),
    )


def record_from_row(row: Mapping[str, Any], tags: Sequence[str]) -> DocumentRecord:
    return DocumentRecord(
        name=row["name"],
        sha256=row["sha256"],
        format=row["format"],
        title=row["title"],
        chunks=row["chunks"],
        added=row["added"],
        tags=tuple(tags),
    )
