"""Knowledge-base search across languages over HTTP: the query's translation comes from a
served chat model (a scripted one here), is logged as a call, cached, and never asked for
small talk."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import httpx

from tests.conftest import LiveServer

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "hearth" / "data" / "kb_sample" / "docs"
CONFIG = """
[models.translator]
engine = "fake"
script = ["西湖厅能坐多少人？"]
"""
QUESTION = "How many people can the West Lake meeting room seat?"


def test_translated_search_is_logged_cached_and_skipped_for_small_talk(
    server_factory: Callable[..., LiveServer],
) -> None:
    live = server_factory(CONFIG, served=["translator"])
    base = live.base_url + "/knowledge_bases"
    assert httpx.post(base, json={"name": "kb"}).status_code == 201
    names = ("meeting_rooms.md", "sqlite_wal.md", "lisbon.txt", "chengdu.md")
    files = [("files", (n, (SAMPLE / n).read_bytes())) for n in names]
    assert httpx.post(f"{base}/kb/documents", files=files, timeout=300).status_code == 200

    def translate_calls() -> int:
        return sum(1 for r in live.services().calllog.recent(100) if r.endpoint == "kb.translate")

    body = {"query": QUESTION, "translate": True, "k": 3}
    first = httpx.post(f"{base}/kb/search", json=body, timeout=60).json()["data"]
    assert first[0]["document"] == "meeting_rooms.md"
    assert translate_calls() == 1
    row = next(r for r in live.services().calllog.recent(10) if r.endpoint == "kb.translate")
    assert row.model == "translator" and row.status == "ok" and row.prompt_tokens > 0
    again = httpx.post(f"{base}/kb/search", json=body, timeout=60).json()["data"]
    assert [r["document"] for r in again] == [r["document"] for r in first]
    assert translate_calls() == 1  # cached
    chat = httpx.post(f"{base}/kb/search", json={"query": "hello", "translate": True})
    assert chat.json()["data"] == [] and translate_calls() == 1
    unknown = httpx.post(
        f"{base}/kb/search", json={"query": QUESTION, "translate": True, "model": "gpt-9"}
    )
    assert unknown.status_code == 404
