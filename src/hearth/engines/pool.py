"""The upstreams of one remote model: which gets the next request, which are ejected, and
the probe that brings them back.

Requests go to the healthy upstream with the least in flight per unit of weight, ties taken
in nginx's smooth weighted round robin; an upstream that fails ``FAILURES_TO_EJECT``
requests in a row (or refuses a connection) gets no traffic until its ``/models`` answers.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from typing import Any

import aiohttp

from hearth.errors import HearthError

log = logging.getLogger("hearth.engines.remote")

# An upstream that fails this many requests in a row (5xx, timeouts, broken streams) stops
# getting traffic until a probe of its /models answers; a refused connection counts at once.
FAILURES_TO_EJECT = 3
PROBE_SECONDS = 2.0


@dataclass(eq=False)
class Upstream:
    """One base URL serving the model, with what routing knows about it."""

    url: str
    weight: float
    client: aiohttp.ClientSession
    in_flight: int = 0
    failures: int = 0
    healthy: bool = True
    last_error: str = ""
    served: int = 0
    current: float = 0.0  # smooth weighted round robin among equally loaded upstreams

    def load(self) -> float:
        return self.in_flight / self.weight


class UpstreamPool:
    def __init__(self, model: str) -> None:
        self.model = model
        self.upstreams: list[Upstream] = []
        self._prober: asyncio.Task[None] | None = None

    def add(self, up: Upstream) -> None:
        self.upstreams.append(up)

    def start(self) -> None:
        """Probe ejected upstreams in the background (a pool of one has nothing to probe
        for: its upstream is tried anyway)."""
        if len(self.upstreams) > 1:
            self._prober = asyncio.create_task(self._probe_forever())

    async def close(self) -> None:
        if self._prober is not None:
            self._prober.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._prober
        for up in self.upstreams:
            await up.client.close()

    def pick(self, tried: list[Upstream]) -> Upstream | None:
        """The healthy upstream with the least in flight per weight; an ejected one only
        when no healthy one is left untried (it may have come back before its probe)."""
        left = [u for u in self.upstreams if u not in tried]
        if not left:
            return None
        pool = [u for u in left if u.healthy] or left
        least = min(u.load() for u in pool)
        tied = [u for u in pool if u.load() == least]
        # nginx's smooth weighted round robin breaks the tie, so that one-at-a-time traffic
        # still alternates (in proportion to weight) instead of always taking the first.
        for u in tied:
            u.current += u.weight
        chosen = max(tied, key=lambda u: u.current)
        chosen.current -= sum(u.weight for u in tied)
        return chosen

    def failed(self, up: Upstream, error: HearthError, *, at_once: bool = False) -> None:
        up.failures += 1
        up.last_error = error.message
        if up.healthy and (at_once or up.failures >= FAILURES_TO_EJECT):
            up.healthy = False
            log.warning("upstream %s of '%s' ejected: %s", up.url, self.model, error.message)

    def worked(self, up: Upstream) -> None:
        up.served += 1
        self.back(up, "answered a request")

    def back(self, up: Upstream, why: str) -> None:
        up.failures = 0
        if not up.healthy:
            up.healthy = True
            log.warning("upstream %s of '%s' is back: it %s", up.url, self.model, why)

    async def _probe_forever(self) -> None:
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            for up in [u for u in self.upstreams if not u.healthy]:
                try:
                    async with up.client.get(
                        up.url + "/models", timeout=aiohttp.ClientTimeout(total=PROBE_SECONDS)
                    ) as resp:
                        await resp.read()
                        status = resp.status
                except (aiohttp.ClientError, TimeoutError):
                    continue
                if status == 200:
                    self.back(up, "answered its probe")

    def health(self) -> list[dict[str, Any]]:
        """Each upstream's state, in config order."""
        return [
            {
                "url": u.url,
                "weight": u.weight,
                "healthy": u.healthy,
                "in_flight": u.in_flight,
                "served": u.served,
                "last_error": u.last_error or None,
            }
            for u in self.upstreams
        ]
