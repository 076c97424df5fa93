"""The call log's group-commit writer: calls that finish together share a transaction, each
waits for its own row, and one bad row fails only its own call."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from hearth.server.logwriter import LogWriter
from hearth.storage.calllog import open_calllog
from tests.storage.test_calllog import call


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_concurrent_rows_are_all_committed_and_a_bad_one_fails_alone(
    backend: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    url = f"sqlite:///{tmp_path}/h.db" if backend == "sqlite" else request.getfixturevalue("pg_url")
    log = open_calllog(url)
    log.record(call("taken"))
    writer = LogWriter(log)
    batches: list[int] = []
    many = log.record_many

    def counted(calls: list) -> None:  # type: ignore[type-arg]
        batches.append(len(calls))
        many(calls)

    log.record_many = counted  # type: ignore[method-assign]

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
