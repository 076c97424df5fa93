"""Apps benchmark: standard JSON output, warm prompt prefixes, and what the app layer costs.

    .venv/bin/python bench/apps.py            # all three parts: ~15 min on 2 cores
    .venv/bin/python bench/apps.py --quick    # fewer inputs and rounds
    .venv/bin/python bench/apps.py --parts overhead,ttft

Prints tables and writes bench/results/apps.json.

1. schemas: three output schemas of our own (nested objects, enums, arrays) over varied,
   distinct inputs (Chinese and English) on the bundled Qwen2.5 0.5B, through the same
   ``apps.prepare``/``apps.run`` the server uses: the share of answers valid against the
   schema, the re-asks it took, and time per call against the same app without a schema
   (the cost of constraining).
2. ttft: ``hearth serve`` with 8 apps whose system prompts are ~1,000 tokens each, called in
   rotation with a different short input every time; TTFT of each app's first call (cold:
   its prefix is new to every slot) against its later calls (warm: llama.cpp routes the
   request to the slot holding the longest matching prefix, which reuses its KV cache).
3. overhead: the app layer's own cost — templating, moderation, output validation, the
   token split and logging — measured on the scripted engine (no model time) as the
   difference between an app call and the same plain call, over HTTP, p50 and p95.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import sys
import threading
import time
from pathlib import Path
from typing import Any

import httpx
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, ServerProcess, free_port, percentile, rounded

from hearth.apps.guard import Guard
from hearth.apps.run import prepare, run
from hearth.apps.spec import App, parse_app
from hearth.config import load_settings
from hearth.engines.registry import ModelRegistry
from hearth.types import GenerationParams, Message

console = Console()
ROOT = Path(__file__).resolve().parent.parent
MODEL = "qwen2.5-0.5b-instruct"

SCHEMAS: dict[str, str] = {
    "nested": """
app: bench-nested
inputs: {city: {type: string}}
variants:
  default:
    system: 你是{{ city }}本地生活号的小编，为用户的话题写一条短微博，并写明省份和城市。
    sampling: {temperature: 0.8, max_tokens: 200}
output:
  schema:
    type: object
    properties:
      post: {type: string, minLength: 5, maxLength: 80}
      region:
        type: object
        properties:
          province: {type: string, minLength: 1, maxLength: 10}
          city: {type: string, minLength: 1, maxLength: 10}
        required: [province, city]
    required: [post, region]
""",
    "enums": """
app: bench-enums
variants:
  default:
    system: 判断这条商户点评的情绪和主题，并用一句话回复顾客。
    sampling: {temperature: 0.8, max_tokens: 160}
output:
  schema:
    type: object
    properties:
      sentiment: {enum: [正面, 中性, 负面]}
      topic: {enum: [口味, 服务, 价格, 环境, 其他]}
      reply: {type: string, minLength: 2, maxLength: 60}
    required: [sentiment, topic, reply]
""",
    "arrays": """
app: bench-arrays
variants:
  default:
    system: Extract the products and their prices from the user's text.
    sampling: {temperature: 0.8, max_tokens: 200}
output:
  schema:
    type: object
    properties:
      items:
        type: array
        minItems: 1
        maxItems: 4
        items:
          type: object
          properties:
            name: {type: string, minLength: 1, maxLength: 30}
            price: {type: number}
          required: [name, price]
      currency: {enum: [CNY, USD, EUR]}
    required: [items, currency]
