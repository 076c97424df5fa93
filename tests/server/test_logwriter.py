"""The call log's group-commit writer: calls that finish together share a transaction, each
waits for its own row, and one bad row fails only its own call."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest

from hearth.server.logwriter import LogWriter
from hearth.storage.calllog import CallLog, open_calllog
from hearth.storage.db import BUSY_TIMEOUT_MS, Busy, SQLiteDatabase
from tests.storage.test_calllog import call


def _count_batches(log: CallLog) -> list[int]:
    """The size of each record_many call the log gets from now on."""
    batches: list[int] = []
    many = log.record_many

    def counted(calls: list) -> None:  # type: ignore[type-arg]
        batches.append(len(calls))
        many(calls)

    log.record_many = counted  # type: ignore[method-assign]
    return batches


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_rows_are_all_committed_and_a_bad_one_fails_alone(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path}/h.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    log = open_calllog(url)
    log.record(call("taken"))
    writer = LogWriter(log)
    batches = _count_batches(log)

    async def main() -> list[BaseException | None]:
        ids = [f"c{i}" for i in range(200)]
        ids[57] = "taken"  # a repeated id: refused by the primary key
        outcomes = await asyncio.gather(
            *(writer.record(call(i)) for i in ids), return_exceptions=True
        )
        # each call returned after its row was committed: a fresh reader sees them all
        fresh = open_calllog(url)
        try:
            assert {r.id for r in fresh.recent(500)} == set(ids)
        finally:
            fresh.close()
        return list(outcomes)

    try:
        outcomes = asyncio.run(main())
        failed = [i for i, o in enumerate(outcomes) if o is not None]
        assert failed == [57], outcomes[57]
        assert len(log.recent(500)) == 200
        assert max(batches) > 1, batches  # calls finishing together shared transactions
    finally:
        writer.close()
        log.close()


def test_a_closed_writer_refuses_rows(tmp_path: Path) -> None:
    log = open_calllog(f"sqlite:///{tmp_path}/h.db")
    writer = LogWriter(log)
    writer.close()
    with pytest.raises(RuntimeError, match="closed"):
        asyncio.run(writer.record(call("late")))
    log.close()


def _calllog_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name == "calllog"]


def test_a_call_alone_writes_its_row_itself_and_errors_still_reach_it(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/h.db"
    log = open_calllog(url)
    writer = LogWriter(log, quiet=lambda: True)
    before = _calllog_threads()

    async def main() -> None:
        await writer.record(call("alone"))
        fresh = open_calllog(url)  # committed when record returned
        try:
            assert [r.id for r in fresh.recent(5)] == ["alone"]
        finally:
            fresh.close()
        with pytest.raises(sqlite3.IntegrityError):
            await writer.record(call("alone"))  # a repeated id, refused as on the thread

    try:
        asyncio.run(main())
        assert _calllog_threads() == before  # no hop to the writer thread
        # the loop's connection waits for the lock as usual again afterwards
        assert log.db.query("PRAGMA busy_timeout") == [{"timeout": BUSY_TIMEOUT_MS}]
    finally:
        writer.close()
        log.close()


def test_a_lock_held_elsewhere_sends_the_row_to_the_thread_without_blocking_the_loop(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/h.db"
    log = open_calllog(url)
    writer = LogWriter(log, quiet=lambda: True)
    other = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")  # another process's write, say `hearth usage` pruning

    async def main() -> float:
        loop = asyncio.get_running_loop()
        started = loop.time()
        pending = asyncio.create_task(writer.record(call("queued")))
        await asyncio.sleep(0.3)  # the loop runs on while the row waits
        assert not pending.done()
        assert loop.time() - started < 1  # not stuck in SQLite's busy wait
        other.execute("COMMIT")
        await asyncio.wait_for(pending, 10)
        return loop.time() - started

    try:
        assert asyncio.run(main()) >= 0.3
        assert [r.id for r in log.recent(5)] == ["queued"]
        assert _calllog_threads()  # it went to the writer thread
    finally:
        other.close()
        writer.close()
        log.close()


def test_nowait_refuses_at_once_and_writes_nothing(tmp_path: Path) -> None:
    db = SQLiteDatabase(f"sqlite:///{tmp_path}/h.db")
    db.execute("CREATE TABLE t (x INTEGER)")
    other = sqlite3.connect(tmp_path / "h.db", isolation_level=None)
    other.execute("BEGIN IMMEDIATE")
    try:
        with pytest.raises(Busy), db.nowait():
            db.execute("INSERT INTO t VALUES (1)")
        other.execute("COMMIT")
        with db.transaction(), pytest.raises(Busy), db.nowait():
            pass  # never inside the caller's own transaction
        assert db.query("SELECT COUNT(*) AS n FROM t") == [{"n": 0}]
    finally:
        other.close()
        db.close()


def test_under_load_rows_are_written_on_the_loop_in_group_commits(tmp_path: Path) -> None:
    # A thread needing the GIL for every row fell behind a busy loop (its backlog grew
    # without end); on SQLite the rows of one turn of the loop share a transaction there.
    log = open_calllog(f"sqlite:///{tmp_path}/h.db")
    writer = LogWriter(log, quiet=lambda: False)  # other requests always in flight
    batches = _count_batches(log)
    before = _calllog_threads()

    async def main() -> None:
        async def one(i: int) -> None:
            await asyncio.sleep(0.001 * (i % 7))  # finishing a few at a time, not all at once
            await writer.record(call(f"r{i}"))

        await asyncio.gather(*(one(i) for i in range(150)))

    try:
        asyncio.run(main())
        assert len(log.recent(500)) == 150
        assert _calllog_threads() == before  # all on the loop, no thread
        assert len(batches) < 150 and max(batches) > 1, batches
    finally:
        writer.close()
        log.close()
