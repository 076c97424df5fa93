"""The example apps on the real bundled models: each passes ``hearth apps test`` on both of
its variants' models, and an installed app works through the ``openai`` SDK, streamed and
not, with its knowledge base's sources."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import jsonschema
import openai
import pytest
from typer.testing import CliRunner

from hearth.apps.spec import parse_app
from hearth.cli.main import _register
from hearth.cli.main import app as cli
from hearth.hub import bundled
from tests.conftest import LiveServer, make_settings, serve

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
# chains (steps:) and agents (tools:) have their own tests;
# the rest carry tests for `hearth apps test`
EXAMPLES = [
    p
    for p in sorted((ROOT / "examples" / "apps").glob("*.yaml"))
    if not parse_app(p.read_text(encoding="utf-8"), base=p.parent).steps
    and not parse_app(p.read_text(encoding="utf-8"), base=p.parent).tools  # agents: below
]
SHOP_FAQ = ROOT / "examples" / "kb" / "shop-faq"
QWEN, SMOL, E5 = "qwen2.5-0.5b-instruct", "smollm2-135m-instruct", "multilingual-e5-small"


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveServer]:
    home = tmp_path_factory.mktemp("apps-home")
    bundled.ensure(SMOL, home / "models")
    settings = make_settings(home, "").with_served([QWEN, SMOL, E5])
    with serve(settings, preload=[QWEN]) as server:
        base = server.base_url + "/knowledge_bases"
        assert httpx.post(base, json={"name": "shop-faq"}).status_code == 201
        files = [("files", (p.name, p.read_bytes())) for p in sorted(SHOP_FAQ.iterdir())]
        up = httpx.post(f"{base}/shop-faq/documents", files=files, timeout=600)
        assert up.status_code == 200, up.text
        yield server


def _cli(live: LiveServer, *args: str) -> tuple[int, str]:
    _register()
    result = CliRunner().invoke(cli, list(args), env={"HEARTH_HOME": str(live.settings.home)})
    return result.exit_code, result.output


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_each_example_passes_its_tests_on_every_variant(live: LiveServer, path: Path) -> None:
    code, out = _cli(live, "apps", "add", str(path), "--force")
    assert code == 0, out
    name = parse_app(path.read_text(encoding="utf-8")).name
    code, out = _cli(live, "apps", "test", name, "--json")
    results = json.loads(out[out.index("[") :])
    failed = [r for r in results if not r["passed"]]
    assert code == 0 and not failed, json.dumps(failed, ensure_ascii=False, indent=1)
    assert {r["model"] for r in results} == {QWEN, SMOL}  # the business × model matrix


def test_an_installed_app_through_the_openai_sdk(live: LiveServer) -> None:
    code, out = _cli(live, "apps", "add", str(ROOT / "examples/apps/review-reply.yaml"), "--force")
    assert code == 0, out
    schema = parse_app((ROOT / "examples/apps/review-reply.yaml").read_text()).output
    assert schema is not None
    client = openai.OpenAI(base_url=live.base_url, api_key="unused", max_retries=0)
    variables = {"extra_body": {"variables": {"shop": "小面馆"}}}
    r = client.chat.completions.create(
        model="review-reply",
        messages=[{"role": "user", "content": "你们周一开门吗？"}],
        **variables,
    )
    jsonschema.validate(json.loads(r.choices[0].message.content or ""), schema.schema)
    sources = (r.model_extra or {})["sources"]
    assert sources and sources[0]["document"] == "营业与预约.md"
    row = live.services().calllog.get(r.id)
    assert row.app == "review-reply" and row.tokens_knowledge and row.tokens_knowledge > 50
    stream = client.chat.completions.create(
        model="review-reply@smollm2-135m-instruct",
        messages=[{"role": "user", "content": "Do you deliver? The noodles were great."}],
        stream=True,
        **variables,
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    jsonschema.validate(json.loads(text), schema.schema)
    last = [c for c in chunks if c.choices][-1]
    assert (last.model_extra or {})["sources"], "the final chunk carries the sources"
    assert (last.model_extra or {})["app"]["variant"] == SMOL
