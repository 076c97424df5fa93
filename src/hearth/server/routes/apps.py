"""/v1/apps: list, read, write (YAML or JSON) and delete app files, validate one, run one."""

from __future__ import annotations

import dataclasses
import json
import time
from typing import Any

import yaml
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import ConfigDict, Field

from hearth.apps.run import AppCall, prepare
from hearth.apps.source import AppInvalid
from hearth.apps.spec import App, TestCase, parse_app
from hearth.apps.testing import as_json, matrix, run_tests
from hearth.errors import InvalidRequest, ModelNotFound
from hearth.server.agents import agent_run
from hearth.server.auth import Caller, authenticate
from hearth.server.chains import run_chain, stream_chain
from hearth.server.generation import complete
from hearth.server.openapi import errors
from hearth.server.protocol import INT32_MAX, RequestBody
from hearth.server.routes.deps import services
from hearth.server.services import Services
from hearth.types import GenerationParams, Message

router = APIRouter(prefix="/v1/apps")

_FILE_BODY = {
    "requestBody": {
        "required": True,
        "description": "The app file: YAML (any text type) or JSON",
        "content": {
            "application/yaml": {"schema": {"type": "string"}},
            "application/json": {"schema": {"type": "object"}},
        },
    }
}


class RunBody(RequestBody):
    model_config = ConfigDict(extra="forbid")
    inputs: dict[str, Any] = Field(default_factory=dict, description="The app's variables")
    input: str = Field(default="", description="The user's message ({{ input }})")
    model: str | None = Field(default=None, description="Run the variant for this model")
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    seed: int | None = Field(default=None, ge=-(2**63), le=2**63 - 1)
    stream: bool = Field(default=False, description="A chain's progress per step, as events")


class TestBody(RequestBody):
    model_config = ConfigDict(extra="forbid")
    models: list[str] | None = Field(
        default=None, description="Only these models (default: every variant's model)"
    )


def summary(app: App) -> dict[str, Any]:
    return {
        "id": app.name,
        "object": "app",
        "description": app.description,
        "models": app.models(),
        "variants": list(app.variants),
        "inputs": {n: dataclasses.asdict(i) for n, i in app.inputs.items()},
        "knowledge": list(app.knowledge.kbs) if app.knowledge else [],
        "moderation": list(app.moderation.lists) if app.moderation else None,
        "output_schema": app.output.schema if app.output else None,
        "tests": len(app.tests),
        "versions": {
            v: app.version(app.variant(None if v == "default" else v)) for v in app.variants
        },
    }


def _visible(svc: Services, caller: Caller, name: str) -> App:
    app = svc.apps.get(name)
    if not caller.may_use_model(name):
        raise ModelNotFound(name, svc.app_names(caller))
    return app


async def _text(http: Request) -> str:
    """The request body as app-file text: JSON is re-written as YAML, other text kept."""
    raw = await http.body()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidRequest("the app file must be UTF-8 text", param="body") from None
    if not text.strip():
        raise InvalidRequest("send the app file (YAML or JSON) as the body", param="body")
    if "json" in http.headers.get("content-type", ""):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise InvalidRequest(f"the body is not JSON: {e}", param="body") from None
        if not isinstance(data, dict):
            raise InvalidRequest("an app is a JSON object", param="body")
        return yaml.safe_dump(data, allow_unicode=True, sort_keys=False)
    return text


