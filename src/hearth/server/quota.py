"""Per-key limits: requests per minute, tokens per minute, and a budget.

All counting happens on the event loop with no ``await`` between a check and its update,
so many requests arriving at once are admitted exactly up to the limit.

A generation cannot know its cost before it runs, so it *reserves* its worst case when it is
admitted: the prompt's tokens (counted by the model's own tokenizer) plus ``max_tokens`` for
each choice, priced at the model's rates. A request is refused when that does not fit beside
what the key has used in the last minute (tokens) or spent in all (budget) and what its
calls in flight have reserved. A request without ``max_tokens`` is not refused for the rest
of the context it could in theory fill: it is granted the completion tokens that still fit,
and generation stops there (``finish_reason: "length"``). When the call ends the reservation
is replaced by what it really used. A key therefore never goes over its budget or its
tokens per minute.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

from hearth.errors import InsufficientQuota, RateLimited
from hearth.storage.counters import KeyCounters
from hearth.storage.keys import ApiKey
from hearth.types import Price, Usage

WINDOW = 60.0  # seconds: "per minute"
T = TypeVar("T")


@dataclass
class Reservation:
    key_id: str
    tokens: int  # prompt + completion held
    cost: float
    completion: int = 0  # completion tokens granted, all choices together
    settled: bool = False
    id: str = ""  # its row in the shared counters, when there are shared counters


@dataclass
class _Usage:
    """One key's last minute and its spend."""

    spent: float
    requests: deque[float] = field(default_factory=deque)  # admission times
    tokens: deque[tuple[float, int]] = field(default_factory=deque)  # (time, tokens) used
    tokens_in_window: int = 0
    reserved_tokens: int = 0
    reserved_cost: float = 0.0

    def expire(self, now: float) -> None:
        while self.requests and self.requests[0] <= now - WINDOW:
            self.requests.popleft()
        while self.tokens and self.tokens[0][0] <= now - WINDOW:
            self.tokens_in_window -= self.tokens.popleft()[1]


class Limits:
    """The live counters of every key seen since the server started. A key's spend starts
    from the call log (``spent``, read once per key), so a restart forgets no cost."""

    def __init__(self, spent: Callable[[str], float]) -> None:
        self._spent = spent
        self._usage: dict[str, _Usage] = {}
        self._loading: dict[str, asyncio.Task[float]] = {}

    async def _of(self, key: ApiKey) -> _Usage:
        usage = self._usage.get(key.id)
        if usage is None:
            task = self._loading.get(key.id)
            if task is None:
                task = asyncio.create_task(asyncio.to_thread(self._spent, key.id))
                self._loading[key.id] = task
            spent = await task
            self._loading.pop(key.id, None)
            usage = self._usage.setdefault(key.id, _Usage(spent))
        return usage

    async def _decide(self, key: ApiKey, decide: Callable[[_Usage, float], T]) -> T:
        """Run ``decide`` on the key's counters and the time they are kept in."""
        return decide(await self._of(key), time.monotonic())

    async def _settled(self, reservation: Reservation, tokens: int, cost: float) -> None:
        _settle(self._usage[reservation.key_id], reservation, tokens, cost, time.monotonic())

    async def admit(self, key: ApiKey) -> None:
        """Count one request against the key's requests per minute."""
        if key.rpm is None:
            return
        await self._decide(key, lambda usage, now: _admit(usage, key, now))

    async def reserve(
        self,
        key: ApiKey,
        prompt: int,
        completion: int,
        price: Price,
        *,
        choices: int = 1,
        flexible: bool = False,
    ) -> Reservation:
        """Hold a call's prompt and up to ``completion`` tokens, or refuse it. A call whose
        client set no ``max_tokens`` is ``flexible``: it is granted what still fits (at least
        a token per choice; ``Reservation.completion``) instead of being refused."""

        def decide(usage: _Usage, now: float) -> Reservation:
            return _reserve(usage, key, prompt, completion, price, now, choices, flexible)

        return await self._decide(key, decide)

    async def settle(self, reservation: Reservation | None, tokens: int, cost: float) -> None:
        """Replace a reservation by what the call really used."""
        if reservation is None or reservation.settled:
            return
        reservation.settled = True
        await self._settled(reservation, tokens, cost)


def _admit(usage: _Usage, key: ApiKey, now: float) -> None:
    assert key.rpm is not None
    usage.expire(now)
    if len(usage.requests) >= key.rpm:
        wait = usage.requests[0] + WINDOW - now
        raise RateLimited(
            f"API key '{key.name}' is limited to {key.rpm} requests per minute; "
            f"retry in {math.ceil(wait)} s",
            retry_after=max(1, math.ceil(wait)),
        )
    usage.requests.append(now)


