"""One generation request end to end: slot, stream or whole answer, usage, call log."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

import anyio
from fastapi import Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth.apps.output import structured
from hearth.apps.run import AppCall
from hearth.apps.run import run as run_app
from hearth.engines.base import Engine, check_token_ids, count_usage
from hearth.engines.runner import Runner
from hearth.errors import ContextLengthExceeded, HearthError, Unsupported, UpstreamError
from hearth.server.auth import Caller
from hearth.server.errors import error_body
from hearth.server.memory import Memory
from hearth.server.render import Renderer, usage_json
from hearth.server.services import Call, Services
from hearth.server.sse import EventStream, FastJSON
from hearth.server.sse import event as _sse
from hearth.types import ChatRequest, CompletionRequest, Delta, Usage

log = logging.getLogger(__name__)


def _schema_of(request: ChatRequest) -> dict[str, Any] | None:
    fmt = request.params.response_format
    return fmt.get("schema") if fmt and fmt.get("type") == "json_schema" else None


async def checked(
    request: ChatRequest,
    generate: Callable[[ChatRequest], AsyncIterator[Delta]],
    schema: dict[str, Any],
) -> AsyncIterator[Delta]:
    """A plain model's ``response_format`` json_schema answer, held to the same rule as an
    app's: valid against the schema (re-asked up to twice) or an error."""
    result = await structured(request, generate, schema, retries=2)
    yield Delta(text=result.text, finish_reason=result.finish_reason)
    yield Delta(usage=result.usage)


def check_request(runner: Runner, request: ChatRequest | CompletionRequest) -> None:
    """Everything a request must be for this model, before it waits for a slot."""
    params = request.params
    caps = runner.engine.capabilities
    name = runner.spec.name
    if not caps.chat:
        raise Unsupported(
            f"model '{name}' does not generate text; it serves embeddings", param="model"
        )
    if params.n > caps.max_n:
        raise Unsupported(
            f"model '{name}' supports n up to {caps.max_n}; got n={params.n}", param="n"
        )
    if params.logprobs and not caps.logprobs:
        raise Unsupported(f"model '{name}' does not return logprobs", param="logprobs")
    if params.response_format and not caps.json_schema:
        raise Unsupported(
            f"model '{name}' cannot constrain output to JSON", param="response_format"
        )
    if isinstance(request, ChatRequest) and request.callable_tools and not caps.tools:
        raise Unsupported(
            f"model '{name}' does not call tools yet; send the request without 'tools' "
            "(or with tool_choice 'none')",
            param="tools",
        )
    check_token_ids(runner.engine, params.logit_bias or {}, model=name, param="logit_bias")
    runner.engine.check(request)


async def _usage_so_far(
    engine: Engine, request: ChatRequest | CompletionRequest, r: Renderer
) -> Usage:
    """Usage of a stream that ended early: what was produced, counted by the model."""
    if r.usage is not None:
        return r.usage
    try:
        return await count_usage(engine, request, [c.text for c in r.choices.values()])
    except HearthError:
        return Usage()


async def worst_case(engine: Engine, request: ChatRequest | CompletionRequest) -> Usage:
    """The most a request may use: its prompt, and ``max_tokens`` per choice or else the
    rest of the context. A remote model with no tokenizer counts its prompt as 0."""
    try:
        prompt = (await count_usage(engine, request, [])).prompt_tokens
    except Unsupported:
        prompt = 0
    per_choice = request.params.max_tokens or max(engine.context_length - prompt, 0)
    return Usage(prompt, per_choice * request.params.n)


