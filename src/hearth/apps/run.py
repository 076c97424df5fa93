"""Running an app: ``prepare`` turns (app, model, variables, the caller's messages) into the
chat request the model sees; ``run`` turns that into the stream of deltas the caller gets,
through output moderation and the output schema. The server, ``hearth apps run`` and
``hearth apps test`` all go through these two functions."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import jsonschema

from hearth.apps.guard import SEVERITY, ContentFiltered, Flag, Guard, check_input
from hearth.apps.knowledge import Context, fit, retrieve
from hearth.apps.output import OutputInvalid, instruction, problem, structured
from hearth.apps.spec import App, Variant
from hearth.engines.base import Engine, count_usage
from hearth.errors import InvalidRequest
from hearth.rag.answer import language
from hearth.rag.stores.base import Store
from hearth.types import ChatRequest, Delta, GenerationParams, Message, Usage

if TYPE_CHECKING:
    from hearth.apps.moderation import Matcher

_TYPES = {"string": "string", "integer": "integer", "number": "number", "boolean": "boolean",
          "array": "array", "object": "object"}  # fmt: skip


def split_model(name: str) -> tuple[str, str | None]:
    """``"review-reply@smollm2"`` -> ``("review-reply", "smollm2")``."""
    app, at, model = name.partition("@")
    return app, (model or None) if at else None


StreamChat = Callable[[ChatRequest], AsyncIterator[Delta]]


@dataclass
class AppCall:
    """One app call: what was prepared, and what happened while it ran."""

    app: App
    variant: Variant
    model: str
    version: str
    request: ChatRequest
    context: Context | None = None
    parts: dict[str, str] = field(default_factory=dict)  # knowledge / history / input texts
    flags: list[Flag] = field(default_factory=list)
    matcher: Matcher | None = None
    canned: str | None = None  # blocked input answered with the app's reply
    refusal: ContentFiltered | None = None  # blocked input without a reply: a 400 to log
    retries: int = 0
    finish_reason: str | None = None
    value: Any = None  # the parsed document, with an output schema
    # an agent app: runs the tool loop over the engine's stream instead of one answer
    agent: (
        Callable[[Callable[[ChatRequest], AsyncIterator[Delta]]], AsyncIterator[Delta]] | None
    ) = None

    @property
    def sources(self) -> list[dict[str, Any]]:
        return self.context.as_dicts() if self.context else []


def check_variables(app: App, given: dict[str, Any] | None) -> dict[str, Any]:
    """The caller's variables over the inputs' defaults; a missing required one, a wrong
    type or an unknown name is a 400 naming it."""
    given = dict(given or {})
    unknown = [k for k in given if k not in app.inputs]
    if unknown:
        known = ", ".join(app.inputs) or "none"
        raise InvalidRequest(
            f"app '{app.name}' has no input '{unknown[0]}'; its inputs: {known}",
            param=f"variables.{unknown[0]}",
        )
    out: dict[str, Any] = {}
    for name, spec in app.inputs.items():
        if name in given and given[name] is not None:
            value = given[name]
            schema: dict[str, Any] = {"type": _TYPES[spec.type]}
            if spec.enum:
                schema["enum"] = list(spec.enum)
            error = jsonschema.exceptions.best_match(
                jsonschema.Draft202012Validator(schema).iter_errors(value)
            )
            if error is not None:
                raise InvalidRequest(
                    f"variable '{name}' of app '{app.name}': {error.message}",
                    param=f"variables.{name}",
                )
            out[name] = value
        elif spec.required:
            raise InvalidRequest(
                f"app '{app.name}' needs the variable '{name}'"
                + (f" ({spec.description})" if spec.description else "")
                + "; send it in the body's 'variables' object",
                param=f"variables.{name}",
            )
        else:
            out[name] = spec.default if spec.default is not None else ""
    return out


async def prepare(
    app: App,
    *,
    model: str,
    messages: list[Message],
    variables: dict[str, Any] | None,
    params: GenerationParams,
    engine: Engine,
    guard: Guard | None,
    kb: Callable[[], Store] | None,
    extra: dict[str, Any] | None = None,
) -> AppCall:
    """Everything before generation: variables, input moderation, knowledge, templates.
    Input that moderation blocks comes back with ``refusal`` set (to log, then raise).
    ``extra``: more values the templates read (a chain step's ``steps`` and ``inputs``)."""
    variant = app.variant(model)
    values = check_variables(app, variables) | (extra or {})
    users = [i for i, m in enumerate(messages) if m.role == "user"]
    if not users:
        raise InvalidRequest("an app call needs a user message", param="messages")
    call = AppCall(app, variant, model, app.version(variant), ChatRequest([], params))
    messages = list(messages)
    if app.moderation is not None and guard is not None:
        call.matcher = guard.matcher(app.moderation)
        blocked = _moderate_input(call, messages, values)
        if blocked is not None:
            if app.moderation.reply is None:
                call.refusal = ContentFiltered([f.hit.word.category for f in blocked])
                return call
            call.canned = app.moderation.reply
    last = users[-1]
    values |= {"input": messages[last].content, "app": app.name, "model": model}
    values |= {"context": "", "sources": []}
    searches = any(kind == "kb_search" for kind, _ in app.tools)  # the model searches itself
    if app.knowledge is not None and kb is not None and not searches:
        query = app.templates.render(app.knowledge.query, values)
        results = await retrieve(app.knowledge, kb(), query) if query.strip() else []
        budget = app.knowledge.max_tokens or max(engine.context_length // 2, 64)
        call.context = await fit(results, engine, budget)
        values |= {"context": call.context.text, "sources": call.sources}
        call.parts["knowledge"] = call.context.text
    system = app.templates.render(variant.system, values) if variant.system else ""
    if call.context is not None and call.context.text and not app.templates.uses("context"):
        head = "参考资料：" if language(system + values["input"]) == "zh" else "Sources:"
        system = f"{system}\n\n{head}\n{call.context.text}".strip()
    if app.output is not None:
        system = f"{system}\n\n{instruction(app.output.schema, language(system))}".strip()
    user = app.templates.render(variant.user, values)
    while messages and messages[0].role == "system":  # the caller's system text joins the app's
        system = f"{system}\n\n{messages.pop(0).content}".strip()
        last -= 1
    history = messages[:last]
    final = [*history, Message("user", user, messages[last].name), *messages[last + 1 :]]
    call.parts["history"] = "\n".join(m.content for m in history)
    call.parts["input"] = user
    call.request = ChatRequest(
        [Message("system", system), *final] if system else final,
        _params(params, variant, app, engine),
    )
    return call


def _moderate_input(
    call: AppCall, messages: list[Message], values: dict[str, Any]
) -> list[Flag] | None:
    """Mask or flag the caller's user messages and text variables; the blocking flags, if
    any input is blocked."""
    spec = call.app.moderation
    assert spec is not None and call.matcher is not None
    blocking: list[Flag] = []
    for i, m in enumerate(messages):
        if m.role == "user":
            text, block = check_input(call.matcher, m.content, spec.input, call.flags)
            messages[i] = replace(m, content=text)
            blocking += [block] if block else []
    for name, value in values.items():
        if isinstance(value, str):
            values[name], block = check_input(call.matcher, value, spec.input, call.flags)
            blocking += [block] if block else []
    return blocking or None


def _params(
    params: GenerationParams, variant: Variant, app: App, engine: Engine
) -> GenerationParams:
    """The variant's sampling under the request's own values."""
    given = {k: v for k, v in vars(params).items() if v is not None and v is not False and v != []}
    merged = replace(GenerationParams(), **{**variant.sampling, **given})
    if app.output is not None:
        if engine.capabilities.json_schema:
            merged.response_format = {"type": "json_schema", "schema": app.output.schema}
        merged.logprobs, merged.top_logprobs = False, 0
    return merged


async def run(call: AppCall, engine: Engine) -> AsyncIterator[Delta]:
    """The app's answer as deltas (the last one carries usage), moderated and checked."""
    if call.canned is not None:
        call.finish_reason = "stop"
        yield Delta(text=call.canned, finish_reason="stop")
        yield Delta(usage=Usage())
        return
    if call.agent is not None:
        async for d in call.agent(engine.stream_chat):
            call.finish_reason = d.finish_reason or call.finish_reason
            yield d
        return
    if call.app.output is not None:
        async for d in _structured(call, engine):
            yield d
        return
    spec = call.app.moderation
    if call.matcher is None or call.matcher.empty or spec is None:
        async for d in engine.stream_chat(call.request):
            call.finish_reason = d.finish_reason or call.finish_reason
            yield d
        return
    from hearth.apps.moderation import StreamFilter

    filt = StreamFilter(call.matcher, spec.output)
    stream = engine.stream_chat(call.request)
    produced = ""
    try:
        async for d in stream:
            if d.usage is not None:
                yield d
                continue
            produced += d.text
            safe = filt.feed(d.text)
            if d.finish_reason and not filt.blocked:
                safe += filt.flush()
            if filt.blocked:
                call.finish_reason = "content_filter"
                yield Delta(index=d.index, text=safe, finish_reason="content_filter")
                await _close(stream)
                yield Delta(usage=await count_usage(engine, call.request, [produced]))
                return
            call.finish_reason = d.finish_reason or call.finish_reason
            if safe or d.finish_reason:
                yield Delta(index=d.index, text=safe, finish_reason=d.finish_reason)
    finally:
        await _close(stream)
        call.flags += [Flag(h, "output", filt.action(h)) for h in filt.hits]


async def _close(stream: AsyncIterator[Delta]) -> None:
    """Stop a generation: engines stop when their stream is closed."""
    aclose = getattr(stream, "aclose", None)
    if aclose is not None:
        await aclose()


async def _structured(call: AppCall, engine: Engine) -> AsyncIterator[Delta]:
    output = call.app.output
    assert output is not None
    try:
        checked = await structured(call.request, engine.stream_chat, output.schema, output.retries)
    except OutputInvalid:
        call.retries = output.retries
        raise
    call.retries, call.value = checked.retries, checked.value
    text, finish = checked.text, checked.finish_reason
    spec = call.app.moderation
    if call.matcher is not None and spec is not None and not call.matcher.empty:
        hits = call.matcher.find(text)
        flags = [Flag(h, "output", h.word.action or spec.output) for h in hits]
        call.flags += flags
        masked = [f.hit for f in flags if f.action == "mask"]
        worst = max((SEVERITY[f.action] for f in flags), default=0)
        if masked and worst < SEVERITY["block"]:
            text = call.matcher.mask(text, masked)
            call.value, why = problem(text, output.schema)
            worst = SEVERITY["block"] if why else worst  # masking broke the document
        if worst == SEVERITY["block"]:
            text, finish, call.value = "", "content_filter", None
    call.finish_reason = finish
    yield Delta(text=text, finish_reason=finish)
    yield Delta(usage=checked.usage)
