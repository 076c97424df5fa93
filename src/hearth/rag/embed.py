"""Embedders for knowledge bases: the bundled e5 in-process, or any OpenAI-compatible
``/v1/embeddings`` endpoint (hearth's own included).

A knowledge base records ``Embedder.model`` and ``Embedder.dim`` when it is created; using
it later with another embedder is an ``EmbeddingMismatch``.
"""

from __future__ import annotations

import os
from typing import Protocol

import httpx
import numpy as np

from hearth.engines.e5 import E5Model, shared_e5
from hearth.errors import ConfigError, EmbeddingMismatch, UpstreamError

E5_NAME = "multilingual-e5-small"
BATCH = 16  # texts per engine call: big enough to amortise the call, small for progress


class Embedder(Protocol):
    model: str
    dim: int

    def passages(self, texts: list[str]) -> np.ndarray:
        """Normalised float32 vectors for documents, shape (len(texts), dim)."""
        ...

    def query(self, text: str) -> np.ndarray:
        """The normalised vector of a search query, shape (dim,)."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens of a passage in the embedder's own tokenizer (chunk sizes use this)."""
        ...


class E5Embedder:
    """multilingual-e5-small with its ``query: ``/``passage: `` prefixes."""

    model = E5_NAME

    def __init__(self, e5: E5Model | None = None) -> None:
        self._e5 = e5 or shared_e5()
        self.dim = self._e5.dim

    def passages(self, texts: list[str]) -> np.ndarray:
        return self._e5.encode(texts, query=False)

    def query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._e5.encode([text], query=True)[0]
        return vector

    def count_tokens(self, text: str) -> int:
        return self._e5.token_count(text, query=False)


class OpenAIEmbedder:
    """An OpenAI-compatible endpoint. ``query_prefix``/``passage_prefix`` are prepended
    for models trained with them (hearth's own e5 reads ``query: `` as a query)."""

    def __init__(
        self,
        url: str,
        model: str,
        *,
        api_key: str | None = None,
        query_prefix: str = "",
        passage_prefix: str = "",
        timeout: float = 120,
    ) -> None:
        # Recorded on the knowledge base, so the same endpoint is used again later.
        self.model = f"{model}@{url}"
        self.upstream_model = model
        self.query_prefix = query_prefix
        self.passage_prefix = passage_prefix
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._http = httpx.Client(base_url=url.rstrip("/"), headers=headers, timeout=timeout)
        # The dimension is whatever the endpoint returns; ask once.
        self.dim = int(self._embed(["dimension probe"]).shape[1])
        # The endpoint's tokenizer is not reachable; e5's is used to size chunks and is
        # exact only for e5-family models. Sizes for other models are approximate.
        self._e5 = shared_e5()

    def _embed(self, texts: list[str]) -> np.ndarray:
        try:
            resp = self._http.post(
                "/embeddings", json={"model": self.upstream_model, "input": texts}
            )
        except httpx.HTTPError as e:
            raise UpstreamError(f"embedding endpoint {self._http.base_url} failed: {e}") from e
        if resp.status_code != 200:
            raise UpstreamError(
                f"embedding endpoint answered {resp.status_code}: {resp.text[:300]}"
            )
        data = sorted(resp.json()["data"], key=lambda d: d["index"])
        vectors = np.asarray([d["embedding"] for d in data], dtype=np.float32)
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        normalised: np.ndarray = vectors / np.maximum(norms, 1e-12)
        return normalised

    def passages(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return self._embed([self.passage_prefix + t for t in texts])

    def query(self, text: str) -> np.ndarray:
        vector: np.ndarray = self._embed([self.query_prefix + text])[0]
        return vector

    def count_tokens(self, text: str) -> int:
        return self._e5.token_count(text, query=False)


def embedder_for(spec: str) -> Embedder:
    """``multilingual-e5-small`` (bundled) or ``MODEL@URL`` for an OpenAI-compatible
    endpoint, e.g. ``multilingual-e5-small@http://127.0.0.1:8000/v1``; its API key, if
    any, comes from ``$HEARTH_EMBED_API_KEY``."""
    model, sep, url = spec.partition("@")
    if sep:
        if not url.startswith(("http://", "https://")):
            raise ConfigError(f"embedder '{spec}': the part after @ must be an http(s) URL")
        e5 = "e5" in model.lower()
        return OpenAIEmbedder(
            url,
            model,
            api_key=os.environ.get("HEARTH_EMBED_API_KEY"),
            query_prefix="query: " if e5 else "",
            passage_prefix="passage: " if e5 else "",
        )
    if model != E5_NAME:
        raise ConfigError(
            f"embedding model '{model}' is not bundled; name its endpoint as MODEL@URL "
            f"or use {E5_NAME}"
        )
    return E5Embedder()


def check_same(kb_model: str, kb_dim: int, embedder: Embedder) -> None:
    if (kb_model, kb_dim) != (embedder.model, embedder.dim):
        raise EmbeddingMismatch(
            f"this knowledge base was built with '{kb_model}' ({kb_dim} dimensions) but the "
            f"embedder is '{embedder.model}' ({embedder.dim} dimensions); use the same "
            "embedder or create a new knowledge base"
        )
