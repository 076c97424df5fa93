"""Screenshots of each page of the web UI for the README (docs/screenshots/), taken in
Debian's Chromium against a server on scripted models with a little data in it.

    .venv/bin/python scripts/screenshots.py
"""

from __future__ import annotations

import json
import tempfile
import threading
import time
from pathlib import Path

import httpx
import uvicorn
from playwright.sync_api import sync_playwright

from hearth.config import load_settings
from hearth.server import create_app

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "screenshots"
REPLY = (
    "周一店休；**周二至周日 10:30–21:30** 营业 [1]。\n\n"
    "- 午市高峰 11:30–13:00\n- 10 人以上请提前一天登记"
)
CONFIG = f"""
[models.qwen-demo]
engine = "fake"
script = [{json.dumps(REPLY, ensure_ascii=False)}]
price = {{ input = 0.002, output = 0.006 }}
"""


def main() -> None:
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "config.toml").write_text(CONFIG, encoding="utf-8")
        (home / "apps").mkdir()
        (home / "apps" / "review-reply.yaml").write_text(
            (ROOT / "examples" / "apps" / "react.yaml")
            .read_text()
            .replace("qwen2.5-0.5b-instruct", "qwen-demo"),
            encoding="utf-8",
        )
        settings = load_settings(home=home, env={}).with_served(["qwen-demo"])
        server = uvicorn.Server(uvicorn.Config(create_app(settings), port=0, log_level="warning"))
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        server.config.port = port
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        url = f"http://127.0.0.1:{port}"
        api = url + "/v1"
        httpx.post(api + "/knowledge_bases", json={"name": "shop-faq"})
        shop = ROOT / "examples" / "kb" / "shop-faq"
        files = [("files", (p.name, p.read_bytes())) for p in sorted(shop.iterdir())]
        httpx.post(api + "/knowledge_bases/shop-faq/uploads", files=files)
        OUT.mkdir(parents=True, exist_ok=True)
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=["--no-sandbox"])
            page = browser.new_page(viewport={"width": 1280, "height": 760}, locale="zh-CN")
            page.goto(url + "/chat")
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#input", "你们周一营业吗？")
            page.press("#input", "Enter")
            page.wait_for_selector(".msg.assistant .meta")
            page.screenshot(path=str(OUT / "chat.png"))
            for _ in range(100):
                states = {u["state"] for u in httpx.get(
                    api + "/knowledge_bases/shop-faq/uploads").json()["data"]}  # fmt: skip
                if states <= {"done", "failed", "unchanged"}:
                    break
                time.sleep(0.2)
            page.goto(url + "/kb?name=shop-faq")
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#query", "周一营业吗")
            page.click("#search button")
            page.wait_for_selector("#results li")
            page.screenshot(path=str(OUT / "kb.png"), full_page=True)
            page.goto(url + "/apps")
            page.wait_for_selector("body[data-ready=true]")
            page.click("#apps .edit")
            page.click("#check")
            page.wait_for_selector("#status:not(:empty)")
            page.fill("#try-input", "你们周一营业吗？")
            page.click("#try")
            page.wait_for_selector("#matrix .card:not(.pending)")
            page.screenshot(path=str(OUT / "apps.png"), full_page=True)
            page.goto(url + "/usage?lang=en")
            page.wait_for_selector("body[data-ready=true]")
            page.screenshot(path=str(OUT / "usage.png"), full_page=True)
            page.goto(url + "/keys")
            page.wait_for_selector("body[data-ready=true]")
            page.fill("#new-key input[name=name]", "客服组")
            page.fill("#new-key input[name=models]", "qwen-demo, review-reply")
            page.fill("#new-key input[name=rpm]", "60")
            page.fill("#new-key input[name=budget]", "20")
            page.click("#new-key button[type=submit]")
            page.wait_for_selector("#secret:not([hidden])")
            page.screenshot(path=str(OUT / "keys.png"), full_page=True)
            browser.close()
        server.should_exit = True
    print(f"wrote {sorted(p.name for p in OUT.glob('*.png'))} to {OUT}")


if __name__ == "__main__":
    main()
