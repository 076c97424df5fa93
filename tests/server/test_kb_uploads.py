"""Background uploads to a knowledge base: answered at once with each file queued, ingested
by the server's worker with a state per file, errors as states or proper HTTP errors, and
what a restart interrupted picked up again."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import httpx

from hearth.storage.calllog import open_calllog
from hearth.storage.uploads import UploadStore
from tests.conftest import LiveServer, make_settings, serve

SHOP = Path(__file__).resolve().parents[2] / "examples" / "kb" / "shop-faq"


def _wait(live: LiveServer, kb: str, count: int) -> list[dict[str, Any]]:
    for _ in range(600):
        data: list[dict[str, Any]] = httpx.get(
            f"{live.base_url}/knowledge_bases/{kb}/uploads"
        ).json()["data"]
        if len(data) >= count and all(u["state"] in ("done", "unchanged", "failed") for u in data):
            return data
        time.sleep(0.1)
    raise AssertionError(data)


def test_uploads_are_queued_and_ingested(tmp_path: Path) -> None:
    with serve(make_settings(tmp_path / "home", max_upload_bytes=20_000)) as live:
        base = live.base_url + "/knowledge_bases"
        assert httpx.post(base, json={"name": "faq"}).status_code == 201
        md = sorted(SHOP.glob("*.md"))[0]
        files = [
            ("files", (md.name, md.read_bytes())),
            ("files", ("notes.xyz", b"what format is this")),
        ]
        r = httpx.post(f"{base}/faq/uploads", files=files)
        assert r.status_code == 202
        assert [u["state"] for u in r.json()["data"]] == ["queued", "queued"]
        states = {u["document"]: u for u in _wait(live, "faq", 2)}
        assert states[md.name]["state"] == "done" and states[md.name]["chunks"] > 0
        assert states["notes.xyz"]["state"] == "failed" and states["notes.xyz"]["error"]
        # The same file again: unchanged.
        httpx.post(f"{base}/faq/uploads", files=files[:1])
        assert _wait(live, "faq", 3)[0]["state"] == "unchanged"
        # Client mistakes are HTTP errors, not states.
        assert httpx.post(f"{base}/nope/uploads", files=files[:1]).status_code == 404
        big = [("files", ("big.txt", b"x" * 30_000))]
        assert httpx.post(f"{base}/faq/uploads", files=big).status_code == 413
        assert httpx.get(f"{base}/nope/uploads").status_code == 404


def test_a_restart_resumes_unfinished_uploads(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home")
    with serve(settings) as live:
        assert (
            httpx.post(live.base_url + "/knowledge_bases", json={"name": "faq"}).status_code == 201
        )
    # As a crash would leave it: a file saved, its row mid-way.
    md = sorted(SHOP.glob("*.md"))[0]
    saved = settings.home / "uploads" / "upl_x" / md.name
    saved.parent.mkdir(parents=True)
    saved.write_bytes(md.read_bytes())
    log = open_calllog(settings.db_url)
    store = UploadStore(log.db)
    up = store.add("faq", md.name, str(saved), saved.stat().st_size)
    store.set(up, "embedding")
    log.close()
    with serve(settings) as live:
        (done,) = _wait(live, "faq", 1)
        assert done["state"] == "done"
        docs = httpx.get(f"{live.base_url}/knowledge_bases/faq/documents").json()["data"]
        assert [d["name"] for d in docs] == [md.name]
    assert not saved.exists()
