"""Store fixtures: every store test runs against a real SQLite file and a real PostgreSQL
with pgvector (``pg_url`` in the top conftest)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from hearth.rag.stores.base import Store
from hearth.rag.stores.sqlite import SQLiteStore


@pytest.fixture(params=["sqlite", "pgvector"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SQLiteStore(tmp_path / "hearth.db")
    else:
        from hearth.rag.stores.pgvector import PgVectorStore

        opened = PgVectorStore(request.getfixturevalue("pg_url"))
    yield opened
    opened.close()
