"""A scripted engine: real protocol, no model. For tests, demos and load experiments.

Replies come from the model's ``script`` in turn (or echo the last user message), one
word-piece token at a time with ``delay`` seconds between tokens, so queueing, streaming,
cancellation and usage accounting behave as they do with a real model.
"""

from __future__ import annotations

import asyncio
import hashlib
import itertools
import json
import math
import re
from collections.abc import AsyncGenerator, AsyncIterator
from contextlib import aclosing
from dataclasses import replace

from hearth.config import ModelSpec
from hearth.engines.base import Capabilities
from hearth.engines.tool_calls import extract, parse
from hearth.errors import ContextLengthExceeded
from hearth.types import (
    ChatRequest,
    CompletionRequest,
    Delta,
    Embeddings,
    GenerationParams,
    Message,
    TokenLogprob,
    TokenPiece,
    Usage,
)

_PIECES = re.compile(r"\s*[\w']+|\s*[^\w\s]|\s+", re.UNICODE)
_DIM = 16
VOCAB = 100_000  # token ids are a hash of the piece modulo this


class FakeEngine:
    capabilities = Capabilities(
        embeddings=True, max_n=4, logprobs=True, json_schema=True, tools="parsed"
    )

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        # Like the real engines: an embedding model does not chat, a chat model does not embed.
        self.capabilities = replace(
            self.capabilities, chat=not spec.embedding, embeddings=spec.embedding
        )
        self.context_length = spec.context
        self.vocab_size: int | None = VOCAB
        self._script = itertools.cycle(spec.script) if spec.script else None
        self._vocab: dict[int, str] = {}
        self.active = 0  # generations in flight, for tests of cancellation

    async def start(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def check(self, request: ChatRequest | CompletionRequest) -> None:
        return None  # scripted replies: every well-formed request is one it can answer

    # -- tokens -------------------------------------------------------------------------
    def _ids(self, text: str) -> list[TokenPiece]:
        out = []
        for piece in _PIECES.findall(text):
            tid = int(hashlib.blake2b(piece.encode(), digest_size=4).hexdigest(), 16) % VOCAB
            self._vocab[tid] = piece
            out.append(TokenPiece(tid, piece.encode()))
        return out

    async def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[TokenPiece]:
        return self._ids(text)

    async def detokenize(self, ids: list[int]) -> str:
        return "".join(self._vocab.get(i, "") for i in ids)

    async def render_chat(self, messages: list[Message]) -> str:
        return "".join(_render(m) for m in messages) + "<|assistant|>\n"

    # -- generation ---------------------------------------------------------------------
    def _reply(self, prompt_text: str, params: GenerationParams) -> str:
        text = next(self._script) if self._script else f"You said: {prompt_text}"
        if params.response_format and not _json_object(text):
            text = json.dumps({"reply": text}, ensure_ascii=False)
        return text

    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[Delta]:
        prompt = await self.render_chat(request.messages)
        users = [m.content for m in request.messages if m.role == "user"]
        # aclosing: closing this stream closes the generation now, not when it is collected.
        last = users[-1] if users else ""
        forced = _forced_call(request)
        chunks = self._generate(prompt, last, request.params, forced)
        async with aclosing(extract(chunks, request)) as out:
            async for chunk in out:
                yield chunk

    async def choice_probs(self, prompt: str, choices: list[str]) -> dict[str, float]:
        """The scripted reply's leading choice gets most of the mass (0.7); without a script,
        or when the reply starts with no choice, the split is a hash of the prompt."""
        text = next(self._script) if self._script else ""
        lead = next((c for c in choices if text.startswith(c)), None)
        if lead is not None:
            rest = 0.3 / max(1, len(choices) - 1)
            return {c: 0.7 if c == lead else rest for c in choices}
        weights = [
            1 + int(hashlib.blake2b((prompt + c).encode(), digest_size=2).hexdigest(), 16) % 97
            for c in choices
        ]
        return {c: w / sum(weights) for c, w in zip(choices, weights, strict=True)}

    async def stream_completion(self, request: CompletionRequest) -> AsyncIterator[Delta]:
        prompt = request.prompt
        async with aclosing(self._generate(prompt, prompt, request.params)) as chunks:
            async for chunk in chunks:
                yield chunk

    async def _generate(
        self,
        prompt: str,
        last: str,
        params: GenerationParams,
        forced: tuple[str, str] | None = None,
    ) -> AsyncGenerator[Delta, None]:
        prompt_tokens = len(self._ids(prompt))
        if prompt_tokens > self.context_length:
            raise ContextLengthExceeded(prompt_tokens, self.context_length)
        limit = params.max_tokens if params.max_tokens is not None else 10**9
        completion = 0
        self.active += 1
        try:
            for index in range(params.n):
                reply = self._reply(last, params)
                if forced is not None and not parse(reply, {forced[0]})[1]:
                    reply = forced[1]  # what constrained decoding guarantees: a valid call
                text, finish = _apply_stop(reply, params.stop)
                for count, piece in enumerate(self._ids(text)):
                    if count >= limit:
                        finish = "length"
                        break
                    if self.spec.delay:
                        await asyncio.sleep(self.spec.delay)
                    completion += 1
                    lp = (
                        [TokenLogprob(piece.text, -0.5, list(piece.piece))]
                        if params.logprobs
                        else None
                    )
                    yield Delta(index=index, text=piece.text, logprobs=lp)
                yield Delta(index=index, finish_reason=finish)
            yield Delta(usage=Usage(prompt_tokens, completion))
        finally:
            self.active -= 1

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings:
        vectors = []
        for text in texts:
            digest = hashlib.sha256(text.encode()).digest()
            raw = [b - 127.5 for b in digest[:_DIM]]
            norm = math.sqrt(sum(x * x for x in raw)) or 1.0
            vectors.append([x / norm for x in raw])
        return Embeddings(vectors, sum(len(self._ids(t)) for t in texts))


def _json_object(text: str) -> bool:
    """A scripted reply that is already a JSON object is what the grammar would allow."""
    try:
        return isinstance(json.loads(text), dict)
    except ValueError:
        return False


def _apply_stop(text: str, stops: list[str]) -> tuple[str, str]:
    cut = min((text.index(s) for s in stops if s and s in text), default=None)
    return (text, "stop") if cut is None else (text[:cut], "stop")


def _render(m: Message) -> str:
    calls = "".join(
        f'<tool_call>{{"name": "{c.name}", "arguments": {c.arguments}}}</tool_call>\n'
        for c in m.tool_calls
    )
    return f"<|{m.role}|>\n{m.content}\n{calls}"


def _forced_call(request: ChatRequest) -> tuple[str, str] | None:
    """For ``tool_choice`` required or named: the call a constrained decoder would make
    when the scripted reply is not one (the first callable tool, no arguments)."""
    tools = request.callable_tools
    if request.tool_choice != "required" or not tools:
        return None
    return tools[0].name, json.dumps({"name": tools[0].name, "arguments": {}})
