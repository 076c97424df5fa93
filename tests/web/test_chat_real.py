"""The chat page on the bundled Qwen model, in Chromium: a Chinese question streams a real
answer with its token count, the conversation is there after a reload, and the usage page
shows the call."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer, make_settings, serve

pytestmark = [pytest.mark.slow, pytest.mark.browser]

QWEN = "qwen2.5-0.5b-instruct"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("web-home")
    with serve(make_settings(home, "").with_served([QWEN]), preload=[QWEN]) as server:
        yield server


def test_a_real_model_answers_in_the_browser(page: Page, live: LiveServer) -> None:
    page.goto(f"{live.url}/chat?lang=zh")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    page.select_option("#model", QWEN)
    page.fill("#input", "用一句话介绍北京。")
    page.press("#input", "Enter")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".meta")).to_contain_text("token", timeout=120_000)
    text = answer.locator(".body").inner_text()
    assert len(text.strip()) > 2, text
    assert any("\u4e00" <= ch <= "\u9fff" for ch in text), text  # it answered in Chinese
    # reload: the conversation is listed and reopens with both messages
    page.reload()
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator(".msg.user")).to_have_text("用一句话介绍北京。")
    expect(page.locator(".msg.assistant .body")).to_have_text(text)
    page.goto(f"{live.url}/usage")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#by-model tbody")).to_contain_text(QWEN)
    expect(page.locator("#recent tbody tr")).to_have_count(1)
