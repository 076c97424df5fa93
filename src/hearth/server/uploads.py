"""Background ingestion of knowledge-base uploads: files are saved under the home and
queued; one worker parses and embeds them in turn, recording each file's state, so
ingestion goes on when the uploader's page closes and resumes after a restart."""

from __future__ import annotations

import asyncio
import logging
import shutil
from pathlib import Path
from typing import Any

from hearth.errors import HearthError
from hearth.rag.ingest import ingest
from hearth.rag.kb import embedder_of
from hearth.server.services import Services
from hearth.storage.uploads import Upload, UploadStore

log = logging.getLogger("hearth.server")


class Ingestor:
    def __init__(self, svc: Services) -> None:
        self.svc = svc
        self.store = UploadStore(svc.calllog.db)
        self.queue: asyncio.Queue[Upload] = asyncio.Queue()
        self.task: asyncio.Task[None] | None = None

    @property
    def folder(self) -> Path:
        return self.svc.settings.home / "uploads"

    def start(self) -> None:
        for up in self.store.unfinished():  # interrupted by a restart: from the top
            self.queue.put_nowait(self.store.set(up, "queued"))
        self.task = asyncio.create_task(self._run())

    async def close(self) -> None:
        if self.task is not None:
            self.task.cancel()
            await asyncio.gather(self.task, return_exceptions=True)

    async def submit(self, kb: str, filename: str, data: bytes) -> Upload:
        def save() -> Upload:
            up = self.store.add(kb, filename, "", len(data))
            path = self.folder / up.id / filename
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            self.store.db.execute("UPDATE uploads SET path = ? WHERE id = ?", (str(path), up.id))
            return Upload(**{**up.__dict__, "path": str(path)})

        up = await asyncio.to_thread(save)
        self.queue.put_nowait(up)
        return up

    async def _run(self) -> None:
        while True:
            up = await self.queue.get()
            try:
                await self._one(up)
            except asyncio.CancelledError:
                raise
            except Exception as e:
                log.exception("ingesting %s into %s failed", up.document, up.kb)
                await asyncio.to_thread(self.store.set, up, "failed", error=str(e) or repr(e))

    async def _one(self, up: Upload) -> None:
        store = self.store
        up = await asyncio.to_thread(store.set, up, "parsing")
        try:
            kb = await asyncio.to_thread(self.svc.kb.get_kb, up.kb)
            emb = await asyncio.to_thread(embedder_of, kb)
            current = {"up": up}

            def embedding(_: str) -> None:
                current["up"] = store.set(current["up"], "embedding")

            report = await asyncio.to_thread(
                ingest, self.svc.kb, emb, up.kb, [Path(up.path)], on_embedding=embedding
            )
        except HearthError as e:
            await asyncio.to_thread(store.set, up, "failed", error=e.message)
            return
        up = current["up"]
        if report.failed:
            await asyncio.to_thread(store.set, up, "failed", error=report.failed[0][1])
        elif report.skipped:
            await asyncio.to_thread(store.set, up, "unchanged")
        else:
            await asyncio.to_thread(store.set, up, "done", chunks=report.chunks)
        shutil.rmtree(Path(up.path).parent, ignore_errors=True)


def upload_json(up: Upload) -> dict[str, Any]:
    return {
        "id": up.id,
        "object": "knowledge_base.upload",
        "knowledge_base": up.kb,
        "document": up.document,
        "bytes": up.bytes,
        "state": up.state,
        "error": up.error,
        "chunks": up.chunks,
        "created_at": up.created,
        "updated_at": up.updated,
    }
