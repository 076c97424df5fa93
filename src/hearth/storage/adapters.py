"""Fine-tuned adapters kept in the shared database, so that every replica on it serves them.

One row per adapter name: its manifest, its models.toml table, the adapter file itself and
its digest, when it changed, and whether it was removed (kept as a row, so that a replica
that was down during the removal does not bring the adapter back).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from hearth.storage.db import Database


@dataclass(frozen=True)
class SharedAdapter:
    name: str
    sha256: str
    updated: float
    deleted: bool


class SharedAdapters:
    def __init__(self, db: Database) -> None:
        self.db = db

    def all(self) -> dict[str, SharedAdapter]:
        rows = self.db.query("SELECT name, sha256, updated, deleted FROM adapters")
        return {
            r["name"]: SharedAdapter(
                str(r["name"]), str(r["sha256"]), float(r["updated"]), bool(r["deleted"])
            )
            for r in rows
        }

    def manifest(self, name: str) -> str | None:
        """The manifest alone (JSON), without the adapter's bytes."""
        rows = self.db.query(
            "SELECT manifest FROM adapters WHERE name = ? AND deleted = 0", (name,)
        )
        return str(rows[0]["manifest"]) if rows else None

    def get(self, name: str) -> tuple[str, str, bytes] | None:
        """The manifest (JSON), the models.toml table (JSON) and the adapter's bytes."""
        rows = self.db.query(
            "SELECT manifest, model, gguf FROM adapters WHERE name = ? AND deleted = 0", (name,)
        )
        if not rows:
            return None
        r = rows[0]
        return str(r["manifest"]), str(r["model"]), bytes(r["gguf"])

    def put(self, name: str, manifest: str, model: str, gguf: bytes, sha256: str) -> None:
        now = time.time()
        with self.db.transaction():
            changed = self.db.execute(
                "UPDATE adapters SET manifest = ?, model = ?, gguf = ?, sha256 = ?, updated = ?,"
                " deleted = 0 WHERE name = ?",
                (manifest, model, gguf, sha256, now, name),
            )
            if not changed:
                self.db.execute(
                    "INSERT INTO adapters (name, manifest, model, gguf, sha256, updated, deleted)"
                    " VALUES (?, ?, ?, ?, ?, ?, 0)",
                    (name, manifest, model, gguf, sha256, now),
                )

    def delete(self, name: str) -> None:
        self.db.execute(
            "UPDATE adapters SET gguf = ?, updated = ?, deleted = 1 WHERE name = ?",
            (b"", time.time(), name),
        )
