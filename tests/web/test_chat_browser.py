"""The chat page in a real Chromium against a real server (fake engine): streaming with
markdown, output that cannot run script, Enter / Shift+Enter / IME, stop, conversations
that survive a reload, tokens and cost, sources, and the language switch."""

from __future__ import annotations

import json
from collections.abc import Callable

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

XSS = (
    "Look: <img src=x onerror=\"window.__xss='img'\"> and "
    "[a link](javascript:window.__xss='link') and <script>window.__xss='script'</script> "
    "**bold** and `code`"
)
CONFIG = f"""
[models.fake]
engine = "fake"
script = ["Hello **world**, here is `code`.\\n\\n- one\\n- two"]
price = {{ input = 1.0, output = 2.0 }}

[models.evil]
engine = "fake"
script = [{json.dumps(XSS)}]

[models.slow]
engine = "fake"
delay = 0.05
script = ["{"word " * 200}"]

[models.quick]
engine = "fake"
delay = 0.001
script = ["{"字 " * 400}"]
"""


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    return server_factory(CONFIG, served=["fake", "evil", "slow", "quick"])


def open_chat(page: Page, live: LiveServer, query: str = "") -> None:
    page.goto(f"{live.url}/chat{query}")
    expect(page.locator("body[data-ready=true]")).to_be_attached()


def ask(page: Page, text: str) -> None:
    page.fill("#input", text)
    page.press("#input", "Enter")


def test_answer_streams_as_markdown_with_tokens_and_cost(page: Page, live: LiveServer) -> None:
    open_chat(page, live)
    ask(page, "hi")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator("strong")).to_have_text("world")
    expect(answer.locator("code")).to_have_text("code")
    expect(answer.locator("li")).to_have_count(2)
    expect(answer.locator(".meta")).to_contain_text("tokens")
    expect(answer.locator(".meta")).to_contain_text("cost")
    expect(page.locator("#conversation-total")).to_contain_text("tokens")


def test_model_output_cannot_run_script(page: Page, live: LiveServer) -> None:
    open_chat(page, live)
    page.select_option("#model", "evil")
    ask(page, "be evil")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator("strong")).to_have_text("bold")
    expect(answer.locator("img")).to_have_count(1)
    assert answer.locator("img").get_attribute("onerror") is None
    assert answer.locator("script").count() == 0
    link = answer.locator("a", has_text="a link")
    assert not (link.get_attribute("href") or "").startswith("javascript:")
    link.click()
    page.wait_for_timeout(200)
    assert page.evaluate("window.__xss") is None


def test_enter_shift_enter_and_ime(page: Page, live: LiveServer) -> None:
    open_chat(page, live)
    page.fill("#input", "line one")
    page.press("#input", "Shift+Enter")
    page.keyboard.type("line two")
    assert page.input_value("#input") == "line one\nline two"
    assert page.locator(".msg.user").count() == 0
    # Enter while an IME composes confirms the candidate: nothing is sent.
    page.evaluate(
        """() => document.querySelector('#input').dispatchEvent(new KeyboardEvent('keydown',
        {key: 'Enter', code: 'Enter', isComposing: true, keyCode: 229, bubbles: true,
         cancelable: true}))"""
    )
    page.wait_for_timeout(200)
    assert page.locator(".msg.user").count() == 0
    page.press("#input", "Enter")
    expect(page.locator(".msg.user")).to_have_text("line one\nline two")


def test_stop_ends_the_generation_and_the_call_is_logged(page: Page, live: LiveServer) -> None:
    open_chat(page, live)
    page.select_option("#model", "slow")
    ask(page, "go on")
    expect(page.locator("#stop")).to_be_visible()
    expect(page.locator(".msg.assistant .body")).to_contain_text("word")
    page.click("#stop")
    expect(page.locator(".msg.assistant .meta")).to_contain_text("stopped")
    expect(page.locator("#stop")).to_be_hidden()
    text = page.locator(".msg.assistant .body").inner_text()
    assert 0 < text.count("word") < 200
    page.wait_for_timeout(500)
    rows = [r for r in live.services().calllog.recent(10) if r.model == "slow"]
    assert rows and rows[0].status == "cancelled"


def test_conversations_survive_reload_and_can_be_renamed_and_deleted(
    page: Page, live: LiveServer
) -> None:
    open_chat(page, live)
    ask(page, "第一个问题")
    expect(page.locator(".msg.assistant .meta")).to_be_visible()
    expect(page.locator("#conversations li")).to_have_count(1)
    page.reload()
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator(".msg.user")).to_have_text("第一个问题")  # reopened from the URL
    expect(page.locator(".msg.assistant")).to_contain_text("world")
    expect(page.locator("#conversations li .title")).to_have_text("第一个问题")
    page.once("dialog", lambda d: d.accept("改过的名字"))
    page.click("#conversations li .rename")
    expect(page.locator("#conversations li .title")).to_have_text("改过的名字")
    page.once("dialog", lambda d: d.accept())
    page.click("#conversations li .delete")
    expect(page.locator("#conversations li")).to_have_count(0)
    assert live.services().conversations.recent() == []


