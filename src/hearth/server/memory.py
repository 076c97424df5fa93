"""A request's memory, for chat completions (``conversation``) and responses
(``conversation`` or ``previous_response_id``): the policy that holds, the history put into
the prompt, and the turn stored when the answer is complete.

Turns on one conversation are serialised in this process: a second request waits until the
first has stored its turn, and so sees it. Across processes sharing a database the turn is
appended only if nobody else appended since its history was read; otherwise the request
fails with 409 ``conversation_busy`` and nothing is stored twice or lost.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

from hearth.apps.spec import App
from hearth.conversations.memory import (
    Assembly,
    Budget,
    Counter,
    Policy,
    assemble,
    narrow,
    parse_policy,
    summary_request,
)
from hearth.conversations.threads import Thread
from hearth.engines.base import count_chat_tokens
from hearth.engines.runner import Runner
from hearth.errors import HearthError, Unsupported
from hearth.server.auth import Caller
from hearth.storage.conversations import Item, conversation_not_found, response_not_found
from hearth.types import ChatRequest, GenerationParams, Message

if TYPE_CHECKING:  # services imports this module
    from hearth.server.services import Services

log = logging.getLogger(__name__)


@dataclass
class Memory:
    """One request's memory: what was remembered, what went in, what is kept afterwards."""

    thread: Thread
    assembly: Assembly
    new: list[Message]  # the caller's new messages (no system text): the turn's input
    unlock: Callable[[], None] | None = None
    kept: list[Item] = field(default_factory=list)
    counter: Counter | None = None

    @property
    def budget(self) -> Budget:
        return self.assembly.budget

    async def keep(self, answer: str, *, response_id: str | None = None) -> list[Item]:
        """Store the turn: the new messages and the answer."""
        items = [Item("", m.role, m.content) for m in self.new]
        items.append(Item("", "assistant", answer))
        self.kept = await self.thread.keep(self.assembly, items, response_id=response_id)
        if self.counter is not None and self.kept:
            # The next request needs this turn's cost: count it now, after the answer,
            # instead of on that request's path.
            task = asyncio.create_task(self.thread.count_turns(self.counter, self.kept))
            _counting.add(task)
            task.add_done_callback(_counted)
        return self.kept

    def release(self) -> None:
        if self.unlock is not None:
            self.unlock()
            self.unlock = None


_counting: set[asyncio.Task[None]] = set()


def _counted(task: asyncio.Task[None]) -> None:
    _counting.discard(task)
    if not task.cancelled() and task.exception() is not None:
        # Not fatal: the next request counts the turn itself.
        log.warning("counting a stored turn failed: %s", task.exception())


class Locks:
    """One lock per conversation, kept while someone holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, list[int]]] = {}

    async def acquire(self, key: str) -> Callable[[], None]:
        """Wait for the conversation's lock; returns the function that releases it."""
        lock, users = self._locks.setdefault(key, (asyncio.Lock(), [0]))
        users[0] += 1
        try:
            await lock.acquire()
        except BaseException:
            self._leave(key, users)
            raise

        def release() -> None:
            lock.release()
            self._leave(key, users)

        return release

    def _leave(self, key: str, users: list[int]) -> None:
        users[0] -= 1
        if not users[0]:
            self._locks.pop(key, None)


def policy_for(
    svc: Services, model: str, app: App | None, asked: dict[str, object] | None
) -> Policy:
    """The app's policy, else the model's (config), else every turn that fits; a request's
    own ``memory`` may only narrow it."""
    spec = svc.settings.models.get(model)
    limit = app.memory if app is not None else None
    if limit is None and spec is not None and spec.memory is not None:
        limit = parse_policy(spec.memory, f"models.{model}.memory")
    limit = limit or Policy()
    if asked is None:
        return limit
    return narrow(limit, parse_policy(asked))


async def counter_for(svc: Services, runner: Runner) -> Counter | None:
    """Counts with the serving model's tokenizer and template; None for a model without one."""
    name = runner.spec.name
    if name not in svc.counters:
        engine = runner.engine
        counter: Counter | None = Counter(lambda messages: count_chat_tokens(engine, messages))
        try:
            await Counter(lambda m: count_chat_tokens(engine, m)).count([Message("user", ".")])
        except Unsupported:
            counter = None
        svc.counters[name] = counter
    return svc.counters[name]


def check_owner(owner: str | None, caller: Caller, what: Callable[[], HearthError]) -> None:
    """A conversation or response made with a key is the key's (and admins')."""
    if owner is not None and not caller.admin and owner != caller.key_id:
        raise what()


async def attach(
    svc: Services,
    runner: Runner,
    request: ChatRequest,
    *,
    caller: Caller,
    new: list[Message],
    conversation: str | None,
    previous: str | None,
    policy: Policy,
    knowledge: int = 0,
) -> tuple[ChatRequest, Memory]:
    """Load the thread, hold its lock, put the remembered turns into ``request``."""
    for i, m in enumerate(new):
        if m.tool_calls or m.role == "tool":
            raise Unsupported(
                "tool calls and tool results are not stored in a server-side conversation "
                "yet; send the whole history with them instead of 'conversation' or "
                "'previous_response_id'",
                param=f"messages.{i}",
            )
    store = svc.conversations
    unlock = await svc.locks.acquire(conversation) if conversation else None
    try:
        if conversation is not None:
            conv = await asyncio.to_thread(store.get, conversation)
            check_owner(conv.key_id, caller, lambda: conversation_not_found(conversation))
        if previous is not None:
            prev = await asyncio.to_thread(store.response, previous)
            check_owner(prev.key_id, caller, lambda: response_not_found(previous))
        model = runner.spec.name
        counter = await counter_for(svc, runner)
        thread = await Thread.load(store, model, conversation=conversation, previous=previous)
        params = request.params
        room = params.max_tokens or min(512, runner.engine.context_length // 4)
        assembly = await assemble(
            policy,
            thread.remembered,
            request.messages,
            counter=counter,
            context_length=runner.engine.context_length,
            answer_room=room,
            knowledge=knowledge,
            summarize=_summarizer(svc, caller, policy, model),
        )
    except BaseException:
        if unlock is not None:
            unlock()
        raise
    memory = Memory(
        thread, assembly, [m for m in new if m.role != "system"], unlock, counter=counter
    )
    return replace(request, messages=assembly.messages), memory


def _summarizer(
    svc: Services, caller: Caller, policy: Policy, model: str
) -> Callable[[str, list[Message], int], Awaitable[str]]:
    async def summarize(previous: str, messages: list[Message], cap: int) -> str:
        from hearth.server.generation import complete_text  # generation imports this module

        name = policy.summary_model or model
        runner = await svc.runner(caller, name)
        request = ChatRequest(
            summary_request(previous, messages, cap),
            GenerationParams(max_tokens=cap, temperature=0.2),
        )
        return await complete_text(
            svc, runner, request, caller=caller, endpoint="conversations.summary"
        )

    return summarize


def split_of(budget: Budget) -> dict[str, int]:
    """The call log's token split of a call with memory."""
    return {
        "system": budget.system,
        "knowledge": budget.knowledge,
        "history": budget.history + budget.summary,
        "input": budget.input,
    }
