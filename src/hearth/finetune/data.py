"""Training data: alpaca, sharegpt, OpenAI ``messages`` and preference pairs, JSON or JSONL.

Every record becomes an :class:`Example`: a chat (system?, user, assistant, ...) that ends
with the assistant's answer, or for preference data a prompt chat plus a chosen and a
rejected answer. Problems are reported by file and line, never as a traceback, and one bad
record does not hide the others.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

FORMATS = ("alpaca", "sharegpt", "messages", "preference")
_SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bot": "assistant",
    "model": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class Example:
    messages: tuple[dict[str, str], ...]  # SFT: ends with the assistant; preference: the prompt
    format: str
    source: str  # "file:line"
    chosen: str | None = None
    rejected: str | None = None

    @property
    def preference(self) -> bool:
        return self.chosen is not None


@dataclass(frozen=True)
class Problem:
    source: str  # "file:line"
    message: str

    def __str__(self) -> str:
        return f"{self.source}: {self.message}"


@dataclass
class Dataset:
    examples: list[Example] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    formats: dict[str, dict[str, int]] = field(default_factory=dict)  # file -> format -> count


class BadRecord(ValueError):
    pass


def load(paths: list[Path]) -> Dataset:
    """Read every file; records that do not parse become problems, the rest examples."""
    data = Dataset()
    for path in paths:
        counts: dict[str, int] = {}
        data.formats[str(path)] = counts
        try:
            records = list(_records(path))
        except BadRecord as e:
            data.problems.append(Problem(str(path), str(e)))
            continue
        for line, record in records:
            source = f"{path}:{line}"
            if isinstance(record, Problem):
                data.problems.append(record)
                continue
            try:
                example = parse(record, source)
            except BadRecord as e:
                data.problems.append(Problem(source, str(e)))
                continue
            counts[example.format] = counts.get(example.format, 0) + 1
            data.examples.append(example)
    return data


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line, record) pairs of a JSONL file or a JSON array (each element at its line)."""
    try:
        text = path.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        raise BadRecord("no such file") from None
    except IsADirectoryError:
        raise BadRecord("is a directory; name the .json or .jsonl files") from None
    except UnicodeDecodeError as e:
        raise BadRecord(f"not UTF-8 text ({e.reason} at byte {e.start})") from None
    stripped = text.lstrip()
    if not stripped:
        raise BadRecord("the file is empty")
    if stripped[0] == "[":
        yield from _array(path, text)
        return
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            yield number, json.loads(line)
        except json.JSONDecodeError as e:
            yield number, Problem(f"{path}:{number}", f"not JSON: {e.msg} (column {e.colno})")


def _array(path: Path, text: str) -> Iterator[tuple[int, Any]]:
    decoder = json.JSONDecoder()
    at = text.index("[") + 1

    def skip(i: int) -> int:
        while i < len(text) and text[i] in " \t\r\n":
            i += 1
        return i

    at = skip(at)
    if at < len(text) and text[at] == "]":
        return
    while at < len(text):
        line = text.count("\n", 0, at) + 1
        try:
            record, at = decoder.raw_decode(text, at)
        except json.JSONDecodeError as e:
            raise BadRecord(f"line {e.lineno}: not JSON: {e.msg} (column {e.colno})") from None
        yield line, record
        at = skip(at)
        if at < len(text) and text[at] == ",":
            at = skip(at + 1)
        elif at < len(text) and text[at] == "]":
            return
        else:
            raise BadRecord(f"line {text.count(chr(10), 0, at) + 1}: expected ',' or ']'")
    raise BadRecord("the JSON array is not closed")


def detect(record: dict[str, Any]) -> str:
    if "chosen" in record or "rejected" in record:
        return "preference"
    if "conversations" in record:
        return "sharegpt"
    if "messages" in record:
        return "messages"
    if "instruction" in record or "output" in record:
        return "alpaca"
    raise BadRecord(
        "unknown format: expected alpaca (instruction, input, output), sharegpt "
        "(conversations with from/value), messages (role/content), or a preference pair "
        f"(prompt, chosen, rejected); got keys {sorted(record)[:8]}"
    )


def parse(record: Any, source: str) -> Example:
    if not isinstance(record, dict):
        raise BadRecord(f"a record must be a JSON object, not {type(record).__name__}")
    fmt = detect(record)
    if fmt == "alpaca":
        messages = _alpaca(record)
    elif fmt == "sharegpt":
        messages = _sharegpt(record.get("conversations"), record.get("system"), "conversations")
    elif fmt == "messages":
        messages = _messages(record.get("messages"), "messages")
    else:
        return _preference(record, source)
    _check_chat(messages, final="assistant")
    return Example(tuple(messages), fmt, source)


def _text(value: Any, where: str, *, empty: bool = False) -> str:
    if not isinstance(value, str):
        raise BadRecord(f"'{where}' must be a string, not {type(value).__name__}")
    if not empty and not value.strip():
        raise BadRecord(f"'{where}' is empty")
    return value


