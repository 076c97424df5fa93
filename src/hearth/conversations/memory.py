"""Memory: which remembered turns go into the next prompt, under a policy.

A *turn* is a user message and everything after it up to the next user message (the
assistant's answer, tool calls and their results), so trimming never splits a turn and never
keeps a tool result without its call. Policies:

- ``turns: N`` — the last N turns;
- ``tokens: N`` — the newest whole turns whose tokens fit in N;
- ``summary: {model, max_tokens, turns}`` — the last ``turns`` turns verbatim, older ones
  folded into a running summary (at most ``max_tokens``, re-summarised past it);
- ``none`` — nothing remembered.

Every count is the serving model's own: a turn costs what it adds to a prompt rendered by
the model's chat template, and the assembled prompt is counted once more as a whole, so the
history never exceeds its budget whatever the template does. Under every policy the history
also shrinks to what fits the context window after the system prompt, the knowledge, the new
input and room for the answer are reserved.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import Any

from hearth.errors import InvalidRequest
from hearth.rag.answer import language
from hearth.types import Message

KINDS = ("turns", "tokens", "summary", "none")
SUMMARY_HEAD = {"zh": "此前对话的摘要：", "en": "Summary of the conversation so far:"}


@dataclass(frozen=True)
class Policy:
    kind: str = "fit"  # "fit": every turn that fits the context (no policy configured)
    turns: int | None = None  # turns: the most kept; summary: kept verbatim
    tokens: int | None = None
    summary_model: str | None = None  # None: the serving model
    summary_max_tokens: int = 256

    def describe(self) -> str:
        if self.kind == "turns":
            return f"turns:{self.turns}"
        if self.kind == "tokens":
            return f"tokens:{self.tokens}"
        if self.kind == "summary":
            return f"summary:{self.summary_max_tokens}"
        return self.kind


def parse_policy(raw: Any, where: str = "memory") -> Policy:
    """``{turns: N}``, ``{tokens: N}``, ``{summary: {...}}`` or ``{none: true}``."""
    if raw is None:
        return Policy()
    if not isinstance(raw, dict) or len(raw) != 1 or next(iter(raw)) not in KINDS:
        raise InvalidRequest(
            f"'{where}' takes one of {{turns: N}}, {{tokens: N}}, {{summary: {{model, "
            f"max_tokens, turns}}}} or {{none: true}}; got {raw!r}",
            param=where,
        )
    kind, value = next(iter(raw.items()))
    if kind == "none":
        if value is not True:
            raise InvalidRequest(f"'{where}.none' must be true", param=f"{where}.none")
        return Policy("none")
    if kind in ("turns", "tokens"):
        _positive(value, f"{where}.{kind}", zero=kind == "turns")
        return Policy(kind, **{kind: value})
    if not isinstance(value, dict) or set(value) - {"model", "max_tokens", "turns"}:
        raise InvalidRequest(
            f"'{where}.summary' takes model, max_tokens and turns; got {value!r}",
            param=f"{where}.summary",
        )
    cap = value.get("max_tokens", 256)
    keep = value.get("turns", 4)
    _positive(cap, f"{where}.summary.max_tokens")
    _positive(keep, f"{where}.summary.turns", zero=True)
    model = value.get("model")
    if model is not None and (not isinstance(model, str) or not model):
        raise InvalidRequest(f"'{where}.summary.model' names a model", param=f"{where}.summary")
    return Policy("summary", turns=keep, summary_model=model, summary_max_tokens=cap)


def _positive(value: Any, where: str, *, zero: bool = False) -> None:
    low = 0 if zero else 1
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise InvalidRequest(
            f"'{where}' must be a whole number ≥ {low}; got {value!r}", param=where
        )


def narrow(limit: Policy, asked: Policy) -> Policy:
    """A request's own policy, allowed only within the configured one: fewer turns, fewer
    tokens, or nothing; never more than the app or model allows."""
    if asked.kind == "fit" or asked == limit:
        return limit
    if asked.kind == "none" or limit.kind == "fit":
        return asked
    if asked.kind == limit.kind == "turns" and (asked.turns or 0) <= (limit.turns or 0):
        return asked
    if asked.kind == limit.kind == "tokens" and (asked.tokens or 0) <= (limit.tokens or 0):
        return asked
    kinds = ("turns", "tokens")
    if limit.kind in kinds and asked.kind in kinds and asked.kind != limit.kind:
        # a different kind of cap on top of the configured one: both hold
        return replace(limit, **{asked.kind: getattr(asked, asked.kind)})
    raise InvalidRequest(
        f"memory {asked.describe()} is outside what this model or app allows "
        f"({limit.describe()}); ask for fewer turns or tokens, or none",
        param="memory",
    )


@dataclass(frozen=True)
class Turn:
    key: str  # the id of its first item: token counts are cached under it
    last: str  # the id of its last item: summaries record how far they reach
    messages: tuple[Message, ...]


def group_turns(items: list[tuple[str, Message]]) -> list[Turn]:
    """(item id, message) pairs as turns; a new turn starts at each user message."""
    groups: list[list[tuple[str, Message]]] = []
    for item in items:
        if not groups or item[1].role == "user":
            groups.append([])
        groups[-1].append(item)
    return [Turn(g[0][0], g[-1][0], tuple(m for _, m in g)) for g in groups]


@dataclass
class Budget:
    """Where the prompt's tokens went, and what memory kept. ``system`` is the rest of the
    prompt: system text and the chat template's own tokens."""

    policy: str = "fit"
    system: int = 0
    knowledge: int = 0
    summary: int = 0
    history: int = 0
    input: int = 0
    turns: int = 0  # remembered turns before this request
    kept: int = 0
    dropped: int = 0
    summarised: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "memory_policy": self.policy,
            "system_tokens": self.system,
            "knowledge_tokens": self.knowledge,
            "summary_tokens": self.summary,
            "history_tokens": self.history,
            "input_tokens": self.input,
            "turns_remembered": self.turns,
            "turns_kept": self.kept,
            "turns_dropped": self.dropped,
            "turns_summarised": self.summarised,
        }


