"""Knowledge-base uploads ingested in the background: one row per file with its state
(``queued``, ``parsing``, ``embedding``, ``done``, ``unchanged``, ``failed`` with the
reason), so a page closed mid-upload finds it again and a restart resumes what was left."""

from __future__ import annotations

import secrets
import time
from dataclasses import astuple, dataclass, fields, replace

from hearth.storage.db import Database

STATES = ("queued", "parsing", "embedding", "done", "unchanged", "failed")
FINISHED = ("done", "unchanged", "failed")


@dataclass(frozen=True)
class Upload:
    id: str
    kb: str
    document: str
    path: str  # where the file waits until it is ingested
    bytes: int
    state: str
    error: str | None
    chunks: int
    created: float
    updated: float


_COLUMNS = ", ".join(f.name for f in fields(Upload))


class UploadStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def add(self, kb: str, document: str, path: str, size: int) -> Upload:
        now = time.time()
        up = Upload(f"upl_{secrets.token_hex(12)}", kb, document, path, size, "queued", None, 0,
                    now, now)  # fmt: skip
        self.db.execute(
            f"INSERT INTO uploads ({_COLUMNS}) VALUES ({', '.join('?' for _ in fields(Upload))})",
            astuple(up),
        )
        return up

    def set(self, up: Upload, state: str, *, error: str | None = None, chunks: int = 0) -> Upload:
        assert state in STATES, state
        new = replace(up, state=state, error=error, chunks=chunks, updated=time.time())
        self.db.execute(
            "UPDATE uploads SET state = ?, error = ?, chunks = ?, updated = ? WHERE id = ?",
            (new.state, new.error, new.chunks, new.updated, up.id),
        )
        return new

    def of(self, kb: str, limit: int = 100) -> list[Upload]:
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM uploads WHERE kb = ? ORDER BY created DESC, id LIMIT ?",
            (kb, limit),
        )
        return [Upload(**r) for r in rows]

    def unfinished(self) -> list[Upload]:
        placeholders = ", ".join("?" for _ in FINISHED)
        rows = self.db.query(
            f"SELECT {_COLUMNS} FROM uploads WHERE state NOT IN ({placeholders}) ORDER BY created",
            FINISHED,
        )
        return [Upload(**r) for r in rows]
