"""Local GGUF models through llama.cpp's own server core (the ``xllamacpp`` binding).

Why this binding: it runs llama.cpp's C++ server loop in-process, so requests from many
clients share one model with continuous batching over ``parallel`` slots; JSON-schema
constrained decoding, logprobs and exact usage come from llama.cpp itself. The measured
comparison with ``llama-cpp-python`` (which serialises requests per model) is in the README.

Generation runs in worker threads: ``Server.handle_chat_completions`` blocks while it calls
our callback once per streamed chunk; the callback hands chunks to the event loop and
returns True to make llama.cpp drop the request (that is how a disconnect cancels).
Tokenize, detokenize and chat-template rendering use the binding's loopback HTTP endpoint
(``loopback.LoopbackClient``), which is llama.cpp's own code for those operations, so counts
match usage exactly.
"""

from __future__ import annotations

import asyncio
import copy
import itertools
import json
import logging
import math
import os
import threading
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import aclosing
from typing import Any

from hearth.config import ModelSpec
from hearth.engines.base import Capabilities
from hearth.engines.json_schema import unenforced
from hearth.engines.loopback import LoopbackClient
from hearth.engines.openai_chunks import deltas
from hearth.engines.tool_calls import call_schema, extract, wire_tools
from hearth.errors import ContextLengthExceeded, EngineError, InvalidRequest, Unsupported
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
MAX_N = 8
_DONE = object()


