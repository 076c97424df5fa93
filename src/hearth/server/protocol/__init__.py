"""OpenAI wire models: validate requests here, convert to domain types, and back.

What a request may be is written once, as types and constraints, and FastAPI writes the same
into ``/openapi.json``, so the document and the validation agree. Rules a type cannot say
(message order, what an assistant message needs) are checked in ``to_domain`` and raise
``InvalidRequest`` naming the field.
"""

from __future__ import annotations

import json
from dataclasses import replace
from typing import Annotated, Any, Literal

import jsonschema
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    StringConstraints,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from hearth.errors import InvalidRequest
from hearth.types import (
    ChatRequest,
    CompletionRequest,
    GenerationParams,
    Message,
    ToolCall,
    ToolSpec,
)

INT32_MAX = 2**31 - 1
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1

NonEmpty = Annotated[str, StringConstraints(min_length=1)]
TokenId = Annotated[int, Field(ge=0, le=INT32_MAX)]
# logit_bias keys are token ids written as JSON object keys, i.e. decimal strings.
TokenIdKey = Annotated[str, StringConstraints(pattern=r"^[0-9]{1,10}$")]
Bias = Annotated[float, Field(ge=-100, le=100)]


def lone_surrogate(value: Any, path: str = "") -> str | None:
    """The path of the first string holding a lone UTF-16 surrogate ("\\ud800"), which JSON
    allows and no tokenizer can encode; None when every string is valid Unicode."""
    if isinstance(value, str):
        if value.isascii():
            return None
        try:
            value.encode("utf-8")
        except UnicodeEncodeError:
            return path or "body"
        return None
    if isinstance(value, dict):
        for key, item in value.items():
            found = lone_surrogate(key, path) or lone_surrogate(item, _join(path, key))
            if found:
                return found
    elif isinstance(value, list):
        for i, item in enumerate(value):
            found = lone_surrogate(item, _join(path, i))
            if found:
                return found
    return None


def _join(path: str, key: object) -> str:
    return f"{path}.{key}" if path else str(key)


class _Body(BaseModel):
    # Unknown fields are ignored: SDKs send extras (user, metadata, ...) we do not use.
    model_config = ConfigDict(extra="ignore")


class RequestBody(_Body):
    """A whole request body. Its strings must be valid Unicode."""

    @model_validator(mode="before")
    @classmethod
    def _valid_unicode(cls, data: Any) -> Any:
        where = lone_surrogate(data)
        if where is not None:
            raise PydanticCustomError(
                "unicode",
                "'{where}' holds a lone UTF-16 surrogate (a \\ud800-\\udfff escape without "
                "its pair), which is not valid Unicode; send UTF-8 text",
                {"where": where},
            )
        return data


class TextPart(_Body):
    type: Literal["text"]
    text: str


class WireFunctionCall(_Body):
    name: NonEmpty
    arguments: str = Field(description="The arguments, a JSON object as a string")


class WireToolCall(_Body):
    id: NonEmpty
    type: Literal["function"] = "function"
    function: WireFunctionCall


class WireMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None
    tool_calls: list[WireToolCall] | None = None
    tool_call_id: str | None = None

    def to_domain(self) -> Message:
        content = self.content
        parts = [p.text for p in content] if isinstance(content, list) else content
        message = Message.from_openai(self.role, parts, self.name)
        calls = tuple(
            ToolCall(c.id, c.function.name, c.function.arguments) for c in self.tool_calls or ()
        )
        return replace(message, tool_calls=calls, tool_call_id=self.tool_call_id)


