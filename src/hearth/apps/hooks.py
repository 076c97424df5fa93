"""Call hooks: every call hearth serves ends with one event, reported to a webhook as JSON
and to an OpenTelemetry collector as a span, as ``[hooks]`` in config.toml asks.

Reporting never holds up or fails the call it reports: ``emit`` queues the event and
returns. One background task POSTs the queue to the webhook, retrying what may succeed
later (connection errors, timeouts, 429 and 5xx) with exponential backoff; when the
receiver falls behind, the queue keeps the newest events and counts what it dropped.
Spans go through OpenTelemetry's own batching exporter, on its own thread.

OpenTelemetry is an optional extra (``hearth[otel]``), imported only when
``otlp_endpoint`` is set, so ``import hearth`` stays fast without it.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import httpx

from hearth import __version__
from hearth.config import HookSettings
from hearth.errors import ConfigError

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.trace import Tracer
    from opentelemetry.util.types import AttributeValue

log = logging.getLogger("hearth.hooks")

QUEUE_SIZE = 10_000  # events waiting for the webhook before the oldest is dropped
BACKOFF = 0.5  # seconds before the first retry; doubled for each one after
BACKOFF_CAP = 30.0

# gen_ai.operation.name for a call-log endpoint; everything else (chat.completions, app
# calls, responses, hearth's own calls such as kb.translate) is a chat.
OPERATIONS = {"completions": "text_completion", "embeddings": "embeddings"}


@dataclass(frozen=True)
class CallEvent:
    """What one call was; the server builds it when a call ends."""

    id: str  # request id, e.g. "chatcmpl-…"
    created: float  # unix time the request arrived
    model: str
    endpoint: str  # "chat.completions" | "completions" | "embeddings" | …
    status: str  # "ok" | "error" | "cancelled"
    error: str | None
    prompt_tokens: int
    completion_tokens: int
    latency_ms: float
    ttft_ms: float | None
    cost: float
    stream: bool
    key_id: str | None = None
    app: str | None = None
    variant: str | None = None
    prompt_version: str | None = None
    finish_reason: str | None = None
    tokens: dict[str, int] = field(default_factory=dict)  # system/knowledge/history/input/output
    moderation: list[dict[str, str]] = field(default_factory=list)  # list, category, action, …
    retries: int = 0  # structured-output retries the call took

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, Any]:
        """The webhook's JSON body."""
        return {"type": "call", **asdict(self), "total_tokens": self.total_tokens}


