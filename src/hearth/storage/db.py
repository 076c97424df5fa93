"""A database opened from a URL: ``sqlite:///abs/path/hearth.db`` (the embedded default) or
``postgresql://user:pass@host/db`` (what several replicas share).

Callers speak the :class:`Database` protocol and write SQL with ``?`` placeholders in the
dialect both engines share; PostgreSQL's class turns ``?`` into psycopg's ``%s``. The few
places where the dialects must differ ask ``db.dialect``; schema migrations are written once,
in SQLite's types, and :func:`postgres_ddl` maps them (see ``migrations``).
"""

from __future__ import annotations

import re
import sqlite3
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit, urlunsplit

from hearth.errors import ConfigError

Row = dict[str, Any]
Params = Sequence[Any]

# Long enough to ride out another process's write (a migration, a burst of call-log rows);
# short enough that a stuck writer surfaces as an error instead of a hung request.
BUSY_TIMEOUT_MS = 5000


class Busy(Exception):
    """Another connection holds the write lock right now (raised only by ``nowait``)."""


class Database(Protocol):
    url: str
    dialect: str  # "sqlite" | "postgresql"

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

    def exclusive(self) -> AbstractContextManager[None]:
        """Hold the database-wide lock for schema changes (other processes wait)."""
        ...

    def close(self) -> None:
        """Release every connection; later use raises."""
        ...


def dialect_of(url: str) -> str | None:
    """``"sqlite"`` or ``"postgresql"`` for a URL :func:`connect` opens; None otherwise."""
    scheme = urlsplit(url).scheme.lower()
    if scheme == "sqlite":
        return "sqlite"
    if scheme in ("postgresql", "postgres") or scheme.startswith("postgresql+"):
        return "postgresql"
    return None


def connect(url: str) -> Database:
    """Open the database that ``url`` names, e.g. ``sqlite:///home/me/.hearth/hearth.db``."""
    dialect = dialect_of(url)
    if dialect == "sqlite":
        return SQLiteDatabase(url)
    if dialect == "postgresql":
        return PostgresDatabase(url)
    scheme = urlsplit(url).scheme.lower()
    raise ConfigError(
        f"database URL {redact(url)!r}: unsupported scheme {scheme or '(none)'!r}. Use "
        "sqlite:///ABSOLUTE/PATH/hearth.db or postgresql://USER:PASSWORD@HOST:5432/DB "
        "(set HEARTH_DATABASE_URL or database_url)."
    )


