"""App files kept in the shared database, so that every replica on it serves the same apps.

One row per app name: its text, when it changed, and whether it was deleted (kept as a row,
so that a replica that was down during the delete does not bring the app back).
"""

from __future__ import annotations

import time

from hearth.storage.db import Database


class SharedAppFiles:
    def __init__(self, db: Database) -> None:
        self.db = db

    def versions(self) -> dict[str, tuple[float, bool]]:
        """Each app's (updated, deleted)."""
        rows = self.db.query("SELECT name, updated, deleted FROM app_files")
        return {r["name"]: (float(r["updated"]), bool(r["deleted"])) for r in rows}

    def text(self, name: str) -> str | None:
        rows = self.db.query("SELECT text FROM app_files WHERE name = ? AND deleted = 0", (name,))
        return str(rows[0]["text"]) if rows else None

    def put(self, name: str, text: str) -> float:
        now = time.time()
        with self.db.transaction():
            changed = self.db.execute(
                "UPDATE app_files SET text = ?, updated = ?, deleted = 0 WHERE name = ?",
                (text, now, name),
            )
            if not changed:
                self.db.execute(
                    "INSERT INTO app_files (name, text, updated, deleted) VALUES (?, ?, ?, 0)",
                    (name, text, now),
                )
        return now

    def delete(self, name: str) -> float:
        now = time.time()
        self.db.execute(
            "UPDATE app_files SET text = '', updated = ?, deleted = 1 WHERE name = ?", (now, name)
        )
        return now