def domain_messages(messages: list[WireMessage], field: str = "messages") -> list[Message]:
    """OpenAI's rules for a conversation, then the domain messages.

    System, developer and user messages need content. An assistant message needs content or
    tool calls, whose arguments are JSON objects. A ``tool`` message answers one of the
    calls of the assistant message before it (``tool_call_id``), once. A conversation may
    end with an assistant message: the reply continues it (a prefill), so it must have text.
    """
    open_calls: set[str] = set()
    for i, m in enumerate(messages):
        where = f"{field}.{i}"
        if m.role == "tool":
            if not open_calls:
                raise InvalidRequest(
                    f"'{where}' has role 'tool', which answers a tool call of an assistant "
                    "message before it; there is no tool call left to answer. Send the "
                    "assistant's message with its tool_calls first, or send the result as a "
                    "user message.",
                    param=f"{where}.role",
                )
            if m.tool_call_id not in open_calls:
                raise InvalidRequest(
                    f"'{where}.tool_call_id' is {m.tool_call_id!r}, which answers none of the "
                    f"open tool calls ({', '.join(sorted(open_calls))})",
                    param=f"{where}.tool_call_id",
                )
            open_calls.discard(m.tool_call_id)
        elif m.role != "assistant" or not m.tool_calls:
            open_calls = set()
        if m.tool_calls:
            if m.role != "assistant":
                raise InvalidRequest(
                    f"'{where}.tool_calls': only an assistant message makes tool calls",
                    param=f"{where}.tool_calls",
                )
            ids = [c.id for c in m.tool_calls]
            if len(set(ids)) != len(ids):
                raise InvalidRequest(
                    f"'{where}.tool_calls' repeats a call id; each call needs its own",
                    param=f"{where}.tool_calls",
                )
            for j, call in enumerate(m.tool_calls):
                _check_arguments(call.function.arguments, f"{where}.tool_calls.{j}")
            open_calls = set(ids)
            continue
        if m.content is None:
            raise InvalidRequest(
                f"'{where}.content' is missing: a {m.role} message needs content",
                param=f"{where}.content",
            )
    out = [m.to_domain() for m in messages]
    if out[-1].role == "assistant" and not out[-1].content:
        raise InvalidRequest(
            f"'{field}.{len(out) - 1}' is an assistant message with empty content at the "
            "end of the conversation; end with the user's message, or give the assistant "
            "text for the reply to continue",
            param=f"{field}.{len(out) - 1}.content",
        )
    return out


def _check_arguments(arguments: str, where: str) -> None:
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        value = None
    if not isinstance(value, dict):
        raise InvalidRequest(
            f"'{where}.function.arguments' must be a JSON object as a string, e.g. "
            '"{"city": "Paris"}"',
            param=f"{where}.function.arguments",
        )


class JsonSchemaSpec(_Body):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None

    @field_validator("schema_")
    @classmethod
    def _valid_schema(cls, schema: dict[str, Any]) -> dict[str, Any]:
        """Refuse what is not a JSON Schema at all; what a model's decoder cannot enforce is
        its engine's check."""
        try:
            jsonschema.validators.validator_for(schema).check_schema(schema)
        except jsonschema.SchemaError as e:
            where = "/".join(str(p) for p in e.absolute_path) or "(root)"
            raise PydanticCustomError(
                "json_schema",
                "not a valid JSON Schema: at {where}: {reason}",
                {"where": where, "reason": e.message},
            ) from None
        return schema


class ResponseFormat(_Body):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: JsonSchemaSpec | None = None

    @model_validator(mode="after")
    def _schema_given(self) -> ResponseFormat:
        if self.type == "json_schema" and self.json_schema is None:
            raise ValueError("response_format of type json_schema needs a json_schema object")
        return self

    def to_domain(self) -> dict[str, Any] | None:
        if self.type == "text":
            return None
        if self.type == "json_object":
            return {"type": "json_object"}
        assert self.json_schema is not None
        return {"type": "json_schema", "schema": self.json_schema.schema_}


class StreamOptions(_Body):
    include_usage: bool | None = None


class _Sampling(RequestBody):
    model: NonEmpty
    max_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=128)
    stop: NonEmpty | Annotated[list[NonEmpty], Field(max_length=4)] | None = None
    seed: int | None = Field(default=None, ge=INT64_MIN, le=INT64_MAX)
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repeat_penalty: float | None = Field(default=None, gt=0, le=10)  # llama.cpp extension
    logit_bias: dict[TokenIdKey, Bias] | None = None
    stream: bool = False
    stream_options: StreamOptions | None = None

    def stop_list(self) -> list[str]:
        if self.stop is None:
            return []
        return [self.stop] if isinstance(self.stop, str) else list(self.stop)

    def include_usage(self) -> bool | None:
        """None: usage rides on the last choice chunk; True: OpenAI's separate final chunk."""
        if self.stream_options is None or self.stream_options.include_usage is None:
            return None
        return self.stream_options.include_usage

    def params(self, **extra: Any) -> GenerationParams:
        return GenerationParams(
            max_tokens=self.max_tokens,
            temperature=self.temperature,
            top_p=self.top_p,
            stop=self.stop_list(),
            seed=self.seed,
            n=self.n,
            presence_penalty=self.presence_penalty,
            frequency_penalty=self.frequency_penalty,
            repeat_penalty=self.repeat_penalty,
            logit_bias={int(k): v for k, v in self.logit_bias.items()} if self.logit_bias else None,
            **extra,
        )


