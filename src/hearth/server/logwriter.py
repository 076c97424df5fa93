"""The call log's writer: many rows per transaction (group commit).

Every finished call waits until its row is committed, as it would writing alone, but calls
that finish together share one transaction.

On SQLite the rows are written on the event loop itself: a call that finishes while nothing
else is in flight (``quiet()``) writes its row at once (the hop to a thread and back was half
of that call's wait, ~0.12 ms of ~0.24 ms, measured); under load, the rows of the calls that
finish in one turn of the loop are written together at the end of that turn. A thread did
this before, and under load it could not keep up: it needs the GIL for every row and the
busy loop holds it, so at 16 concurrent streams it wrote ~700 rows/s of ~1,100 and the
backlog (each row's request still waiting on it) grew without end, and the garbage
collector's full passes over it stalled every request for up to 0.3 s (bench/gateway.py).
On the loop a row costs ~20-40 us of its CPU and nothing waits on the GIL.

The loop never waits for SQLite's lock: if another connection holds it (``hearth usage``,
a second process) the rows go to the writer thread, which waits as long as it takes. The
WAL checkpoints SQLite runs every 1,000 pages happen on the loop then: 1-5 ms every few
hundred commits, measured (a checkpoint left to the thread kept the WAL from ever being
reset while the loop wrote: it grew by 13 MB/s). PostgreSQL rows go to the thread in
batches, as they did.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections import defaultdict
from collections.abc import Callable

from hearth.storage.calllog import CallLog, CallRecord, ModerationRecord
from hearth.storage.db import Busy, SQLiteDatabase

log = logging.getLogger(__name__)

Item = tuple[CallRecord, list[ModerationRecord], asyncio.Future[None]]
Outcome = tuple[asyncio.Future[None], Exception | None]
MAX_BATCH = 256


class LogWriter:
    def __init__(self, calllog: CallLog, quiet: Callable[[], bool] | None = None) -> None:
        self.calllog = calllog
        self._quiet = quiet
        self._sqlite = calllog.db if isinstance(calllog.db, SQLiteDatabase) else None
        self._writing = False  # the thread has a batch in hand
        self._pending: list[Item] = []  # rows for the thread
        self._cond = threading.Condition()
        self._closed = False
        self._thread: threading.Thread | None = None
        self._turn: list[Item] = []  # rows to write at the end of this turn of the loop

    async def record(self, rec: CallRecord, hits: list[ModerationRecord] | None = None) -> None:
        """Store ``rec`` (and its moderation hits); returns once committed, raises what
        writing it raised."""
        db, quiet = self._sqlite, self._quiet
        if self._closed:
            raise RuntimeError("the call log is closed")
        if (
            db is not None
            and not (self._writing or self._pending or self._turn)
            and (quiet is not None and quiet())
        ):
            try:
                with db.nowait():
                    self.calllog.record(rec, hits)
                return
            except Busy:
                pass  # someone else is writing: wait for the lock on the thread
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        item = (rec, hits or [], future)
        if db is not None and not (self._writing or self._pending):
            self._turn.append(item)
            if len(self._turn) == 1:
                loop.call_soon(self._write_turn)
        else:
            self._to_thread([item])
        await future

    def _write_turn(self) -> None:
        """The rows of the calls that finished in this turn of the loop, in one transaction
        (to the thread instead when SQLite's lock is held elsewhere, or a row fails)."""
        batch, self._turn = self._turn, []
        db = self._sqlite
        if not batch or db is None:
            return
        try:
            with db.nowait():
                self.calllog.record_many([(rec, hits) for rec, hits, _ in batch])
        except Exception:  # noqa: BLE001 - Busy, or a bad row: the thread writes each alone
            self._to_thread(batch)
            return
        _resolve([(future, None) for _, _, future in batch])

    def _to_thread(self, items: list[Item]) -> None:
        with self._cond:
            if self._closed:
                error = RuntimeError("the call log is closed")
                _resolve([(future, error) for _, _, future in items])
                return
            self._pending.extend(items)
            self._start()
            self._cond.notify()

    def _start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="calllog", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Write what is pending, then stop."""
        with self._cond:
            if self._turn:  # the loop's turn has not come: the thread writes them
                self._pending.extend(self._turn)
                self._turn = []
                self._start()
            self._closed = True
            self._cond.notify()
            thread = self._thread
        if thread is not None:
            thread.join(30)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._pending and not self._closed:
                    self._cond.wait()
                if not self._pending:
                    return
                batch, self._pending = self._pending[:MAX_BATCH], self._pending[MAX_BATCH:]
                self._writing = True
            try:
                outcomes = self._write(batch)
            finally:
                with self._cond:
                    self._writing = False
            _settle(batch, outcomes)

    def _write(self, batch: list[Item]) -> list[Exception | None]:
        try:
            self.calllog.record_many([(rec, hits) for rec, hits, _ in batch])
            return [None] * len(batch)
        except Exception as e:  # noqa: BLE001 - handed to the call that waits on the row
            if len(batch) == 1:
                return [e]
        # one bad row must not fail the others: each alone
        outcomes: list[Exception | None] = []
        for rec, hits, _ in batch:
            try:
                self.calllog.record(rec, hits)
                outcomes.append(None)
            except Exception as e:  # noqa: BLE001 - as above
                outcomes.append(e)
        return outcomes


def _settle(batch: list[Item], outcomes: list[Exception | None]) -> None:
    """Resolve each waiting call's future on its own loop, one hop per loop."""
    by_loop: dict[asyncio.AbstractEventLoop, list[Outcome]] = defaultdict(list)
    for (_, _, future), outcome in zip(batch, outcomes, strict=True):
        by_loop[future.get_loop()].append((future, outcome))
    for loop, items in by_loop.items():
        with contextlib.suppress(RuntimeError):  # a closed loop: nobody waits any more
            loop.call_soon_threadsafe(_resolve, items)


def _resolve(items: list[Outcome]) -> None:
    for future, outcome in items:
        if future.done():
            continue
        if outcome is None:
            future.set_result(None)
        else:
            future.set_exception(outcome)
