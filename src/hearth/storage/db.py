"""A database opened from a URL.

``sqlite:///abs/path/hearth.db`` is the only backend today; :func:`connect` is the seam where
``postgresql://`` plugs in. Callers speak the :class:`Database` protocol and write SQL with
``?`` placeholders, so a second backend is one new class plus a branch in :func:`connect`.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from hearth.errors import ConfigError

Row = dict[str, Any]
Params = Sequence[Any]

# Long enough to ride out another process's write (a migration, a burst of call-log rows);
# short enough that a stuck writer surfaces as an error instead of a hung request.
BUSY_TIMEOUT_MS = 5000


class Database(Protocol):
    url: str

    def execute(self, sql: str, params: Params = ()) -> int:
        """Run one statement; return the number of rows it changed."""
        ...

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        """Run one statement; return its rows as dicts keyed by column name."""
        ...

    def script(self, sql: str) -> None:
        """Run several ``;``-separated statements inside the caller's transaction."""
        ...

    def transaction(self) -> AbstractContextManager[None]:
        """Commit on success, roll back on error; nested calls become savepoints."""
        ...

    def close(self) -> None:
        """Release every connection; later use raises."""
        ...


def connect(url: str) -> Database:
    """Open the database that ``url`` names, e.g. ``sqlite:///home/me/.hearth/hearth.db``."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return SQLiteDatabase(url)
    if scheme.startswith("postgres"):
        raise ConfigError(
            f"database URL {url!r}: PostgreSQL is not supported yet; it lands with the "
            "knowledge-base (pgvector) work. Use sqlite:///ABSOLUTE/PATH/hearth.db, or unset "
            "HEARTH_DATABASE_URL to use the default SQLite file in HEARTH_HOME."
        )
    raise ConfigError(
        f"database URL {url!r}: unsupported scheme {scheme or '(none)'!r}. "
        "Use sqlite:///ABSOLUTE/PATH/hearth.db (set HEARTH_DATABASE_URL or database_url)."
    )


def sqlite_path(url: str) -> Path:
    """The file a ``sqlite://`` URL names.

    Both ``sqlite:///abs/x.db`` and ``sqlite:////abs/x.db`` (what ``Settings.db_url`` builds
    from an absolute home) mean ``/abs/x.db``. Relative paths and ``:memory:`` are refused:
    a server's working directory is an accident, and each thread gets its own connection, so
    an in-memory database would be a different empty database per thread.
    """
    prefix = "sqlite://"
    rest = url[len(prefix) :]
    if not url.lower().startswith(prefix) or not rest.startswith("/"):
        raise ConfigError(
            f"database URL {url!r}: give an absolute file path, e.g. "
            "sqlite:///home/me/.hearth/hearth.db"
        )
    path = Path("/" + rest.lstrip("/"))
    if path.name in ("", ":memory:"):
        raise ConfigError(f"database URL {url!r}: name a database file, not {path.name!r}")
    return path


class SQLiteDatabase:
    """SQLite with WAL, one connection per thread.

    Why per-thread connections rather than one connection behind a lock: the server writes
    through ``asyncio.to_thread``, so several pool threads touch the database at once. With
    its own connection each thread's ``transaction()`` is isolated for free (on a shared
    connection two threads' statements would land in one transaction), and WAL lets readers
    (usage pages) run while a writer commits instead of queueing behind a lock. Writers
    serialize inside SQLite, waiting up to ``busy_timeout``. The connection count is bounded
    by the threads that use the database (the to_thread pool is bounded), and connections of
    threads that have exited are closed when the next thread opens one.
    """

    def __init__(self, url: str) -> None:
        self.url = url
        self.path = sqlite_path(url)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[tuple[threading.Thread, sqlite3.Connection]] = []
        self._closed = False
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            # WAL is a property of the file, so setting it once here covers every connection.
            mode = self._conn().execute("PRAGMA journal_mode=WAL").fetchone()
        except (OSError, sqlite3.Error) as e:
            self.close()
            raise ConfigError(
                f"cannot open database {self.path}: {e}. Check the path and its permissions, "
                "or point HEARTH_DATABASE_URL elsewhere."
            ) from e
        if mode != {"journal_mode": "wal"}:
            self.close()
            raise ConfigError(
                f"database {self.path}: could not switch to WAL journal mode (got {mode}); "
                "WAL needs a local file system, not a network share."
            )

    def _conn(self) -> sqlite3.Connection:
        conn: sqlite3.Connection | None = getattr(self._local, "conn", None)
        if self._closed:
            raise RuntimeError(f"database {self.path} is closed")
        if conn is not None:
            return conn
        with self._lock:
            if self._closed:
                raise RuntimeError(f"database {self.path} is closed")
            self._reap_dead_threads()
            # isolation_level=None: no implicit BEGIN, so a statement outside transaction()
            # is committed when it returns, and transaction() owns BEGIN/COMMIT explicitly.
            # check_same_thread=False only so close() can close every thread's connection;
            # otherwise each connection is used by its own thread alone.
            conn = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            conn.row_factory = _dict_row
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conns.append((threading.current_thread(), conn))
        self._local.conn = conn
        self._local.depth = 0
        return conn

    def _reap_dead_threads(self) -> None:
        alive = []
        for thread, conn in self._conns:
            if thread.is_alive():
                alive.append((thread, conn))
            else:
                conn.close()
        self._conns = alive

    def execute(self, sql: str, params: Params = ()) -> int:
        return self._conn().execute(sql, params).rowcount

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        return self._conn().execute(sql, params).fetchall()

    def script(self, sql: str) -> None:
        # sqlite3's executescript() commits first, which would end the caller's transaction;
        # feed whole statements one at a time instead. complete_statement() knows about
        # semicolons inside string literals and trigger bodies.
        conn = self._conn()
        statement = ""
        for piece in sql.split(";"):
            statement += piece + ";"
            if sqlite3.complete_statement(statement):
                if statement.strip(" \t\r\n;"):
                    conn.execute(statement)
                statement = ""
        if statement.strip(" \t\r\n;"):
            raise ValueError(f"incomplete SQL statement: {statement.strip()!r}")

    @contextmanager
    def transaction(self) -> Iterator[None]:
        conn = self._conn()
        depth: int = self._local.depth
        if depth == 0:
            # IMMEDIATE takes the write lock up front: a deferred transaction that reads and
            # then writes gets SQLITE_BUSY at once in WAL mode, ignoring busy_timeout.
            begin, commit, rollback = "BEGIN IMMEDIATE", "COMMIT", ["ROLLBACK"]
        else:
            name = f"sp{depth}"
            begin, commit = f"SAVEPOINT {name}", f"RELEASE {name}"
            rollback = [f"ROLLBACK TO {name}", f"RELEASE {name}"]
        conn.execute(begin)
        self._local.depth = depth + 1
        try:
            yield
            conn.execute(commit)
        except BaseException:
            # SQLite rolls the whole transaction back by itself on some errors (disk full,
            # I/O); rolling back again would raise and hide the error that matters.
            if conn.in_transaction:
                for statement in rollback:
                    conn.execute(statement)
            raise
        finally:
            self._local.depth = depth

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for _, conn in self._conns:
                conn.close()
            self._conns = []

    def __enter__(self) -> SQLiteDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _dict_row(cursor: sqlite3.Cursor, row: tuple[Any, ...]) -> Row:
    return {col[0]: value for col, value in zip(cursor.description, row, strict=True)}