Count = Callable[[list[Message]], Awaitable[int]]
Summarize = Callable[[str, list[Message], int], Awaitable[str]]


class Counter:
    """Token counts as ``usage.prompt_tokens`` counts them (``count``), and the cost of one
    turn in the middle of a prompt: what it adds to a fixed prefix."""

    _PREFIX = (Message("system", "."),)

    def __init__(self, count: Count) -> None:
        self.count = count
        self._base: int | None = None
        self._memo: dict[tuple[Message, ...], int] = {}

    async def turn(self, messages: tuple[Message, ...]) -> int:
        if self._base is None:
            self._base = await self.count(list(self._PREFIX))
        return max(await self.count([*self._PREFIX, *messages]) - self._base, 0)

    async def fixed(self, messages: list[Message]) -> int:
        """``count``, remembered: for the parts that repeat on every request (an app's or a
        client's system prompt)."""
        key = tuple(messages)
        if key not in self._memo:
            if len(self._memo) > 1024:
                self._memo.clear()
            self._memo[key] = await self.count(messages)
        return self._memo[key]

    async def text(self, text: str) -> int:
        return await self.turn((Message("user", text),))


@dataclass
class Assembly:
    messages: list[Message]
    budget: Budget
    counted: dict[str, int] = field(default_factory=dict)  # new turn counts to cache
    summary: tuple[str, str, int] | None = None  # (text, upto, turns): a new summary to keep


@dataclass(frozen=True)
class Remembered:
    turns: list[Turn]
    summary: tuple[str, str, int] | None = None  # (text, last item folded, turns folded)
    cached: dict[str, int] = field(default_factory=dict)  # turn key -> tokens