def test_a_message_sent_while_the_page_loads_waits_for_it(page: Page, live: LiveServer) -> None:
    # The model list and the addressed conversation arrive late (a slow server, a key
    # prompt): a message typed meanwhile goes out once they are in, to that conversation.
    open_chat(page, live)
    ask(page, "第一个问题")
    expect(page.locator(".msg.assistant .meta")).to_be_visible()
    held: list = []
    page.route("**/v1/models", lambda route: held.append(route))
    page.reload()
    page.wait_for_function("document.querySelector('#model').options.length === 0")
    ask(page, "第二个问题")
    page.wait_for_timeout(300)
    expect(page.locator(".msg.user")).to_have_count(0)  # waiting, not sent without a model
    assert held
    for route in held:
        route.continue_()
    expect(page.locator(".msg.user")).to_have_text(["第一个问题", "第二个问题"])
    expect(page.locator(".msg.assistant .body").last).to_contain_text("world")
    expect(page.locator("#conversations li")).to_have_count(1)
    [conversation] = live.services().conversations.recent()
    assert conversation.id in page.url


def test_language_follows_the_browser_and_the_switch(page: Page, live: LiveServer) -> None:
    open_chat(page, live)
    expect(page.locator("#send")).to_have_text("Send")
    page.click("#lang-switch")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#send")).to_have_text("发送")
    page.goto(f"{live.url}/chat")  # the choice is remembered
    expect(page.locator("#send")).to_have_text("发送")


KNOWING = """\
app: knowing
inputs: {shop: {type: string, default: 小面馆}}
variants:
  default:
    model: fake
    system: 你是{{ shop }}的客服。
    user: "{{ input }}"
knowledge: {kb: faq, k: 2, max_tokens: 300}
"""


def test_an_app_with_variables_answers_with_sources(page: Page, live: LiveServer) -> None:
    import httpx

    from tests.web.test_kb_browser import SHOP

    base = live.base_url + "/knowledge_bases"
    assert httpx.post(base, json={"name": "faq"}).status_code == 201
    files = [("files", (p.name, p.read_bytes())) for p in sorted(SHOP.iterdir())]
    assert httpx.post(f"{base}/faq/documents", files=files, timeout=300).status_code == 200
    (live.settings.home / "apps").mkdir(exist_ok=True)
    (live.settings.home / "apps" / "knowing.yaml").write_text(KNOWING, encoding="utf-8")
    open_chat(page, live)
    page.select_option("#model", "knowing")
    expect(page.locator("#variables input[name=shop]")).to_have_value("小面馆")
    page.fill("#variables input[name=shop]", "大面馆")
    ask(page, "周一营业吗？")
    answer = page.locator(".msg.assistant").last
    sources = answer.locator(".sources li a")
    expect(sources.first).to_contain_text("营业与预约.md")
    sources.first.click()
    expect(page.locator("#chunk-dialog")).to_be_visible()
    assert page.locator("#chunk-text").inner_text().strip()
    rows = [r for r in live.services().calllog.recent(5) if r.app == "knowing"]
    assert rows and rows[0].tokens_knowledge


def test_a_chat_of_200_messages_opens_whole_and_streams_one_render_per_frame(
    page: Page, live: LiveServer
) -> None:
    items = []
    for n in range(100):
        items.append({"role": "user", "content": f"问题 {n}"})
        items.append({"role": "assistant", "content": f"**回答** {n}\n\n```\ncode {n}\n```"})
    conv = httpx.post(
        live.base_url + "/conversations", json={"metadata": {"model": "quick", "title": "long"}}
    ).json()
    for start in range(0, len(items), 20):
        r = httpx.post(
            f"{live.base_url}/conversations/{conv['id']}/items",
            json={"items": items[start : start + 20]},
        )
        assert r.status_code == 200, r.text
    open_chat(page, live, f"?c={conv['id']}")
    messages = page.locator("#messages .msg")
    expect(messages).to_have_count(200)  # every page of items, not the first hundred
    expect(messages.last).to_contain_text("回答 99")
    ask(page, "再来一个")
    answer = page.locator(".msg.assistant").last
    expect(answer.locator(".meta")).to_contain_text("tokens", timeout=20_000)
    assert answer.locator(".body").inner_text().count("字") == 400
    expect(messages).to_have_count(202)
    stats = page.evaluate("window.hearthStats")
    # the answer arrived in hundreds of deltas but was rendered at most once per frame
    assert stats["deltas"] >= 100, stats
    assert stats["paints"] < stats["deltas"], stats
