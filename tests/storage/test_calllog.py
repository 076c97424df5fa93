"""The storage layer against a real SQLite file and a real PostgreSQL (``db_url``), and what
is particular to each."""

from __future__ import annotations

import asyncio
import datetime
import socket
import sqlite3
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import psycopg
import pytest

from hearth.errors import ConfigError
from hearth.storage.calllog import CallLog, CallRecord, UsageRow, open_calllog
from hearth.storage.db import Database, SQLiteDatabase, connect, postgres_ddl, redact
from hearth.storage.migrations import MIGRATIONS, applied_versions, migrate


def utc(day: str, hour: int = 12) -> float:
    d = datetime.date.fromisoformat(day)
    return datetime.datetime.combine(d, datetime.time(hour), datetime.UTC).timestamp()


def call(id: str, **kw: Any) -> CallRecord:
    base = CallRecord(
        id=id,
        created=utc("2024-05-01"),
        model="qwen",
        endpoint="chat.completions",
        prompt_tokens=10,
        completion_tokens=5,
        ttft_ms=12.5,
        latency_ms=80.0,
        status="ok",
        error=None,
        cost=0.25,
        stream=True,
    )
    return replace(base, **kw)


@pytest.fixture
def url(db_url: str) -> str:
    return db_url


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path}/nested/dir/hearth.db"


@pytest.fixture
def log(url: str) -> Iterator[CallLog]:
    log = open_calllog(url)
    yield log
    log.db.close()


def index_names(db: Database) -> set[str]:
    if db.dialect == "postgresql":
        rows = db.query("SELECT indexname AS name FROM pg_indexes WHERE schemaname = 'public'")
    else:
        rows = db.query("SELECT name FROM sqlite_master WHERE type='index'")
    return {r["name"] for r in rows}


def table_names(db: Database) -> set[str]:
    if db.dialect == "postgresql":
        rows = db.query("SELECT tablename AS name FROM pg_tables WHERE schemaname = 'public'")
    else:
        rows = db.query("SELECT name FROM sqlite_master WHERE type='table'")
    return {r["name"] for r in rows}


DB_ERRORS = (sqlite3.Error, psycopg.Error)


def test_migrate_is_idempotent_and_records_versions(url: str) -> None:
    db = connect(url)
    assert migrate(db) == [v for v, _, _ in MIGRATIONS]
    assert migrate(db) == []
    assert applied_versions(db) == [v for v, _, _ in MIGRATIONS]
    assert {"calls_created", "calls_model"} <= index_names(db)
    db.close()
    # A fresh process sees the same versions and has nothing to do.
    again = connect(url)
    assert migrate(again) == []
    again.close()


def test_app_and_run_lookups_use_their_partial_indexes(url: str) -> None:
    db = connect(url)
    migrate(db)
    assert {"calls_app", "calls_run"} <= index_names(db)
    queries = {
        "calls_run": "SELECT id FROM calls WHERE run_id = ? ORDER BY created",
        "calls_app": "SELECT run_id FROM calls WHERE app = ? AND run_id IS NOT NULL",
    }
    try:
        for index, sql in queries.items():
            if db.dialect == "postgresql":
                with db.transaction():  # one connection; an empty table: make the choice visible
                    db.execute("SET LOCAL enable_seqscan = off")
                    plan = " ".join(str(r) for r in db.query("EXPLAIN " + sql, ("x",)))
            else:
                plan = " ".join(r["detail"] for r in db.query("EXPLAIN QUERY PLAN " + sql, ("x",)))
            assert index in plan, plan
    finally:
        db.close()


def test_migrate_appends_new_versions_in_order(url: str) -> None:
    db = connect(url)
    migrate(db)
    extra = [*MIGRATIONS, (len(MIGRATIONS) + 1, "add notes", "CREATE TABLE notes (x TEXT);")]
    assert migrate(db, extra) == [len(MIGRATIONS) + 1]
    assert db.query("SELECT count(*) AS n FROM notes") == [{"n": 0}]
    # The code that knows fewer versions refuses a database written by newer code.
    with pytest.raises(ConfigError, match="newer hearth"):
        migrate(db)
    db.close()


def test_failed_migration_leaves_nothing_behind(url: str) -> None:
    db = connect(url)
    migrate(db)
    bad = [*MIGRATIONS, (99, "half", "CREATE TABLE half (x TEXT); INSERT INTO nope VALUES (1);")]
    with pytest.raises(DB_ERRORS):
        migrate(db, bad)
    assert "half" not in table_names(db)
    assert 99 not in applied_versions(db)
    db.close()


def test_record_get_round_trip(log: CallLog) -> None:
    rec = call("chatcmpl-1")
    failed = call("chatcmpl-2", status="error", error="boom", ttft_ms=None, stream=False)
    log.record(rec)
    log.record(failed)
    assert log.get("chatcmpl-1") == rec
    assert log.get("chatcmpl-2") == failed
    assert log.get("missing") is None