class LlamaCppEngine:
    capabilities = Capabilities(max_n=MAX_N, logprobs=True, json_schema=True, tools="parsed")

    def __init__(self, spec: ModelSpec) -> None:
        if not spec.path:
            raise EngineError(f"model '{spec.name}' has no GGUF path")
        self.spec = spec
        self.context_length = spec.context
        self.vocab_size: int | None = None
        self._server: Any = None
        self._http: LoopbackClient | None = None
        self._pool = ThreadPoolExecutor(
            max_workers=spec.parallel * MAX_N + 2, thread_name_prefix=f"llama-{spec.name}"
        )
        # Adapters loaded with the model are chosen per request: every request names the
        # scale of each (all zero for the base), so one loaded model serves them all.
        self._lora: list[dict[str, Any]] | None = (
            [{"id": i, "scale": 0.0} for i in range(len(spec.loras))] if spec.loras else None
        )
        self._owner = True

    def with_adapter(self, spec: ModelSpec) -> LlamaCppEngine:
        """A view of this loaded model that answers with ``spec``'s adapter switched on."""
        if spec.adapter not in self.spec.loras:
            raise EngineError(
                f"adapter '{spec.name}' was registered after '{self.spec.name}' was loaded; "
                "restart `hearth serve` to serve it"
            )
        view = copy.copy(self)
        view.spec = spec
        index = self.spec.loras.index(spec.adapter)
        view._lora = [
            {"id": i, "scale": spec.adapter_scale if i == index else 0.0}
            for i in range(len(self.spec.loras))
        ]
        view._owner = False
        return view

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._server = await loop.run_in_executor(self._pool, self._load)
        self._http = LoopbackClient(self._server.listening_address)
        _, models = await self._http.request("GET", "/v1/models")
        self.vocab_size = int(models["data"][0]["meta"]["n_vocab"])

    def _load(self) -> Any:
        import xllamacpp  # heavy: imported only when a local model is loaded

        spec = self.spec
        params = xllamacpp.CommonParams()
        params.model.path = spec.path
        params.n_parallel = spec.parallel
        # Each slot gets the full context: llama.cpp splits n_ctx evenly across slots.
        params.n_ctx = spec.context * spec.parallel
        threads = spec.threads or os.cpu_count() or 1
        params.cpuparams.n_threads = threads
        params.cpuparams_batch.n_threads = threads
        params.cache_ram_mib = spec.prompt_cache_mib
        params.port = 0  # loopback endpoint on a free port, for tokenize and templates
        params.verbosity = -1
        if spec.loras:
            adapters = []
            for path in spec.loras:
                adapter = xllamacpp.CommonAdapterLoraInfo()
                adapter.path = path
                adapter.scale = 0.0
                adapters.append(adapter)
            params.lora_adapters = adapters
            params.lora_init_without_apply = True
        try:
            return xllamacpp.Server(params)
        except RuntimeError as e:
            raise EngineError(f"llama.cpp could not load {spec.path}: {e}") from e

    async def close(self) -> None:
        if not self._owner:
            return  # a view: the loaded model belongs to the base
        if self._http:
            self._http.close()
        server, self._server = self._server, None
        if server is not None:
            # The destructor joins llama.cpp's loop thread; keep that off the event loop.
            await asyncio.get_running_loop().run_in_executor(self._pool, _drop, server)
        self._pool.shutdown(wait=False, cancel_futures=True)

    # -- tokens -------------------------------------------------------------------------
    async def _request(
        self, method: str, path: str, body: dict[str, Any] | None = None
    ) -> dict[str, Any]:
        assert self._http is not None, "engine not started"
        status, data = await self._http.request(method, path, body)
        if status != 200:
            raise _error(data.get("error") or {"message": str(data), "code": status})
        return dict(data)

    async def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[TokenPiece]:
        data = await self._request(
            "POST",
            "/tokenize",
            {
                "content": text,
                "add_special": add_special,
                "parse_special": parse_special,
                "with_pieces": True,
            },
        )
        return [TokenPiece(t["id"], _piece_bytes(t["piece"])) for t in data["tokens"]]

    async def detokenize(self, ids: list[int]) -> str:
        data = await self._request("POST", "/detokenize", {"tokens": ids})
        return str(data["content"])

    async def props(self) -> dict[str, Any]:
        """llama.cpp's /props: the GGUF's chat template, BOS and EOS among them."""
        return await self._request("GET", "/props")

    async def render_chat(self, messages: list[Message]) -> str:
        data = await self._request(
            "POST", "/apply-template", {"messages": _wire_messages(messages)}
        )
        return str(data["prompt"])

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings:
        raise Unsupported(
            f"model '{self.spec.name}' is a chat model; use an embedding model such as "
            "multilingual-e5-small for /v1/embeddings",
            param="model",
        )

    # -- generation ---------------------------------------------------------------------
    def check(self, request: ChatRequest | CompletionRequest) -> None:
        if isinstance(request, ChatRequest):
            ends = itertools.takewhile(lambda m: m.role == "assistant", reversed(request.messages))
            trailing = sum(1 for _ in ends)
            if trailing > 1:
                raise InvalidRequest(
                    f"the conversation ends with {trailing} assistant messages; llama.cpp "
                    "continues one (a prefill) but not several: merge them or end with the "
                    "user's message",
                    param="messages",
                )
        if isinstance(request, ChatRequest):
            schema = call_schema(request)
            problem = unenforced(schema) if schema is not None else None
            if problem is not None:
                raise Unsupported(
                    f"tool_choice: a tool's parameters: {problem}. A required or named call is "
                    "constrained by a grammar, and hearth refuses a schema it would not fully "
                    "enforce.",
                    param="tools",
                )
        fmt = request.params.response_format
        if fmt and fmt.get("type") == "json_schema":
            problem = unenforced(fmt.get("schema") or {})
            if problem is not None:
                raise Unsupported(
                    f"response_format: {problem}. The model's output is constrained by a "
                    "grammar, and hearth refuses a schema it would not fully enforce.",
                    param="response_format.json_schema.schema",
                )

    def stream_chat(self, request: ChatRequest) -> AsyncIterator[Delta]:
        body: dict[str, Any] = {"messages": _wire_messages(request.messages)}
        if request.callable_tools:
            # The template renders the tools; the calls are parsed here, from the text,
            # because small models answer in shapes llama.cpp's parser does not take.
            body["tools"] = wire_tools(request)
            body["parse_tool_calls"] = False
        schema = call_schema(request)
        if schema is not None:  # required / named: a grammar makes the call well-formed
            body["json_schema"] = schema
        stream = self._stream("chat", body, request.params)
        return extract(stream, request) if request.callable_tools else stream

    async def next_token_logprobs(self, prompt: list[int], k: int) -> dict[int, float]:
        """The model's top-k next tokens after ``prompt`` (token ids), with log-probabilities
        of the raw distribution, as this view serves them (its adapter applied)."""
        payload = {"prompt": prompt, "max_tokens": 1, "n_probs": k, "temperature": 0.0}
        first = await self._first_token(payload)
        return {int(t["id"]): float(t["logprob"]) for t in first["top_logprobs"]}

    async def _first_token(self, payload: dict[str, Any]) -> dict[str, Any]:
        """Run one non-streamed completion (this view's adapter applied) and return its
        first token's logprobs entry."""
        if self._lora is not None:
            payload = {**payload, "lora": self._lora}
        out: list[dict[str, Any]] = []

        def keep(data: dict[str, Any]) -> bool:
            out.append(data)
            return False  # never stop early

        def work() -> None:
            self._server.handle_completions(payload, keep)

        await asyncio.get_running_loop().run_in_executor(self._pool, work)
        if not out or "error" in out[-1]:
            raise _error((out[-1] if out else {}).get("error") or {"message": "no answer"})
        return dict(out[-1]["choices"][0]["logprobs"]["content"][0])

    async def choice_probs(self, prompt: str, choices: Sequence[str]) -> dict[str, float]:
        """The probability of each of ``choices`` (short literal answers, e.g. "A".."D") as
        the first tokens after ``prompt``, in one request: a grammar allows only the choices
        and the sampler chain is neutral (temperature 1, no top-k/top-p/min-p). llama.cpp
        reports the grammar-constrained distribution when it had to resample, else the raw
        one (its grammar check runs after sampling); both have the same ratios between the
        choices, so they are renormalised over the choices here. ``n_probs`` is wide enough
        that a choice missing from the list has a negligible share."""
        grammar = "root ::= " + " | ".join(json.dumps(c) for c in choices)
        payload: dict[str, Any] = {
            "prompt": prompt,
            "max_tokens": 1,
            "n_probs": 100,
            "post_sampling_probs": True,
            "grammar": grammar,
            "temperature": 1.0,
            "top_k": 0,
            "top_p": 1.0,
            "min_p": 0.0,
            "typical_p": 1.0,
            "repeat_penalty": 1.0,
            "seed": 0,
        }
        first = await self._first_token(payload)
        probs = {c: 0.0 for c in choices}
        for t in first.get("top_probs") or first.get("top_logprobs") or []:
            piece = t.get("token", "")
            if piece in probs:
                p = t["prob"] if "prob" in t else math.exp(float(t["logprob"]))
                probs[piece] += float(p)
        total = sum(probs.values())
        if total <= 0:
            return {c: 1.0 / len(choices) for c in choices}
        return {c: p / total for c, p in probs.items()}

    def stream_completion(self, request: CompletionRequest) -> AsyncIterator[Delta]:
        return self._stream("completion", {"prompt": request.prompt}, request.params)

    async def _stream(
        self, kind: str, body: dict[str, Any], params: GenerationParams
    ) -> AsyncGenerator[Delta, None]:
        # n > 1 runs as n parallel requests: llama.cpp's own n reports usage for one
        # choice only, and separate requests share the prompt through its prompt cache.
        payload = {**body, **self._sampling(params), "stream": True}
        if self._lora is not None:
            payload["lora"] = self._lora
        payload["stream_options"] = {"include_usage": True}
        streams = [self._one(kind, payload, index) for index in range(params.n)]
        prompt_tokens = 0
        completion_tokens = 0
        # aclosing: a closed stream must reach llama.cpp now, not when it is collected.
        async with aclosing(_merge(streams)) as merged:
            async for chunk in merged:
                if chunk.usage is not None:
                    prompt_tokens = chunk.usage.prompt_tokens
                    completion_tokens += chunk.usage.completion_tokens
                    continue
                yield chunk
        yield Delta(usage=Usage(prompt_tokens, completion_tokens))

    def _sampling(self, params: GenerationParams) -> dict[str, Any]:
        out: dict[str, Any] = dict(self.spec.sampling)
        for key in (
            "max_tokens",
            "temperature",
            "top_p",
            "seed",
            "presence_penalty",
            "frequency_penalty",
            "repeat_penalty",
        ):
            value = getattr(params, key)
            if value is not None:
                out[key] = value
        if params.stop:
            out["stop"] = params.stop
        if params.logit_bias:
            out["logit_bias"] = {str(k): v for k, v in params.logit_bias.items()}
        if params.logprobs:
            out["logprobs"] = True
            out["top_logprobs"] = params.top_logprobs
            out["n_probs"] = params.top_logprobs  # completions endpoint reads this one
        fmt = params.response_format
        if fmt and fmt.get("type") == "json_schema":
            out["json_schema"] = fmt.get("schema") or {}
        elif fmt and fmt.get("type") == "json_object":
            out["json_schema"] = {"type": "object"}
        return out

    async def _one(
        self, kind: str, payload: dict[str, Any], index: int
    ) -> AsyncGenerator[Delta, None]:
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[Any] = asyncio.Queue()
        stop = threading.Event()

        def on_chunk(data: dict[str, Any]) -> bool:
            loop.call_soon_threadsafe(queue.put_nowait, data)
            return stop.is_set()

        handle: Callable[..., Any] = (
            self._server.handle_chat_completions
            if kind == "chat"
            else self._server.handle_completions
        )

        def work() -> None:
            try:
                handle(payload, on_chunk)
            except Exception as e:  # noqa: BLE001 - handed to the event loop, raised there
                loop.call_soon_threadsafe(queue.put_nowait, e)
            finally:
                loop.call_soon_threadsafe(queue.put_nowait, _DONE)

        future = loop.run_in_executor(self._pool, work)
        started = False
        try:
            while True:
                item = await queue.get()
                if item is _DONE:
                    break
                if isinstance(item, Exception):
                    raise _failure(item, started) from item
                for chunk in _deltas(item, index):
                    started = True
                    yield chunk
        finally:
            # llama.cpp reads this on its next chunk and drops the request, freeing the slot.
            stop.set()
            future.add_done_callback(_log_thread_error)


