"""Any OpenAI-compatible upstream (OpenAI, vLLM, another hearth) as an engine.

Streams pass through chunk by chunk; closing our stream closes the upstream connection,
which is how the upstream learns to stop. Usage is the upstream's own when it reports one,
otherwise a count by the model's configured ``tokenizer`` (another registered model).
A model with several upstreams spreads over them through ``engines.pool``; a request that
fails before its first token is tried on the next one. What goes over the wire, and the
checks on what comes back, are in ``engines.wire``.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import replace
from typing import Any

import aiohttp

from hearth.config import ModelSpec
from hearth.engines.base import Capabilities, Engine, count_usage
from hearth.engines.pool import Upstream, UpstreamPool
from hearth.engines.wire import (
    Broken,
    Events,
    MidAnswer,
    dumps,
    params_body,
    tools_body,
    upstream_error,
)
from hearth.errors import HearthError, Unsupported, UpstreamError
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

# Worth trying the request on another upstream: nothing was generated, or it was lost.
RETRY_STATUS = (502, 503, 504)
# Sends again of a request that went out on a kept-alive connection the upstream had
# closed, per upstream of the pool; pooled connections are dropped before the 5 s idle
# timeout that uvicorn (vLLM, SGLang) and llama.cpp's server apply, so this is the rare race.
STALE_RETRIES = 2
KEEPALIVE_SECONDS = 4.0


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
        self.pool = UpstreamPool(spec.name)

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
        endpoints = ([(self.spec.url, 1.0)] if self.spec.url else []) + list(self.spec.urls)
        assert endpoints, "remote model needs a url"
        for url, weight in endpoints:
            # aiohttp rather than httpx: on this path httpx's client cost about a fifth of
            # the server's CPU per request (bench/gateway.py, py-spy).
            client = aiohttp.ClientSession(
                headers=headers,
                timeout=aiohttp.ClientTimeout(total=None, connect=5, sock_read=600),
                connector=aiohttp.TCPConnector(limit=0, keepalive_timeout=KEEPALIVE_SECONDS),
                read_bufsize=2**22,  # one SSE event (a chunk with logprobs) is one line
                json_serialize=dumps,
            )
            self.pool.add(Upstream(url.rstrip("/"), weight, client))
        self.pool.start()

    async def close(self) -> None:
        await self.pool.close()

    def health(self) -> list[dict[str, Any]]:
        """Each upstream's state, for /health."""
        return self.pool.health()

    def check(self, request: ChatRequest | CompletionRequest) -> None:
        return None  # the upstream checks what it accepts; its 400s become ours

    # -- generation ---------------------------------------------------------------------
    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body: dict[str, Any] = {"messages": [m.to_openai() for m in request.messages]}
        if request.tools:
            body.update(tools_body(request))
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
            **params_body(params, chat=path == "/chat/completions"),
            "model": self.upstream_model,
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        tried: list[Upstream] = []
        errors: list[HearthError] = []
        stale_left = STALE_RETRIES * len(self.pool.upstreams)
        while (up := self.pool.pick(tried)) is not None:
            tried.append(up)
            texts: dict[int, str] = {}
            stream = self._attempt(up, path, payload, texts)
            yielded = False
            try:
                if request.whole:
                    # nobody sees the answer before its end: hold it, so a failure midway
                    # starts over on the next upstream instead of failing the request
                    stream = _replay([chunk async for chunk in stream])
                async for chunk in stream:
                    if isinstance(chunk, Usage):
                        yield Delta(usage=chunk)
                        return
                    yielded = True
                    yield chunk
                yield Delta(usage=await self._count(request, texts))
                return
            except _Retry as e:
                if yielded:
                    raise e.error from None
                if e.stale and stale_left > 0:
                    # a kept-alive connection the upstream had already closed: the request
                    # never reached it, so it is sent again and the upstream is not blamed
                    stale_left -= 1
                    tried.pop()
                    continue
                errors.append(e.error)
            finally:
                await stream.aclose()
        assert errors
        if len(errors) > 1:
            raise UpstreamError(
                f"all {len(errors)} upstreams of '{self.spec.name}' failed: "
                + "; ".join(e.message for e in errors)
            )
        raise errors[0]

    async def _attempt(
        self, up: Upstream, path: str, payload: dict[str, Any], texts: dict[int, str]
    ) -> AsyncGenerator[Delta | Usage, None]:
        """One try on ``up``: its deltas, then its usage if it reported one. Failures that
        another upstream may fix come as :class:`_Retry`; the upstream's verdicts on the
        request itself (400s, 429) as they are."""
        where = f"upstream {up.url} of '{self.spec.name}'"
        up.in_flight += 1
        usage: Usage | None = None
        answered = False
        try:
            async with up.client.post(up.url + path, json=payload) as resp:
                answered = True
                if resp.status != 200:
                    error = upstream_error(resp.status, await resp.read(), self.spec.name, up.url)
                    if resp.status >= 500:
                        self.pool.failed(up, error)
                    if resp.status in RETRY_STATUS:
                        raise _Retry(error)
                    raise error
                ctype = resp.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    text = (await resp.read()).decode("utf-8", "replace")
                    raise Broken(
                        f"{where} broke the protocol: a stream request got "
                        f"{ctype or 'no content type'} instead of server-sent events: "
                        f"{text[:200]!r}",
                    )
                finished = False
                events = Events(resp.content, where)
                async for batch in events:
                    for chunk in batch:
                        if chunk.usage is not None:
                            usage = chunk.usage
                            continue
                        finished = finished or chunk.finish_reason is not None
                        texts[chunk.index] = texts.get(chunk.index, "") + chunk.text
                        yield chunk
                if not (events.done or finished):
                    raise Broken(
                        f"{where} ended its stream before the answer finished "
                        "(no finish_reason and no [DONE])"
                    )
                if not texts and not finished:
                    raise Broken(f"{where} broke the protocol: a stream without choices")
        except (aiohttp.ClientError, TimeoutError) as e:
            error = UpstreamError(f"{where} is unreachable or hung up: {_describe(e)}")
            if not answered and _stale(e):
                raise _Retry(error, stale=True) from e
            self.pool.failed(up, error, at_once=isinstance(e, aiohttp.ClientConnectorError))
            raise _Retry(error) from e
        except MidAnswer as e:  # another upstream may answer, if nothing reached the client
            raise _Retry(e) from None
        except Broken as e:
            self.pool.failed(up, e)
            raise _Retry(e) from None
        finally:
            up.in_flight -= 1
        self.pool.worked(up)
        if usage is not None:
            yield usage

    async def _count(
        self, request: ChatRequest | CompletionRequest, texts: dict[int, str]
    ) -> Usage:
        if self.tokenizer is None:
            log.warning("upstream of '%s' gave no usage and no tokenizer is set", self.spec.name)
            return Usage()
        return await count_usage(self.tokenizer, request, list(texts.values()))

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings:
        tried: list[Upstream] = []
        last: HearthError | None = None
        body = {"model": self.upstream_model, "input": texts}
        stale_left = STALE_RETRIES * len(self.pool.upstreams)
        while (up := self.pool.pick(tried)) is not None:
            tried.append(up)
            up.in_flight += 1
            answered = False
            try:
                async with up.client.post(up.url + "/embeddings", json=body) as resp:
                    answered = True
                    status, raw = resp.status, await resp.read()
            except (aiohttp.ClientError, TimeoutError) as e:
                last = UpstreamError(
                    f"upstream {up.url} of '{self.spec.name}' is unreachable: {_describe(e)}"
                )
                if not answered and _stale(e) and stale_left > 0:
                    stale_left -= 1  # sent again, as in _stream
                    tried.pop()
                    continue
                self.pool.failed(up, last, at_once=isinstance(e, aiohttp.ClientConnectorError))
                continue
            finally:
                up.in_flight -= 1
            if status != 200:
                last = upstream_error(status, raw, self.spec.name, up.url)
                if status >= 500:
                    self.pool.failed(up, last)
                    continue
                raise last
            try:
                data = json.loads(raw)
                rows = sorted(data["data"], key=lambda d: d["index"])
                vectors = [d["embedding"] for d in rows]
            except (ValueError, KeyError, TypeError) as e:
                last = Broken(
                    f"upstream {up.url} of '{self.spec.name}' sent embeddings hearth "
                    f"cannot read: {e!r}"
                )
                self.pool.failed(up, last)
                continue
            self.pool.worked(up)
            return Embeddings(vectors, int((data.get("usage") or {}).get("prompt_tokens", 0)))
        assert last is not None
        raise last

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


async def _replay(chunks: list[Delta | Usage]) -> AsyncGenerator[Delta | Usage, None]:
    for chunk in chunks:
        yield chunk


class _Retry(Exception):  # control flow, never leaves this module
    def __init__(self, error: HearthError, *, stale: bool = False) -> None:
        super().__init__(error.message)
        self.error = error
        self.stale = stale


def _stale(e: BaseException) -> bool:
    """Whether the connection dropped before the upstream said anything: what a kept-alive
    connection that the upstream closed as idle looks like when a request goes out on it
    (a refused connection is a dead upstream instead)."""
    return isinstance(
        e, (aiohttp.ServerDisconnectedError, aiohttp.ClientOSError)
    ) and not isinstance(e, aiohttp.ClientConnectorError)


def _describe(e: BaseException) -> str:
    return f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