class Hooks:
    """Reports finished calls. ``delivered``, ``failed`` and ``dropped`` count webhook
    events: sent, given up on, and never sent (the queue was full, or still held events
    when ``aclose`` ran out of time)."""

    def __init__(
        self,
        settings: HookSettings,
        *,
        queue_size: int = QUEUE_SIZE,
        backoff: float = BACKOFF,
    ) -> None:
        self.settings = settings
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._queue_size = queue_size
        self._backoff = backoff
        self._queue: asyncio.Queue[CallEvent] | None = None
        self._worker: asyncio.Task[None] | None = None
        self._closed = False
        # Built now, not on the first call, so a missing extra fails at start-up.
        self._tracing = _Tracing(settings) if settings.otlp_endpoint else None

    @property
    def active(self) -> bool:
        return bool(self.settings.webhook or self.settings.otlp_endpoint)

    def emit(self, event: CallEvent) -> None:
        """Queue ``event`` for every configured hook; never blocks, never raises.
        Call it from inside the running event loop."""
        if self._closed:
            if self.settings.webhook:
                self.dropped += 1
            return
        # A broken hook must never fail the call it reports: log it and carry on.
        try:
            if self._tracing:
                self._tracing.record(event)
            if self.settings.webhook:
                self._enqueue(event)
        except Exception:
            log.exception("hooks: call %s could not be reported", event.id)

    async def aclose(self, timeout: float = 5.0) -> None:
        """Deliver what is queued, waiting at most ``timeout`` seconds, then stop."""
        self._closed = True
        await asyncio.gather(self._close_webhook(timeout), self._close_tracing(timeout))

    async def _close_webhook(self, timeout: float) -> None:
        queue, worker, self._queue, self._worker = self._queue, self._worker, None, None
        if queue is None or worker is None:
            return
        try:
            await asyncio.wait_for(queue.join(), timeout)
        except TimeoutError:
            self.dropped += queue.qsize()
            log.warning("webhook: %d queued events not sent before shutdown", queue.qsize())
        worker.cancel()
        await asyncio.wait([worker])  # unlike `await worker`, does not raise the cancel

    async def _close_tracing(self, timeout: float) -> None:
        tracing, self._tracing = self._tracing, None
        if tracing:
            # The exporter sends with blocking HTTP: keep it off the event loop.
            await asyncio.to_thread(tracing.close, timeout)

    def _enqueue(self, event: CallEvent) -> None:
        if self._queue is None:
            # The first emit runs inside the server's loop: the queue and worker belong there.
            try:
                asyncio.get_running_loop()
            except RuntimeError:
                self.dropped += 1
                log.warning("webhook: call %s emitted outside the event loop; dropped", event.id)
                return
            self._queue = asyncio.Queue(self._queue_size)
            self._worker = asyncio.create_task(self._work(self._queue), name="hearth-webhook")
        if self._queue.full():
            self._queue.get_nowait()
            self._queue.task_done()
            self.dropped += 1
            if self.dropped == 1 or self.dropped % 1000 == 0:
                log.warning(
                    "webhook %s is falling behind: %d events dropped so far",
                    self.settings.webhook,
                    self.dropped,
                )
        self._queue.put_nowait(event)

    async def _work(self, queue: asyncio.Queue[CallEvent]) -> None:
        headers = {"user-agent": f"hearth/{__version__}", **self.settings.webhook_headers}
        timeout = self.settings.webhook_timeout
        async with httpx.AsyncClient(headers=headers, timeout=timeout) as client:
            while True:
                event = await queue.get()
                try:
                    sent = await self._deliver(client, event)
                except asyncio.CancelledError:
                    self.failed += 1
                    raise
                except Exception:
                    # One event that cannot be sent must not stop the ones behind it.
                    log.exception("webhook: call %s could not be sent", event.id)
                    sent = False
                finally:
                    queue.task_done()
                if sent:
                    self.delivered += 1
                else:
                    self.failed += 1

    async def _deliver(self, client: httpx.AsyncClient, event: CallEvent) -> bool:
        url = str(self.settings.webhook)
        body = event.as_dict()
        attempts = self.settings.webhook_retries + 1
        for attempt in range(attempts):
            wait: float | None = None
            try:
                response = await client.post(url, json=body)
            except httpx.TransportError as e:  # refused, reset, timed out
                reason = f"{type(e).__name__}: {e}" if str(e) else type(e).__name__
            else:
                if response.is_success:
                    return True
                reason = f"HTTP {response.status_code}"
                if not _retryable(response.status_code):
                    break
                wait = _retry_after(response)
            if attempt + 1 < attempts:
                await asyncio.sleep(min(wait or self._backoff * 2**attempt, BACKOFF_CAP))
        log.warning("webhook %s: call %s not delivered (%s)", url, event.id, reason)
        return False


