"""Prometheus metrics: requests, tokens, latency, time to first token, queue depth."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector
from starlette.types import ASGIApp, Receive, Scope, Send

from hearth.engines.runner import Runner

_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)


class _RunnerGauges(Collector):
    """Queue depth and running requests, read from the runners at scrape time."""

    def __init__(self, runners: Callable[[], list[Runner]], metrics: Metrics) -> None:
        self._runners = runners
        self._metrics = metrics

    def collect(self) -> Iterable[GaugeMetricFamily]:
        queued = GaugeMetricFamily(
            "hearth_queue_depth", "Requests waiting for a slot", labels=["model"]
        )
        active = GaugeMetricFamily(
            "hearth_active_requests", "Requests being generated", labels=["model"]
        )
        for r in self._runners():
            queued.add_metric([r.spec.name], r.waiting)
            active.add_metric([r.spec.name], r.active)
        yield queued
        yield active
        yield GaugeMetricFamily(
            "hearth_http_requests_in_flight",
            "HTTP requests being served, of every route",
            value=self._metrics.in_flight,
        )


class Metrics:
    def __init__(self, runners: Callable[[], list[Runner]]) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "hearth_requests",
            "Requests by model, endpoint and outcome",
            ["model", "endpoint", "status"],
            registry=self.registry,
        )
        self.tokens = Counter(
            "hearth_tokens", "Tokens by model and kind", ["model", "kind"], registry=self.registry
        )
        self.latency = Histogram(
            "hearth_request_latency_seconds",
            "Whole-request latency",
            ["model", "endpoint"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.ttft = Histogram(
            "hearth_time_to_first_token_seconds",
            "Time to the first generated token",
            ["model"],
            buckets=_BUCKETS,
            registry=self.registry,
        )
        self.in_flight = 0  # HTTP requests being served (kept by InFlight)
        self.registry.register(_RunnerGauges(runners, self))

    def observe(
        self,
        *,
        model: str,
        endpoint: str,
        status: str,
        prompt_tokens: int,
        completion_tokens: int,
        latency_s: float,
        ttft_s: float | None,
    ) -> None:
        self.requests.labels(model, endpoint, status).inc()
        self.tokens.labels(model, "prompt").inc(prompt_tokens)
        self.tokens.labels(model, "completion").inc(completion_tokens)
        self.latency.labels(model, endpoint).observe(latency_s)
        if ttft_s is not None:
            self.ttft.labels(model).observe(ttft_s)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class InFlight:
    """Counts the HTTP requests being served into ``metrics.in_flight``: a gauge, and how
    the call log knows a call finished on an otherwise idle server."""

    def __init__(self, app: ASGIApp, metrics: Metrics) -> None:
        self.app = app
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        self.metrics.in_flight += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.metrics.in_flight -= 1