def test_duplicate_id_raises(log: CallLog) -> None:
    log.record(call("chatcmpl-1"))
    with pytest.raises((sqlite3.IntegrityError, psycopg.errors.UniqueViolation)):
        log.record(call("chatcmpl-1", model="other"))
    assert log.get("chatcmpl-1") == call("chatcmpl-1")


def test_unknown_status_is_refused(log: CallLog) -> None:
    with pytest.raises(ValueError, match="status"):
        log.record(call("x", status="fine"))


def test_recent_is_newest_first(log: CallLog) -> None:
    for i in range(5):
        log.record(call(f"c{i}", created=utc("2024-05-01") + i))
    assert [r.id for r in log.recent(3)] == ["c4", "c3", "c2"]


def test_usage_groups_by_utc_day_and_model(log: CallLog) -> None:
    log.record(call("a", created=utc("2024-05-01", 0), model="qwen"))
    log.record(call("b", created=utc("2024-05-01", 23), model="qwen", status="error"))
    log.record(call("c", created=utc("2024-05-01"), model="llama", cost=1.0))
    log.record(call("d", created=utc("2024-05-02", 0), model="qwen", status="cancelled"))
    log.record(call("e", created=utc("2024-04-30", 23), model="qwen"))

    rows = log.usage()
    assert [(r.day, r.model, r.calls) for r in rows] == [
        ("2024-04-30", "qwen", 1),
        ("2024-05-01", "llama", 1),
        ("2024-05-01", "qwen", 2),
        ("2024-05-02", "qwen", 1),
    ]
    assert rows[2] == UsageRow(
        day="2024-05-01",
        model="qwen",
        calls=2,
        errors=1,
        prompt_tokens=20,
        completion_tokens=10,
        total_tokens=30,
        cost=0.5,
    )
    assert rows[3].errors == 0  # cancelled is not an error

    since = log.usage(since=datetime.date(2024, 5, 1))
    assert [(r.day, r.model) for r in since] == [
        ("2024-05-01", "llama"),
        ("2024-05-01", "qwen"),
        ("2024-05-02", "qwen"),
    ]
    assert log.usage(since=datetime.date(2024, 6, 1)) == []


def test_wal_mode_and_pragmas(sqlite_url: str) -> None:
    db = connect(sqlite_url)
    assert db.query("PRAGMA journal_mode") == [{"journal_mode": "wal"}]
    assert db.query("PRAGMA busy_timeout") == [{"timeout": 5000}]
    assert db.query("PRAGMA foreign_keys") == [{"foreign_keys": 1}]
    db.close()
    # WAL is stored in the file: a plain sqlite3 connection sees it too.
    assert isinstance(db, SQLiteDatabase)
    raw = sqlite3.connect(db.path)
    assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    raw.close()


def test_concurrent_writes_from_threads_all_land(log: CallLog) -> None:
    threads_n, per_thread = 8, 50
    start = threading.Barrier(threads_n)

    def write(t: int) -> None:
        start.wait()
        for i in range(per_thread):
            log.record(call(f"t{t}-{i}"))
            # Reads interleaved with writes on the same connection must not break either.
            assert log.get(f"t{t}-{i}") is not None

    with ThreadPoolExecutor(threads_n) as pool:
        for future in [pool.submit(write, t) for t in range(threads_n)]:
            future.result()  # re-raises a thread's error here
    assert log.db.query("SELECT count(*) AS n FROM calls") == [{"n": threads_n * per_thread}]


def test_writes_through_asyncio_to_thread(log: CallLog) -> None:
    # How the server writes: from the event loop, off to the default thread pool.
    async def main() -> None:
        await asyncio.gather(*(asyncio.to_thread(log.record, call(f"a{i}")) for i in range(64)))

    asyncio.run(main())
    assert log.db.query("SELECT count(*) AS n FROM calls") == [{"n": 64}]


def test_rows_are_committed_when_record_returns(url: str) -> None:
    log = open_calllog(url)
    log.record(call("durable"))
    # A second Database (and a raw connection) while the first is still open: what
    # another process would see if this one died right now.
    other = CallLog(connect(url))
    assert other.get("durable") == call("durable")
    if url.startswith("sqlite"):
        raw = sqlite3.connect(SQLiteDatabase(url).path)
        assert raw.execute("SELECT id FROM calls").fetchall() == [("durable",)]
        raw.close()
    else:
        with psycopg.connect(url) as conn:
            assert conn.execute("SELECT id FROM calls").fetchall() == [("durable",)]
    other.db.close()
    log.db.close()


