"""Knowledge bases end to end with the real bundled embedder: the CLI as a user runs it,
the HTTP API with httpx, and ingestion that survives kill -9."""

from __future__ import annotations

import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from tests.conftest import FAKE_MODELS, LiveServer

SAMPLE = Path(__file__).resolve().parents[2] / "src" / "hearth" / "data" / "kb_sample"
FEW = ("leave_policy.md", "hx2040_faq.txt", "sqlite_wal.md", "expense_rules.docx")


def hearth(home: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "HEARTH_HOME": str(home), "COLUMNS": "200"}
    out = subprocess.run(
        [sys.executable, "-m", "hearth", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    if check:
        assert out.returncode == 0, out.stderr
    return out


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    for name in FEW:
        shutil.copy(SAMPLE / "docs" / name, folder / name)
    return folder


def test_cli_create_add_search_docs_rm(tmp_path: Path, docs: Path) -> None:
    home = tmp_path / "home"
    hearth(home, "kb", "create", "hb", "--description", "handbook")
    bad = docs / "broken.pdf"
    bad.write_bytes(b"%PDF-1.4 not really")
    out = hearth(home, "kb", "add", "hb", str(docs), "--json", check=False)
    assert out.returncode == 1, out.stderr  # a file failed: scripts can tell
    added = json.loads(out.stdout)
    assert sorted(added["added"]) == sorted(FEW)
    assert [f[0] for f in added["failed"]] == ["broken.pdf"]  # reported, the rest went on
    assert added["chunks"] > 4

    bad.unlink()
    again = json.loads(hearth(home, "kb", "add", "hb", str(docs), "--json").stdout)
    assert sorted(again["skipped"]) == sorted(FEW) and again["chunks"] == 0

    hits = json.loads(hearth(home, "kb", "search", "hb", "年假有几天", "--json").stdout)
    assert hits and hits[0]["document"] == "leave_policy.md"
    assert hits[0]["citation"].startswith("leave_policy.md")
    en = json.loads(
        hearth(home, "kb", "search", "hb", "what does WAL mode change", "--json").stdout
    )
    assert en[0]["document"] == "sqlite_wal.md"
    code = json.loads(
        hearth(home, "kb", "search", "hb", "HX-2040", "--mode", "keyword", "--json").stdout
    )
    assert code[0]["document"] == "hx2040_faq.txt"
    for chat in ("你好", "thanks!"):
        assert json.loads(hearth(home, "kb", "search", "hb", chat, "--json").stdout) == []

    (docs / "sqlite_wal.md").write_text("# WAL\n\nA replaced note about write-ahead logs.\n")
    changed = json.loads(hearth(home, "kb", "add", "hb", str(docs), "--json").stdout)
    assert changed["replaced"] == ["sqlite_wal.md"]
    listed = json.loads(hearth(home, "kb", "docs", "hb", "--json").stdout)
    wal = next(d for d in listed if d["name"] == "sqlite_wal.md")
    assert wal["chunks"] == 1

    hearth(home, "kb", "rm", "hb", "sqlite_wal.md")
    hits = json.loads(
        hearth(home, "kb", "search", "hb", "write-ahead log", "--mode", "keyword", "--json").stdout
    )
    assert all(h["document"] != "sqlite_wal.md" for h in hits)
    refused = hearth(home, "kb", "rm", "hb", check=False)
    assert refused.returncode == 2 and "--yes" in refused.stderr
    hearth(home, "kb", "rm", "hb", "--yes")
    missing = hearth(home, "kb", "search", "hb", "x", check=False)
    assert missing.returncode == 2 and "hearth kb create hb" in missing.stderr


def test_http_knowledge_bases(server_factory: Callable[..., LiveServer], docs: Path) -> None:
    live = server_factory(FAKE_MODELS, served=["fake"], max_upload_bytes=200_000)
    base = live.base_url + "/knowledge_bases"
    with httpx.Client(timeout=300) as http:
        assert http.post(base, json={"name": "web"}).status_code == 201
        assert http.post(base, json={"name": "web"}).status_code == 409
        files = [("files", (p.name, p.read_bytes())) for p in sorted(docs.iterdir())]
        up = http.post(f"{base}/web/documents", files=files)
        assert up.status_code == 200, up.text
        assert sorted(up.json()["added"]) == sorted(FEW)
        broken = http.post(f"{base}/web/documents", files=[("files", ("bad.pdf", b"%PDF-1 x"))])
        assert broken.status_code == 200  # a report: which files failed, and why
        [(failed, reason)] = broken.json()["failed"]
        assert failed == "bad.pdf" and reason.startswith("Cannot parse 'bad.pdf'"), reason
        names = [d["name"] for d in http.get(f"{base}/web/documents").json()["data"]]
        assert sorted(names) == sorted(FEW)

        found = http.post(f"{base}/web/search", json={"query": "报销需要什么票据", "k": 3})
        assert found.json()["data"][0]["document"] == "expense_rules.docx"
        assert http.post(f"{base}/web/search", json={"query": "你好"}).json()["data"] == []

        ask = http.post(f"{base}/web/ask", json={"question": "年假有几天？", "model": "fake"})
        assert ask.status_code == 200
        body = ask.json()
        assert body["choices"][0]["message"]["content"]
        assert body["sources"] and body["sources"][0]["document"] == "leave_policy.md"
        assert body["usage"]["prompt_tokens"] > 0

        big = [("files", ("big.txt", b"a" * 300_000))]
        too_big = http.post(f"{base}/web/documents", files=big)
        assert too_big.status_code == 413
        assert too_big.json()["error"]["code"] == "payload_too_large"

        assert http.delete(f"{base}/web/documents/leave_policy.md").status_code == 200
        gone = http.delete(f"{base}/web/documents/leave_policy.md")
        assert gone.status_code == 404
        assert gone.json()["error"]["code"] == "document_not_found"
        assert http.post(f"{base}/nope/search", json={"query": "x"}).status_code == 404
        assert http.post(f"{base}/web/search", json={"query": ""}).status_code == 400
        assert http.delete(f"{base}/web").status_code == 200


def test_eval_retrieval_reports_each_mode(tmp_path: Path, docs: Path) -> None:
    home = tmp_path / "home"
    hearth(home, "kb", "create", "ev")
    hearth(home, "kb", "add", "ev", str(docs))
    qa = [
        json.loads(line)
        for line in (SAMPLE / "qa.jsonl").read_text(encoding="utf-8").splitlines()
        if line.strip()
    ]
    mine = [q for q in qa if q["document"] in FEW]
    path = tmp_path / "qa.jsonl"
    path.write_text("\n".join(json.dumps(q, ensure_ascii=False) for q in mine), encoding="utf-8")
    rows = json.loads(hearth(home, "eval", "retrieval", "ev", str(path), "--json").stdout)
    overall = [r for r in rows if r["group"] == "all"]
    assert [r["mode"] for r in overall] == ["hybrid", "vector", "keyword"]
    for r in overall:
        assert 0 <= r["hit@1"] <= r["hit@3"] <= r["hit@5"] <= 1 and r["questions"] == len(mine)
    assert overall[0]["hit@5"] >= 0.8
    # the questions here are Chinese and English about documents in their own language
    by_direction = {(r["mode"], r["group"]): r["questions"] for r in rows if r["group"] != "all"}
    assert set(by_direction) == {
        (m, g) for m in ("hybrid", "vector", "keyword") for g in ("zh→zh", "en→en")
    }
    assert by_direction["hybrid", "zh→zh"] + by_direction["hybrid", "en→en"] == len(mine)


@pytest.mark.slow
def test_ingestion_killed_at_any_moment_finishes_exactly_once(tmp_path: Path) -> None:
    """kill -9 `hearth kb add` at random moments; the next run completes the job and every
    chunk is present exactly once."""
    home = tmp_path / "home"
    hearth(home, "kb", "create", "k9")
    env = {**os.environ, "HEARTH_HOME": str(home)}
    rng = random.Random(7)
    folder = str(SAMPLE / "docs")
    for _ in range(3):
        proc = subprocess.Popen(
            [sys.executable, "-m", "hearth", "kb", "add", "k9", folder, "--json"],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(rng.uniform(2.0, 8.0))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    hearth(home, "kb", "add", "k9", folder)
    from hearth.rag.stores.sqlite import SQLiteStore

    store = SQLiteStore(home / "kb.db")
    try:
        records = store.documents("k9")
        assert len(records) == len(list((SAMPLE / "docs").iterdir()))
        assert store.count_chunks("k9") == sum(r.chunks for r in records)
        import sqlite3

        conn = sqlite3.connect(home / "kb.db")
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        conn.close()
    finally:
        store.close()
    fresh = tmp_path / "fresh"
    hearth(fresh, "kb", "create", "k9")
    clean = json.loads(hearth(fresh, "kb", "add", "k9", folder, "--json").stdout)
    assert clean["chunks"] == sum(r.chunks for r in records)


@pytest.mark.slow
def test_ask_gives_a_cited_answer_from_the_bundled_model(tmp_path: Path, docs: Path) -> None:
    home = tmp_path / "home"
    hearth(home, "kb", "create", "hb")
    hearth(home, "kb", "add", "hb", str(docs))
    out = json.loads(hearth(home, "kb", "ask", "hb", "年假有几天？", "--json").stdout)
    assert out["sources"] and out["sources"][0]["document"] == "leave_policy.md"
    assert out["answer"].strip()
    plain = hearth(home, "kb", "ask", "hb", "年假有几天？").stdout
    assert "[1] leave_policy.md" in plain