async def complete(
    services: Services,
    runner: Runner,
    request: ChatRequest,
    *,
    caller: Caller,
    endpoint: str,
    app: AppCall | None = None,
    run: tuple[str, str] | None = None,
) -> tuple[str, Usage, str]:
    """A whole chat answer (text, usage, call id), logged like any call under ``endpoint``
    and counted against the caller's key: hearth's own use of a model (a query
    translation), or ``app``'s prepared call (``request`` is then its request)."""
    if app is not None and app.refusal is not None:
        await refuse(services, app, caller=caller, endpoint=endpoint, stream=False, prefix="app")
    prefix = "int" if app is None else "app"
    call = Call(
        services,
        runner.spec.name,
        endpoint,
        False,
        caller=caller,
        prefix=prefix,
        app=app,
        engine=runner.engine,
        run_id=run[0] if run else None,
        step=run[1] if run else None,
    )
    check_request(runner, request)
    _consumed_whole(request, app, True)
    await call.reserve(lambda: worst_case(runner.engine, request), request.params)
    renderer = Renderer(kind="chat", id=call.id, created=int(time.time()), model=call.model)
    fallbacks = list(runner.spec.fallbacks)
    try:
        while True:
            engine = runner.engine
            start = _plain_starter(engine, request, app)
            got = False
            try:
                async for chunk in runner.stream(start):
                    got = True
                    renderer.add(chunk)
            except UpstreamError as e:
                if got or not fallbacks:
                    raise
                runner = await _fall_back(services, runner, fallbacks.pop(0), call, e)
                renderer.model = runner.spec.name
                continue
            break
    except HearthError as e:
        usage = getattr(e, "usage", None) or renderer.usage or Usage()
        await call.finish(usage, "error", e.message)
        raise
    except BaseException:
        with anyio.CancelScope(shield=True):  # the client went away: still log the call
            usage = await _usage_so_far(runner.engine, request, renderer)
            await call.finish(usage, "cancelled")
        raise
    usage = renderer.usage or Usage()
    await call.finish(usage, "ok")
    return (renderer.choices[0].text if renderer.choices else ""), usage, call.id


async def complete_text(
    services: Services, runner: Runner, request: ChatRequest, *, caller: Caller, endpoint: str
) -> str:
    """The text of :func:`complete`."""
    text, _, _ = await complete(services, runner, request, caller=caller, endpoint=endpoint)
    return text


async def refuse(
    services: Services,
    app: AppCall,
    *,
    caller: Caller,
    endpoint: str,
    stream: bool,
    prefix: str,
) -> None:
    """Log an app call whose input moderation blocked, with its hits, then raise the 400."""
    assert app.refusal is not None
    call = Call(services, app.model, endpoint, stream, caller=caller, prefix=prefix, app=app)
    await call.finish(Usage(), "error", app.refusal.message)
    raise app.refusal


@dataclass
class Started:
    """A generation that has produced its first chunk (or ended before one)."""

    call: Call
    renderer: Renderer
    engine: Engine
    request: ChatRequest | CompletionRequest
    first: Delta | None
    chunks: AsyncGenerator[Delta, None]
    memory: Memory | None = None

    async def keep(self) -> None:
        """Store the finished turn in memory, once the answer is whole."""
        if self.memory is not None:
            await self.memory.keep(self.renderer.text, response_id=self.call.id)

    def release(self) -> None:
        if self.memory is not None:
            self.memory.release()


