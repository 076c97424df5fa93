"""Domain values shared by every layer. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    name: str | None = None


@dataclass
class GenerationParams:
    max_tokens: int | None = None
    temperature: float | None = None
    top_p: float | None = None
    stop: list[str] = field(default_factory=list)
    seed: int | None = None
    n: int = 1
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    repeat_penalty: float | None = None
    # {"type": "json_object"} or {"type": "json_schema", "schema": {...}}
    response_format: dict[str, Any] | None = None
    logprobs: bool = False
    top_logprobs: int = 0


@dataclass
class ChatRequest:
    messages: list[Message]
    params: GenerationParams = field(default_factory=GenerationParams)


@dataclass
class CompletionRequest:
    prompt: str
    params: GenerationParams = field(default_factory=GenerationParams)
    echo: bool = False


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True)
class TopLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None


@dataclass(frozen=True)
class TokenLogprob:
    token: str
    logprob: float
    bytes: list[int] | None = None
    top: tuple[TopLogprob, ...] = ()


@dataclass
class Delta:
    """One piece of a generation. ``usage`` is set on the last chunk only."""

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    usage: Usage | None = None


@dataclass(frozen=True)
class TokenPiece:
    id: int
    piece: bytes

    @property
    def text(self) -> str:
        return self.piece.decode("utf-8", errors="replace")

    @property
    def partial(self) -> bool:
        """True when the piece is not valid UTF-8 by itself (part of a character)."""
        try:
            self.piece.decode("utf-8")
        except UnicodeDecodeError:
            return True
        return False


@dataclass(frozen=True)
class Embeddings:
    vectors: list[list[float]]
    prompt_tokens: int


@dataclass(frozen=True)
class Price:
    """Price per 1,000 tokens, in the configured currency."""

    input: float = 0.0
    output: float = 0.0

    def cost(self, usage: Usage) -> float:
        return (usage.prompt_tokens * self.input + usage.completion_tokens * self.output) / 1000
