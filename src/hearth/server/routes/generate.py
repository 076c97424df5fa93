from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse

from hearth.apps.run import prepare
from hearth.apps.spec import App
from hearth.errors import InvalidRequest, Unsupported
from hearth.server.auth import Caller, authenticate
from hearth.server.generation import check_request, generate
from hearth.server.openapi import STREAMED, errors
from hearth.server.protocol import ChatCompletionBody, CompletionBody
from hearth.server.routes.deps import services
from hearth.server.services import Services

router = APIRouter()
RESPONSES = errors(400, 404, 413, 429, 502) | STREAMED


@router.post("/v1/chat/completions", response_model=None, responses=RESPONSES)
async def chat_completions(
    body: ChatCompletionBody,
    http: Request,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> JSONResponse | StreamingResponse | Response:
    return await _generate(body, http, svc, caller)


@router.post("/v1/completions", response_model=None, responses=RESPONSES)
async def completions(
    body: CompletionBody,
    http: Request,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> JSONResponse | StreamingResponse | Response:
    return await _generate(body, http, svc, caller)


async def _generate(
    body: ChatCompletionBody | CompletionBody, http: Request, svc: Services, caller: Caller
) -> JSONResponse | StreamingResponse | Response:
    if isinstance(body, ChatCompletionBody):
        app = svc.resolve_app(caller, body.model)
        if app is not None:
            return await _app(body, app, http, svc, caller)
        if body.variables is not None:
            raise InvalidRequest(
                f"'variables' fill an app's templates; '{body.model}' is a model, not an app",
                param="variables",
            )
    runner = await svc.runner(caller, body.model)
    request = body.to_domain()
    check_request(runner, request)
    return await generate(
        svc,
        runner,
        request,
        caller=caller,
        stream=body.stream,
        include_usage=body.include_usage(),
        http=http,
    )


async def _app(
    body: ChatCompletionBody,
    app: tuple[App, str],
    http: Request,
    svc: Services,
    caller: Caller,
) -> JSONResponse | StreamingResponse | Response:
    spec, model = app
    runner = await svc.registry.get(model)
    request = body.to_domain()
    if request.params.n > 1:
        raise Unsupported("an app answers with one choice; send n=1", param="n")
    prepared = await prepare(
        spec,
        model=model,
        messages=request.messages,
        variables=body.variables,
        params=request.params,
        engine=runner.engine,
        guard=svc.guard,
        kb=lambda: svc.kb,
    )
    if prepared.refusal is None:  # a refused call is logged and raised by generate
        check_request(runner, prepared.request)
    extra: dict[str, Any] = {
        "app": {"name": spec.name, "variant": prepared.variant.name,
                "prompt_version": prepared.version},
    }  # fmt: skip
    if spec.knowledge is not None:
        extra["sources"] = prepared.sources
    return await generate(
        svc,
        runner,
        prepared.request,
        caller=caller,
        stream=body.stream,
        include_usage=body.include_usage(),
        http=http,
        extra=extra,
        app=prepared,
        shown=body.model,
    )