def _retryable(status: int) -> bool:
    return status == 429 or status >= 500


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds the receiver asked us to wait (``Retry-After: 2``); dates are not honoured."""
    try:
        return max(0.0, float(response.headers.get("retry-after", "")))
    except ValueError:
        return None


class _Tracing:
    """One span per call through a private tracer provider: the process-wide provider
    belongs to whoever embeds hearth, and hearth's spans must not change where theirs go."""

    def __init__(self, settings: HookSettings) -> None:
        try:
            from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.trace import SpanKind, Status, StatusCode
        except ImportError as e:
            raise ConfigError(
                "[hooks] otlp_endpoint needs OpenTelemetry, which is not installed. "
                "Run `pip install 'hearth[otel]'`, or remove otlp_endpoint from config.toml."
            ) from e
        endpoint = f"{str(settings.otlp_endpoint).rstrip('/')}/v1/traces"
        resource = Resource.create({"service.name": settings.service_name})
        self.provider: TracerProvider = TracerProvider(resource=resource)
        self.exporter = OTLPSpanExporter(endpoint=endpoint)
        self.provider.add_span_processor(BatchSpanProcessor(self.exporter))
        self.tracer: Tracer = self.provider.get_tracer("hearth", __version__)
        # INTERNAL, not CLIENT or SERVER: the GenAI conventions describe inference as the
        # caller sees it, CLIENT across a network and INTERNAL for a model in the same
        # process, which hearth's engines are. The request's SERVER span is the HTTP
        # layer's to emit (e.g. ASGI instrumentation); a second one would count it twice.
        self._kind = SpanKind.INTERNAL
        self._status = Status
        self._error = StatusCode.ERROR

    def record(self, event: CallEvent) -> None:
        start = _ns(event.created)
        span = self.tracer.start_span(
            f"{operation(event.endpoint)} {event.model}",
            kind=self._kind,
            attributes=span_attributes(event),
            start_time=start,
        )
        if event.status == "error":
            span.set_status(self._status(self._error, event.error or None))
        span.end(end_time=start + round(event.latency_ms * 1e6))

    def close(self, timeout: float) -> None:
        """Send the spans still batched, then stop. The SDK's flush ignores its timeout and
        retries an unreachable collector for ~10 s, so after ``timeout`` the exporter is shut,
        which ends its retries."""
        deadline = threading.Timer(timeout, self.exporter.shutdown)
        deadline.start()
        try:
            self.provider.shutdown()  # exports what is batched first
        finally:
            deadline.cancel()


def _ns(seconds: float) -> int:
    """Unix nanoseconds; ``seconds * 1e9`` alone rounds to 256 ns steps at today's dates."""
    whole = int(seconds)
    return whole * 1_000_000_000 + round((seconds - whole) * 1e9)


def operation(endpoint: str) -> str:
    """The GenAI ``gen_ai.operation.name`` of a call logged under ``endpoint``."""
    return OPERATIONS.get(endpoint, "chat")


def span_attributes(event: CallEvent) -> dict[str, AttributeValue]:
    """A call's span attributes: the GenAI semantic conventions, then hearth's own."""
    attributes: dict[str, AttributeValue] = {
        "gen_ai.operation.name": operation(event.endpoint),
        "gen_ai.provider.name": "hearth",
        "gen_ai.system": "hearth",  # the name before gen_ai.provider.name; still widely read
        "gen_ai.request.model": event.model,
        "gen_ai.response.model": event.model,
        "gen_ai.response.id": event.id,
        "gen_ai.usage.input_tokens": event.prompt_tokens,
        "gen_ai.usage.output_tokens": event.completion_tokens,
        "hearth.endpoint": event.endpoint,
        "hearth.status": event.status,
        "hearth.stream": event.stream,
        "hearth.cost": event.cost,
        "hearth.retries": event.retries,
        "hearth.moderation.hits": len(event.moderation),
    }
    optional: dict[str, AttributeValue | None] = {
        "gen_ai.response.finish_reasons": [event.finish_reason] if event.finish_reason else None,
        "hearth.app": event.app,
        "hearth.variant": event.variant,
        "hearth.prompt_version": event.prompt_version,
        "hearth.ttft_ms": event.ttft_ms,
        "hearth.key_id": event.key_id,
    }
    attributes.update({k: v for k, v in optional.items() if v is not None})
    if event.moderation:
        categories = sorted({hit.get("category", "") for hit in event.moderation} - {""})
        attributes["hearth.moderation.categories"] = categories
    attributes.update({f"hearth.tokens.{part}": n for part, n in event.tokens.items()})
    if event.status == "error":
        # error.type must stay low-cardinality; the message goes in the span status.
        attributes["error.type"] = "_OTHER"
    return attributes
