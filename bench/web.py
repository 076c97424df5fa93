"""The web UI in Debian's Chromium (Playwright) against a real ``hearth`` server on the fake
engine, so the figures are the UI's and the server's own cost, not a model's:

* first load of each page: a fresh browser context (empty cache: cold; its renderer process
  started beforehand on an unrelated URL of the same origin) and a reload in the same
  context (warm), from navigation to the page's data shown (``body[data-ready]``), and
  the browser's own navigation timings;
* a chat of 200 messages (100 questions, 100 markdown answers with code): time to open it,
  then a streamed answer of 600 pieces (frame intervals and long tasks while it streams,
  markdown renders against deltas received), then scrolling the whole chat with the wheel
  (frame intervals).

Prints a table and writes bench/results/web.json.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from playwright.sync_api import Page, sync_playwright

from _common import ServerProcess, free_port, machine_info, percentile, write_json

CHROMIUM = "/usr/bin/chromium"
PAGES = ["/chat", "/kb", "/apps", "/usage", "/keys"]
ANSWER = "".join(
    f"第 {n} 段：**要点** 与 `code {n}`。\n\n" if n % 10 == 9 else f"词{n} " for n in range(600)
)
CONFIG = f"""
[models.fake]
engine = "fake"
script = ["你好！"]
price = {{ input = 1.0, output = 2.0 }}

[models.stream]
engine = "fake"
delay = 0.004
script = [{json.dumps(ANSWER, ensure_ascii=False)}]
"""
APP = """app: greeter
description: 打招呼
variants:
  default:
    model: fake
    system: 你好
tests:
  - {name: hi, input: hi, assert: [{type: contains, value: 你好}]}