""",
}

CITIES = ["成都", "杭州", "西安", "广州", "哈尔滨", "大理", "青岛", "重庆", "苏州", "长沙"]
TOPICS = ["火锅", "早茶", "夜市", "樱花", "冰雪节", "咖啡馆", "骑行", "博物馆", "雨季", "小吃"]
DISHES = ["牛肉面", "烤鸭", "小笼包", "麻辣烫", "酸菜鱼", "披萨", "寿司", "奶茶", "拉面", "汉堡"]
VERDICTS = [
    "太咸了，等了半小时",
    "服务员很热情，下次还来",
    "价格有点贵但味道不错",
    "环境吵，桌子脏",
    "The staff were friendly and fast",
    "Way too expensive for the portion",
    "一般般吧",
    "Loved the broth, will be back",
    "上菜慢，态度差",
    "性价比很高",
]
PRODUCTS = [
    "coffee beans",
    "a desk lamp",
    "running shoes",
    "green tea",
    "a phone case",
    "wireless earbuds",
    "a notebook",
    "olive oil",
    "a yoga mat",
    "dumplings",
]


def inputs_for(kind: str, n: int, rng: random.Random) -> list[tuple[dict[str, Any], str]]:
    """``n`` distinct (variables, input) pairs for a schema."""
    out: list[tuple[dict[str, Any], str]] = []
    seen: set[str] = set()
    while len(out) < n:
        if kind == "nested":
            city = rng.choice(CITIES)
            pair: tuple[dict[str, Any], str] = ({"city": city}, f"写写{city}的{rng.choice(TOPICS)}")
        elif kind == "enums":
            pair = ({}, f"{rng.choice(DISHES)}：{rng.choice(VERDICTS)}")
        else:
            a, b = rng.sample(PRODUCTS, 2)
            cur = rng.choice(["¥", "$", "€"])
            pair = (
                {},
                f"I bought {a} for {cur}{rng.randint(3, 300)} and {b} for "
                f"{cur}{rng.randint(3, 300)}.",
            )
        if pair[1] not in seen:
            seen.add(pair[1])
            out.append(pair)
    return out


async def schemas_part(home: Path, per_schema: int, seed: int) -> dict[str, Any]:
    settings = load_settings(home=home, env={})
    registry = ModelRegistry(settings)
    guard = Guard(home / "moderation")
    rng = random.Random(seed)
    out: dict[str, Any] = {}
    try:
        runner = await registry.get(MODEL)

        async def once(app: App, variables: dict[str, Any], text: str) -> tuple[float, Any]:
            call = await prepare(
                app,
                model=MODEL,
                messages=[Message("user", text)],
                variables=variables,
                params=GenerationParams(),
                engine=runner.engine,
                guard=guard,
                kb=None,
            )
            start = time.perf_counter()
            answer = ""
            async for d in runner.stream(lambda: run(call, runner.engine)):
                answer += d.text
            return time.perf_counter() - start, call

        for kind, text in SCHEMAS.items():
            app = parse_app(text)
            plain = parse_app(text.split("output:")[0])
            valid = retries = 0
            with_s, without_s, failures = [], [], []
            for variables, user in inputs_for(kind, per_schema, rng):
                try:
                    seconds, call = await once(app, variables, user)
                except Exception as e:  # noqa: BLE001 - a failure is a figure here
                    failures.append(f"{user}: {e}")
                    continue
                valid += call.value is not None
                retries += call.retries
                with_s.append(seconds)
                without_s.append((await once(plain, variables, user))[0])
            console.print(f"  {kind}: {valid}/{per_schema} valid, {retries} re-asks")
            out[kind] = {
                "inputs": per_schema,
                "valid": valid,
                "valid_share": rounded(valid / per_schema, 3),
                "reasks": retries,
                "failures": failures,
                "s_per_call_schema_p50": rounded(percentile(with_s, 50)),
                "s_per_call_plain_p50": rounded(percentile(without_s, 50)),
                "schema_cost_ratio": rounded(
                    (percentile(with_s, 50) or 0) / (percentile(without_s, 50) or 1)
                ),
            }
    finally:
        await registry.close()
    return out


def _long_system(i: int, rng: random.Random) -> str:
    """A distinct ~1,000-token system prompt: the app's own rules first, then reference
    text in an order of its own."""
    paragraphs = []
    for name in ("zh.txt", "en.txt"):
        text = (ROOT / "src/hearth/data/corpus" / name).read_text(encoding="utf-8")
        paragraphs += [p.strip() for p in text.split("\n") if len(p.strip()) > 40]
    rng.shuffle(paragraphs)
    head = (
        f"你是第 {i} 号业务线的助手（业务编号 B{i:03d}）。严格遵守以下规范和资料回答，回答简短。\n"
    )
    body, size = [], 0
    for p in paragraphs:
        body.append(p)
        size += len(p)
        if size > 2200:
            break
    return head + "\n".join(body)


def ttft_part(home: Path, rounds: int, seed: int, timeout: float) -> dict[str, Any]:
    rng = random.Random(seed)
    apps_dir = home / "apps"
    apps_dir.mkdir(parents=True, exist_ok=True)
    for f in apps_dir.glob("bench-ttft-*.yaml"):
        f.unlink()
    for i in range(8):
        spec = {
            "app": f"bench-ttft-{i}",
            "variants": {
                "default": {
                    "model": MODEL,
                    "system": _long_system(i, rng),
                    "sampling": {"max_tokens": 4},
                }
            },
        }
        (apps_dir / f"bench-ttft-{i}.yaml").write_text(json.dumps(spec, ensure_ascii=False))
    port = free_port()
    cmd = [str(Path(sys.executable).with_name("hearth")), "serve", "--model", MODEL]
    cmd += ["--port", str(port), "--log-level", "warning"]
    env = {k: v for k, v in os.environ.items() if not k.startswith("HEARTH_")}
    env["HEARTH_HOME"] = str(home)
    base = f"http://127.0.0.1:{port}"
    cold: list[float] = []
    warm: list[float] = []
    prompt_tokens: list[int] = []
    with ServerProcess("hearth", cmd, env) as server:
        server.wait_ready(base + "/v1/models", lambda r: True, timeout)
        httpx.post(
            base + "/v1/chat/completions",
            json={"model": MODEL, "max_tokens": 1, "messages": [{"role": "user", "content": "hi"}]},
            timeout=timeout,
        )
        for r in range(rounds + 1):
            for i in range(8):
                user = f"第{r}轮，问题{i}：{rng.choice(TOPICS)}怎么样？"
                seconds, usage = _stream_ttft(base, f"bench-ttft-{i}", user, timeout)
                (cold if r == 0 else warm).append(seconds)
                prompt_tokens.append(usage)
            console.print(
                f"  round {r}: TTFT p50 {1000 * (percentile(warm or cold, 50) or 0):.0f} ms"
            )
    for f in apps_dir.glob("bench-ttft-*.yaml"):
        f.unlink()
    cold_p50, warm_p50 = percentile(cold, 50), percentile(warm, 50)
    return {
        "apps": 8,
        "rounds_warm": rounds,
        "prompt_tokens_p50": percentile([float(t) for t in prompt_tokens], 50),
        "cold_ttft_ms_p50": rounded(1000 * (cold_p50 or 0)),
        "cold_ttft_ms_p95": rounded(1000 * (percentile(cold, 95) or 0)),
        "warm_ttft_ms_p50": rounded(1000 * (warm_p50 or 0)),
        "warm_ttft_ms_p95": rounded(1000 * (percentile(warm, 95) or 0)),
        "warm_over_cold": rounded((warm_p50 or 0) / (cold_p50 or 1), 3),
    }


def _stream_ttft(base: str, model: str, user: str, timeout: float) -> tuple[float, int]:
    body = {
        "model": model,
        "stream": True,
        "messages": [{"role": "user", "content": user}],
        "stream_options": {"include_usage": True},
    }
    start = time.perf_counter()
    first, prompt = None, 0
    with httpx.stream("POST", base + "/v1/chat/completions", json=body, timeout=timeout) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            if first is None and any(c["delta"].get("content") for c in data["choices"]):
                first = time.perf_counter() - start
            if data.get("usage"):
                prompt = data["usage"]["prompt_tokens"]
    return (first if first is not None else time.perf_counter() - start), prompt


OVERHEAD_CONFIG = """
[models.scripted]
engine = "fake"
script = ["已收到您的反馈，我们会尽快改进。"]
parallel = 4
"""
OVERHEAD_APP = """
app: overhead
inputs: {shop: {type: string, required: true}, tone: {type: string, default: 礼貌}}
variants:
  default:
    model: scripted
    system: |
      你是{{ shop }}的客服，用{{ tone }}的语气回复点评。
      {% for i in range(3) %}规则{{ i }}。{% endfor %}
    user: "顾客点评：{{ input }}"
