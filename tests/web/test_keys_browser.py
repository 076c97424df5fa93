"""Keys in the browser: a server with keys asks for one and uses it on every page; an admin
creates a key (its secret shown once), sees its limits, and revokes it; a plain key is told
that managing keys needs an admin."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from playwright.sync_api import Dialog, Page, expect

from hearth.storage.calllog import open_calllog
from hearth.storage.keys import KeyStore
from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

CONFIG = """
[models.fake]
engine = "fake"
script = ["你好！"]
"""


def make_key(live: LiveServer, name: str, **kw: object) -> str:
    log = open_calllog(live.settings.db_url)
    try:
        _, secret = KeyStore(log.db).create(name, **kw)  # type: ignore[arg-type]
    finally:
        log.close()
    live.services().keys.changed()
    return secret


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(CONFIG, served=["fake"])


def answer_dialogs(page: Page, key: str) -> list[str]:
    seen: list[str] = []

    def handle(d: Dialog) -> None:
        seen.append(d.type)
        d.accept(key) if d.type == "prompt" else d.accept()

    page.on("dialog", handle)
    return seen


def test_an_admin_creates_and_revokes_keys_in_the_browser(page: Page, live: LiveServer) -> None:
    root = make_key(live, "root", admin=True)
    seen = answer_dialogs(page, root)
    page.goto(f"{live.url}/keys")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    assert seen == ["prompt"]  # the first 401 asked for a key, which is now in use
    expect(page.locator("#keys tbody tr")).to_have_count(1)
    expect(page.locator("#key-button")).to_contain_text(root[-4:])
    page.fill("#new-key input[name=name]", "客服组")
    page.fill("#new-key input[name=models]", "fake")
    page.fill("#new-key input[name=rpm]", "5")
    page.click("#new-key button[type=submit]")
    expect(page.locator("#secret")).to_be_visible()
    secret = page.locator("#secret-value").inner_text()
    row = page.locator("#keys tbody tr", has_text="客服组")
    expect(row).to_contain_text("fake")
    expect(row.locator("td").nth(4)).to_have_text("5")
    expect(row).to_contain_text("active")
    client = openai.OpenAI(base_url=live.base_url, api_key=secret, max_retries=0)
    r = client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    assert r.choices[0].message.content == "你好！"
    row.locator(".revoke").click()
    expect(row).to_contain_text("revoked")
    assert seen == ["prompt", "confirm"]
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="fake", messages=[{"role": "user", "content": "hi"}])
    # a bad form value is the server's clear message, not a broken page
    page.fill("#new-key input[name=name]", "x")
    page.fill("#new-key input[name=tpm]", "0")
    page.eval_on_selector("#new-key input[name=tpm]", "e => e.removeAttribute('min')")
    page.click("#new-key button[type=submit]")
    expect(page.locator("#keys-error")).to_contain_text("tpm")


def test_a_plain_key_chats_but_cannot_manage_keys(page: Page, live: LiveServer) -> None:
    make_key(live, "root", admin=True)
    user = make_key(live, "user")
    seen = answer_dialogs(page, user)
    page.goto(f"{live.url}/chat")
    page.fill("#input", "你好")
    page.press("#input", "Enter")
    expect(page.locator(".msg.assistant .body").last).to_have_text("你好！")
    assert seen == ["prompt"]  # the page's requests at once, yet the key asked for once
    page.goto(f"{live.url}/keys?lang=zh")
    expect(page.locator("#keys-error")).to_contain_text("管理员密钥")
    expect(page.locator("#new-key-section")).to_be_hidden()


def test_the_first_key_made_in_the_browser_is_an_admin_key_it_keeps(
    page: Page, live: LiveServer
) -> None:
    seen = answer_dialogs(page, "")
    page.goto(f"{live.url}/keys")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#keys tbody")).to_contain_text("No keys")
    expect(page.locator("#first-key")).to_be_visible()
    expect(page.locator("#new-key input[name=admin]")).to_be_checked()
    expect(page.locator("#new-key input[name=admin]")).to_be_disabled()
    page.fill("#new-key input[name=name]", "owner")
    page.click("#new-key button[type=submit]")
    expect(page.locator("#keys tbody tr", has_text="owner")).to_contain_text("✓")
    secret = page.locator("#secret-value").inner_text()
    assert page.evaluate("localStorage.getItem('hearth.key')") == secret
    # the server now wants keys; this browser has one, so nothing asks for it
    page.goto(f"{live.url}/usage")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#usage-error")).to_be_hidden()
    assert seen == []
    anonymous = openai.OpenAI(base_url=live.base_url, api_key="none", max_retries=0)
    with pytest.raises(openai.AuthenticationError):
        anonymous.models.list()