"""

# Frame intervals and long tasks, recorded in the page until window.__stop() is called.
RECORDER = """() => {
  const frames = [];
  const long = [];
  let last = performance.now();
  let on = true;
  const tick = (now) => {
    frames.push(now - last);
    last = now;
    if (on) requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
  const observer = new PerformanceObserver((list) => {
    for (const e of list.getEntries()) long.push(e.duration);
  });
  observer.observe({ type: "longtask", buffered: false });
  window.__stop = () => { on = false; observer.disconnect(); return { frames, long }; };
}"""


def server(home: Path) -> tuple[ServerProcess, str]:
    """``hearth serve`` in its own process (not a thread beside the browser's driver)."""
    port = free_port()
    cmd = [str(Path(sys.executable).parent / "hearth"), "serve", "--port", str(port),
           "--model", "fake", "--model", "stream"]  # fmt: skip
    env = {**os.environ, "HEARTH_HOME": str(home)}
    return ServerProcess("hearth", cmd, env), f"http://127.0.0.1:{port}"


def seed(url: str) -> str:
    """Some usage, a knowledge base and a 200-message conversation; its id."""
    api = url + "/v1"
    for model in ("fake", "greeter"):
        body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
        for _ in range(5):
            httpx.post(api + "/chat/completions", json=body)
    httpx.post(api + "/knowledge_bases", json={"name": "faq"})
    conv = httpx.post(api + "/conversations", json={"metadata": {"model": "stream"}}).json()
    items = []
    for n in range(100):
        items.append({"role": "user", "content": f"第 {n} 个问题：营业时间？"})
        answer = f"**回答 {n}**\n\n```python\nprint({n})\n```\n\n- 一\n- 二"
        items.append({"role": "assistant", "content": answer})
    for start in range(0, len(items), 20):
        batch = {"items": items[start : start + 20]}
        httpx.post(f"{api}/conversations/{conv['id']}/items", json=batch)
    return str(conv["id"])


def navigation(page: Page) -> dict[str, float]:
    timing = page.evaluate(
        """() => { const n = performance.getEntriesByType('navigation')[0];
        return { ttfb: n.responseStart, dom: n.domContentLoadedEventEnd,
                 load: n.loadEventEnd }; }"""
    )
    return {k: float(v) for k, v in timing.items()}


def page_loads(browser: Any, url: str, reps: int) -> list[dict[str, Any]]:
    rows = []
    for path in PAGES:
        cold, warm, nav = [], [], []
        for _ in range(reps):
            context = browser.new_context(viewport={"width": 1280, "height": 800})
            page = context.new_page()
            page.goto(url + "/static/style.css?warm")  # the renderer process, not the page
            t0 = time.perf_counter()
            page.goto(url + path)
            page.wait_for_selector("body[data-ready=true]", state="attached")
            cold.append((time.perf_counter() - t0) * 1000)
            nav.append(navigation(page))
            t0 = time.perf_counter()
            page.reload()
            page.wait_for_selector("body[data-ready=true]", state="attached")
            warm.append((time.perf_counter() - t0) * 1000)
            context.close()
        rows.append(
            {
                "page": path,
                "cold_ready_ms": statistics.median(cold),
                "warm_ready_ms": statistics.median(warm),
                "ttfb_ms": statistics.median(n["ttfb"] for n in nav),
                "dom_content_loaded_ms": statistics.median(n["dom"] for n in nav),
                "load_ms": statistics.median(n["load"] for n in nav),
            }
        )
    return rows


def frames_summary(rec: dict[str, Any]) -> dict[str, Any]:
    frames = rec["frames"][1:]
    return {
        "frames": len(frames),
        "frame_p50_ms": percentile(frames, 50),
        "frame_p95_ms": percentile(frames, 95),
        "frame_max_ms": max(frames) if frames else None,
        "long_tasks": len(rec["long"]),
        "long_task_max_ms": max(rec["long"]) if rec["long"] else 0,
    }


def long_chat(browser: Any, url: str, conv: str) -> dict[str, Any]:
    context = browser.new_context(viewport={"width": 1280, "height": 800})
    page = context.new_page()
    t0 = time.perf_counter()
    page.goto(f"{url}/chat?c={conv}")
    page.wait_for_function("document.querySelectorAll('#messages .msg').length === 200")
    opened = (time.perf_counter() - t0) * 1000
    page.evaluate(RECORDER)
    page.fill("#input", "再详细说说")
    t0 = time.perf_counter()
    page.press("#input", "Enter")
    page.wait_for_selector("#messages .msg:nth-child(202) .meta", timeout=60_000)
    streamed = (time.perf_counter() - t0) * 1000
    stream = frames_summary(page.evaluate("window.__stop()"))
    stats = page.evaluate("window.hearthStats")
    page.evaluate(RECORDER)
    page.hover("#messages")
    for _ in range(80):
        page.mouse.wheel(0, -600)
        page.wait_for_timeout(16)
    scroll = frames_summary(page.evaluate("window.__stop()"))
    at_top = page.evaluate("document.querySelector('#messages').scrollTop")
    context.close()
    return {
        "open_200_messages_ms": opened,
        "stream_600_pieces_ms": streamed,
        "deltas": stats["deltas"],
        "markdown_renders": stats["paints"],
        "streaming": stream,
        "scrolling": scroll,
        "scroll_top_after": at_top,
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--reps", type=int, default=5, help="loads per page (median)")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "config.toml").write_text(CONFIG, encoding="utf-8")
        (home / "apps").mkdir()
        (home / "apps" / "greeter.yaml").write_text(APP, encoding="utf-8")
        proc, url = server(home)
        with proc, sync_playwright() as p:
            proc.wait_ready(url + "/v1/models", lambda r: True, timeout=60)
            conv = seed(url)
            browser = p.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            loads = page_loads(browser, url, args.reps)
            chat = long_chat(browser, url, conv)
            browser.close()
    print(f"{'page':8} {'cold ready':>11} {'warm ready':>11} {'TTFB':>7} {'DCL':>7} {'load':>7}")
    for r in loads:
        print(
            f"{r['page']:8} {r['cold_ready_ms']:9.0f}ms {r['warm_ready_ms']:9.0f}ms "
            f"{r['ttfb_ms']:5.0f}ms {r['dom_content_loaded_ms']:5.0f}ms {r['load_ms']:5.0f}ms"
        )
    s, sc = chat["streaming"], chat["scrolling"]
    print(f"\n200-message chat opened in {chat['open_200_messages_ms']:.0f} ms")
    print(
        f"streaming {chat['deltas']} deltas in {chat['stream_600_pieces_ms']:.0f} ms: "
        f"{chat['markdown_renders']} markdown renders; frames p50 {s['frame_p50_ms']:.1f} ms, "
        f"p95 {s['frame_p95_ms']:.1f} ms, max {s['frame_max_ms']:.0f} ms; "
        f"{s['long_tasks']} long tasks (max {s['long_task_max_ms']:.0f} ms)"
    )
    print(
        f"scrolling to the top: frames p50 {sc['frame_p50_ms']:.1f} ms, p95 "
        f"{sc['frame_p95_ms']:.1f} ms, max {sc['frame_max_ms']:.0f} ms; "
        f"{sc['long_tasks']} long tasks; scrollTop after {chat['scroll_top_after']}"
    )
    path = write_json(
        "web.json",
        {"machine": machine_info(), "chromium": CHROMIUM, "page_loads": loads, "long_chat": chat},
    )
    print(f"\nwrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
