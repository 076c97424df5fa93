"""Ingestion: walk files, skip unchanged ones, parse and split ahead while embedding,
and write documents in batches, each batch one transaction.

Parsing and splitting run in a worker thread that stays a few documents ahead of the
embedder, so on a busy CPU they overlap with embedding instead of adding to it. A file
that cannot be parsed is reported by name with the reason and the batch goes on. Killed at
any moment and run again, ingestion finishes with every chunk present exactly once: a
document lands with its chunks, vectors and hash in one transaction or not at all, and the
next run skips exactly the documents whose hash is already stored.
"""

from __future__ import annotations

import functools
import hashlib
import queue
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from hearth.errors import ParseError, UserError
from hearth.rag.embed import Embedder, check_same
from hearth.rag.keywords import terms
from hearth.rag.parse import SUPPORTED, parse
from hearth.rag.split import split
from hearth.rag.stores.base import NewDocument, Store
from hearth.types import Chunk, DocumentRecord

LOOKAHEAD = 8  # parsed documents waiting for the embedder
BATCH_CHUNKS = 64  # chunks per embedder call and about per transaction


@dataclass
class IngestReport:
    added: list[str] = field(default_factory=list)
    replaced: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    chunks: int = 0
    seconds: float = 0.0

    @property
    def chunks_per_second(self) -> float:
        return self.chunks / self.seconds if self.seconds else 0.0


@dataclass(frozen=True)
class Progress:
    """What a progress bar needs after each file."""

    files_done: int
    files_total: int
    chunks: int
    current: str


@dataclass(frozen=True)
class _Parsed:
    record: DocumentRecord
    chunks: list[Chunk]
    keywords: list[str]  # per chunk: segmented terms for the keyword index
    replaces: bool


def collect(paths: Sequence[Path]) -> list[tuple[str, Path]]:
    """(document name, path) for every supported file. A folder's files are named by their
    path inside it, a single file by its name; a name given twice is an error."""
    found: dict[str, Path] = {}
    for root in paths:
        if not root.exists():
            raise UserError(f"{root} does not exist")
        if root.is_dir():
            files = sorted(p for p in root.rglob("*") if p.is_file() and _supported(p))
            pairs = [(p.relative_to(root).as_posix(), p) for p in files]
        else:
            pairs = [(root.name, root)]
        for name, path in pairs:
            if name in found and found[name] != path:
                raise UserError(f"two files would both be named '{name}': {found[name]} and {path}")
            found[name] = path
    return sorted(found.items())


def _supported(path: Path) -> bool:
    return path.suffix.lower() in SUPPORTED and not path.name.startswith(".")


def embed_text(chunk: Chunk) -> str:
    """What the embedder reads: the section path gives a short chunk its context."""
    if chunk.headings:
        return " > ".join(chunk.headings) + "\n" + chunk.text
    return chunk.text


def ingest(
    store: Store,
    embedder: Embedder,
    kb: str,
    paths: Sequence[Path],
    *,
    tags: Sequence[str] = (),
    max_tokens: int = 256,
    overlap: int = 32,
    on_progress: Callable[[Progress], None] | None = None,
    on_embedding: Callable[[str], None] | None = None,
) -> IngestReport:
    info = store.get_kb(kb)
    check_same(info.embed_model, info.dim, embedder)
    files = collect(paths)
    known = store.document_hashes(kb)
    report = IngestReport()
    started = time.perf_counter()
    pending: list[NewDocument] = []
    pending_chunks = 0

    def flush() -> None:
        nonlocal pending, pending_chunks
        if pending:
            store.write(kb, pending)
            pending, pending_chunks = [], 0

    prepare = functools.partial(
        _prepare,
        known=known,
        report=report,
        tags=tags,
        embedder=embedder,
        max_tokens=max_tokens,
        overlap=overlap,
    )
    items = _ahead(files, prepare)
    for done, item in enumerate(items, start=1):
        if isinstance(item, _Parsed) and item.chunks:
            if on_embedding is not None:
                on_embedding(item.record.name)
            vectors = _embed(embedder, item.chunks)
            pending.append(NewDocument(item.record, item.chunks, vectors, item.keywords))
            pending_chunks += len(item.chunks)
            (report.replaced if item.replaces else report.added).append(item.record.name)
            report.chunks += len(item.chunks)
            if pending_chunks >= BATCH_CHUNKS:
                flush()
        if on_progress is not None:
            current = item.record.name if isinstance(item, _Parsed) else item
            on_progress(Progress(done, len(files), report.chunks, current))
    flush()
    report.seconds = time.perf_counter() - started
    return report


def _embed(embedder: Embedder, chunks: list[Chunk]) -> np.ndarray:
    texts = [embed_text(c) for c in chunks]
    parts = [
        embedder.passages(texts[i : i + BATCH_CHUNKS]) for i in range(0, len(texts), BATCH_CHUNKS)
    ]
    return np.concatenate(parts) if parts else np.zeros((0, embedder.dim), dtype=np.float32)


def _ahead(
    files: list[tuple[str, Path]], prepare: Callable[[str, Path], _Parsed | str]
) -> Iterator[_Parsed | str]:
    """``prepare`` (parse and split) each file in a worker thread, yielding documents in
    order (a name when the file was skipped or failed)."""
    out: queue.Queue[_Parsed | str | BaseException | None] = queue.Queue(LOOKAHEAD)
    stop = threading.Event()

    def work() -> None:
        try:
            for name, path in files:
                if stop.is_set():
                    return
                out.put(prepare(name, path))
            out.put(None)
        except BaseException as e:  # noqa: BLE001 - re-raised in the consuming thread
            out.put(e)

    worker = threading.Thread(target=work, name="kb-parse", daemon=True)
    worker.start()
    try:
        while (item := out.get()) is not None:
            if isinstance(item, BaseException):
                raise item
            yield item
    finally:
        stop.set()
        while worker.is_alive():  # unblock a worker waiting on a full queue
            try:
                out.get_nowait()
            except queue.Empty:
                worker.join(0.05)


def _prepare(
    name: str,
    path: Path,
    *,
    known: dict[str, str],
    report: IngestReport,
    tags: Sequence[str],
    embedder: Embedder,
    max_tokens: int,
    overlap: int,
) -> _Parsed | str:
    try:
        data = path.read_bytes()
    except OSError as e:
        report.failed.append((name, f"cannot read: {e.strerror or e}"))
        return name
    digest = hashlib.sha256(data).hexdigest()
    if known.get(name) == digest:
        report.skipped.append(name)
        return name
    try:
        doc = parse(path, data)
        chunks = split(doc, name, embedder.count_tokens, max_tokens=max_tokens, overlap=overlap)
    except ParseError as e:
        report.failed.append((name, e.message))
        return name
    if not chunks:
        report.failed.append((name, "no text found"))
        return name
    record = DocumentRecord(
        name=name,
        sha256=digest,
        format=doc.format,
        title=doc.title,
        chunks=len(chunks),
        added=time.time(),
        tags=tuple(tags),
    )
    # Segmenting here, in the worker, overlaps it with the embedder's run.
    keywords = [" ".join(terms(embed_text(c))) for c in chunks]
    return _Parsed(record, chunks, keywords, replaces=name in known)
