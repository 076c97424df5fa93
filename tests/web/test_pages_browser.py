"""The apps and usage pages in Chromium against a real server (fake engine)."""

from __future__ import annotations

from collections.abc import Callable

import openai
import pytest
from playwright.sync_api import Page, expect

from tests.conftest import LiveServer

pytestmark = pytest.mark.browser

CONFIG = """
[models.fake]
engine = "fake"
script = ["你好！"]
price = { input = 1.0, output = 2.0 }

[models.echo]
engine = "fake"
"""
APP = """app: greeter
description: Says hello
variants:
  default:
    model: fake
    system: Greet the user.
"""


@pytest.fixture
def live(server_factory: Callable[..., LiveServer]) -> LiveServer:
    server = server_factory(CONFIG, served=["fake", "echo"])
    (server.settings.home / "apps").mkdir(exist_ok=True)
    (server.settings.home / "apps" / "greeter.yaml").write_text(APP)
    return server


def test_apps_page_edits_with_errors_at_their_line(page: Page, live: LiveServer) -> None:
    page.goto(f"{live.url}/apps")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    expect(page.locator("#apps tbody tr")).to_have_count(1)
    expect(page.locator("#apps tbody")).to_contain_text("greeter")
    page.click("#apps .edit")
    expect(page.locator("#editor")).to_have_value(APP)
    broken = APP.replace(
        "    system: Greet the user.", "    system: Hi {{ nobody }}\n    colour: red"
    )
    page.fill("#editor", broken)
    page.click("#check")
    problems = page.locator("#problems li")
    expect(problems.first).to_be_visible()
    lines = {problems.nth(i).get_attribute("data-line") for i in range(problems.count())}
    assert lines & {"5", "6"}, lines  # where the mistakes are
    page.fill("#editor", APP.replace("Says hello", "Says hello warmly"))
    page.click("#save")
    expect(page.locator("#status")).to_have_text("Saved")
    text = (live.settings.home / "apps" / "greeter.yaml").read_text()
    assert "Says hello warmly" in text


MATRIX = """app: shop
description: 店铺客服
inputs:
  shop: {type: string, required: true}
variants:
  default:
    model: fake
    system: 你是{{ shop }}的客服。
    user: "顾客说：{{ input }}"
  echo:
    system: You answer for {{ shop }}.
tests:
  - name: greets
    vars: {shop: 面馆}
    input: 在吗
    assert: [{type: contains, value: "你好"}]
"""


def test_apps_page_tries_each_variant_side_by_side_and_runs_the_tests(
    page: Page, live: LiveServer
) -> None:
    (live.settings.home / "apps" / "shop.yaml").write_text(MATRIX, encoding="utf-8")
    page.goto(f"{live.url}/apps")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    page.locator("#apps tbody tr", has_text="shop").locator(".edit").click()
    expect(page.locator("#try-section")).to_be_visible()
    page.fill("#try-vars input[name=shop]", "Noodle Bar")
    page.fill("#try-input", "有辣的吗")
    page.click("#try")
    cards = page.locator("#matrix .card")
    expect(cards).to_have_count(2)
    fake, echo = cards.nth(0), cards.nth(1)
    expect(fake.locator("h3")).to_have_text("fake")
    expect(fake.locator(".output")).to_have_text("你好！")
    expect(fake.locator(".meta")).to_contain_text("variant: default")
    expect(fake.locator(".meta")).to_contain_text("cost")
    # the echo model repeats the user's message as the app's template filled it
    expect(echo.locator(".output")).to_have_text("You said: 顾客说：有辣的吗")
    expect(echo.locator(".meta")).to_contain_text("variant: echo")
    expect(page.locator("#tests-status")).to_have_text("1 test cases")
    page.click("#run-tests")
    expect(page.locator("#tests-status")).to_have_text("1/2 passed")
    rows = page.locator("#tests tbody tr")
    expect(rows).to_have_count(2)
    expect(page.locator("#tests tbody tr.pass")).to_contain_text("fake")
    expect(page.locator("#tests tbody tr.fail")).to_contain_text("echo")
    expect(page.locator("#tests tbody tr.fail")).to_contain_text('contains "你好"')


def test_usage_page_shows_calls_by_model_and_app(page: Page, live: LiveServer) -> None:
    client = openai.OpenAI(base_url=live.base_url, api_key="none")
    for model in ("fake", "fake", "greeter"):
        client.chat.completions.create(model=model, messages=[{"role": "user", "content": "hi"}])
    page.goto(f"{live.url}/usage")
    expect(page.locator("body[data-ready=true]")).to_be_attached()
    by_model = page.locator("#by-model tbody tr")
    expect(by_model).to_have_count(1)
    expect(by_model.first).to_contain_text("fake")
    assert by_model.first.locator("td").nth(1).inner_text() == "3"  # calls
    expect(page.locator("#by-app tbody")).to_contain_text("greeter")
    expect(page.locator("#recent tbody tr")).to_have_count(3)
    expect(page.locator("#chart canvas")).to_have_count(1)
    # A range with no calls in it.
    page.fill("#since", "2001-01-01")
    page.fill("#until", "2001-01-02")
    page.click("#range button")
    expect(page.locator("#by-model tbody")).to_contain_text("Nothing in this range")