moderation: {lists: [ads, abuse], input: mask, output: mask}
output:
  schema: {type: object, properties: {reply: {type: string}}, required: [reply]}
"""


def overhead_part(calls: int) -> dict[str, Any]:
    import tempfile

    import uvicorn

    from hearth.server import create_app

    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        (home / "config.toml").write_text(OVERHEAD_CONFIG, encoding="utf-8")
        (home / "apps").mkdir()
        (home / "apps" / "overhead.yaml").write_text(OVERHEAD_APP, encoding="utf-8")
        settings = load_settings(home=home, env={}).with_served(["scripted"])
        server = uvicorn.Server(uvicorn.Config(create_app(settings), port=0, log_level="warning"))
        port = free_port()
        server.config.port = port
        thread = threading.Thread(target=server.run, daemon=True)
        thread.start()
        while not server.started:
            time.sleep(0.02)
        url = f"http://127.0.0.1:{port}/v1/chat/completions"
        fmt = {
            "type": "json_schema",
            "json_schema": {
                "name": "r",
                "schema": {
                    "type": "object",
                    "properties": {"reply": {"type": "string"}},
                    "required": ["reply"],
                },
            },
        }
        plain: list[float] = []
        app: list[float] = []
        with httpx.Client(timeout=30) as client:
            for i in range(calls + 20):
                text = f"第{i}次：面太咸了，服务员态度还行，加微信领券吗"
                msgs = [{"role": "user", "content": text}]
                t0 = time.perf_counter()
                client.post(
                    url, json={"model": "scripted", "messages": msgs, "response_format": fmt}
                ).raise_for_status()
                t1 = time.perf_counter()
                client.post(
                    url,
                    json={"model": "overhead", "messages": msgs, "variables": {"shop": "小面馆"}},
                ).raise_for_status()
                t2 = time.perf_counter()
                if i >= 20:  # warm-up excluded
                    plain.append(t1 - t0)
                    app.append(t2 - t1)
        server.should_exit = True
        thread.join(10)
    diffs = sorted(a - p for a, p in zip(app, plain, strict=True))
    return {
        "calls": calls,
        "plain_ms_p50": rounded(1000 * (percentile(plain, 50) or 0)),
        "app_ms_p50": rounded(1000 * (percentile(app, 50) or 0)),
        "overhead_ms_p50": rounded(1000 * (percentile(diffs, 50) or 0)),
        "overhead_ms_p95": rounded(1000 * (percentile(diffs, 95) or 0)),
    }


def render(result: dict[str, Any]) -> None:
    if "schemas" in result:
        t = Table(title="Standard JSON output on qwen2.5-0.5b-instruct (distinct inputs)")
        for col in (
            "schema",
            "inputs",
            "valid",
            "re-asks",
            "s/call schema",
            "s/call plain",
            "ratio",
        ):
            t.add_column(col, justify="right")
        for kind, r in result["schemas"].items():
            t.add_row(
                kind,
                str(r["inputs"]),
                f"{100 * r['valid_share']:.0f}%",
                str(r["reasks"]),
                str(r["s_per_call_schema_p50"]),
                str(r["s_per_call_plain_p50"]),
                f"{r['schema_cost_ratio']}x",
            )
        console.print(t)
    if "ttft" in result:
        r = result["ttft"]
        t = Table(title="App TTFT, 8 apps with ~1,000-token system prompts in rotation")
        for col in (
            "prompt tokens",
            "cold p50 ms",
            "cold p95",
            "warm p50 ms",
            "warm p95",
            "warm/cold",
        ):
            t.add_column(col, justify="right")
        t.add_row(
            str(r["prompt_tokens_p50"]),
            str(r["cold_ttft_ms_p50"]),
            str(r["cold_ttft_ms_p95"]),
            str(r["warm_ttft_ms_p50"]),
            str(r["warm_ttft_ms_p95"]),
            str(r["warm_over_cold"]),
        )
        console.print(t)
    if "overhead" in result:
        r = result["overhead"]
        t = Table(title="App layer overhead (scripted engine, HTTP, sequential)")
        for col in ("calls", "plain p50 ms", "app p50 ms", "overhead p50 ms", "overhead p95"):
            t.add_column(col, justify="right")
        t.add_row(
            str(r["calls"]),
            str(r["plain_ms_p50"]),
            str(r["app_ms_p50"]),
            str(r["overhead_ms_p50"]),
            str(r["overhead_ms_p95"]),
        )
        console.print(t)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true")
    p.add_argument("--parts", default="schemas,ttft,overhead")
    p.add_argument("--per-schema", type=int, default=18, help="inputs per schema (3 schemas)")
    p.add_argument("--rounds", type=int, default=3, help="warm rounds after the cold one")
    p.add_argument("--seed", type=int, default=7)
    p.add_argument("--timeout", type=float, default=600)
    p.add_argument("--home", type=Path, default=Path.home() / ".hearth-bench")
    args = p.parse_args(argv)
    if args.quick:
        args.per_schema, args.rounds = 4, 1
    home = args.home.expanduser().resolve()
    parts = [x.strip() for x in args.parts.split(",")]
    result: dict[str, Any] = {"model": MODEL, "cpus": os.cpu_count()}
    if "overhead" in parts:
        console.print("[bold]overhead[/]")
        result["overhead"] = overhead_part(40 if args.quick else 300)
    if "schemas" in parts:
        console.print("[bold]schemas[/]")
        result["schemas"] = asyncio.run(schemas_part(home, args.per_schema, args.seed))
    if "ttft" in parts:
        console.print("[bold]ttft[/]")
        result["ttft"] = ttft_part(home, args.rounds, args.seed, args.timeout)
    render(result)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "apps.json"
    previous = json.loads(out.read_text()) if out.exists() else {}
    out.write_text(json.dumps(previous | result, ensure_ascii=False, indent=2) + "\n")
    console.print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
