"""Chains over HTTP: an app with ``steps:`` runs them in order, each model step a logged call
tied to the run's id. ``POST /v1/apps/{name}/run`` returns (or streams) every step; as a
model on chat completions or responses the chain's answer is the last step, streamed."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

from fastapi.responses import StreamingResponse

from hearth.apps.chain import Chain, StepResult, render_step, run_steps, step_failed
from hearth.apps.run import AppCall, prepare
from hearth.apps.spec import App
from hearth.apps.steps import Step
from hearth.errors import HearthError, InvalidRequest, ModelNotFound
from hearth.server.auth import Caller
from hearth.server.errors import error_body
from hearth.server.generation import begin, complete, settle
from hearth.server.services import Services
from hearth.server.sse import EventStream
from hearth.server.sse import event as _sse
from hearth.types import ChatRequest, GenerationParams, Message, Usage


def step_model(svc: Services, step: Step, default: str) -> str:
    model = step.model or default
    if model not in svc.registry.names():
        raise ModelNotFound(model, svc.registry.names())
    return model


async def _prepare_step(
    svc: Services, chain: Chain, step: Step, model: str, params: GenerationParams
) -> AppCall:
    assert step.app is not None
    runner = await svc.registry.get(model)
    return await prepare(
        step.app,
        model=model,
        messages=[Message("user", chain.input)],
        variables=chain.variables,
        params=replace(params),
        engine=runner.engine,
        guard=svc.guard,
        kb=lambda: svc.kb,
        extra=chain.extra(),
    )


def _runner_for(svc: Services, caller: Caller, default: str, params: GenerationParams) -> Any:
    async def run(chain: Chain, step: Step) -> StepResult:
        model = step_model(svc, step, default)
        call = await _prepare_step(svc, chain, step, model, params)
        runner = await svc.registry.get(model)
        start = time.perf_counter()
        text, usage, call_id = await complete(
            svc,
            runner,
            call.request,
            caller=caller,
            endpoint="apps.run",
            app=call,
            run=(chain.id, step.id),
        )
        value = call.value if step.app is not None and step.app.output is not None else text
        return StepResult(
            step.id,
            text,
            value,
            model,
            usage,
            (time.perf_counter() - start) * 1000,
            call_id,
            call.finish_reason,
        )

    return run


async def final_call(
    svc: Services, chain: Chain, default: str, params: GenerationParams
) -> tuple[str, AppCall]:
    """The last step as an app call ready to stream: a model step prepared, a template step
    as its rendered text (answered as is, like a canned reply)."""
    step = chain.final
    if step.app is not None:
        model = step_model(svc, step, default)
        return model, await _prepare_step(svc, chain, step, model, params)
    try:
        text = render_step(chain, step).text
    except HearthError as e:
        raise step_failed(e, step) from None
    app = chain.app
    request = ChatRequest([Message("user", chain.input)], params)
    call = AppCall(app, app.variant(None), default, app.version(app.variant(None)), request)
    call.canned = text
    return default, call


async def chain_request(
    svc: Services,
    caller: Caller,
    resolved: tuple[App, str],
    request: ChatRequest,
    variables: dict[str, Any] | None,
) -> tuple[Chain, str, AppCall]:
    """A chain called as a model: the steps before the last one run now; the last one is
    returned prepared, to stream as the answer."""
    app, default = resolved
    users = [m for m in request.messages if m.role == "user"]
    if not users:
        raise InvalidRequest("an app call needs a user message", param="messages")
    chain = Chain.start(app, variables, users[-1].content)
    await run_steps(chain, _runner_for(svc, caller, default, request.params), final=False)
    model, call = await final_call(svc, chain, default, request.params)
    return chain, model, call


def run_json(chain: Chain, final: StepResult) -> dict[str, Any]:
    usage = chain.usage()
    return {
        "id": chain.id,
        "object": "app.run",
        "app": chain.app.name,
        "output": final.value,
        "text": final.text,
        "finish_reason": final.finish_reason,
        "steps": [chain.results[s.id].as_dict() for s in chain.app.steps if s.id in chain.results],
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
    }


async def run_chain(
    svc: Services,
    caller: Caller,
    app: App,
    default: str,
    *,
    input: str,
    variables: dict[str, Any],
    params: GenerationParams,
) -> dict[str, Any]:
    chain = Chain.start(app, variables, input)
    await run_steps(chain, _runner_for(svc, caller, default, params))
    return run_json(chain, chain.results[chain.final.id])


async def stream_chain(
    svc: Services,
    caller: Caller,
    app: App,
    default: str,
    *,
    input: str,
    variables: dict[str, Any],
    params: GenerationParams,
) -> StreamingResponse:
    """Progress per step (``step.started``, ``step.completed``), the last step's text as
    ``output.delta`` events, then ``run.completed`` with every step; ``error`` on failure."""
    chain = Chain.start(app, variables, input)
    events: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()

    async def on_step(what: str, step: Step, result: StepResult | None) -> None:
        event: dict[str, Any] = {"type": f"step.{what}", "run_id": chain.id, "step": step.id}
        if result is not None:
            event["result"] = result.as_dict()
        await events.put(event)

    async def body() -> AsyncIterator[bytes]:
        yield _sse(
            {
                "type": "run.created",
                "run_id": chain.id,
                "app": app.name,
                "steps": [s.id for s in app.steps],
            }
        )
        work = asyncio.ensure_future(
            run_steps(
                chain, _runner_for(svc, caller, default, params), final=False, on_step=on_step
            )
        )
        work.add_done_callback(lambda _: events.put_nowait(None))
        try:
            while (event := await events.get()) is not None:
                yield _sse(event)
            await work
            async for data in _final(svc, caller, chain, default, params):
                yield data
        except HearthError as e:
            yield _sse(
                {
                    "type": "error",
                    "run_id": chain.id,
                    **error_body(e.message, e.type, e.code, e.param),
                }
            )
        finally:
            work.cancel()

    return EventStream(body())


async def _final(
    svc: Services, caller: Caller, chain: Chain, default: str, params: GenerationParams
) -> AsyncIterator[bytes]:
    step = chain.final
    yield _sse({"type": "step.started", "run_id": chain.id, "step": step.id})
    model, call = await final_call(svc, chain, default, params)
    runner = await svc.registry.get(model)
    start = time.perf_counter()
    try:
        s = await begin(
            svc,
            runner,
            call.request,
            caller=caller,
            stream=True,
            endpoint="apps.run",
            prefix="app",
            app=call,
            run=(chain.id, step.id),
        )
    except HearthError as e:
        raise step_failed(e, step) from None
    status, error = "cancelled", None
    try:
        chunk = s.first
        while chunk is not None:
            s.renderer.add(chunk)
            if chunk.text:
                s.call.mark_first_token()
                yield _sse(
                    {
                        "type": "output.delta",
                        "run_id": chain.id,
                        "step": step.id,
                        "delta": chunk.text,
                    }
                )
            chunk = await anext(s.chunks, None)
        status = "ok"
    except HearthError as e:
        status, error = "error", e.message
        raise step_failed(e, step) from None
    finally:
        await settle(s, status, error)
    text = s.renderer.text
    value = call.value if step.app is not None and step.app.output is not None else text
    result = StepResult(
        step.id,
        text,
        value,
        model,
        s.renderer.usage or Usage(),
        (time.perf_counter() - start) * 1000,
        s.call.id,
        call.finish_reason,
    )
    chain.results[step.id] = result
    yield _sse(
        {"type": "step.completed", "run_id": chain.id, "step": step.id, "result": result.as_dict()}
    )
    yield _sse({"type": "run.completed", **run_json(chain, result)})