def redact(url: str) -> str:
    """``url`` without its password, for messages and logs."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = (parts.username or "") + ":***"
    return urlunsplit(parts._replace(netloc=f"{user}@{netloc[-1]}"))


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

    dialect = "sqlite"

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
            # With WAL, NORMAL loses no committed row when the process dies (a crash, a
            # kill -9); only an OS crash or power loss can drop the last commits. FULL would
            # fsync every call's log row: ~170 us of each request's latency, measured.
            conn.execute("PRAGMA synchronous=NORMAL")
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

    @contextmanager
    def nowait(self) -> Iterator[None]:
        """Write without waiting for the lock: :class:`Busy` at once, with nothing written,
        when another connection holds it. For a writer that has somewhere better to wait
        (a thread) than the thread it is on (an event loop). Not inside a transaction."""
        conn = self._conn()
        if conn.in_transaction:
            raise Busy("a transaction is open on this thread")
        conn.execute("PRAGMA busy_timeout=0")
        try:
            yield
        except sqlite3.OperationalError as e:
            if e.sqlite_errorcode & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED):
                raise Busy(str(e)) from e
            raise
        finally:
            conn.execute(f"PRAGMA busy_timeout={BUSY_TIMEOUT_MS}")

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        # Each migration's BEGIN IMMEDIATE already takes SQLite's single write lock.
        yield

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


# -- PostgreSQL ---------------------------------------------------------------------------

POOL_SIZE = 10  # connections per process; size max_connections for replicas x this
CONNECT_TIMEOUT_S = 10
# pg_advisory_lock key for schema migrations: any constant all hearth processes share
MIGRATION_LOCK = 0x6865617274  # "heart"


class PostgresDatabase:
    """PostgreSQL through a psycopg connection pool.

    A statement outside ``transaction()`` borrows a pooled connection in autocommit mode and
    returns it; ``transaction()`` keeps one connection for the calling thread until it ends
    (nested calls become savepoints, as psycopg does). Parameters keep SQLite's meaning:
    ``bool`` is stored as 0/1 (the schema's INTEGER columns), and sums come back as ``int``
    or ``float`` rather than ``Decimal``.
    """

    dialect = "postgresql"

    def __init__(self, url: str) -> None:
        import psycopg
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.url = url
        self._psycopg = psycopg
        conninfo = "postgresql" + url[url.index(":") :] if "+" in url.split(":", 1)[0] else url
        self._pool = ConnectionPool(
            conninfo,
            min_size=1,
            max_size=POOL_SIZE,
            kwargs={"autocommit": True, "row_factory": _pg_row},
            open=False,
            name="hearth",
        )
        self._local = threading.local()
        try:
            self._pool.open(wait=True, timeout=CONNECT_TIMEOUT_S)
        except PoolTimeout as e:
            self._pool.close()
            raise ConfigError(
                f"cannot connect to PostgreSQL at {redact(url)} within {CONNECT_TIMEOUT_S}s: "
                "check that it runs, the host, port, user, password and database name, and "
                "that pg_hba.conf lets this machine in."
            ) from e

    def _held(self) -> Any:
        return getattr(self._local, "conn", None)

    def _run(self, sql: str, params: Params, fetch: bool) -> Any:
        conn = self._held()
        args = tuple(int(p) if isinstance(p, bool) else p for p in params)
        if conn is not None:
            cur = conn.execute(_pg_sql(sql), args)
            return cur.fetchall() if fetch else cur.rowcount
        with self._pool.connection() as conn:
            cur = conn.execute(_pg_sql(sql), args)
            return cur.fetchall() if fetch else cur.rowcount

    def execute(self, sql: str, params: Params = ()) -> int:
        return int(self._run(sql, params, False))

    def query(self, sql: str, params: Params = ()) -> list[Row]:
        rows: list[Row] = self._run(sql, params, True)
        return rows

    def script(self, sql: str) -> None:
        # Without parameters psycopg sends the text as it is: several statements at once.
        conn = self._held()
        if conn is not None:
            conn.execute(sql.encode())
            return
        with self._pool.connection() as conn:
            conn.execute(sql.encode())

    @contextmanager
    def _holding(self) -> Iterator[Any]:
        conn = self._held()
        if conn is not None:
            yield conn
            return
        with self._pool.connection() as conn:
            self._local.conn = conn
            try:
                yield conn
            finally:
                self._local.conn = None

    @contextmanager
    def transaction(self) -> Iterator[None]:
        with self._holding() as conn, conn.transaction():
            yield

    @contextmanager
    def exclusive(self) -> Iterator[None]:
        with self._holding() as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (MIGRATION_LOCK,))
            try:
                yield
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (MIGRATION_LOCK,))

    def close(self) -> None:
        self._pool.close()

    def __enter__(self) -> PostgresDatabase:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _pg_row(cursor: Any) -> Callable[[Sequence[Any]], Row]:
    names = [c.name for c in cursor.description or ()]

    def make(values: Sequence[Any]) -> Row:
        return {
            n: (_number(v) if isinstance(v, Decimal) else v)
            for n, v in zip(names, values, strict=True)
        }

    return make


def _number(v: Decimal) -> int | float:
    return int(v) if v == v.to_integral_value() else float(v)


@lru_cache(maxsize=1024)
def _pg_sql(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (outside string literals); a literal ``%``
    doubled, since psycopg reads ``%`` as the start of a placeholder."""
    out = []
    quoted = False
    for ch in sql:
        if ch == "'":
            quoted = not quoted
        if ch == "?" and not quoted:
            out.append("%s")
        elif ch == "%":
            out.append("%%")
        else:
            out.append(ch)
    return "".join(out)


_DDL = [
    # SQLite's INTEGER PRIMARY KEY is its rowid: numbered on insert when not given.
    (re.compile(r"\bINTEGER PRIMARY KEY\b"), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    # SQLite's REAL is 8 bytes; PostgreSQL's is 4 (a timestamp would lose minutes).
    (re.compile(r"\bREAL\b"), "DOUBLE PRECISION"),
    # SQLite's INTEGER is 8 bytes too.
    (re.compile(r"\bINTEGER\b"), "BIGINT"),
    (re.compile(r"\bBLOB\b"), "BYTEA"),
]


def postgres_ddl(sql: str) -> str:
    """A migration written in SQLite's types, in PostgreSQL's."""
    for pattern, replacement in _DDL:
        sql = pattern.sub(replacement, sql)
    return sql