def _reserve(
    usage: _Usage,
    key: ApiKey,
    prompt: int,
    completion: int,
    price: Price,
    now: float,
    choices: int,
    flexible: bool,
) -> Reservation:
    usage.expire(now)
    need = choices if flexible else completion
    room = completion
    if key.tpm is not None:
        if prompt + need > key.tpm:
            raise RateLimited(
                f"this request may use {prompt + need} tokens (its prompt plus max_tokens), "
                f"more than API key '{key.name}' may use in a minute ({key.tpm}); lower "
                "max_tokens or shorten the prompt",
                retry_after=int(WINDOW),
            )
        in_use = usage.tokens_in_window + usage.reserved_tokens
        if in_use + prompt + max(need, 1) > key.tpm:
            raise RateLimited(
                f"API key '{key.name}' is limited to {key.tpm} tokens per minute; "
                f"{in_use} are used or held by calls in flight and this request may "
                f"use {prompt + need}",
                retry_after=_retry_after(usage, key.tpm - prompt - need, now),
            )
        room = min(room, key.tpm - in_use - prompt)
    if key.budget is not None:
        left = key.budget - usage.spent - usage.reserved_cost
        affordable = _affordable(left, prompt, price)
        if usage.spent >= key.budget or affordable < need:
            cost = price.cost(Usage(prompt, need))
            raise InsufficientQuota(
                f"API key '{key.name}' has a budget of {key.budget:g}: {usage.spent:.6g} "
                f"is spent, {usage.reserved_cost:.6g} is held by calls in flight, and this "
                f"request may cost up to {cost:.6g}. Lower max_tokens, or raise the budget "
                "with a new key (`hearth keys create`).",
            )
        room = min(room, affordable)
    granted = (min(completion, room) // choices) * choices if flexible else completion
    cost = price.cost(Usage(prompt, granted))
    usage.reserved_tokens += prompt + granted
    usage.reserved_cost += cost
    return Reservation(key.id, prompt + granted, cost, completion=granted)


def _settle(usage: _Usage, reservation: Reservation, tokens: int, cost: float, now: float) -> None:
    usage.reserved_tokens -= reservation.tokens
    usage.reserved_cost -= reservation.cost
    usage.spent += cost
    if tokens:
        usage.tokens.append((now, tokens))
        usage.tokens_in_window += tokens


class SharedLimits(Limits):
    """The same limits, counted in the shared database so that every replica on it sees
    every other's requests, tokens and holds (PostgreSQL; see ``storage.counters``).

    Each decision runs in one transaction that holds the key's lock: the key's last minute
    is read, checked by the same rules as :class:`Limits`, and the change written before
    the lock is released. Times are wall-clock seconds, so replicas' clocks must agree
    (NTP) to well under the minute window.
    """

    def __init__(self, counters: KeyCounters) -> None:
        super().__init__(lambda key_id: 0.0)
        self.counters = counters

    async def _decide(self, key: ApiKey, decide: Callable[[_Usage, float], T]) -> T:
        return await asyncio.to_thread(self._decide_locked, key, decide)

    def _decide_locked(self, key: ApiKey, decide: Callable[[_Usage, float], T]) -> T:
        with self.counters.locked(key.id) as window:
            now = time.time()
            usage = _Usage(window.spent)
            usage.requests.extend(window.requests)
            usage.tokens.extend(window.tokens)
            usage.tokens_in_window = sum(t for _, t in window.tokens)
            usage.reserved_tokens, usage.reserved_cost = window.held_tokens, window.held_cost
            before = len(usage.requests)
            out = decide(usage, now)
            if len(usage.requests) > before:
                self.counters.add_request(key.id, now)
            if isinstance(out, Reservation):
                out.id = self.counters.hold(key.id, now, out.tokens, out.cost)
            return out

    async def _settled(self, reservation: Reservation, tokens: int, cost: float) -> None:
        await asyncio.to_thread(
            self.counters.settle, reservation.key_id, reservation.id, tokens, cost, time.time()
        )


def _affordable(left: float, prompt: int, price: Price) -> int:
    """How many completion tokens ``left`` money pays for after the prompt."""
    after_prompt = left - price.cost(Usage(prompt, 0))
    if after_prompt < 0:
        return -1
    if price.output <= 0:
        return 2**62  # output is free: the budget does not limit it
    return math.floor(after_prompt * 1000 / price.output + 1e-9)


def _retry_after(usage: _Usage, room: int, now: float) -> int:
    """Seconds until the tokens used in the last minute leave room for ``room`` more."""
    if usage.reserved_tokens:
        return 1  # calls in flight will settle soon and may free their reservation
    left = usage.tokens_in_window
    for at, tokens in usage.tokens:
        left -= tokens
        if left <= room:
            return max(1, math.ceil(at + WINDOW - now))
    return 1