def _failure(exc: Exception, started: bool) -> Exception:
    """llama.cpp's server core reads a request before it generates: what it throws then
    (std::invalid_argument, a JSON value out of range: ValueError or TypeError here) is about
    the request. Anything else, or anything once tokens flow, is a fault."""
    if not started and isinstance(exc, ValueError | TypeError):
        return InvalidRequest(f"llama.cpp refused the request: {exc}")
    return EngineError(f"llama.cpp failed: {exc}")


def _log_thread_error(future: asyncio.Future[None]) -> None:
    if not future.cancelled() and future.exception() is not None:
        log.error("llama.cpp worker failed: %s", future.exception())


def _drop(server: Any) -> None:
    del server


def _wire_messages(messages: list[Message]) -> list[dict[str, Any]]:
    return [m.to_openai() for m in messages]


def _piece_bytes(piece: str | list[int]) -> bytes:
    # llama.cpp gives a string for valid UTF-8 and a byte list for a partial character.
    return bytes(piece) if isinstance(piece, list) else piece.encode("utf-8")


def _deltas(data: dict[str, Any], index: int) -> list[Delta]:
    if "error" in data:
        raise _error(data["error"])
    return deltas(data, index)


def _error(err: dict[str, Any]) -> Exception:
    if err.get("type") == "exceed_context_size_error":
        return ContextLengthExceeded(int(err.get("n_prompt_tokens", 0)), int(err.get("n_ctx", 0)))
    if err.get("code") == 400 or err.get("type") == "invalid_request_error":
        return InvalidRequest(str(err.get("message", err)))
    return EngineError(f"llama.cpp: {err.get('message', err)}")


async def _merge(streams: list[AsyncGenerator[Delta, None]]) -> AsyncGenerator[Delta, None]:
    """Interleave several chunk streams as their chunks arrive."""
    if len(streams) == 1:
        try:
            async for chunk in streams[0]:
                yield chunk
        finally:
            await streams[0].aclose()
        return
    queue: asyncio.Queue[Any] = asyncio.Queue()

    async def pump(stream: AsyncGenerator[Delta, None]) -> None:
        try:
            async for chunk in stream:
                await queue.put(chunk)
        except Exception as e:  # noqa: BLE001 - re-raised by the consumer below
            await queue.put(e)
        finally:
            await stream.aclose()
            await queue.put(_DONE)

    tasks = [asyncio.create_task(pump(s)) for s in streams]
    try:
        remaining = len(tasks)
        while remaining:
            item = await queue.get()
            if item is _DONE:
                remaining -= 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
