"""Tool choice on the bundled Qwen model: how often it calls the right function with
sensible arguments, over 40 prompts of our own (20 English, 20 Chinese) and 8 tools, with
``tool_choice`` ``auto`` and ``required``; plus, for ``auto``, how often it calls a tool
when a prompt needs none (8 more prompts).

"Sensible arguments" means each expected argument is present and holds the expected value
(a substring, case-insensitive, of any accepted spelling; numbers compared as numbers). One
request per prompt and mode, temperature 0, through a real ``hearth`` server and the
``openai`` SDK. Prints a table and writes bench/results/tools.json.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from _common import free_port, machine_info, write_json

QWEN = "qwen2.5-0.5b-instruct"


def fn(name: str, description: str, props: dict[str, Any], required: list[str]) -> dict[str, Any]:
    return {
        "type": "function",
        "function": {
            "name": name,
            "description": description,
            "parameters": {"type": "object", "properties": props, "required": required},
        },
    }


S = {"type": "string"}
N = {"type": "number"}
TOOLS = [
    fn(
        "get_weather",
        "Current weather in a city",
        {"city": S, "unit": {"enum": ["c", "f"]}},
        ["city"],
    ),
    fn("get_time", "Current local time in a city or time zone", {"location": S}, ["location"]),
    fn(
        "convert_currency",
        "Convert an amount of money between currencies (ISO codes like USD, CNY)",
        {"amount": N, "from_currency": S, "to_currency": S},
        ["amount", "from_currency", "to_currency"],
    ),
    fn("search_web", "Search the web for recent information", {"query": S}, ["query"]),
    fn("send_email", "Send an email", {"to": S, "subject": S, "body": S}, ["to", "subject"]),
    fn("calculator", "Evaluate an arithmetic expression", {"expression": S}, ["expression"]),
    fn(
        "translate",
        "Translate text into another language",
        {"text": S, "target_language": S},
        ["text", "target_language"],
    ),
    fn(
        "set_reminder",
        "Set a reminder at a time with a message",
        {"time": S, "message": S},
        ["time", "message"],
    ),
]

# (prompt, tool, {argument: accepted values}); a number is compared as a number.
CASES: list[tuple[str, str, dict[str, list[Any]]]] = [
    ("What's the weather in Paris right now?", "get_weather", {"city": ["paris"]}),
    ("Is it raining in London?", "get_weather", {"city": ["london"]}),
    ("How hot is it in Dubai today, in Fahrenheit?", "get_weather", {"city": ["dubai"]}),
    ("Weather forecast for Tokyo please", "get_weather", {"city": ["tokyo"]}),
    ("What time is it in New York?", "get_time", {"location": ["new york", "new_york"]}),
    ("Tell me the current time in Berlin.", "get_time", {"location": ["berlin"]}),
    (
        "Convert 100 US dollars to euros.",
        "convert_currency",
        {"amount": [100], "from_currency": ["usd", "dollar"], "to_currency": ["eur"]},
    ),
    (
        "How many yen is 50 pounds?",
        "convert_currency",
        {"amount": [50], "from_currency": ["gbp", "pound"], "to_currency": ["jpy", "yen"]},
    ),
    ("Search the web for the latest Python release.", "search_web", {"query": ["python"]}),
    ("Find news about the Mars rover.", "search_web", {"query": ["mars"]}),
    ("Look up who won the 2022 World Cup.", "search_web", {"query": ["world cup"]}),
    (
        "Email bob@example.com with the subject 'Lunch' saying see you at noon.",
        "send_email",
        {"to": ["bob@example.com"], "subject": ["lunch"]},
    ),
    (
        "Send an email to alice@corp.com titled 'Report' telling her the report is done.",
        "send_email",
        {"to": ["alice@corp.com"], "subject": ["report"]},
    ),
    ("What is 1234 times 5678?", "calculator", {"expression": ["1234"]}),
    ("Calculate (17 + 25) * 3", "calculator", {"expression": ["17"]}),
    ("What's the square root of 144 plus 10?", "calculator", {"expression": ["144"]}),
    (
        "Translate 'good morning' into French.",
        "translate",
        {"text": ["good morning"], "target_language": ["fr"]},
    ),
    (
        "How do you say 'thank you' in Japanese?",
        "translate",
        {"text": ["thank you"], "target_language": ["ja"]},
    ),
    ("Remind me at 7am to call mom.", "set_reminder", {"time": ["7"], "message": ["mom"]}),
    (
        "Set a reminder for 3 pm: team meeting.",
        "set_reminder",
        {"time": ["3"], "message": ["meeting"]},
    ),
    ("北京今天天气怎么样？", "get_weather", {"city": ["北京", "beijing"]}),
    ("上海现在下雨吗？", "get_weather", {"city": ["上海", "shanghai"]}),
    ("帮我查一下广州的气温", "get_weather", {"city": ["广州", "guangzhou"]}),
    ("成都明天冷不冷？", "get_weather", {"city": ["成都", "chengdu"]}),
    ("现在伦敦几点了？", "get_time", {"location": ["伦敦", "london"]}),
    ("东京现在是什么时间？", "get_time", {"location": ["东京", "tokyo"]}),
    (
        "把 200 美元换算成人民币",
        "convert_currency",
        {
            "amount": [200],
            "from_currency": ["usd", "美元"],
            "to_currency": ["cny", "rmb", "人民币"],
        },
    ),
    (
        "1000 日元是多少人民币？",
        "convert_currency",
        {
            "amount": [1000],
            "from_currency": ["jpy", "日元"],
            "to_currency": ["cny", "rmb", "人民币"],
        },
    ),
    ("搜索一下最新的新能源汽车政策", "search_web", {"query": ["新能源"]}),
    ("帮我在网上查查杭州亚运会的新闻", "search_web", {"query": ["亚运"]}),
    ("网上搜一下 ChatGLM 是什么", "search_web", {"query": ["chatglm"]}),
    (
        "给 wang@example.com 发邮件，主题是“周报”，内容是本周工作已完成",
        "send_email",
        {"to": ["wang@example.com"], "subject": ["周报"]},
    ),
    (
        "发一封邮件给 li@corp.cn，标题“会议”，说明天上午开会",
        "send_email",
        {"to": ["li@corp.cn"], "subject": ["会议"]},
    ),
    ("计算 365 乘以 24", "calculator", {"expression": ["365"]}),
    ("(88 + 12) / 4 等于多少？", "calculator", {"expression": ["88"]}),
    ("帮我算一下 2 的 10 次方", "calculator", {"expression": ["2"]}),
    ("把“你好，世界”翻译成英文", "translate", {"text": ["你好"], "target_language": ["en", "英"]}),
    ("“谢谢”用日语怎么说？", "translate", {"text": ["谢谢"], "target_language": ["ja", "日"]}),
    ("明天早上 8 点提醒我去开会", "set_reminder", {"time": ["8"], "message": ["会"]}),
    ("下午三点提醒我取快递", "set_reminder", {"time": ["3", "三", "15"], "message": ["快递"]}),
]
NO_TOOL = [
    "Tell me a joke about cats.",
    "What is the capital of France?",
    "Write a haiku about autumn.",
    "Hello! How are you?",
    "给我讲个笑话",
    "你好，你是谁？",
    "用一句话介绍长城",
    "写一句关于春天的诗",
]


def sensible(args: dict[str, Any], want: dict[str, list[Any]]) -> bool:
    for key, accepted in want.items():
        if key not in args:
            return False
        value = args[key]
        ok = False
        for a in accepted:
            if isinstance(a, int | float):
                with contextlib.suppress(TypeError, ValueError):
                    ok = ok or abs(float(value) - a) < 1e-6
            else:
                ok = ok or str(a).lower() in str(value).lower()
        if not ok:
            return False
    return True


def one(client: Any, prompt: str, choice: str) -> dict[str, Any]:
    start = time.perf_counter()
    r = client.chat.completions.create(
        model=QWEN,
        messages=[{"role": "user", "content": prompt}],
        tools=TOOLS,
        tool_choice=choice,
        temperature=0,
        max_tokens=120,
    )
    seconds = time.perf_counter() - start
    calls = r.choices[0].message.tool_calls or []
    first = calls[0].function if calls else None
    args: Any = None
    if first is not None:
        try:
            args = json.loads(first.arguments)
        except ValueError:
            args = None
    return {
        "prompt": prompt,
        "choice": choice,
        "tool": first.name if first else None,
        "arguments": args,
        "valid_json": first is None or isinstance(args, dict),
        "content": (r.choices[0].message.content or "")[:200],
        "seconds": round(seconds, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--limit", type=int, default=len(CASES), help="Only the first N prompts")
    opts = ap.parse_args()

    import openai
    import uvicorn

    from hearth.config import load_settings
    from hearth.server import create_app

    cases = CASES[: opts.limit]
    with tempfile.TemporaryDirectory() as tmp:
        settings = load_settings(home=Path(tmp), env={}).with_served([QWEN])
        server = uvicorn.Server(
            uvicorn.Config(create_app(settings, preload=[QWEN]), port=0, log_level="warning")
        )
        server.config.port = port = free_port()
        threading.Thread(target=server.run, daemon=True).start()
        while not server.started:
            time.sleep(0.05)
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", timeout=120)
        rows: list[dict[str, Any]] = []
        for prompt, tool, want in cases:
            for choice in ("auto", "required"):
                row = one(client, prompt, choice)
                row["expected"] = tool
                row["right_tool"] = row["tool"] == tool
                row["sensible"] = row["right_tool"] and sensible(row["arguments"] or {}, want)
                rows.append(row)
        none_rows = [one(client, p, "auto") for p in NO_TOOL]
        server.should_exit = True

    summary: dict[str, Any] = {}
    for choice in ("auto", "required"):
        mine = [r for r in rows if r["choice"] == choice]
        summary[choice] = {
            "prompts": len(mine),
            "called_a_tool": sum(r["tool"] is not None for r in mine),
            "right_tool": sum(r["right_tool"] for r in mine),
            "right_tool_and_sensible_arguments": sum(r["sensible"] for r in mine),
            "arguments_valid_json": sum(r["valid_json"] for r in mine),
            "seconds_p50": sorted(r["seconds"] for r in mine)[len(mine) // 2],
        }
    summary["auto_without_need"] = {
        "prompts": len(none_rows),
        "called_a_tool": sum(r["tool"] is not None for r in none_rows),
    }
    print(
        f"{'tool_choice':<12}{'prompts':>8}{'called':>8}{'right tool':>12}{'+ sensible args':>17}"
    )
    for choice in ("auto", "required"):
        s = summary[choice]
        print(
            f"{choice:<12}{s['prompts']:>8}{s['called_a_tool']:>8}{s['right_tool']:>12}"
            f"{s['right_tool_and_sensible_arguments']:>17}"
        )
    n = summary["auto_without_need"]
    print(f"auto, prompts needing no tool: {n['called_a_tool']}/{n['prompts']} called one anyway")
    result = {
        "model": QWEN,
        "machine": machine_info(),
        "summary": summary,
        "rows": rows,
        "no_tool_rows": none_rows,
    }
    path = write_json("tools.json", result)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
