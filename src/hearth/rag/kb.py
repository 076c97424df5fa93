"""Opening the knowledge-base store named by a URL, and the embedder a knowledge base uses."""

from __future__ import annotations

from pathlib import Path

from hearth.errors import ConfigError
from hearth.rag.embed import Embedder, embedder_for
from hearth.rag.stores.base import KnowledgeBase, Store


def open_store(url: str) -> Store:
    """``sqlite:///path/kb.db`` (the default) or ``postgresql://user@host/db`` (pgvector)."""
    if url.startswith("sqlite:///"):
        from hearth.rag.stores.sqlite import SQLiteStore

        return SQLiteStore(Path(url.removeprefix("sqlite:///")))
    if url.startswith(("postgresql://", "postgres://")):
        from hearth.rag.stores.pgvector import PgVectorStore

        return PgVectorStore(url)
    raise ConfigError(
        f"knowledge-base URL {url!r} is not supported; use sqlite:///path/kb.db or "
        "postgresql://user:password@host:5432/dbname"
    )


def embedder_of(kb: KnowledgeBase) -> Embedder:
    """The embedder this knowledge base was built with (its spec is stored with it)."""
    return embedder_for(kb.embed_model)
