"""Standard JSON output: the schema in the prompt, constrained decoding where the model has
it, then a check of every answer with ``jsonschema`` and a re-ask with the validation error
when it fails. The caller gets a valid document or an error, never invalid JSON with a 200."""

from __future__ import annotations

import json
import re
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import jsonschema

from hearth.errors import HearthError
from hearth.types import ChatRequest, Delta, Message, Usage

_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n?(.*?)\n?```\s*$", re.DOTALL)


class OutputInvalid(HearthError):
    """The model did not produce a valid document within its retries."""

    status = 502
    code = "output_invalid"
    type = "server_error"

    def __init__(self, message: str, usage: Usage, attempts: list[str]) -> None:
        super().__init__(message)
        self.usage = usage  # what the failed attempts cost: still logged and billed
        self.attempts = attempts


@dataclass
class Checked:
    text: str  # the document, compact JSON as the model wrote it (fences stripped)
    value: Any
    usage: Usage
    retries: int
    finish_reason: str
    attempts: list[str] = field(default_factory=list)  # the failed answers, for the log


def instruction(schema: dict[str, Any], language: str = "en") -> str:
    """What the system prompt says about the answer's form."""
    text = json.dumps(schema, ensure_ascii=False)
    if language == "zh":
        return f"只输出一个符合以下 JSON Schema 的 JSON 对象，不要输出其他任何内容：\n{text}"
    return f"Answer with one JSON document that matches this JSON Schema, and nothing else:\n{text}"


def extract(text: str) -> str:
    """The JSON in an answer: markdown fences (```json … ```) are dropped, as some chat
    templates and remote models add them even under a grammar."""
    m = _FENCE.match(text)
    return (m.group(1) if m else text).strip()


def problem(text: str, schema: dict[str, Any]) -> tuple[Any, str | None]:
    """The parsed document and None, or None and what is wrong with it."""
    body = extract(text)
    try:
        value = json.loads(body)
    except json.JSONDecodeError as e:
        return None, f"not valid JSON ({e.msg} at character {e.pos})"
    validator = jsonschema.validators.validator_for(schema)(schema)
    error = jsonschema.exceptions.best_match(validator.iter_errors(value))
    if error is None:
        return value, None
    where = "/".join(str(p) for p in error.absolute_path) or "the top level"
    return None, f"at {where}: {error.message}"


def reask(request: ChatRequest, answer: str, why: str) -> ChatRequest:
    """The same request with the failed answer and what was wrong with it appended."""
    note = (
        f"That answer does not match the required JSON Schema: {why}. "
        "Answer again with only the corrected JSON document."
    )
    messages = [*request.messages, Message("assistant", answer or "(empty)"), Message("user", note)]
    return ChatRequest(messages, request.params)


Generate = Callable[[ChatRequest], AsyncIterator[Delta]]


async def structured(
    request: ChatRequest, generate: Generate, schema: dict[str, Any], retries: int
) -> Checked:
    """Answers until one validates, at most ``1 + retries`` of them; usage is their sum."""
    prompt = completion = 0
    failed: list[str] = []
    current = request
    for attempt in range(retries + 1):
        text, finish, usage = "", "stop", Usage()
        async for d in generate(current):
            if d.usage is not None:
                usage = d.usage
                continue
            text += d.text
            finish = d.finish_reason or finish
        prompt += usage.prompt_tokens
        completion += usage.completion_tokens
        value, why = problem(text, schema)
        if why is None:
            total = Usage(prompt, completion)
            return Checked(extract(text), value, total, attempt, finish, failed)
        if finish == "length":
            why += " (the answer was cut off by max_tokens; allow more tokens)"
        failed.append(text)
        current = reask(request, text, why)
    raise OutputInvalid(
        f"the model's answer did not match the output schema after {retries + 1} "
        f"attempt(s): {why}. Raise output.retries or max_tokens, simplify the schema, or use "
        "a larger model.",
        Usage(prompt, completion),
        failed,
    )
