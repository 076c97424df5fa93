"""The tool loop: the model answers, the tools it called run, their results go back, and
the model answers again, up to ``max_steps`` model turns.

What the model says streams out as it comes, every step (a ReAct model's thoughts, then its
answer). Calls to the app's own tools run here, concurrently within a step; calls to
functions the caller passed in the request end the run and go back to the caller as
ordinary ``tool_calls``. On the last step the model may not call tools, so a run always
ends with an answer. Usage is the whole run's.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, replace

from hearth.agents.tools import Outcome, Tool, invoke
from hearth.types import ChatRequest, Delta, Message, ToolCall, ToolCallDelta, Usage

StreamChat = Callable[[ChatRequest], AsyncIterator[Delta]]
OnTool = Callable[[int, int, Outcome], Awaitable[None]]  # step, position, outcome


@dataclass
class _Step:
    text: str
    calls: list[ToolCall]
    finish: str | None
    usage: Usage


async def run_loop(
    request: ChatRequest,
    stream_chat: StreamChat,
    tools: dict[str, Tool],
    *,
    max_steps: int,
    on_tool: OnTool | None = None,
) -> AsyncIterator[Delta]:
    """The run's deltas: text as the model writes it, the caller's tool calls if it made
    any, then the finish reason and the summed usage."""
    own = tuple(t.spec for t in tools.values())
    theirs = tuple(t for t in request.tools if t.name not in tools)
    messages = list(request.messages)
    prompt = completion = 0
    finish = "stop"
    said = False  # whether an earlier step's text went out
    seen: set[tuple[str, str]] = set()  # calls already run: a model repeating one is looping
    wrap_up = False
    for step in range(1, max_steps + 1):
        last = step == max_steps or wrap_up
        if last and step > 1:
            messages = [*messages, Message("user", _nudge(messages))]
        req = replace(
            request,
            messages=messages,
            tools=(*own, *theirs),
            tool_choice="none" if last else (request.tool_choice if step == 1 else "auto"),
            tool_name=request.tool_name if step == 1 and not last else None,
        )
        text = ""
        calls: dict[int, dict[str, str]] = {}
        step_finish: str | None = None
        async with aclosing(stream_chat(req)) as stream:  # type: ignore[type-var]
            async for d in stream:
                if d.usage is not None:
                    prompt += d.usage.prompt_tokens
                    completion += d.usage.completion_tokens
                    continue
                if d.tool_call is not None:
                    c = d.tool_call
                    entry = calls.setdefault(c.index, {"id": "", "name": "", "arguments": ""})
                    entry["id"] = c.id or entry["id"]
                    entry["name"] = c.name or entry["name"]
                    entry["arguments"] += c.arguments
                if d.text:
                    if said and not text:
                        yield Delta(text="\n\n")  # between one step's words and the next's
                    text += d.text
                    yield Delta(text=d.text, logprobs=d.logprobs)
                step_finish = d.finish_reason or step_finish
        said = said or bool(text.strip())
        made = [
            ToolCall(c["id"], c["name"], c["arguments"] or "{}") for _, c in sorted(calls.items())
        ]
        if not made:
            finish = step_finish or "stop"
            break
        caller = [c for c in made if c.name not in tools]
        if caller:  # the caller runs its own functions: hand them over and stop
            for i, mine in enumerate(caller):
                yield Delta(tool_call=ToolCallDelta(i, mine.id, mine.name, mine.arguments))
            finish = "tool_calls"
            break
        keys = [(c.name, _canonical(c.arguments)) for c in made]
        if all(k in seen for k in keys):  # nothing new to learn: answer from what it has
            wrap_up = True
            continue
        seen.update(keys)
        outcomes = await asyncio.gather(*(invoke(tools[c.name], c.arguments) for c in made))
        for position, outcome in enumerate(outcomes):
            if on_tool is not None:
                await on_tool(step, position, outcome)
        messages += [
            Message("assistant", text, tool_calls=tuple(made)),
            *(
                Message("tool", o.result, tool_call_id=c.id)
                for c, o in zip(made, outcomes, strict=True)
            ),
        ]
        if last:
            break
    yield Delta(finish_reason=finish)
    yield Delta(usage=Usage(prompt, completion))


def _canonical(arguments: str) -> str:
    try:
        return json.dumps(json.loads(arguments or "{}"), sort_keys=True)
    except ValueError:
        return arguments


def _nudge(messages: list[Message]) -> str:
    """The last turn's instruction (as agent frameworks' "generate" early stop does)."""
    asked = next((m.content for m in reversed(messages) if m.role == "user"), "")
    if any("\u4e00" <= ch <= "\u9fff" for ch in asked):
        return "请根据上面工具返回的结果，直接回答最初的问题，不要再调用工具。"
    return "Answer the original question now from the tool results above, without calling tools."