def _alpaca(record: dict[str, Any]) -> list[dict[str, str]]:
    messages: list[dict[str, str]] = []
    if record.get("system"):
        messages.append({"role": "system", "content": _text(record["system"], "system")})
    history = record.get("history") or []
    if not isinstance(history, list):
        raise BadRecord("'history' must be a list of [question, answer] pairs")
    for i, pair in enumerate(history):
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise BadRecord(f"'history[{i}]' must be a [question, answer] pair")
        messages.append({"role": "user", "content": _text(pair[0], f"history[{i}][0]")})
        messages.append({"role": "assistant", "content": _text(pair[1], f"history[{i}][1]")})
    instruction = _text(record.get("instruction"), "instruction")
    extra = _text(record.get("input") or "", "input", empty=True)
    user = f"{instruction}\n{extra}" if extra.strip() else instruction
    messages.append({"role": "user", "content": user})
    messages.append({"role": "assistant", "content": _text(record.get("output"), "output")})
    return messages


def _sharegpt(turns: Any, system: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(turns, list) or not turns:
        raise BadRecord(f"'{where}' must be a non-empty list of {{from, value}} turns")
    messages: list[dict[str, str]] = []
    if system:
        messages.append({"role": "system", "content": _text(system, "system")})
    for i, turn in enumerate(turns):
        if not isinstance(turn, dict):
            raise BadRecord(f"'{where}[{i}]' must be an object with 'from' and 'value'")
        speaker = turn.get("from", turn.get("role"))
        role = _SHAREGPT_ROLES.get(str(speaker).lower()) if speaker is not None else None
        if role is None:
            raise BadRecord(
                f"'{where}[{i}].from' is {speaker!r}; expected human/user, gpt/assistant or system"
            )
        value = turn.get("value", turn.get("content"))
        messages.append({"role": role, "content": _text(value, f"{where}[{i}].value")})
    return messages


def _messages(value: Any, where: str) -> list[dict[str, str]]:
    if not isinstance(value, list) or not value:
        raise BadRecord(f"'{where}' must be a non-empty list of {{role, content}} messages")
    out: list[dict[str, str]] = []
    for i, m in enumerate(value):
        if not isinstance(m, dict):
            raise BadRecord(f"'{where}[{i}]' must be an object with 'role' and 'content'")
        role = m.get("role")
        if role not in ("system", "user", "assistant"):
            raise BadRecord(
                f"'{where}[{i}].role' is {role!r}; training takes system, user and assistant "
                "messages (tool calls are not supported in training data yet)"
            )
        content = m.get("content")
        if isinstance(content, list):  # OpenAI content parts: keep the text ones
            parts = [p.get("text", "") for p in content if isinstance(p, dict)]
            if any(isinstance(p, dict) and p.get("type") not in ("text", None) for p in content):
                raise BadRecord(f"'{where}[{i}].content' has non-text parts; training takes text")
            content = "".join(parts)
        out.append({"role": role, "content": _text(content, f"{where}[{i}].content")})
    return out


def _check_chat(messages: list[dict[str, str]], *, final: str) -> None:
    body = messages[1:] if messages and messages[0]["role"] == "system" else messages
    if any(m["role"] == "system" for m in body):
        raise BadRecord("a system message may only come first")
    for i, m in enumerate(body):
        expected = "user" if i % 2 == 0 else "assistant"
        if m["role"] != expected:
            raise BadRecord(
                f"turn {i + 1} is '{m['role']}' where '{expected}' was expected: turns "
                "alternate user, assistant, user, ..."
            )
    if not body or body[-1]["role"] != final:
        raise BadRecord(f"the chat must end with the {final}'s message")


def _answer(value: Any, where: str) -> str:
    if isinstance(value, str):
        return _text(value, where)
    if isinstance(value, dict):
        return _text(value.get("content", value.get("value")), f"{where}.content")
    if isinstance(value, list) and value:
        last = value[-1]
        if isinstance(last, dict) and last.get("role", last.get("from")) in (
            "assistant",
            "gpt",
        ):
            return _text(last.get("content", last.get("value")), f"{where}[-1].content")
    raise BadRecord(f"'{where}' must be a string or an assistant message")


def _preference(record: dict[str, Any], source: str) -> Example:
    for key in ("chosen", "rejected"):
        if key not in record:
            raise BadRecord(f"a preference pair needs 'chosen' and 'rejected'; '{key}' is missing")
    if "prompt" in record:
        prompt = record["prompt"]
        if isinstance(prompt, str):
            messages = [{"role": "user", "content": _text(prompt, "prompt")}]
        else:
            messages = _messages(prompt, "prompt")
    elif "messages" in record:
        messages = _messages(record["messages"], "messages")
    elif "conversations" in record:
        messages = _sharegpt(record["conversations"], record.get("system"), "conversations")
    else:
        raise BadRecord("a preference pair needs a 'prompt' (or 'messages'/'conversations')")
    if record.get("system") and messages[0]["role"] != "system":
        messages.insert(0, {"role": "system", "content": _text(record["system"], "system")})
    _check_chat(messages, final="user")
    chosen = _answer(record["chosen"], "chosen")
    rejected = _answer(record["rejected"], "rejected")
    if chosen == rejected:
        raise BadRecord("'chosen' and 'rejected' are the same answer")
    return Example(tuple(messages), "preference", source, chosen, rejected)
