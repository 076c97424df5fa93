"""The knowledge-base page in Chromium: create a base, upload several files with a
progress bar and a state each (a broken file fails with its reason), the states after a
reload, ingestion that goes on when the page closes, documents, and a search."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import FAKE_MODELS, LiveServer

pytestmark = pytest.mark.browser

SHOP = Path(__file__).resolve().parents[2] / "examples" / "kb" / "shop-faq"


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(FAKE_MODELS, served=["fake"])


def test_upload_states_documents_and_search(page: Page, live: LiveServer, tmp_path: Path) -> None:
    page.goto(f"{live.url}/kb")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    page.fill("#kb-name", "shop")
    page.click("#create-kb button")
    expect(page.locator("#kb-title")).to_have_text("shop")
    broken = tmp_path / "broken.pdf"
    broken.write_bytes(b"%PDF-1.4 this is not really a pdf")
    files = [*sorted(SHOP.glob("*.md")), broken]
    page.set_input_files("#files", [str(p) for p in files])
    rows = page.locator("#uploads tr")
    expect(rows).to_have_count(len(files))
    for p in files:
        row = page.locator(f'#uploads tr[data-document="{p.name}"]')
        expect(row.locator("progress")).to_have_count(1)
        want = "failed" if p == broken else "done"
        expect(row).to_have_attribute("data-state", want, timeout=120_000)
    expect(page.locator('#uploads tr[data-document="broken.pdf"] .state')).to_contain_text(
        "failed: "
    )
    expect(page.locator("#documents tbody tr")).to_have_count(len(files) - 1)
    page.reload()
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#uploads tr")).to_have_count(len(files))  # states survive a reload
    page.fill("#query", "周一营业吗")
    page.click("#search button")
    results = page.locator("#results li")
    expect(results.first).to_be_visible()
    expect(results.first).to_contain_text("营业与预约.md")
    expect(results.first).to_contain_text("Score")
    page.locator("#documents tbody tr").first.locator(".delete").click()
    expect(page.locator("#documents tbody tr")).to_have_count(len(files) - 2)


def test_ingestion_goes_on_when_the_page_closes(page: Page, live: LiveServer) -> None:
    base = live.base_url + "/knowledge_bases"
    assert httpx.post(base, json={"name": "faq"}).status_code == 201
    page.goto(f"{live.url}/kb?name=faq")
    expect(page.locator("#kb-title")).to_have_text("faq")
    page.set_input_files("#files", [str(p) for p in sorted(SHOP.iterdir())])
    expect(page.locator("#uploads tr")).to_have_count(3)
    page.wait_for_function(
        "() => [...document.querySelectorAll('#uploads tr')].every("
        "r => r.dataset.state !== 'uploading')"
    )
    page.goto("about:blank")  # the page goes away mid-ingestion
    for _ in range(600):
        states = {u["state"] for u in httpx.get(f"{base}/faq/uploads").json()["data"]}
        if states <= {"done"}:
            break
        time.sleep(0.2)
    assert states == {"done"}
    docs = httpx.get(f"{base}/faq/documents").json()["data"]
    assert len(docs) == 3
    page.goto(f"{live.url}/kb?name=faq")
    for row in page.locator("#uploads tr").all():
        expect(row).to_have_attribute("data-state", "done")