class WireFunction(_Body):
    name: Annotated[str, Field(pattern=r"^[A-Za-z0-9_-]{1,64}$")]
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool | None = None

    @field_validator("parameters")
    @classmethod
    def _valid_parameters(cls, schema: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if schema is None else JsonSchemaSpec._valid_schema(schema)


class WireTool(_Body):
    type: Literal["function"]
    function: WireFunction


class NamedFunction(_Body):
    name: NonEmpty


class NamedToolChoice(_Body):
    type: Literal["function"]
    function: NamedFunction


class ChatCompletionBody(_Sampling):
    messages: list[WireMessage] = Field(min_length=1)
    variables: dict[str, Any] | None = Field(
        default=None,
        description="An app's template variables (hearth extension; the model names an app)",
    )
    conversation: NonEmpty | None = Field(
        default=None,
        description="A conversation id (hearth extension): its remembered turns are put "
        "before these messages and the new turn is stored",
    )
    memory: dict[str, Any] | None = Field(
        default=None,
        description="This request's memory policy, within the app's or model's (hearth "
        "extension): {turns: N}, {tokens: N} or {none: true}",
    )
    max_completion_tokens: int | None = Field(default=None, ge=1, le=INT32_MAX)
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)
    tools: Annotated[list[WireTool], Field(max_length=128)] | None = None
    tool_choice: Literal["none", "auto", "required"] | NamedToolChoice | None = None
    parallel_tool_calls: bool | None = None

    @model_validator(mode="after")
    def _checks(self) -> ChatCompletionBody:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        names = [t.function.name for t in self.tools or ()]
        if len(set(names)) != len(names):
            raise ValueError("tools: each function needs its own name")
        choice = self.tool_choice
        if choice not in (None, "none", "auto") and not names:
            raise ValueError("tool_choice needs tools to choose from")
        if isinstance(choice, NamedToolChoice) and choice.function.name not in names:
            raise ValueError(
                f"tool_choice names '{choice.function.name}', which is not in tools "
                f"({', '.join(names)})"
            )
        if self.max_tokens is None:
            self.max_tokens = self.max_completion_tokens
        return self

    def to_domain(self) -> ChatRequest:
        choice = self.tool_choice
        named = choice.function.name if isinstance(choice, NamedToolChoice) else None
        return ChatRequest(
            messages=domain_messages(self.messages),
            params=self.params(
                response_format=self.response_format.to_domain() if self.response_format else None,
                logprobs=self.logprobs,
                top_logprobs=self.top_logprobs or 0,
            ),
            tools=tuple(
                ToolSpec(t.function.name, t.function.description or "", t.function.parameters or {})
                for t in self.tools or ()
            ),
            tool_choice="required" if named else (choice or "auto"),  # type: ignore[arg-type]
            tool_name=named,
            parallel_tool_calls=self.parallel_tool_calls is not False,
        )


class CompletionBody(_Sampling):
    prompt: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1, max_length=1)] = Field(
        description="One prompt: a string, or a list of one string."
    )
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)

    def to_domain(self) -> CompletionRequest:
        prompt = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        return CompletionRequest(
            prompt=prompt,
            params=self.params(logprobs=self.logprobs is not None, top_logprobs=self.logprobs or 0),
            echo=self.echo,
        )


class EmbeddingBody(RequestBody):
    model: NonEmpty
    input: NonEmpty | Annotated[list[NonEmpty], Field(min_length=1)]
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class TokenizeBody(RequestBody):
    model: str | None = None
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = True


class DetokenizeBody(RequestBody):
    model: str | None = None
    tokens: list[TokenId]


class TokenCountBody(RequestBody):
    """Either ``input`` (plain text) or ``messages`` (a chat request, counted as usage)."""

    model: str | None = None
    input: str | None = None
    messages: Annotated[list[WireMessage], Field(min_length=1)] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> TokenCountBody:
        if (self.input is None) == (self.messages is None):
            raise ValueError("send exactly one of 'input' (text) or 'messages' (chat)")
        return self
