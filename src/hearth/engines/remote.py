"""Any OpenAI-compatible upstream (OpenAI, vLLM, another hearth) as an engine.

Streams pass through chunk by chunk; closing our stream closes the upstream connection,
which is how the upstream learns to stop. Usage is the upstream's own when it reports one,
otherwise a count by the model's configured ``tokenizer`` (another registered model).
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import httpx

from hearth.config import ModelSpec
from hearth.engines.base import Capabilities, Engine, count_usage
from hearth.engines.openai_chunks import deltas
from hearth.errors import (
    ContextLengthExceeded,
    HearthError,
    InvalidRequest,
    Overloaded,
    Unsupported,
    UpstreamError,
)
from hearth.types import (
    ChatRequest,
    CompletionRequest,
    Delta,
    Embeddings,
    GenerationParams,
    Message,
    TokenPiece,
    Usage,
)

log = logging.getLogger(__name__)


class RemoteEngine:
    capabilities = Capabilities(
        embeddings=True, max_n=8, logprobs=True, json_schema=True, tools="upstream"
    )

    def __init__(self, spec: ModelSpec, tokenizer: Engine | None = None) -> None:
        self.spec = spec
        self.capabilities = replace(self.capabilities, json_schema=spec.json_schema)
        self.context_length = spec.context
        self.tokenizer = tokenizer
        self.vocab_size = tokenizer.vocab_size if tokenizer is not None else None
        self.upstream_model = spec.upstream_model or spec.name
        self._http: httpx.AsyncClient | None = None

    async def start(self) -> None:
        headers = {}
        if self.spec.api_key_env:
            key = os.environ.get(self.spec.api_key_env)
            if not key:
                raise UpstreamError(
                    f"model '{self.spec.name}' reads its API key from ${self.spec.api_key_env}, "
                    "which is not set"
                )
            headers["Authorization"] = f"Bearer {key}"
        assert self.spec.url, "remote model needs a url"
        self._http = httpx.AsyncClient(
            base_url=self.spec.url.rstrip("/"),
            headers=headers,
            timeout=httpx.Timeout(600, connect=10),
        )

    async def close(self) -> None:
        if self._http is not None:
            await self._http.aclose()

    def check(self, request: ChatRequest | CompletionRequest) -> None:
        return None  # the upstream checks what it accepts; its 400s become ours

    # -- generation ---------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body: dict[str, Any] = {"messages": [_message(m) for m in request.messages]}
        if request.tools:
            body.update(_tools(request))
        return self._stream("/chat/completions", body, request.params, request)

    def stream_completion(self, request: CompletionRequest) -> AsyncIterator[Delta]:
        body: dict[str, Any] = {"prompt": request.prompt}
        return self._stream("/completions", body, request.params, request)

    async def _stream(
        self,
        path: str,
        body: dict[str, Any],
        params: GenerationParams,
        request: ChatRequest | CompletionRequest,
    ) -> AsyncIterator[Delta]:
        payload = {
            **body,
            **_params(params, chat=path == "/chat/completions"),
            "model": self.upstream_model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        usage: Usage | None = None
        texts: dict[int, str] = {}
        async with self._client().stream("POST", path, json=payload) as resp:
            if resp.status_code != 200:
                await resp.aread()
                raise _upstream_error(resp, self.spec.name)
            async for line in resp.aiter_lines():
                data = _sse_data(line)
                if data is None:
                    continue
                if "error" in data:
                    raise UpstreamError(f"upstream error: {data['error']}")
                for chunk in deltas(data):
                    if chunk.usage is not None:
                        usage = chunk.usage
                        continue
                    texts[chunk.index] = texts.get(chunk.index, "") + chunk.text
                    yield chunk
        yield Delta(usage=usage or await self._count(request, texts))

    async def _count(
        self, request: ChatRequest | CompletionRequest, texts: dict[int, str]
    ) -> Usage:
        if self.tokenizer is None:
            log.warning("upstream of '%s' gave no usage and no tokenizer is set", self.spec.name)
            return Usage()
        return await count_usage(self.tokenizer, request, list(texts.values()))

    def _client(self) -> httpx.AsyncClient:
        assert self._http is not None, "engine not started"
        return self._http

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings:
        resp = await self._client().post(
            "/embeddings", json={"model": self.upstream_model, "input": texts}
        )
        if resp.status_code != 200:
            raise _upstream_error(resp, self.spec.name)
        data = resp.json()
        vectors = [d["embedding"] for d in sorted(data["data"], key=lambda d: d["index"])]
        return Embeddings(vectors, int(data.get("usage", {}).get("prompt_tokens", 0)))

    # -- tokens: the configured tokenizer model ----------------------------------------
    def _tokenizer(self) -> Engine:
        if self.tokenizer is None:
            raise Unsupported(
                f"model '{self.spec.name}' has no tokenizer configured; set "
                f'tokenizer = "<a registered model>" under [models."{self.spec.name}"]',
                param="model",
            )
        return self.tokenizer

    async def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[TokenPiece]:
        return await self._tokenizer().tokenize(
            text, add_special=add_special, parse_special=parse_special
        )

    async def detokenize(self, ids: list[int]) -> str:
        return await self._tokenizer().detokenize(ids)

    async def render_chat(self, messages: list[Message]) -> str:
        return await self._tokenizer().render_chat(messages)


def _message(m: Message) -> dict[str, Any]:
    return m.to_openai()


def _tools(request: ChatRequest) -> dict[str, Any]:
    """``tools``, ``tool_choice`` and ``parallel_tool_calls`` as OpenAI takes them."""
    choice: str | dict[str, Any] = request.tool_choice
    if request.tool_name is not None:
        choice = {"type": "function", "function": {"name": request.tool_name}}
    out: dict[str, Any] = {
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": t.name,
                    "description": t.description,
                    "parameters": t.parameters or {"type": "object", "properties": {}},
                },
            }
            for t in request.tools
        ],
        "tool_choice": choice,
    }
    if not request.parallel_tool_calls:
        out["parallel_tool_calls"] = False
    return out


def _params(p: GenerationParams, *, chat: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        k: v
        for k, v in (
            ("max_tokens", p.max_tokens),
            ("temperature", p.temperature),
            ("top_p", p.top_p),
            ("seed", p.seed),
            ("presence_penalty", p.presence_penalty),
            ("frequency_penalty", p.frequency_penalty),
            ("repeat_penalty", p.repeat_penalty),
        )
        if v is not None
    }
    if p.stop:
        out["stop"] = p.stop
    if p.logit_bias:
        out["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
    if p.n != 1:
        out["n"] = p.n
    if p.logprobs:
        if chat:
            out["logprobs"] = True
            out["top_logprobs"] = p.top_logprobs
        else:
            out["logprobs"] = p.top_logprobs
    fmt = p.response_format
    if fmt and fmt["type"] == "json_schema":
        out["response_format"] = {
            "type": "json_schema",
            "json_schema": {"name": "response", "schema": fmt.get("schema", {})},
        }
    elif fmt:
        out["response_format"] = {"type": fmt["type"]}
    return out


def _sse_data(line: str) -> dict[str, Any] | None:
    if not line.startswith("data:"):
        return None
    raw = line[5:].strip()
    if not raw or raw == "[DONE]":
        return None
    try:
        data: dict[str, Any] = json.loads(raw)
    except json.JSONDecodeError as e:
        raise UpstreamError(f"upstream sent a line that is not JSON: {raw[:200]}") from e
    return data


def _upstream_error(resp: httpx.Response, name: str) -> HearthError:
    try:
        err = resp.json().get("error") or {}
    except (json.JSONDecodeError, AttributeError):
        err = {}
    message = err.get("message") if isinstance(err, dict) else str(err)
    message = message or resp.text[:300]
    if resp.status_code == 429:
        return Overloaded(f"upstream of '{name}' is overloaded: {message}")
    if (
        resp.status_code == 400
        and isinstance(err, dict)
        and err.get("code") == "context_length_exceeded"
    ):
        e = InvalidRequest(message, param=err.get("param"))
        e.code = ContextLengthExceeded.code
        return e
    if resp.status_code in (400, 413, 422):
        return InvalidRequest(f"upstream of '{name}' refused the request: {message}")
    return UpstreamError(f"upstream of '{name}' answered {resp.status_code}: {message}")
