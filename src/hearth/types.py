"""Domain values shared by every layer. No I/O here."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

Role = Literal["system", "user", "assistant", "tool"]
ROLES: tuple[str, ...] = ("system", "user", "assistant", "tool")


@dataclass(frozen=True)
class ToolCall:
    """A function call an assistant message made; ``arguments`` is a JSON object as text."""

    id: str
    name: str
    arguments: str = "{}"

    def to_openai(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "type": "function",
            "function": {"name": self.name, "arguments": self.arguments},
        }


@dataclass(frozen=True)
class Message:
    role: str
    content: str
    name: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # an assistant's calls
    tool_call_id: str | None = None  # the call a ``tool`` message answers

    def to_openai(self) -> dict[str, Any]:
        """The message as OpenAI's chat API (and llama.cpp's templates) take it."""
        out: dict[str, Any] = {"role": self.role, "content": self.content}
        if self.name:
            out["name"] = self.name
        if self.tool_calls:
            out["tool_calls"] = [c.to_openai() for c in self.tool_calls]
        if self.tool_call_id is not None:
            out["tool_call_id"] = self.tool_call_id
        return out

    @classmethod
    def from_openai(
        cls, role: str, content: str | list[str] | None, name: str | None = None
    ) -> Message:
        """A message as OpenAI's chat API sends it: ``developer`` is ``system``, content is
        a string, the texts of its text parts (joined), or null. The server's request
        bodies and ``hearth tokens --chat`` files both read messages through this."""
        text = "".join(content) if isinstance(content, list) else content
        return cls(role="system" if role == "developer" else role, content=text or "", name=name)


OPENAI_ROLES = ("system", "developer", "user", "assistant", "tool")


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
    logit_bias: dict[int, float] | None = None  # token id -> bias in [-100, 100]


@dataclass(frozen=True)
class ToolSpec:
    """A function the model may call: its JSON Schema ``parameters``."""

    name: str
    description: str = ""
    parameters: dict[str, Any] = field(default_factory=dict)


@dataclass
class ChatRequest:
    messages: list[Message]
    params: GenerationParams = field(default_factory=GenerationParams)
    tools: tuple[ToolSpec, ...] = ()
    tool_choice: str = "auto"  # "auto" | "none" | "required" (a named choice: required + name)
    tool_name: str | None = None  # the function a named tool_choice forces
    parallel_tool_calls: bool = True
    # the answer is used only once whole (not streamed to anyone): an engine may start it
    # over after a failure midway, as a remote pool does on its next upstream
    whole: bool = False

    @property
    def callable_tools(self) -> tuple[ToolSpec, ...]:
        """The tools the model may call in this request."""
        if self.tool_choice == "none":
            return ()
        if self.tool_name is not None:
            return tuple(t for t in self.tools if t.name == self.tool_name)
        return self.tools


@dataclass
class CompletionRequest:
    prompt: str
    params: GenerationParams = field(default_factory=GenerationParams)
    echo: bool = False
    whole: bool = False  # as ChatRequest.whole


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


@dataclass(frozen=True)
class ToolCallDelta:
    """A piece of the ``index``-th tool call of a choice: id and name come first, then the
    arguments (JSON text) in pieces."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class Delta:
    """One piece of a generation. ``usage`` is set on the last chunk only."""

    index: int = 0
    text: str = ""
    finish_reason: str | None = None
    logprobs: list[TokenLogprob] | None = None
    usage: Usage | None = None
    tool_call: ToolCallDelta | None = None


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


# -- knowledge bases ----------------------------------------------------------------------


@dataclass(frozen=True)
class Block:
    """A unit a parser found: a paragraph, a heading, a table row group, a code block.

    ``start``/``end`` are character offsets into the document's full text (``ParsedDocument
    .text``), so every chunk made from blocks can point back at where it came from.
    """

    text: str
    start: int
    end: int
    kind: str = "text"  # "text" | "heading" | "table" | "code" | "qa"
    page: int | None = None  # 1-based, for paged formats (PDF)
    headings: tuple[str, ...] = ()  # the section path above this block


@dataclass(frozen=True)
class ParsedDocument:
    source: str  # the path (or upload name) it came from
    title: str
    format: str  # "pdf" | "docx" | "md" | "txt" | "html"
    text: str  # the full text; blocks index into it
    blocks: tuple[Block, ...]
    encoding: str | None = None  # for text formats: what was detected


@dataclass(frozen=True)
class Chunk:
    """A piece of a document sized for the embedder, with everything a citation needs."""

    document: str  # the document's name inside its knowledge base
    index: int  # position among the document's chunks
    text: str
    start: int  # character offsets into the document's full text
    end: int
    tokens: int  # in the embedding model's tokenizer
    page: int | None = None
    headings: tuple[str, ...] = ()


@dataclass(frozen=True)
class DocumentRecord:
    name: str
    sha256: str  # of the file's bytes: unchanged documents are skipped
    format: str
    title: str
    chunks: int
    added: float  # unix time
    tags: tuple[str, ...] = ()


@dataclass(frozen=True)
class Hit:
    chunk: Chunk
    score: float  # higher is better; its scale depends on the mode
    chunk_id: int = 0
