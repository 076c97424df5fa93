"""`hearth kb ask`: the in-process answer loop (model load, streaming, sources)."""

from __future__ import annotations

import json

from rich.console import Console

from hearth.config import Settings
from hearth.engines.registry import ModelRegistry
from hearth.rag.answer import build_prompt
from hearth.rag.retrieve import Result
from hearth.types import ChatRequest, GenerationParams


async def run_ask(
    settings: Settings,
    model: str,
    question: str,
    results: list[Result],
    *,
    max_tokens: int,
    as_json: bool,
    console: Console,
) -> None:
    registry = ModelRegistry(settings)
    registry.spec(model)
    try:
        runner = await registry.get(model)
        prompt = await build_prompt(runner.engine, question, results, max_tokens=max_tokens)
        request = ChatRequest(prompt.messages, GenerationParams(max_tokens=prompt.max_tokens))
        text = ""
        async for delta in runner.stream(lambda: runner.engine.stream_chat(request)):
            text += delta.text
            if not as_json and delta.text:
                console.print(delta.text, end="", markup=False, highlight=False)
        sources = [
            {
                "n": i,
                "citation": r.citation(),
                "document": r.chunk.document,
                "page": r.chunk.page,
                "start": r.chunk.start,
                "end": r.chunk.end,
            }
            for i, r in enumerate(prompt.sources, 1)
        ]
        if as_json:
            print(json.dumps({"answer": text, "sources": sources}, ensure_ascii=False, indent=2))
            return
        console.print()
        if not sources:
            console.print("[dim](no sources: nothing relevant in the knowledge base)[/]")
        for s in sources:
            console.print(f"[bold][{s['n']}][/] {s['citation']}")
    finally:
        await registry.close()
