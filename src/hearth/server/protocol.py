"""OpenAI wire models: validate requests here, convert to domain types, and back."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from hearth.types import ChatRequest, CompletionRequest, GenerationParams, Message


class _Body(BaseModel):
    # Unknown fields are ignored: SDKs send extras (user, metadata, ...) we do not use.
    model_config = ConfigDict(extra="ignore")


class TextPart(_Body):
    type: Literal["text"]
    text: str


class WireMessage(_Body):
    role: Literal["system", "developer", "user", "assistant", "tool"]
    content: str | list[TextPart] | None = None
    name: str | None = None

    def to_domain(self) -> Message:
        content = self.content
        parts = [p.text for p in content] if isinstance(content, list) else content
        return Message.from_openai(self.role, parts, self.name)


class JsonSchemaSpec(_Body):
    name: str = "response"
    schema_: dict[str, Any] = Field(default_factory=dict, alias="schema")
    strict: bool | None = None


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


class _Sampling(_Body):
    model: str = Field(min_length=1)
    max_tokens: int | None = Field(default=None, ge=1)
    temperature: float | None = Field(default=None, ge=0, le=2)
    top_p: float | None = Field(default=None, gt=0, le=1)
    n: int = Field(default=1, ge=1, le=128)
    stop: str | list[str] | None = None
    seed: int | None = None
    presence_penalty: float | None = Field(default=None, ge=-2, le=2)
    frequency_penalty: float | None = Field(default=None, ge=-2, le=2)
    repeat_penalty: float | None = Field(default=None, gt=0, le=10)  # llama.cpp extension
    stream: bool = False
    stream_options: StreamOptions | None = None

    @field_validator("stop")
    @classmethod
    def _stops(cls, v: str | list[str] | None) -> str | list[str] | None:
        if isinstance(v, list) and len(v) > 4:
            raise ValueError("at most 4 stop sequences are allowed")
        return v

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
            **extra,
        )


class ChatCompletionBody(_Sampling):
    messages: list[WireMessage] = Field(min_length=1)
    max_completion_tokens: int | None = Field(default=None, ge=1)
    response_format: ResponseFormat | None = None
    logprobs: bool = False
    top_logprobs: int | None = Field(default=None, ge=0, le=20)

    @model_validator(mode="after")
    def _checks(self) -> ChatCompletionBody:
        if self.top_logprobs and not self.logprobs:
            raise ValueError("top_logprobs needs logprobs: true")
        if self.max_tokens is None:
            self.max_tokens = self.max_completion_tokens
        return self

    def to_domain(self) -> ChatRequest:
        return ChatRequest(
            messages=[m.to_domain() for m in self.messages],
            params=self.params(
                response_format=self.response_format.to_domain() if self.response_format else None,
                logprobs=self.logprobs,
                top_logprobs=self.top_logprobs or 0,
            ),
        )


class CompletionBody(_Sampling):
    prompt: str | list[str]
    echo: bool = False
    logprobs: int | None = Field(default=None, ge=0, le=5)

    @field_validator("prompt")
    @classmethod
    def _one_prompt(cls, v: str | list[str]) -> str | list[str]:
        if isinstance(v, list) and len(v) != 1:
            raise ValueError("send one prompt per request (a string or a list of one string)")
        return v

    def to_domain(self) -> CompletionRequest:
        prompt = self.prompt if isinstance(self.prompt, str) else self.prompt[0]
        return CompletionRequest(
            prompt=prompt,
            params=self.params(logprobs=self.logprobs is not None, top_logprobs=self.logprobs or 0),
            echo=self.echo,
        )


class EmbeddingBody(_Body):
    model: str = Field(min_length=1)
    input: str | list[str] = Field(min_length=1)
    encoding_format: Literal["float", "base64"] = "float"
    dimensions: int | None = Field(default=None, ge=1)

    def texts(self) -> list[str]:
        return [self.input] if isinstance(self.input, str) else list(self.input)


class TokenizeBody(_Body):
    model: str | None = None
    content: str
    add_special: bool = False
    parse_special: bool = True
    with_pieces: bool = True


class DetokenizeBody(_Body):
    model: str | None = None
    tokens: list[int]


class TokenCountBody(_Body):
    """Either ``input`` (plain text) or ``messages`` (a chat request, counted as usage)."""

    model: str | None = None
    input: str | None = None
    messages: list[WireMessage] | None = None

    @model_validator(mode="after")
    def _one_of(self) -> TokenCountBody:
        if (self.input is None) == (self.messages is None):
            raise ValueError("send exactly one of 'input' (text) or 'messages' (chat)")
        if self.messages is not None and not self.messages:
            raise ValueError("messages must not be empty")
        return self
