"""Knowledge for an app: retrieve with the app's query, keep the best chunks that fit the
model's context by its own token count, and number them for citation."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass

from hearth.apps.spec import Knowledge
from hearth.engines.base import Engine
from hearth.rag.kb import embedder_of
from hearth.rag.retrieve import Result, search
from hearth.rag.stores.base import Store


@dataclass(frozen=True)
class Context:
    text: str  # what ``{{ context }}`` renders to
    sources: list[Result]  # the chunks in it, numbered from 1 in order

    def as_dicts(self) -> list[dict[str, object]]:
        return [{"n": i, **r.as_dict()} for i, r in enumerate(self.sources, start=1)]


def _block(n: int, result: Result) -> str:
    return f"[{n}] ({result.citation()})\n{result.chunk.text}"


async def retrieve(spec: Knowledge, store: Store, query: str) -> list[Result]:
    """Each knowledge base's best ``k``, merged by score (hybrid scores are z-scores, so
    they compare across bases) and cut to ``k``."""
    results: list[Result] = []
    for kb in spec.kbs:
        record = await asyncio.to_thread(store.get_kb, kb)
        embedder = await asyncio.to_thread(embedder_of, record)
        results += await asyncio.to_thread(
            search, store, embedder, kb, query, k=spec.k, mode=spec.mode, gate=spec.gate
        )
    results.sort(key=lambda r: r.score, reverse=True)
    return results[: spec.k]


async def fit(results: list[Result], engine: Engine, budget: int) -> Context:
    """The best-ranked chunks whose text fits ``budget`` tokens of ``engine``'s tokenizer;
    a chunk too long for what is left is skipped so a later, shorter one may still fit."""
    chosen: list[Result] = []
    used = 0
    for result in results:
        tokens = len(await engine.tokenize(_block(len(chosen) + 1, result), parse_special=False))
        if used + tokens > budget:
            continue
        chosen.append(result)
        used += tokens
    return Context("\n\n".join(_block(i, r) for i, r in enumerate(chosen, 1)), chosen)
