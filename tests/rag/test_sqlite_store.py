"""The SQLite store's own tests: other connections' writes, threads, reopening, and a
writer killed with -9 mid-transaction."""

from __future__ import annotations

import random
import sqlite3
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import numpy as np

from hearth.rag.stores.sqlite import SQLiteStore
from tests.rag.storekit import DIM, HANDBOOK, doc, names, unit


# -- SQLite only --------------------------------------------------------------------------
def test_sqlite_sees_other_connections_writes(tmp_path: Path) -> None:
    rng = np.random.default_rng(11)
    with SQLiteStore(tmp_path / "h.db") as writer, SQLiteStore(tmp_path / "h.db") as reader:
        writer.create_kb("kb", "m", DIM)
        a, b = unit(rng, 1), unit(rng, 1)
        writer.write("kb", [doc("a", ["a"], a)])
        assert names(reader.vector_search("kb", b[0], 5)) == ["a"]  # the reader caches vectors
        writer.write("kb", [doc("b", ["b"], b)])
        writer.delete_document("kb", "a")
        assert names(reader.vector_search("kb", a[0], 5)) == ["b"]
        writer.drop_kb("kb")
        writer.create_kb("kb", "m", DIM)
        assert reader.vector_search("kb", a[0], 5) == []


def test_sqlite_search_stays_exact_through_replacements_and_threads(tmp_path: Path) -> None:
    # Replacing documents masks their old rows in the reader's in-memory copy, compacts it
    # once the dead rows pile up, and grows it in place; searches run meanwhile.
    rng = np.random.default_rng(13)
    current = {f"d{i}": unit(rng, 8) for i in range(10)}
    with SQLiteStore(tmp_path / "h.db") as store:
        store.create_kb("kb", "m", DIM)
        store.write("kb", [doc(n, [f"{n}-{j}" for j in range(8)], v) for n, v in current.items()])
        errors: list[BaseException] = []
        stop = threading.Event()

        def search() -> None:
            while not stop.is_set():
                try:
                    hits = store.vector_search("kb", unit(rng, 1)[0], 5)
                    assert len(hits) == 5
                    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
                except BaseException as e:  # noqa: BLE001 - handed to the main thread
                    errors.append(e)
                    return

        threads = [threading.Thread(target=search) for _ in range(2)]
        for thread in threads:
            thread.start()
        for round_ in range(12):
            name = f"d{round_ % 10}"
            current[name] = unit(rng, 8)
            store.write("kb", [doc(name, [f"{name}-{j}" for j in range(8)], current[name])])
        stop.set()
        for thread in threads:
            thread.join()
        assert not errors, errors
        everything = np.concatenate(list(current.values()))
        texts = [f"{n}-{j}" for n in current for j in range(8)]
        for query in unit(rng, 5):
            want = [texts[i] for i in np.argsort(-(everything @ query))[:6]]
            assert [h.chunk.text for h in store.vector_search("kb", query, 6)] == want


def test_sqlite_reopens_with_everything(tmp_path: Path) -> None:
    with SQLiteStore(tmp_path / "h.db") as first:
        first.create_kb("kb", "m", DIM)
        first.write("kb", HANDBOOK)
    with SQLiteStore(tmp_path / "h.db") as again:
        assert again.count_chunks("kb") == 8
        assert names(again.keyword_search("kb", ["年假"], 1)) == ["leave.md"]
        mode = sqlite3.connect(tmp_path / "h.db").execute("PRAGMA journal_mode").fetchone()
        assert mode == ("wal",)


CHILD = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    import numpy as np
    from hearth.rag.stores.base import NewDocument
    from hearth.rag.stores.sqlite import SQLiteStore
    from hearth.types import Chunk, DocumentRecord

    store = SQLiteStore(Path(sys.argv[1]))
    rng = np.random.default_rng(int(sys.argv[2]))
    written = [r.name for r in store.documents("crash")]

    def document(name):
        n = int(rng.integers(20, 300))
        chunks = [Chunk(name, i, f"chunk {i} of {name}", 0, 9, 3) for i in range(n)]
        vectors = rng.standard_normal((n, 16)).astype(np.float32)
        keywords = [f"chunk {name} 年假"] * n
        record = DocumentRecord(name, "h", "txt", name, n, 0.0)
        return NewDocument(record, chunks, vectors, keywords)

    while True:
        batch = [document(f"{sys.argv[2]}-{len(written) + i}") for i in range(3)]
        if written:  # and replace an earlier one, with another chunk count
            batch.append(document(written[int(rng.integers(len(written)))]))
        print("writing", flush=True)
        store.write("crash", batch)
        written += [d.record.name for d in batch[:3]]
        if len(written) % 4 == 0:
            store.delete_document("crash", written[int(rng.integers(len(written)))])
    """
)


def test_sqlite_survives_kill_9_mid_write(tmp_path: Path) -> None:
    db = tmp_path / "crash.db"
    with SQLiteStore(db) as store:
        store.create_kb("crash", "m", 16)
    seed = random.randrange(2**32)
    rng = random.Random(seed)
    for round_ in range(3):
        err = tmp_path / f"child{round_}.err"
        with open(err, "w") as stderr:
            child = subprocess.Popen(
                [sys.executable, "-c", CHILD, str(db), str(round_)],
                stdout=subprocess.PIPE, stderr=stderr, text=True,
            )  # fmt: skip
        assert child.stdout is not None
        for _ in range(rng.randint(2, 6)):
            assert child.stdout.readline() == "writing\n", err.read_text()
        time.sleep(rng.uniform(0, 0.08))  # somewhere inside (or between) transactions
        child.kill()
        child.wait()
        child.stdout.close()
        _assert_whole(db, f"seed {seed}, round {round_}")


def _assert_whole(db: Path, where: str) -> None:
    with SQLiteStore(db) as store:
        records = store.documents("crash")
        assert records, f"{where}: nothing was written before the kill"
        total = store.count_chunks("crash")
        assert total == sum(r.chunks for r in records), where
    conn = sqlite3.connect(db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)], where
        conn.execute("INSERT INTO kb_terms_1 (kb_terms_1) VALUES ('integrity-check')")
        per_doc = dict(conn.execute(
            "SELECT d.name, count(c.id) FROM kb_documents d "
            "LEFT JOIN kb_chunks c ON c.document_id = d.id GROUP BY d.id"
        ).fetchall())  # fmt: skip
        assert per_doc == {r.name: r.chunks for r in records}, where
        terms_rows = conn.execute("SELECT count(*) FROM kb_terms_1").fetchone()[0]
        assert terms_rows == total, f"{where}: keyword rows out of step with chunks"
    finally:
        conn.close()
