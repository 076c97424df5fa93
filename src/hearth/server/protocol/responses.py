"""OpenAI's Responses and Conversations wire: request bodies, and the JSON of responses,
items and conversations (as the official SDK parses them)."""

from __future__ import annotations

import time
from typing import Annotated, Any, Literal

from pydantic import Field, ValidationError, field_validator, model_validator

from hearth.errors import InvalidRequest, Unsupported
from hearth.server.protocol import (
    INT64_MAX,
    INT64_MIN,
    NonEmpty,
    RequestBody,
    ResponseFormat,
    WireFunction,
    WireFunctionCall,
    WireMessage,
    WireToolCall,
    _Body,
    domain_messages,
)
from hearth.storage.conversations import Conversation, Item
from hearth.types import Message, ToolSpec


class ContentPart(_Body):
    type: Literal["input_text", "output_text", "text"]
    text: str


class InputItem(_Body):
    type: Literal["message"] | None = None
    role: Literal["user", "assistant", "system", "developer"]
    content: str | list[ContentPart]

    def to_domain(self) -> Message:
        text = (
            self.content if isinstance(self.content, str) else "".join(p.text for p in self.content)
        )
        return Message.from_openai(self.role, text)


class FunctionCallItem(_Body):
    """A call the model made, sent back as input with its result after it."""

    type: Literal["function_call"]
    call_id: NonEmpty
    name: NonEmpty
    arguments: str = Field(description="The arguments, a JSON object as a string")


class FunctionCallOutputItem(_Body):
    """The result of a function call: ``output`` answers the call ``call_id``."""

    type: Literal["function_call_output"]
    call_id: NonEmpty
    output: str | list[ContentPart]

    def text(self) -> str:
        return self.output if isinstance(self.output, str) else "".join(p.text for p in self.output)


AnyItem = InputItem | FunctionCallItem | FunctionCallOutputItem


def wire_messages(items: list[AnyItem]) -> list[WireMessage]:
    """Input items as chat messages: a run of function calls is one assistant message
    (joined to the assistant text just before it), each output a ``tool`` message."""
    out: list[WireMessage] = []
    for item in items:
        if isinstance(item, FunctionCallItem):
            call = WireToolCall(
                id=item.call_id, function=WireFunctionCall(name=item.name, arguments=item.arguments)
            )
            last = out[-1] if out else None
            if last is not None and last.role == "assistant":
                last.tool_calls = [*(last.tool_calls or []), call]
            else:
                out.append(WireMessage(role="assistant", content=None, tool_calls=[call]))
        elif isinstance(item, FunctionCallOutputItem):
            out.append(WireMessage(role="tool", content=item.text(), tool_call_id=item.call_id))
        else:
            out.append(WireMessage(role=item.role, content=item.to_domain().content))
    return out


class ResponseTool(_Body):
    """A function tool in the Responses shape (name and parameters at the top level)."""

    type: Literal["function"]
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    _valid_parameters = field_validator("parameters")(
        WireFunction._valid_parameters.__func__  # type: ignore[attr-defined]
    )

    def to_domain(self) -> ToolSpec:
        return ToolSpec(self.name, self.description or "", self.parameters or {})


class FunctionChoice(_Body):
    type: Literal["function"]
    name: NonEmpty


class ConversationRef(_Body):
    id: NonEmpty


class TextFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    name: str = "response"
    schema_: dict[str, Any] | None = Field(default=None, alias="schema")
    strict: bool | None = None


class TextConfig(_Body):
    format: TextFormat | None = None