async def begin(
    services: Services,
    runner: Runner,
    request: ChatRequest | CompletionRequest,
    *,
    caller: Caller,
    stream: bool,
    endpoint: str,
    prefix: str,
    app: AppCall | None = None,
    shown: str | None = None,
    memory: Memory | None = None,
    call_id: str = "",
    run: tuple[str, str] | None = None,
) -> Started:
    """Log and reserve the call, start it in a slot and wait for its first chunk, so that a
    full queue, an oversized prompt or a bad parameter is a proper HTTP error rather than
    an error inside a stream. On failure the memory's lock is released."""
    try:
        kind = "chat" if isinstance(request, ChatRequest) else "completion"
        if app is not None and app.refusal is not None:
            await refuse(
                services, app, caller=caller, endpoint=endpoint, stream=stream, prefix=prefix
            )
        call = Call(
            services,
            runner.spec.name,
            endpoint,
            stream,
            caller=caller,
            prefix=prefix,
            app=app,
            engine=runner.engine,
            id=call_id,
            budget=memory.budget if memory else None,
            conversation_id=memory.thread.conversation if memory else None,
            run_id=run[0] if run else None,
            step=run[1] if run else None,
        )
        call.count_parts()
        _consumed_whole(request, app, not stream)
        await call.reserve(lambda: worst_case(runner.engine, request), request.params)
        renderer = Renderer(
            kind=kind,
            id=call.id,
            created=int(time.time()),
            model=shown or runner.spec.name,
            n=request.params.n,
            echo=request.prompt if isinstance(request, CompletionRequest) and request.echo else "",
            details=memory.budget.as_dict() if memory else None,
        )
        fallbacks = list(runner.spec.fallbacks)
        while True:
            engine = runner.engine
            chunks = runner.stream(_starter(engine, request, app))
            try:
                first = await anext(chunks, None)
            except UpstreamError as e:
                await chunks.aclose()
                if not fallbacks:
                    await call.finish(Usage(), "error", e.message)
                    raise
                runner = await _fall_back(services, runner, fallbacks.pop(0), call, e)
                renderer.model = shown or runner.spec.name
                continue
            except HearthError as e:
                await chunks.aclose()
                await call.finish(getattr(e, "usage", None) or Usage(), "error", e.message)
                if isinstance(e, ContextLengthExceeded):
                    e.param = "messages" if kind == "chat" else "prompt"
                raise
            except BaseException as e:
                # A fault, or the request cancelled while it waited: logged all the same, and
                # its reservation against the key's limits given back.
                with anyio.CancelScope(shield=True):
                    await chunks.aclose()
                    if isinstance(e, asyncio.CancelledError):
                        await call.finish(Usage(), "cancelled")
                    else:
                        await call.finish(Usage(), "error", repr(e)[:500])
                raise
            break
        return Started(call, renderer, engine, request, first, chunks, memory)
    except BaseException:
        if memory is not None:
            memory.release()
        raise


def _consumed_whole(
    request: ChatRequest | CompletionRequest, app: AppCall | None, whole: bool
) -> None:
    """Tell the engine whether anyone sees the answer before its end (the request, and an
    app's prepared request, which is what its engine gets)."""
    request.whole = whole
    if app is not None:
        app.request.whole = whole


async def _fall_back(
    services: Services, runner: Runner, name: str, call: Call, error: UpstreamError
) -> Runner:
    """Every upstream of ``runner``'s model failed before a token: model ``name`` answers
    instead, and the call (its log row and price) is its."""
    log.warning(
        "model '%s' failed (%s); falling back to '%s'", runner.spec.name, error.message, name
    )
    fallback = await services.registry.get(name, served_only=False)
    call.model = fallback.spec.name
    call.engine = fallback.engine
    return fallback


def _plain_starter(
    engine: Engine, request: ChatRequest, app: AppCall | None
) -> Callable[[], AsyncIterator[Delta]]:
    """What :func:`complete` runs: the chat as it is, or the app's prepared call."""
    if app is not None:
        return lambda: run_app(app, engine)
    return lambda: engine.stream_chat(request)


def _starter(
    engine: Engine, request: ChatRequest | CompletionRequest, app: AppCall | None
) -> Callable[[], AsyncIterator[Delta]]:
    """What :func:`begin` runs: the app's call, a completion, or a chat (held to its
    response_format schema when it has one)."""
    if app is not None:
        return lambda: run_app(app, engine)
    if isinstance(request, ChatRequest):
        schema = _schema_of(request)
        if schema is None:
            return lambda: engine.stream_chat(request)
        return lambda: checked(request, engine.stream_chat, schema)
    return lambda: engine.stream_completion(request)


async def generate(
    services: Services,
    runner: Runner,
    request: ChatRequest | CompletionRequest,
    *,
    caller: Caller,
    stream: bool,
    include_usage: bool | None,
    http: Request,
    extra: dict[str, Any] | None = None,
    app: AppCall | None = None,
    shown: str | None = None,
    memory: Memory | None = None,
    run: tuple[str, str] | None = None,
) -> JSONResponse | StreamingResponse | Response:
    """A chat or text completion, as OpenAI's JSON or SSE chunks. ``extra`` (e.g. a
    knowledge base's sources) joins the whole response, or the final chunk of a stream.
    ``app``: the request is that app's, prepared; it runs through the app's output
    moderation and schema. ``memory``: the turn is stored once the answer is whole."""
    chat = isinstance(request, ChatRequest)
    started = await begin(
        services,
        runner,
        request,
        caller=caller,
        stream=stream,
        endpoint="chat.completions" if chat else "completions",
        prefix="chatcmpl" if chat else "cmpl",
        app=app,
        shown=shown,
        memory=memory,
        run=run,
    )
    if not stream:
        try:
            if not await collect(started, http):
                return Response(status_code=499)  # nobody is listening; nginx's "client closed"
        finally:
            started.release()
        return FastJSON(started.renderer.whole() | (extra or {}))
    return EventStream(_events(started, include_usage, extra))


