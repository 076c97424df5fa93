"""The same weights through both local engines: ``transformers`` (PyTorch, float32 on CPU)
on a Hugging Face directory, and ``llamacpp`` on the GGUF ``hearth models convert`` makes of
it (f16 and q8_0), in one run.

    .venv/bin/python bench/engines.py                 # the bundled SmolLM2, made into HF
    .venv/bin/python bench/engines.py --hf-dir DIR    # any Hugging Face model directory

Each engine answers the same distinct prompts (greedy, 64 new tokens each) one at a time
and then 4 at once, behind ``hearth serve``; tokens/s counts generated tokens over wall
time, time to first token includes the prompt. Prints a table and writes
bench/results/engines.json.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import openai
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench._common import RESULTS, free_port, machine_info, median

from hearth.hub import bundled
from hearth.hub.convert import convert, gguf_to_hf, ready

CONVERTER = Path(__file__).resolve().parent.parent / ".cache" / "llama.cpp-convert"

console = Console()
PROMPTS = [
    "Explain in two sentences why the sky is blue.",
    "Write a short poem about autumn leaves.",
    "List three uses of a paperclip.",
    "What is the difference between weather and climate?",
    "Give me a recipe idea with rice and eggs.",
    "Describe a cat to someone who has never seen one.",
    "Why do we have leap years?",
    "Suggest a name for a friendly robot and say why.",
]
NEW_TOKENS = 64


def _one(client: openai.OpenAI, model: str, prompt: str) -> dict[str, float]:
    start = time.perf_counter()
    first = None
    tokens = 0
    stream = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": prompt}],
        max_tokens=NEW_TOKENS,
        temperature=0,
        stream=True,
        stream_options={"include_usage": True},
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content and first is None:
            first = time.perf_counter() - start
        if chunk.usage is not None:
            tokens = chunk.usage.completion_tokens
    return {"ttft": first or 0.0, "wall": time.perf_counter() - start, "tokens": tokens}


def _measure(client: openai.OpenAI, model: str, concurrency: int) -> dict[str, Any]:
    _one(client, model, "Hello!")  # warm up
    start = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        runs = list(pool.map(lambda p: _one(client, model, p), PROMPTS))
    wall = time.perf_counter() - start
    return {
        "tokens_per_s": sum(r["tokens"] for r in runs) / wall,
        "ttft_p50_ms": (median([r["ttft"] for r in runs]) or 0) * 1000,
        "tokens": sum(r["tokens"] for r in runs),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--hf-dir", type=Path, help="a Hugging Face model directory")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="hearth-engines-"))
    hf = args.hf_dir
    if hf is None:
        gguf = bundled.ensure("smollm2-135m-instruct", tmp / "bundled")
        hf = gguf_to_hf(gguf, tmp / "SmolLM2-135M-Instruct")
    home = tmp / "home"
    home.mkdir()
    if ready(CONVERTER):
        os.environ["HEARTH_CONVERTER_DIR"] = str(CONVERTER)
    names = {}
    for kind in ("f16", "q8_0"):
        done = convert(home, str(hf), name=f"conv-{kind}", kind=kind, models_dir=home / "models")
        names[f"llamacpp {kind}"] = done.name
    (home / "config.toml").write_text(
        f'[models.hf]\nengine = "transformers"\npath = "{hf}"\ncontext = 2048\n',
        encoding="utf-8",
    )
    port = free_port()
    served = [a for n in ["hf", *names.values()] for a in ("--model", n)]
    server = subprocess.Popen(
        [sys.executable, "-m", "hearth", "serve", "--port", str(port), *served,
         "--no-access-log"],
        env={**os.environ, "HEARTH_HOME": str(home)},
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )  # fmt: skip
    rows: list[dict[str, Any]] = []
    try:
        client = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key="x", max_retries=0)
        deadline = time.monotonic() + 300
        while True:
            try:
                client.models.list()
                break
            except openai.APIConnectionError:
                assert server.poll() is None and time.monotonic() < deadline, "no server"
                time.sleep(0.5)
        for label, model in {"transformers fp32": "hf", **names}.items():
            for concurrency in (1, 4):
                got = _measure(client, model, concurrency)
                got.update(engine=label, concurrency=concurrency)
                rows.append(got)
                console.print(
                    f"{label:18} c={concurrency}: {got['tokens_per_s']:6.1f} tok/s, "
                    f"TTFT p50 {got['ttft_p50_ms']:.0f} ms"
                )
    finally:
        server.terminate()
        server.wait(30)
    table = Table(title=f"one model, two engines ({hf.name})")
    for col in ("engine", "concurrency", "tokens/s", "TTFT p50 ms"):
        table.add_column(col, justify="right")
    for r in rows:
        table.add_row(
            r["engine"], str(r["concurrency"]), f"{r['tokens_per_s']:.1f}",
            f"{r['ttft_p50_ms']:.0f}",
        )  # fmt: skip
    console.print(table)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / "engines.json"
    out.write_text(
        json.dumps({"machine": machine_info(), "model": hf.name, "rows": rows}, indent=2) + "\n",
        encoding="utf-8",
    )
    console.print(f"wrote {out}")


if __name__ == "__main__":
    main()