@router.get("")
async def list_apps(
    svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    apps = [summary(a) for a in svc.apps.all() if caller.may_use_model(a.name)]
    broken = {f: [dataclasses.asdict(p) for p in e.problems] for f, e in svc.apps.broken().items()}
    return {"object": "list", "data": apps, "invalid_files": broken if caller.admin else {}}


@router.post("/validate", responses=errors(400))
async def validate(http: Request, caller: Caller = Depends(authenticate)) -> dict[str, Any]:
    """Check an app file without storing it: every problem with its field and line."""
    text = await _text(http)
    try:
        app = parse_app(text)
    except AppInvalid as e:
        return {"valid": False, "problems": [dataclasses.asdict(p) for p in e.problems]}
    return {"valid": True, "problems": [], "app": summary(app)}


@router.get("/{name}", responses=errors(404))
async def get_app(
    name: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    app = _visible(svc, caller, name)
    return summary(app) | {"text": app.text, "spec": app.raw}


@router.put("/{name}", responses=errors(400, 403), openapi_extra=_FILE_BODY)
async def put_app(
    name: str,
    http: Request,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    caller.require_admin("Writing an app")
    app, created = svc.apps.put(await _text(http), name=name)
    return summary(app) | {"created": created}


@router.delete("/{name}", responses=errors(403, 404))
async def delete_app(
    name: str, svc: Services = Depends(services), caller: Caller = Depends(authenticate)
) -> dict[str, Any]:
    caller.require_admin("Deleting an app")
    _visible(svc, caller, name)
    svc.apps.delete(name)
    return {"id": name, "object": "app", "deleted": True}


@router.post("/{name}/run", response_model=None, responses=errors(400, 404, 429, 502))
async def run_app(
    name: str,
    body: RunBody,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any] | StreamingResponse:
    """Run the app once: the output (the parsed object when the app has an output schema),
    usage, the variant and prompt version used, sources and moderation hits."""
    app = _visible(svc, caller, name)
    resolved = svc.resolve_app(caller, f"{name}@{body.model}" if body.model else name)
    assert resolved is not None
    _, model = resolved
    params = GenerationParams(max_tokens=body.max_tokens, temperature=body.temperature,
                              seed=body.seed)  # fmt: skip
    if app.steps:
        go = stream_chain if body.stream else run_chain
        return await go(svc, caller, app, model, input=body.input, variables=body.inputs,
                        params=params)  # fmt: skip
    if body.stream:
        raise InvalidRequest("stream is for chains (apps with steps)", param="stream")
    out, _ = await run_once(svc, caller, app, model, body.input, body.inputs, params, "apps.run")
    return out


async def run_once(
    svc: Services,
    caller: Caller,
    app: App,
    model: str,
    input: str,
    variables: dict[str, Any],
    params: GenerationParams,
    endpoint: str,
) -> tuple[dict[str, Any], AppCall]:
    """One run of a single-prompt app (an agent's tool loop included), logged under
    ``endpoint``: the run's JSON and the prepared call (for a test's assertions)."""
    runner = await svc.registry.get(model)
    call = await prepare(
        app,
        model=model,
        messages=[Message("user", input)],
        variables=variables,
        params=params,
        engine=runner.engine,
        guard=svc.guard,
        kb=lambda: svc.kb,
    )
    agent = await agent_run(svc, call)
    run = (agent[0], "answer") if agent is not None else None
    start = time.perf_counter()
    text, usage, call_id = await complete(
        svc, runner, call.request, caller=caller, endpoint=endpoint, app=call, run=run
    )
    out: dict[str, Any] = {
        "id": call_id,
        "object": "app.run",
        "app": app.name,
        "model": model,
        "variant": call.variant.name,
        "prompt_version": call.version,
        "output": call.value if app.output is not None else text,
        "text": text,
        "finish_reason": call.finish_reason,
        "usage": {
            "prompt_tokens": usage.prompt_tokens,
            "completion_tokens": usage.completion_tokens,
            "total_tokens": usage.total_tokens,
        },
        "seconds": round(time.perf_counter() - start, 3),
        "retries": call.retries,
        "sources": call.sources,
        "moderation": [f.as_dict() for f in call.flags],
    }
    if agent is not None:
        out["run"] = {"id": agent[0], "tools": agent[1]}
    return out, call


@router.post("/{name}/test", responses=errors(400, 404))
async def test_app(
    name: str,
    body: TestBody | None = None,
    svc: Services = Depends(services),
    caller: Caller = Depends(authenticate),
) -> dict[str, Any]:
    """Every test case of the app on every variant's model (the business × model matrix),
    each answer checked by the case's assertions; a failing cell is reported, not raised."""
    app = _visible(svc, caller, name)
    if not app.tests:
        raise InvalidRequest(f"app '{name}' has no tests; add a 'tests:' list to its file")
    models = (body.models if body else None) or matrix(app, svc.settings.default_model)
    params = GenerationParams(seed=0)

    async def one(case: TestCase, model: str) -> tuple[str, AppCall | None]:
        resolved = svc.resolve_app(caller, f"{name}@{model}")
        assert resolved is not None
        if app.steps:
            result = await run_chain(svc, caller, app, resolved[1], input=case.input,
                                     variables=case.vars, params=params)  # fmt: skip
            return str(result.get("text") or ""), None
        out, call = await run_once(
            svc, caller, app, resolved[1], case.input, case.vars, params, "apps.test"
        )
        return out["text"], call

    outcomes = await run_tests(app, models, one)
    return {
        "object": "app.test",
        "app": app.name,
        "models": models,
        "passed": sum(o.passed for o in outcomes),
        "total": len(outcomes),
        "results": as_json(outcomes),
    }
