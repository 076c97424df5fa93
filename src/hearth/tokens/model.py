"""A registered model's own tokenizer: the engine the server would run, started small.

The engine is async and its HTTP client belongs to the event loop that started it, so the
engine lives on one private loop in a background thread and the sync methods below hand
coroutines to it. That works whether or not the caller already runs an event loop.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from dataclasses import replace
from pathlib import Path
from typing import Any, TypeVar

from hearth.config import Settings
from hearth.engines.base import Engine, count_chat_tokens
from hearth.engines.registry import engine_class, resolve
from hearth.errors import ConfigError, ModelNotFound, Unsupported
from hearth.hub.gguf_info import read_facts
from hearth.types import Message, TokenPiece

T = TypeVar("T")
# Tokenizing and rendering templates never touch the KV cache, so a tiny context is enough
# and keeps the load cheap.
_CONTEXT = 256


class ModelTokenizer:
    kind = "model"

    def __init__(self, name: str, engine: Engine, vocab_size: int | None = None) -> None:
        self.name = name
        self.engine = engine
        self.vocab_size = vocab_size  # read from the model file; engines do not report it
        self._pieces: dict[int, bytes] = {}  # exact bytes of every token seen so far
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name=f"tokens-{name}", daemon=True
        )
        self._thread.start()
        try:
            self._run(engine.start())
        except BaseException:
            self._stop_loop()
            raise

    def _run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result()

    def tokenize(self, text: str) -> list[TokenPiece]:
        pieces = self._run(self.engine.tokenize(text, add_special=False, parse_special=True))
        self._pieces.update((p.id, p.piece) for p in pieces)
        return pieces

    def encode(self, text: str) -> list[int]:
        return [p.id for p in self.tokenize(text)]

    def count(self, text: str) -> int:
        return len(self.tokenize(text))

    def decode(self, ids: list[int]) -> str:
        return self._run(self.engine.detokenize(ids))

    def piece_bytes(self, token_id: int) -> bytes:
        if token_id in self._pieces:
            return self._pieces[token_id]
        # Engines detokenize to text, which cannot carry part of a character.
        text = self.decode([token_id])
        if "\ufffd" in text:
            raise Unsupported(
                f"{self.name} returns token {token_id} as text, which cannot hold its exact "
                "bytes (part of a character); tokenize a text containing it instead"
            )
        return text.encode()

    def prefix(self) -> list[int]:
        """What the engine puts before a prompt's text (BOS for models that take one)."""
        return [p.id for p in self._run(self.engine.tokenize("", add_special=True))]

    def props(self) -> dict[str, Any]:
        """The model's own chat template, BOS and EOS, as the engine reports them."""
        props = getattr(self.engine, "props", None)
        if props is None:
            raise Unsupported(f"model '{self.name}' does not report its chat template")
        return dict(self._run(props()))

    def count_chat(self, messages: list[Message]) -> int:
        """Prompt tokens of a chat request: the server's own count, template included."""
        return self._run(count_chat_tokens(self.engine, messages))

    def close(self) -> None:
        if self._loop.is_closed():
            return
        try:
            self._run(self.engine.close())
        finally:
            self._stop_loop()

    def _stop_loop(self) -> None:
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join()
        self._loop.close()


def open_model(name: str, settings: Settings, _seen: tuple[str, ...] = ()) -> ModelTokenizer:
    """Start the tokenizer of registered model ``name`` exactly as the server would."""
    if name not in settings.models:
        raise ModelNotFound(name, list(settings.models))
    spec = settings.models[name]
    other = spec.tokenizer or spec.base
    if other:
        # A remote model counts with the registered model it names, as the server does;
        # an adapter with its base's tokenizer.
        if other in (*_seen, name):
            raise ConfigError(f"model '{name}' names tokenizer '{other}' in a cycle")
        tokenizer = open_model(other, settings, (*_seen, name))
        tokenizer.name = name
        return tokenizer
    spec = resolve(spec, settings)
    engine: Engine = engine_class(spec.engine)(replace(spec, parallel=1, context=_CONTEXT))
    if not engine.capabilities.tokenize:
        raise Unsupported(f"model '{name}' does not expose its tokenizer", param="model")
    vocab = read_facts(Path(spec.path)).vocab_size if spec.path else None
    return ModelTokenizer(name, engine, vocab)
