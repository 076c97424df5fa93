"""`hearth kb search --translate` and `hearth kb ask`: retrieval and answers in-process
(the chat model loaded here, its output streamed, then the sources)."""

from __future__ import annotations

import asyncio
import json
from typing import Any

from rich.console import Console

from hearth.config import Settings
from hearth.engines.registry import ModelRegistry
from hearth.engines.runner import Runner
from hearth.rag.answer import build_prompt
from hearth.rag.kb import embedder_of, open_store
from hearth.rag.retrieve import Result, search
from hearth.rag.translate import Chat, Translator, search_across_languages
from hearth.types import ChatRequest, GenerationParams, Message


def _chat(runner: Runner) -> Chat:
    async def chat(messages: list[Message], params: GenerationParams) -> str:
        request = ChatRequest(messages, params)
        return "".join(
            [d.text async for d in runner.stream(lambda: runner.engine.stream_chat(request))]
        )

    return chat


async def _results(
    settings: Settings, kb: str, query: str, runner: Runner | None, **options: Any
) -> list[Result]:
    store = open_store(settings.knowledge_url)
    try:
        emb = embedder_of(await asyncio.to_thread(store.get_kb, kb))
        if runner is None:
            return await asyncio.to_thread(search, store, emb, kb, query, **options)
        return await search_across_languages(
            store, emb, kb, query, chat=_chat(runner), translator=Translator(), **options
        )
    finally:
        store.close()


def _check_kb(settings: Settings, kb: str) -> None:
    """Fail on a missing knowledge base before a model takes seconds to load."""
    store = open_store(settings.knowledge_url)
    try:
        store.get_kb(kb)
    finally:
        store.close()


async def retrieve(
    settings: Settings, kb: str, query: str, translate_with: str | None, **options: Any
) -> list[Result]:
    """Search ``kb``; with ``translate_with`` (a chat model) in both languages."""
    _check_kb(settings, kb)
    if translate_with is None:
        return await _results(settings, kb, query, None, **options)
    registry = ModelRegistry(settings)
    registry.spec(translate_with)
    try:
        runner = await registry.get(translate_with)
        return await _results(settings, kb, query, runner, **options)
    finally:
        await registry.close()


async def translations(
    settings: Settings, model: str, questions: list[str]
) -> dict[str, list[str]]:
    """Each question's translation by ``model`` (for evaluations), as search takes them."""
    registry = ModelRegistry(settings)
    registry.spec(model)
    try:
        chat = _chat(await registry.get(model))
        translator = Translator()
        out = {}
        for question in questions:
            other = await translator.translate(question, chat)
            out[question] = [other] if other else []
        return out
    finally:
        await registry.close()


async def run_ask(
    settings: Settings,
    kb: str,
    model: str,
    question: str,
    *,
    k: int,
    translate: bool,
    max_tokens: int,
    as_json: bool,
    console: Console,
) -> None:
    _check_kb(settings, kb)
    registry = ModelRegistry(settings)
    registry.spec(model)
    try:
        runner = await registry.get(model)
        results = await _results(settings, kb, question, runner if translate else None, k=k)
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
