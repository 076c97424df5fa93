"""One owner per loaded model: a bounded queue in front of the engine's slots, a deadline
per request, and cancellation that reaches the engine when the caller goes away."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from contextlib import asynccontextmanager

from hearth.config import ModelSpec
from hearth.engines.base import Engine
from hearth.errors import Overloaded, RequestTimeout
from hearth.types import Delta


class Runner:
    def __init__(self, spec: ModelSpec, engine: Engine, *, queue_size: int, timeout: float) -> None:
        self.spec = spec
        self.engine = engine
        self.slots = max(1, spec.parallel)
        self.queue_size = queue_size
        self.timeout = timeout
        self.waiting = 0
        self.active = 0
        self.last_used = time.monotonic()
        self._sem = asyncio.Semaphore(self.slots)

    @property
    def busy(self) -> bool:
        return self.active > 0 or self.waiting > 0

    @asynccontextmanager
    async def slot(self, deadline: float) -> AsyncIterator[None]:
        """Hold one of the engine's slots; queue for one, or refuse when the queue is full."""
        if self.active >= self.slots and self.waiting >= self.queue_size:
            raise Overloaded(
                f"model '{self.spec.name}' is busy: {self.active} requests running and "
                f"{self.waiting} queued (limit {self.queue_size}). Retry shortly.",
                retry_after=1,
            )
        self.waiting += 1
        try:
            if self._sem.locked():  # queue, up to the deadline
                await asyncio.wait_for(self._sem.acquire(), max(0.0, deadline - time.monotonic()))
            else:  # a free slot (and nobody ahead): no timer, no extra task
                await self._sem.acquire()
        except TimeoutError as e:
            raise RequestTimeout(
                f"request waited {self.timeout:.0f}s for model '{self.spec.name}' and timed out"
            ) from e
        finally:
            self.waiting -= 1
        self.active += 1
        self.last_used = time.monotonic()
        try:
            yield
        finally:
            self.active -= 1
            self.last_used = time.monotonic()
            self._sem.release()

    async def stream(
        self, start: Callable[[], AsyncIterator[Delta]]
    ) -> AsyncGenerator[Delta, None]:
        """Run ``start()`` in a slot, yielding its chunks until done, timed out or closed."""
        deadline = time.monotonic() + self.timeout
        async with self.slot(deadline):
            chunks = start()
            try:
                loop = asyncio.get_running_loop()
                offset = loop.time() - time.monotonic()  # deadline on the loop's clock
                while True:
                    try:
                        # timeout_at, not wait_for: no extra task per token on the hot path
                        async with asyncio.timeout_at(deadline + offset):
                            chunk = await anext(chunks)
                    except StopAsyncIteration:
                        return
                    except TimeoutError as e:
                        raise RequestTimeout(
                            f"generation on '{self.spec.name}' passed the {self.timeout:.0f}s "
                            "request timeout"
                        ) from e
                    yield chunk
            finally:
                aclose = getattr(chunks, "aclose", None)
                if aclose is not None:
                    await aclose()