async def collect(s: Started, http: Request) -> bool:
    """The whole answer into ``s.renderer``, kept in memory and logged; False when the client
    went away first (logged as cancelled)."""
    r, chunks = s.renderer, s.chunks

    async def work() -> None:
        if s.first is not None:
            r.add(s.first)
            async for chunk in chunks:
                r.add(chunk)

    async def client_gone() -> None:
        # The body is already read, so the next message is the disconnect (or never comes).
        while (await http.receive())["type"] != "http.disconnect":
            pass

    task = asyncio.create_task(work())
    watch = asyncio.create_task(client_gone())
    try:
        await asyncio.wait({task, watch}, return_when=asyncio.FIRST_COMPLETED)
        if not task.done():
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
            await chunks.aclose()
            await s.call.finish(await _usage_so_far(s.engine, s.request, r), "cancelled")
            return False
        task.result()
        await s.keep()
    except HearthError as e:
        await s.call.finish(r.usage or Usage(), "error", e.message)
        raise
    finally:
        watch.cancel()
        await chunks.aclose()
    await s.call.finish(r.usage or Usage(), "ok")
    return True


async def settle(s: Started, status: str, error: str | None) -> None:
    """A stream's bookkeeping when it ends, however it ends (shielded: it runs on client
    disconnect too, inside a cancelled scope)."""
    with anyio.CancelScope(shield=True):
        try:
            await s.chunks.aclose()
            r = s.renderer
            usage = (
                await _usage_so_far(s.engine, s.request, r)
                if status != "ok"
                else (r.usage or Usage())
            )
            await s.call.finish(usage, status, error)
        finally:
            s.release()


async def _events(
    s: Started, include_usage: bool | None, extra: dict[str, Any] | None
) -> AsyncIterator[bytes]:
    r, chunks = s.renderer, s.chunks
    status, error = "cancelled", None
    tail = b""  # the answer's last events, sent with [DONE] in one write
    # the opening events go with the first chunk's, which is already here: one write
    head = b""
    try:
        head = b"".join(_sse(data) for data in r.opening())
        chunk = s.first
        while chunk is not None:
            r.add(chunk)
            following: Delta | None = None
            peeked = False
            if chunk.usage is None:
                if chunk.text:
                    s.call.mark_first_token()
                data = r.stream_chunk(chunk)
                if chunk.finish_reason:
                    data |= extra or {}
                    # Usage comes right after the last finish. Look ahead only here, so
                    # tokens are never held back, and let usage ride on this chunk by
                    # default: clients that read choices[0] of every chunk keep working.
                    following, peeked = await anext(chunks, None), True
                    if following is not None and following.usage:
                        r.add(following)
                        await s.keep()  # before the client can see the end of the answer
                        if include_usage is None:
                            data["usage"] = usage_json(following.usage, r.details)
                    if following is None or following.usage:
                        tail = _sse(data)  # nothing but usage follows: no token waits
                        chunk = following
                        continue
                yield head + _sse(data)
                head = b""
            chunk = following if peeked else await anext(chunks, None)
        if include_usage and r.usage is not None:
            tail += _sse(r.usage_chunk(r.usage) | (extra or {}))
        yield head + tail + b"data: [DONE]\n\n"
        status = "ok"
    except HearthError as e:
        status, error = "error", e.message
        body = _sse(error_body(e.message, e.type, e.code, e.param))
        yield head + tail + body + b"data: [DONE]\n\n"
    finally:
        await settle(s, status, error)
