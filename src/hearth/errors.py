"""The one exception tree.

``UserError`` and its children are mistakes the caller can fix (bad input, unknown model,
oversized prompt); the server maps them to 4xx. ``HearthError`` that is not a ``UserError``
is a fault on our side (an engine crashed, a file is corrupt) and maps to 5xx.
Every message says what to do next.
"""

from __future__ import annotations

from collections.abc import Sequence


def listing(problems: Sequence[object], limit: int = 10) -> str:
    """The first ``limit`` problems, one per indented line, and how many more there are."""
    shown = "".join(f"\n  {p}" for p in problems[:limit])
    more = f"\n  … and {len(problems) - limit} more" if len(problems) > limit else ""
    return shown + more


class HearthError(Exception):
    """Base of every error hearth raises on purpose."""

    status = 500
    code: str | None = "internal_error"
    type = "server_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class UserError(HearthError):
    """The request or command is wrong; the message says how to fix it."""

    status = 400
    code = "invalid_request"
    type = "invalid_request_error"


class InvalidRequest(UserError):
    pass


class ContextLengthExceeded(UserError):
    code = "context_length_exceeded"

    def __init__(self, prompt_tokens: int, limit: int, *, max_tokens: int | None = None) -> None:
        extra = f" plus max_tokens={max_tokens}" if max_tokens else ""
        super().__init__(
            f"This model's maximum context length is {limit} tokens, but the prompt has "
            f"{prompt_tokens} tokens{extra}. Shorten the input"
            + (" or lower max_tokens." if max_tokens else "."),
            param="messages",
        )
        self.prompt_tokens = prompt_tokens
        self.limit = limit


class ModelNotFound(UserError):
    status = 404
    code = "model_not_found"

    def __init__(self, name: str, available: list[str]) -> None:
        names = ", ".join(available) or "none"
        super().__init__(
            f"The model '{name}' does not exist. Served models: {names}. "
            "Run `hearth models list` to see them.",
            param="model",
        )


class Unsupported(UserError):
    code = "unsupported_parameter"


class PayloadTooLarge(UserError):
    status = 413
    code = "payload_too_large"


class Overloaded(HearthError):
    status = 429
    code = "overloaded"
    type = "rate_limit_error"

    def __init__(self, message: str, retry_after: int = 1) -> None:
        super().__init__(message)
        self.retry_after = retry_after


class RateLimited(Overloaded):
    """A key's requests or tokens per minute are used up; ``retry_after`` says for how long."""

    code = "rate_limit_exceeded"


class InsufficientQuota(Overloaded):
    """A key's budget is spent; waiting does not help, so clients should not retry."""

    code = "insufficient_quota"
    type = "insufficient_quota"


class InvalidApiKey(UserError):
    status = 401
    code = "invalid_api_key"


class KeyNotFound(UserError):
    status = 404
    code = "key_not_found"

    def __init__(self, ref: str) -> None:
        super().__init__(
            f"No API key '{ref}'; list them with `hearth keys list` or GET /v1/keys.",
            param="key",
        )


class PermissionDenied(UserError):
    status = 403
    code = "permission_denied"


class RequestTimeout(HearthError):
    status = 504
    code = "timeout"
    type = "timeout_error"


class EngineError(HearthError):
    """The engine failed in a way the client could not have caused."""

    code = "engine_error"


class UpstreamError(HearthError):
    """A remote OpenAI-compatible upstream answered with an error or not at all."""

    status = 502
    code = "upstream_error"


class ConfigError(UserError):
    code = "config_error"


class KnowledgeBaseNotFound(UserError):
    status = 404
    code = "knowledge_base_not_found"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"No knowledge base named '{name}'. Create it with `hearth kb create {name}` "
            "or list them with `hearth kb list`.",
            param="knowledge_base",
        )


class DocumentNotFound(UserError):
    status = 404
    code = "document_not_found"

    def __init__(self, kb: str, document: str) -> None:
        super().__init__(
            f"No document '{document}' in knowledge base '{kb}'; list them with "
            f"`hearth kb docs {kb}` or GET /v1/knowledge_bases/{kb}/documents.",
            param="document",
        )


class KnowledgeBaseExists(UserError):
    status = 409
    code = "knowledge_base_exists"

    def __init__(self, name: str) -> None:
        super().__init__(
            f"A knowledge base named '{name}' already exists; add files to it with "
            f"`hearth kb add {name} PATH` or remove it with `hearth kb rm {name}`.",
            param="name",
        )


class EmbeddingMismatch(UserError):
    code = "embedding_mismatch"


class ParseError(UserError):
    """A document that cannot be read; the batch it is in goes on without it."""

    code = "parse_error"