async def assemble(
    policy: Policy,
    memory: Remembered,
    request: list[Message],
    *,
    counter: Counter | None,
    context_length: int,
    answer_room: int,
    knowledge: int = 0,
    summarize: Summarize | None = None,
) -> Assembly:
    """The prompt: the request's leading system messages, the summary (in the system text),
    the remembered turns the policy keeps, then the rest of the request (the new input)."""
    lead = 0
    while lead < len(request) and request[lead].role == "system":
        lead += 1
    system, new = list(request[:lead]), list(request[lead:])
    turns = memory.turns
    budget = Budget(policy=policy.describe(), turns=len(turns), knowledge=knowledge)
    out = Assembly(list(request), budget)
    if policy.kind == "none" or not turns:
        budget.dropped = len(turns)
        await _count_plain(out, counter, system, new)
        return out
    summary_text = memory.summary[0] if memory.summary else ""
    if policy.kind == "turns":
        keep = turns[len(turns) - (policy.turns or 0) :] if policy.turns else []
    elif policy.kind == "summary":
        keep = turns[len(turns) - (policy.turns or 0) :] if policy.turns else []
        folded = turns[: len(turns) - len(keep)]
        summary_text = await _fold(out, policy, memory, folded, counter, summarize)
    else:
        keep = list(turns)
    if counter is None:  # no tokenizer (a remote model without one): no token budget
        if policy.kind == "tokens":
            raise InvalidRequest(
                "memory 'tokens' needs the model's tokenizer; configure `tokenizer` for this "
                "remote model, or use memory {turns: N}",
                param="memory",
            )
        out.messages = _join(system, summary_text, keep, new)
        budget.kept, budget.dropped = len(keep), len(turns) - len(keep) - budget.summarised
        return out
    reserved = await _prefetch(out, keep, memory.cached, counter, _join(system, "", [], new))
    room = max(context_length - reserved - answer_room, 0)
    cap = min(room, policy.tokens or 0) if policy.kind == "tokens" else room
    summary_cost = await counter.text(summary_text) if summary_text else 0
    if summary_text and summary_cost > cap:
        summary_text, summary_cost = "", 0  # it cannot fit; better no summary than no answer
    keep = await _fit(out, keep, memory.cached, counter, cap - summary_cost)
    costs = {**memory.cached, **out.counted}
    used = summary_cost + sum(costs[t.key] for t in keep)
    total = reserved + used
    # Turn costs add up exactly for templates that only concatenate turns. Near the cap the
    # whole prompt is counted as well (and trimmed), so the budget holds for any template;
    # far below it that count (the costliest step at 50 turns) is skipped.
    while used > cap * 0.9:
        total = await counter.count(_join(system, summary_text, keep, new))
        used = total - reserved
        if used <= cap or not keep:
            break
        keep = keep[1:]
    if used > cap:  # only the summary is left and it does not fit with the rest
        summary_text, used = "", 0
        total = reserved
    out.messages = _join(system, summary_text, keep, new)
    budget.kept = len(keep)
    budget.dropped = len(turns) - len(keep) - budget.summarised
    budget.summary = min(summary_cost, used) if summary_text else 0
    budget.history = max(used - budget.summary, 0)
    if system and new:  # the new input: what it adds to the (remembered) system count
        new_cost = max(reserved - await counter.fixed(system), 0)
    else:
        new_cost = await counter.turn(tuple(new)) if new else 0
    budget.input = new_cost
    budget.system = max(total - budget.history - budget.summary - new_cost - knowledge, 0)
    return out


async def _count_plain(
    out: Assembly, counter: Counter | None, system: list[Message], new: list[Message]
) -> None:
    if counter is None:
        return
    total = await counter.count([*system, *new])
    out.budget.input = await counter.turn(tuple(new)) if new else 0
    out.budget.system = max(total - out.budget.input - out.budget.knowledge, 0)