def test_transaction_rolls_back_and_nests(url: str) -> None:
    db = connect(url)
    db.execute("CREATE TABLE t (x INTEGER)")
    with pytest.raises(RuntimeError), db.transaction():
        db.execute("INSERT INTO t VALUES (1)")
        raise RuntimeError
    with db.transaction():
        db.execute("INSERT INTO t VALUES (2)")
        with pytest.raises(RuntimeError), db.transaction():
            db.execute("INSERT INTO t VALUES (3)")
            raise RuntimeError
    assert db.query("SELECT x FROM t") == [{"x": 2}]
    db.close()
    with pytest.raises((RuntimeError, psycopg.Error), match="closed"):
        db.query("SELECT 1")


@pytest.mark.parametrize("bad", ["mysql://x/y", "hearth.db", "postgresq://x/y"])
def test_unsupported_url_scheme_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"sqlite:///.*postgresql://"):
        connect(bad)


@pytest.mark.parametrize("bad", ["sqlite://relative.db", "sqlite:///:memory:", "sqlite://"])
def test_sqlite_url_needs_an_absolute_file(bad: str) -> None:
    with pytest.raises(ConfigError):
        connect(bad)


def test_four_slash_url_from_settings_is_the_same_file(tmp_path: Path) -> None:
    # Settings.db_url builds f"sqlite:///{home / 'hearth.db'}", i.e. four slashes.
    three = SQLiteDatabase(f"sqlite://{tmp_path}/h.db")
    four = SQLiteDatabase(f"sqlite:///{tmp_path}/h.db")
    assert three.path == four.path == tmp_path / "h.db"
    three.close()
    four.close()


def test_unopenable_file_is_a_config_error(tmp_path: Path) -> None:
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not a database" * 100)
    with pytest.raises(ConfigError, match="cannot open"):
        connect(f"sqlite://{junk}")


# -- PostgreSQL in particular ----------------------------------------------------------------


def test_postgres_schema_keeps_sqlite_meanings(pg_url: str) -> None:
    db = connect(pg_url)
    migrate(db)
    types = {
        (r["table_name"], r["column_name"]): r["data_type"]
        for r in db.query(
            "SELECT table_name, column_name, data_type FROM information_schema.columns "
            "WHERE table_schema = 'public'"
        )
    }
    # 8-byte floats: a REAL timestamp in 4 bytes would be off by minutes.
    assert types[("calls", "created")] == "double precision"
    assert types[("calls", "prompt_tokens")] == "bigint"
    log = CallLog(db)
    log.record(call("exact", created=1_733_500_000.123456, stream=False))
    assert log.get("exact") == call("exact", created=1_733_500_000.123456, stream=False)
    # moderation hits are numbered on insert, as SQLite's INTEGER PRIMARY KEY does
    from hearth.storage.calllog import ModerationRecord

    hit = ModerationRecord("h", 1.0, None, "m", "l", "c", "block", "input", "x")
    log.record(call("h"), [hit, hit])
    assert [r.call_id for r in log.hits("h")] == ["h", "h"]
    # sums are numbers, not Decimals (they go to JSON)
    row = log.usage(by=("model",))[0]
    assert type(row.prompt_tokens) is int and type(row.cost) is float
    db.close()


def test_postgres_ddl_maps_types() -> None:
    sql = "CREATE TABLE x (id INTEGER PRIMARY KEY, n INTEGER NOT NULL, t REAL, s TEXT)"
    assert postgres_ddl(sql) == (
        "CREATE TABLE x (id BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "n BIGINT NOT NULL, t DOUBLE PRECISION, s TEXT)"
    )


def test_replicas_starting_together_migrate_once(pg_url: str) -> None:
    start = threading.Barrier(4)

    def boot(_: int) -> list[int]:
        db = connect(pg_url)
        start.wait()
        try:
            return migrate(db)
        finally:
            db.close()

    with ThreadPoolExecutor(4) as pool:
        done = list(pool.map(boot, range(4)))
    applied = sorted(v for versions in done for v in versions)
    assert applied == [v for v, _, _ in MIGRATIONS]  # each version once, by one of them


def test_postgres_placeholders_and_percent_signs(pg_url: str) -> None:
    db = connect(pg_url)
    db.execute("CREATE TABLE t (s TEXT, n INTEGER)")
    db.execute("INSERT INTO t VALUES (?, ?)", ("50% off? yes", True))
    assert db.query("SELECT s, n FROM t WHERE s LIKE '50%' AND n = ?", (1,)) == [
        {"s": "50% off? yes", "n": 1}
    ]
    assert db.query("SELECT '?' AS q") == [{"q": "?"}]
    db.close()


def test_unreachable_postgres_is_a_config_error_without_the_password() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"postgresql://hearth:s3cret@127.0.0.1:{port}/hearth?connect_timeout=1"
    with pytest.raises(ConfigError) as caught:
        connect(url)
    assert "127.0.0.1" in str(caught.value) and "s3cret" not in str(caught.value)
    assert redact(url).startswith("postgresql://hearth:***@127.0.0.1")
