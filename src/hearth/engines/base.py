"""The engine protocol: everything between HTTP and inference speaks this.

Cancellation is closing the stream: when a caller stops iterating and calls ``aclose()``
on the async iterator returned by ``stream_chat``/``stream_completion``, the engine must stop
generating and free its slot within a second.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from hearth.errors import InvalidRequest
from hearth.types import (
    ChatRequest,
    CompletionRequest,
    Delta,
    Embeddings,
    Message,
    TokenPiece,
    Usage,
)


@dataclass(frozen=True)
class Capabilities:
    chat: bool = True
    embeddings: bool = False
    max_n: int = 1  # the largest ``n`` one request may ask for
    logprobs: bool = False
    json_schema: bool = False  # constrained decoding for response_format
    tools: str | None = None  # how it calls tools: "native" (template), "parsed", or not
    tokenize: bool = True


@runtime_checkable
class Engine(Protocol):
    capabilities: Capabilities
    context_length: int
    vocab_size: int | None  # token ids run from 0 below this; None when not known

    async def start(self) -> None:
        """Load weights / connect. Called once before any other method."""

    def check(self, request: ChatRequest | CompletionRequest) -> None:
        """Raise ``UserError`` for a request this engine would refuse or could not honour
        (messages its chat template rejects, a schema its decoder would not enforce), so it
        fails with a 400 before any work starts."""

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Delta]:
        """Yield chunks; the last one carries ``usage`` and every choice's finish_reason."""
        ...

    def stream_completion(self, request: CompletionRequest) -> AsyncIterator[Delta]: ...

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings: ...

    async def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[TokenPiece]:
        """The model's own tokens. ``add_special`` adds BOS/EOS as the model's metadata asks;
        ``parse_special`` reads control tokens such as ``<|im_start|>`` as single tokens."""
        ...

    async def detokenize(self, ids: list[int]) -> str: ...

    async def render_chat(self, messages: list[Message]) -> str:
        """The prompt text the chat template makes of these messages."""
        ...

    async def close(self) -> None: ...


def check_token_ids(engine: Engine, ids: Iterable[int], *, model: str, param: str) -> None:
    """Token ids must lie inside the model's vocabulary (llama.cpp aborts on one past it)."""
    vocab = engine.vocab_size
    if vocab is None:
        return
    outside = next((t for t in ids if not 0 <= t < vocab), None)
    if outside is not None:
        raise InvalidRequest(
            f"token id {outside} is outside the vocabulary of model '{model}' ({vocab} "
            f"tokens, ids 0-{vocab - 1}); look ids up with POST /tokenize",
            param=param,
        )


async def count_chat_tokens(engine: Engine, messages: list[Message]) -> int:
    """Prompt tokens of a chat request, exactly as ``usage.prompt_tokens`` counts them."""
    prompt = await engine.render_chat(messages)
    return len(await engine.tokenize(prompt, add_special=True, parse_special=True))


async def count_usage(
    engine: Engine, request: ChatRequest | CompletionRequest, texts: list[str]
) -> Usage:
    """Usage counted by ``engine``'s tokenizer: the request's prompt as usage counts it, and
    each produced text (for streams cut short, or upstreams that report none)."""
    if isinstance(request, ChatRequest):
        prompt = await count_chat_tokens(engine, request.messages)
    else:
        prompt = len(await engine.tokenize(request.prompt, add_special=True))
    produced = 0
    for text in texts:
        if text:
            produced += len(await engine.tokenize(text, parse_special=False))
    return Usage(prompt, produced)