async def _prefetch(
    out: Assembly,
    turns: list[Turn],
    cached: dict[str, int],
    counter: Counter,
    reserved: list[Message],
    most: int = 32,
) -> int:
    """Count the reserved part together with the newest turns not counted yet (usually the
    turn stored by the last request), concurrently: the tokenizer calls overlap instead of
    queueing. Returns the reserved count; the turn costs land in ``out.counted``."""
    fresh: list[Turn] = []
    for turn in reversed(turns):
        if turn.key in cached or len(fresh) == most:
            break
        fresh.append(turn)
    total, *costs = await asyncio.gather(
        counter.count(reserved), *(counter.turn(t.messages) for t in fresh)
    )
    out.counted.update({t.key: c for t, c in zip(fresh, costs, strict=True)})
    return total


async def _fit(
    out: Assembly, turns: list[Turn], cached: dict[str, int], counter: Counter, cap: int
) -> list[Turn]:
    """The newest whole turns whose summed costs fit ``cap``."""
    kept: list[Turn] = []
    used = 0
    for turn in reversed(turns):
        cost = cached.get(turn.key, out.counted.get(turn.key))
        if cost is None:
            cost = out.counted[turn.key] = await counter.turn(turn.messages)
        if used + cost > cap:
            break
        used += cost
        kept.append(turn)
    return kept[::-1]


async def _fold(
    out: Assembly,
    policy: Policy,
    memory: Remembered,
    folded: list[Turn],
    counter: Counter | None,
    summarize: Summarize | None,
) -> str:
    """The running summary, brought up to date with turns that left the verbatim window."""
    text, upto, count = memory.summary or ("", "", 0)
    # Turns up to the one the summary reached are in it already (that turn may even be
    # back in the verbatim window when a request asks for fewer turns).
    reached = next((i + 1 for i, t in enumerate(memory.turns) if t.last == upto), 0)
    done = min(reached, len(folded))
    pending = folded[done:]
    out.budget.summarised = done + len(pending)
    if not pending:
        return text
    if summarize is None:
        raise InvalidRequest("summary memory needs a model to summarise with", param="memory")
    cap = policy.summary_max_tokens
    messages = [m for t in pending for m in t.messages]
    text = (await summarize(text, messages, cap)).strip()
    for _ in range(2):  # past its cap (another tokenizer made it): summarise the summary
        if counter is None or await counter.text(text) <= cap:
            break
        text = (await summarize("", [Message("user", text)], cap * 3 // 4)).strip()
    if counter is not None:
        while text and await counter.text(text) > cap:
            text = text[: max(len(text) * 9 // 10, 1) - 1]
    out.summary = (text, pending[-1].last, count + len(pending))
    return text


def _join(
    system: list[Message], summary: str, turns: list[Turn], new: list[Message]
) -> list[Message]:
    if summary:
        head = SUMMARY_HEAD[language(summary)]
        if system:
            first = system[0]
            system = [replace(first, content=f"{first.content}\n\n{head}\n{summary}"), *system[1:]]
        else:
            system = [Message("system", f"{head}\n{summary}")]
    return [*system, *(m for t in turns for m in t.messages), *new]


SUMMARY_PROMPT = {
    "zh": "把下面的对话压缩成一段摘要，保留人名、数字、决定和未完成的事项，不超过{cap}个词元。"
    "只输出摘要。",
    "en": "Condense the conversation below into one summary that keeps names, numbers, decisions "
    "and open questions, in under {cap} tokens. Write only the summary.",
}


def summary_request(previous: str, messages: list[Message], cap: int) -> list[Message]:
    """The prompt a summariser model gets: the old summary and the turns to fold into it."""
    lines = [f"{m.role}: {m.content}" for m in messages]
    lang = language(previous + "\n".join(lines))
    body = "\n".join(lines)
    if previous:
        head = "已有摘要：" if lang == "zh" else "Summary so far:"
        body = f"{head}\n{previous}\n\n{body}"
    return [
        Message("system", SUMMARY_PROMPT[lang].format(cap=cap)),
        Message("user", body),
    ]
