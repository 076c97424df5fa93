"""One chat turn, from the caller's domain messages to the request the model gets: the
model or app it names (``apps.prepare``), then memory (``attach``). Chat completions and
responses both go through ``prepare_turn``: two wire formats over one path."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

from hearth.apps.guard import check_input
from hearth.apps.run import AppCall, prepare
from hearth.apps.spec import App
from hearth.engines.runner import Runner
from hearth.errors import InvalidRequest, Unsupported
from hearth.server.agents import agent_run
from hearth.server.auth import Caller
from hearth.server.chains import chain_request
from hearth.server.generation import check_request
from hearth.server.memory import Memory, attach, policy_for
from hearth.server.services import Services
from hearth.types import ChatRequest, Message


@dataclass
class Turn:
    runner: Runner
    request: ChatRequest
    app: App | None = None
    call: AppCall | None = None  # the prepared app call
    memory: Memory | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # the app's name, sources
    run: tuple[str, str] | None = None  # a chain's run id and its last step

    @property
    def shown(self) -> str:
        return self.runner.spec.name


async def prepare_turn(
    svc: Services,
    caller: Caller,
    *,
    model: str,
    request: ChatRequest,
    variables: dict[str, Any] | None,
    conversation: str | None = None,
    previous: str | None = None,
    memory: dict[str, Any] | None = None,
) -> Turn:
    """The turn for ``model`` (a model, an app or ``app@model``). With a conversation or a
    previous response, its remembered turns join the prompt under the memory policy, and
    the caller's lock on the conversation is held until the turn is stored or fails."""
    resolved = svc.resolve_app(caller, model)
    if resolved is None and variables is not None:
        raise InvalidRequest(
            f"'variables' fill an app's templates; '{model}' is a model, not an app",
            param="variables",
        )
    if memory is not None and conversation is None and previous is None:
        raise InvalidRequest(
            "'memory' chooses what a conversation remembers; send it with 'conversation' "
            "(or previous_response_id)",
            param="memory",
        )
    if resolved is None:
        turn = Turn(await svc.runner(caller, model), request)
    elif resolved[0].steps:
        turn = await _chain_turn(svc, caller, resolved, request, variables)
    else:
        turn = await _app_turn(svc, resolved, request, variables)
    if conversation is None and previous is None:
        if turn.call is None or turn.call.refusal is None:
            check_request(turn.runner, turn.request)
        return turn
    if turn.request.params.n > 1:
        raise Unsupported("a conversation takes one answer per turn; send n=1", param="n")
    if turn.call is not None and turn.call.refusal is not None:
        return turn  # refused input: logged and raised by generation, nothing remembered
    policy = policy_for(svc, turn.runner.spec.name, turn.app, memory)
    knowledge = 0
    if turn.call is not None and turn.call.context is not None and turn.call.context.text:
        knowledge = len(await turn.runner.engine.tokenize(turn.call.context.text))
    req, turn.memory = await attach(
        svc,
        turn.runner,
        turn.request,
        caller=caller,
        new=_stored(turn, request.messages),
        conversation=conversation,
        previous=previous,
        policy=policy,
        knowledge=knowledge,
    )
    turn.request = req
    if turn.call is not None:
        turn.call.request = req
    try:
        check_request(turn.runner, req)
    except BaseException:
        turn.memory.release()
        raise
    return turn


async def _app_turn(
    svc: Services, resolved: tuple[App, str], request: ChatRequest, variables: dict[str, Any] | None
) -> Turn:
    spec, model = resolved
    runner = await svc.registry.get(model)
    if request.params.n > 1:
        raise Unsupported("an app answers with one choice; send n=1", param="n")
    call = await prepare(
        spec,
        model=model,
        messages=request.messages,
        variables=variables,
        params=request.params,
        engine=runner.engine,
        guard=svc.guard,
        kb=lambda: svc.kb,
    )
    # The caller's functions reach the model (an agent returns their calls to the caller).
    call.request = replace(
        call.request,
        tools=request.tools,
        tool_choice=request.tool_choice,
        tool_name=request.tool_name,
        parallel_tool_calls=request.parallel_tool_calls,
    )
    extra: dict[str, Any] = {
        "app": {"name": spec.name, "variant": call.variant.name, "prompt_version": call.version}
    }
    if spec.knowledge is not None and not any(k == "kb_search" for k, _ in spec.tools):
        extra["sources"] = call.sources
    run = None
    agent = await agent_run(svc, call)
    if agent is not None:
        extra["run"] = {"id": agent[0], "tools": agent[1]}
        run = (agent[0], "answer")
    return Turn(runner, call.request, spec, call, extra=extra, run=run)


async def _chain_turn(
    svc: Services,
    caller: Caller,
    resolved: tuple[App, str],
    request: ChatRequest,
    variables: dict[str, Any] | None,
) -> Turn:
    if request.params.n > 1:
        raise Unsupported("an app answers with one choice; send n=1", param="n")
    chain, model, call = await chain_request(svc, caller, resolved, request, variables)
    runner = await svc.registry.get(model)
    steps = [chain.results[s.id].as_dict() for s in chain.app.steps if s.id in chain.results]
    extra = {
        "app": {
            "name": chain.app.name,
            "variant": call.variant.name,
            "prompt_version": call.version,
        },
        "run": {"id": chain.id, "steps": steps},
    }
    return Turn(runner, call.request, chain.app, call, extra=extra, run=(chain.id, chain.final.id))


def _stored(turn: Turn, messages: list[Message]) -> list[Message]:
    """The caller's new messages as memory keeps them: without system text, and with an
    app's masked words masked (what was said, not the app's template around it)."""
    out = [m for m in messages if m.role != "system"]
    call = turn.call
    if call is None or call.matcher is None or call.app.moderation is None:
        return out
    spec = call.app.moderation
    masked = []
    for m in out:
        if m.role == "user":
            text, _ = check_input(call.matcher, m.content, spec.input, [])
            m = replace(m, content=text)
        masked.append(m)
    return masked
