"""The seed's car blog on the bundled Qwen model: three steps over a knowledge base of car
parameters (pdf, md, txt), each step a logged call of one run, and the blog uses the
documents' numbers."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from tests.conftest import make_settings, serve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
CAR_SPECS = ROOT / "examples" / "kb" / "car-specs"
NUMBERS = ["78.4", "650", "340", "6.2", "4960", "2920", "18.98", "15.58", "530", "1200",
           "5.3", "2800", "105", "93.1", "200", "500"]  # fmt: skip


def test_car_blog_chain_runs_on_qwen_and_uses_the_numbers(tmp_path: Path) -> None:
    settings = make_settings(tmp_path / "home", "").with_served(
        ["qwen2.5-0.5b-instruct", "multilingual-e5-small"]
    )
    with serve(settings, preload=["qwen2.5-0.5b-instruct"]) as live:
        base = live.base_url
        assert httpx.post(base + "/knowledge_bases", json={"name": "car-specs"}).status_code == 201
        files = [("files", (p.name, p.read_bytes())) for p in sorted(CAR_SPECS.iterdir())]
        up = httpx.post(f"{base}/knowledge_bases/car-specs/documents", files=files, timeout=600)
        assert up.status_code == 200, up.text
        app = (ROOT / "examples" / "apps" / "car-blog.yaml").read_text(encoding="utf-8")
        put = httpx.put(base + "/apps/car-blog", content=app.encode(),
                        headers={"content-type": "application/yaml"})  # fmt: skip
        assert put.status_code == 200, put.text
        brief = {"brief": "星河 S7 纯电轿车的续航、动力和价格"}
        r = httpx.post(base + "/apps/car-blog/run", json={"inputs": brief}, timeout=600)
        assert r.status_code == 200, r.text
        out = r.json()
        assert [s["id"] for s in out["steps"]] == ["opening", "middle", "ending", "blog"]
        blog = out["output"]
        assert all(s["text"].strip() for s in out["steps"])
        used = [n for n in NUMBERS if n in blog]
        assert used, blog
        rows = [c for c in live.services().calllog.recent(20) if c.run_id == out["id"]]
        assert sorted(c.step for c in rows) == ["ending", "middle", "opening"]