class ResponsesBody(RequestBody):
    model: NonEmpty
    input: NonEmpty | Annotated[list[AnyItem], Field(min_length=1)]
    instructions: str | None = None
    previous_response_id: NonEmpty | None = None
    conversation: NonEmpty | ConversationRef | None = None
    store: bool = True
    max_output_tokens: int | None = Field(default=None, ge=1, le=2**31 - 1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    text: TextConfig | None = None
    stream: bool = False
    metadata: dict[str, str] | None = None
    tools: Annotated[list[ResponseTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | FunctionChoice | None = None
    parallel_tool_calls: bool | None = None
    variables: dict[str, Any] | None = Field(default=None, description="An app's variables")
    memory: dict[str, Any] | None = Field(default=None, description="This turn's memory policy")

    def conversation_id(self) -> str | None:
        c = self.conversation
        return c.id if isinstance(c, ConversationRef) else c

    @model_validator(mode="after")
    def _tool_checks(self) -> ResponsesBody:
        names = [t.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise ValueError("tools: each function needs its own name")
        choice = self.tool_choice
        if choice not in (None, "none", "auto") and not names:
            raise ValueError("tool_choice needs tools to choose from")
        if isinstance(choice, FunctionChoice) and choice.name not in names:
            raise ValueError(
                f"tool_choice names '{choice.name}', which is not in tools ({', '.join(names)})"
            )
        return self

    def new_messages(self) -> list[Message]:
        if self.previous_response_id and self.conversation is not None:
            raise InvalidRequest(
                "send 'previous_response_id' or 'conversation', not both", param="conversation"
            )
        items: list[AnyItem] = (
            [InputItem(role="user", content=self.input)]
            if isinstance(self.input, str)
            else self.input
        )
        calls = any(not isinstance(i, InputItem) for i in items)
        if calls and (self.previous_response_id or self.conversation is not None):
            raise Unsupported(
                "function_call and function_call_output items cannot continue a stored "
                "response or conversation yet; send the whole input (the earlier turns, the "
                "calls and their outputs) without 'previous_response_id' and 'conversation'",
                param="input",
            )
        out = [Message("system", self.instructions)] if self.instructions else []
        out += domain_messages(wire_messages(items), field="input")
        if not any(m.role == "user" for m in out):
            raise InvalidRequest("'input' needs a user message", param="input")
        return out

    def tool_specs(self) -> dict[str, Any]:
        """The ChatRequest fields for this body's tools."""
        choice = self.tool_choice
        named = choice.name if isinstance(choice, FunctionChoice) else None
        return {
            "tools": tuple(t.to_domain() for t in self.tools or ()),
            "tool_choice": "required" if named else (choice or "auto"),
            "tool_name": named,
            "parallel_tool_calls": self.parallel_tool_calls is not False,
        }

    def response_format(self) -> dict[str, Any] | None:
        fmt = self.text.format if self.text else None
        if fmt is None or fmt.type == "text":
            return None
        if fmt.type == "json_object":
            return {"type": "json_object"}
        if fmt.schema_ is None:
            raise InvalidRequest("text.format json_schema needs a 'schema'", param="text.format")
        spec = {"type": "json_schema", "json_schema": {"name": fmt.name, "schema": fmt.schema_}}
        try:
            return ResponseFormat.model_validate(spec).to_domain()
        except ValidationError as e:
            reason = e.errors()[0]["msg"] if e.errors() else str(e)
            raise InvalidRequest(f"text.format: {reason}", param="text.format.schema") from None


class ConversationBody(RequestBody):
    items: list[InputItem] | None = None
    metadata: dict[str, str] | None = None


class ConversationUpdate(RequestBody):
    metadata: dict[str, str] | None = None


class ItemsBody(RequestBody):
    items: Annotated[list[InputItem], Field(min_length=1)]


def item_json(item: Item) -> dict[str, Any]:
    part = "output_text" if item.role == "assistant" else "input_text"
    content: dict[str, Any] = {"type": part, "text": item.content}
    if part == "output_text":
        content["annotations"] = []
    return {
        "type": "message",
        "id": item.id,
        "role": item.role,
        "status": "completed",
        "content": [content],
    }


def page_json(items: list[Item], has_more: bool) -> dict[str, Any]:
    return {
        "object": "list",
        "data": [item_json(i) for i in items],
        "first_id": items[0].id if items else None,
        "last_id": items[-1].id if items else None,
        "has_more": has_more,
    }


def conversation_json(c: Conversation) -> dict[str, Any]:
    return {
        "id": c.id,
        "object": "conversation",
        "created_at": int(c.created),
        "metadata": c.metadata,
    }


def usage_json(prompt: int, completion: int, details: dict[str, Any] | None) -> dict[str, Any]:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0, **(details or {})},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": 0},
        "total_tokens": prompt + completion,
    }


def response_json(
    body: ResponsesBody,
    *,
    id: str,
    created: float,
    model: str,
    status: str,
    message_id: str,
    text: str | None,
    usage: dict[str, Any] | None,
    finish_reason: str | None = None,
    error: dict[str, Any] | None = None,
    extra: dict[str, Any] | None = None,
    calls: list[dict[str, Any]] | None = None,
    message: bool | None = None,
) -> dict[str, Any]:
    """A Response object; ``text`` None: no output yet (the stream's first events).
    ``calls``: the function_call items, after the message; ``message`` whether the message
    is an item (by default: when it has text or there are no calls)."""
    incomplete = None
    if finish_reason == "length":
        status, incomplete = "incomplete", {"reason": "max_output_tokens"}
    elif finish_reason == "content_filter":
        status, incomplete = "incomplete", {"reason": "content_filter"}
    output = (
        []
        if text is None
        else [
            {
                "type": "message",
                "id": message_id,
                "role": "assistant",
                "status": "completed" if status == "completed" else "incomplete",
                "content": [
                    {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
                ],
            }
        ]
    )
    if calls:
        if message is None:
            message = bool(text and text.strip())
        output = (output if message else []) + calls
    conv = body.conversation_id()
    fmt = (
        body.text.format.model_dump(by_alias=True, exclude_none=True)
        if body.text and body.text.format
        else {"type": "text"}
    )
    return {
        "id": id,
        "object": "response",
        "created_at": int(created),
        "completed_at": int(time.time()) if status == "completed" else None,
        "status": status,
        "model": model,
        "output": output,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": body.instructions,
        "metadata": body.metadata or {},
        "previous_response_id": body.previous_response_id,
        "conversation": {"id": conv} if conv else None,
        "store": body.store,
        "temperature": body.temperature,
        "top_p": body.top_p,
        "max_output_tokens": body.max_output_tokens,
        "parallel_tool_calls": body.parallel_tool_calls is not False,
        "tool_choice": (
            body.tool_choice.model_dump()
            if isinstance(body.tool_choice, FunctionChoice)
            else body.tool_choice or "auto"
        ),
        "tools": [
            {
                "type": "function",
                "name": t.name,
                "description": t.description,
                "parameters": t.parameters or {"type": "object", "properties": {}},
                "strict": bool(t.strict),
            }
            for t in body.tools or ()
        ],
        "text": {"format": fmt},
        "truncation": "disabled",
        "usage": usage,
        **(extra or {}),
    }


def function_call_json(call: dict[str, str], *, status: str = "completed") -> dict[str, Any]:
    """A function_call output item from a folded call (id, name, arguments)."""
    return {
        "type": "function_call",
        "id": "fc_" + call["id"].removeprefix("call_"),
        "call_id": call["id"],
        "name": call["name"],
        "arguments": call["arguments"],
        "status": status,
    }
