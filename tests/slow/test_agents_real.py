"""The example agent apps on the bundled Qwen model: ``pal`` writes a program that the
sandboxed python tool runs, ``react`` searches the shop's knowledge base and answers from
it. Through the real server and the ``openai`` SDK; each run's tool calls are in the log."""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import LiveServer, make_settings, serve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
QWEN, E5 = "qwen2.5-0.5b-instruct", "multilingual-e5-small"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("agents-home")
    (home / "apps").mkdir()
    for name in ("pal", "react"):
        shutil.copy(ROOT / "examples" / "apps" / f"{name}.yaml", home / "apps")
    with serve(make_settings(home, "").with_served([QWEN, E5]), preload=[QWEN]) as server:
        base = server.base_url + "/knowledge_bases"
        assert httpx.post(base, json={"name": "shop-faq"}).status_code == 201
        shop = ROOT / "examples" / "kb" / "shop-faq"
        files = [("files", (p.name, p.read_bytes())) for p in sorted(shop.iterdir())]
        assert httpx.post(f"{base}/shop-faq/documents", files=files, timeout=600).is_success
        yield server


def _client(live: LiveServer) -> openai.OpenAI:
    return openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)


def test_pal_computes_with_the_python_tool(live: LiveServer) -> None:
    question = (
        "A class has 23 boys and 19 girls. Each student gets 3 pencils. "
        "How many pencils are handed out?"
    )
    r = _client(live).chat.completions.create(
        model="pal", messages=[{"role": "user", "content": question}]
    )
    run = (r.model_extra or {})["run"]
    rows = live.services().calllog.tools(run["id"])
    assert rows and rows[0].tool == "python", run
    code = json.loads(rows[0].arguments)["code"]
    assert "print" in code
    assert rows[0].ok and rows[0].result.strip() == "126", (code, rows[0].result)
    assert "126" in (r.choices[0].message.content or "")


def test_react_searches_the_knowledge_base_then_answers(live: LiveServer) -> None:
    stream = _client(live).chat.completions.create(
        model="react", messages=[{"role": "user", "content": "你们周一营业吗？"}], stream=True
    )
    text, run = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        run = (chunk.model_extra or {}).get("run") or run
    assert run is not None
    rows = live.services().calllog.tools(run["id"])
    assert rows and rows[0].tool == "kb_search" and rows[0].ok
    assert json.loads(rows[0].arguments)["query"].strip()
    assert "营业" in rows[0].result  # the passage about opening hours came back
    assert text.strip()
