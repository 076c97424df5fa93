"""What the routes share: settings, the model registry, the call log and metrics."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from hearth.apps.guard import Guard
from hearth.apps.hooks import CallEvent, Hooks
from hearth.apps.run import AppCall, split_model
from hearth.apps.spec import App
from hearth.apps.store import AppNotFound, AppStore
from hearth.config import Settings
from hearth.conversations.memory import Budget, Counter
from hearth.engines.base import Engine
from hearth.engines.registry import ModelRegistry
from hearth.engines.runner import Runner
from hearth.errors import HearthError, KnowledgeBaseNotFound, ModelNotFound
from hearth.rag.kb import open_store
from hearth.rag.stores.base import Store
from hearth.rag.translate import Translator
from hearth.server.auth import Caller, KeyRing
from hearth.server.logwriter import LogWriter
from hearth.server.memory import Locks, split_of
from hearth.server.metrics import Metrics
from hearth.server.quota import WINDOW, Limits, Reservation, SharedLimits
from hearth.storage.appfiles import SharedAppFiles
from hearth.storage.calllog import CallLog, CallRecord, ModerationRecord
from hearth.storage.conversations import ConversationStore
from hearth.storage.counters import KeyCounters
from hearth.storage.keys import KeyStore
from hearth.types import GenerationParams, Price, Usage

log = logging.getLogger("hearth.server")


@dataclass
class Services:
    settings: Settings
    registry: ModelRegistry
    calllog: CallLog
    metrics: Metrics
    _kb: Store | None = None
    keys: KeyRing = field(init=False)
    limits: Limits = field(init=False)
    translators: dict[str, Translator] = field(default_factory=dict)  # by model: a cache each
    apps: AppStore = field(init=False)
    guard: Guard = field(init=False)
    hooks: Hooks = field(init=False)
    conversations: ConversationStore = field(init=False)
    writer: LogWriter = field(init=False)
    locks: Locks = field(default_factory=Locks)
    counters: dict[str, Counter | None] = field(default_factory=dict)  # by model

    def __post_init__(self) -> None:
        self.conversations = ConversationStore(self.calllog.db)
        # a call alone on the server writes its row itself (see LogWriter)
        self.writer = LogWriter(self.calllog, quiet=lambda: self.metrics.in_flight <= 1)
        self.keys = KeyRing(KeyStore(self.calllog.db), required=self.settings.auth)
        self.limits = (
            SharedLimits(KeyCounters(self.calllog.db, WINDOW))
            if self.calllog.db.dialect == "postgresql"
            else Limits(self.calllog.spent)
        )
        shared = self.calllog.db.dialect == "postgresql"
        self.apps = AppStore(
            self.settings.home / "apps", SharedAppFiles(self.calllog.db) if shared else None
        )
        self.guard = Guard(self.settings.home / "moderation")
        self.hooks = Hooks(self.settings.hooks)

    def models(self, caller: Caller) -> list[str]:
        """The served models this caller may use."""
        return [n for n in self.registry.names() if caller.may_use_model(n)]

    def app_names(self, caller: Caller) -> list[str]:
        """The apps this caller may use: a key's model list names apps too."""
        return [n for n in self.apps.names() if caller.may_use_model(n)]

    def resolve_app(self, caller: Caller, name: str) -> tuple[App, str] | None:
        """``name`` as an app and the model it runs on: ``app`` (its default variant's
        model) or ``app@model``; None when ``name`` is a model. A served model's own name
        is never an app's."""
        if "@" not in name and name in self.registry.names():
            return None
        app_name, model = split_model(name)
        app = self.apps.find(app_name)
        if app is None:
            if "@" in name:
                raise AppNotFound(app_name, self.app_names(caller))
            return None
        if not caller.may_use_model(app_name):
            raise ModelNotFound(name, self.models(caller) + self.app_names(caller))
        chosen = app.variant(model).model or self.settings.default_model
        if chosen not in self.registry.names():
            raise ModelNotFound(chosen, self.registry.names())
        return app, chosen

    async def runner(self, caller: Caller, name: str) -> Runner:
        """The loaded model ``name``; one outside the caller's key is as unknown as one that
        does not exist, so a key does not learn what else is served."""
        if not caller.may_use_model(name) or name not in self.registry.names():
            raise ModelNotFound(name, self.models(caller) + self.app_names(caller))
        return await self.registry.get(name)

    def check_kb(self, caller: Caller, name: str) -> None:
        if not caller.may_use_kb(name):
            raise KnowledgeBaseNotFound(name)

    @property
    def kb(self) -> Store:
        """The knowledge-base store, opened on first use so serving never depends on it."""
        if self._kb is None:
            self._kb = open_store(self.settings.knowledge_url)
        return self._kb

    def close(self) -> None:
        self.writer.close()
        self.calllog.close()
        if self._kb is not None:
            self._kb.close()


@dataclass
class Call:
    """Timing and bookkeeping for one request, written to the call log when it ends."""

    services: Services
    model: str
    endpoint: str
    stream: bool
    caller: Caller = field(default_factory=Caller)
    prefix: str = "req"
    id: str = ""
    created: float = field(default_factory=time.time)
    started: float = field(default_factory=time.perf_counter)
    first_token: float | None = None
    reservation: Reservation | None = None
    app: AppCall | None = None  # set for an app's call: logged with its details
    engine: Engine | None = None  # counts the app's token split
    budget: Budget | None = None  # memory's count of the prompt's parts, when it has one
    run_id: str | None = None  # a chain's run, and the step this call is
    step: str | None = None
    conversation_id: str | None = None
    _parts: asyncio.Future[dict[str, int]] | None = None

    def __post_init__(self) -> None:
        self.id = self.id or f"{self.prefix}-{uuid.uuid4().hex[:24]}"

    def cost(self, usage: Usage) -> float:
        spec = self.services.settings.models.get(self.model)
        return spec.price.cost(usage) if spec else 0.0

    async def reserve(
        self, worst: Callable[[], Awaitable[Usage]], params: GenerationParams | None = None
    ) -> None:
        """Hold the most this call may use (``worst()``, counted only for a key with token
        or budget limits) against its key's limits, or refuse it. Without ``max_tokens`` in
        ``params`` the call is granted what still fits, and ``max_tokens`` is set to it."""
        key = self.caller.key
        if key is None or not key.metered:
            return
        most = await worst()
        spec = self.services.settings.models.get(self.model)
        flexible = params is not None and params.max_tokens is None
        choices = params.n if params is not None else 1
        self.reservation = await self.services.limits.reserve(
            key,
            most.prompt_tokens,
            most.completion_tokens,
            spec.price if spec else Price(),
            choices=choices,
            flexible=flexible,
        )
        if params is not None and flexible:
            granted = self.reservation.completion // choices
            if granted < most.completion_tokens // choices:
                params.max_tokens = granted

    def mark_first_token(self) -> None:
        if self.first_token is None:
            self.first_token = time.perf_counter()

    async def finish(self, usage: Usage, status: str, error: str | None = None) -> None:
        latency = time.perf_counter() - self.started
        ttft = None if self.first_token is None else self.first_token - self.started
        cost = self.cost(usage)
        await self.services.limits.settle(self.reservation, usage.total_tokens, cost)
        self.services.metrics.observe(
            model=self.model,
            endpoint=self.endpoint,
            status=status,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            latency_s=latency,
            ttft_s=ttft,
        )
        split = await self._split(usage)
        app = self.app
        record = CallRecord(
            id=self.id,
            created=self.created,
            model=self.model,
            endpoint=self.endpoint,
            prompt_tokens=usage.prompt_tokens,
            completion_tokens=usage.completion_tokens,
            ttft_ms=None if ttft is None else ttft * 1000,
            latency_ms=latency * 1000,
            status=status,
            error=error,
            cost=cost,
            stream=self.stream,
            key_id=self.caller.key_id,
            app=app.app.name if app else None,
            variant=app.variant.name if app else None,
            prompt_version=app.version if app else None,
            tokens_system=split.get("system"),
            tokens_knowledge=split.get("knowledge"),
            tokens_history=split.get("history"),
            tokens_input=split.get("input"),
            moderation_hits=len(app.flags) if app else 0,
            retries=app.retries if app else 0,
            finish_reason=app.finish_reason if app else None,
            run_id=self.run_id,
            step=self.step,
            conversation_id=self.conversation_id,
        )
        hits = (
            [
                ModerationRecord(
                    call_id=self.id,
                    created=self.created,
                    app=app.app.name,
                    model=self.model,
                    list=f.hit.word.list,
                    category=f.hit.word.category,
                    action=f.action,
                    direction=f.direction,
                    matched=f.hit.text,
                )
                for f in app.flags
            ]
            if app
            else []
        )
        try:
            await self.services.writer.record(record, hits)
        except Exception:  # the answer was already given; losing a log row must not fail it
            log.exception("could not write call log row %s", self.id)
        if self.services.hooks.active:
            self.services.hooks.emit(_event(record, split, app))

    def count_parts(self) -> None:
        """Start counting the app's prompt parts now, so the count runs beside generation
        rather than after it, on the answer's path."""
        ready = self.app is not None and self.engine is not None and self.budget is None
        if ready and self._parts is None:
            assert self.app is not None and self.engine is not None
            self._parts = asyncio.ensure_future(_count(self.engine, self.app.parts))

    async def _split(self, usage: Usage) -> dict[str, int]:
        """The prompt's tokens by source, in the model's tokenizer: knowledge, history and
        input counted, the system prompt (with the chat template's own tokens) the rest."""
        if self.budget is not None and usage.prompt_tokens:
            return split_of(self.budget)
        if self.app is None:
            return {}
        self.count_parts()
        if self._parts is None:
            return {}
        if not usage.prompt_tokens:  # nothing reached the model (a refusal, an early error)
            self._parts.cancel()
            return {}
        out = await self._parts
        if not out:
            return {}
        return out | {"system": max(usage.prompt_tokens - sum(out.values()), 0)}


async def _count(engine: Engine, parts: dict[str, str]) -> dict[str, int]:
    out = {"knowledge": 0, "history": 0, "input": 0}
    try:
        for part, text in parts.items():
            out[part] = len(await engine.tokenize(text, parse_special=False)) if text else 0
    except HearthError:  # a remote model without a tokenizer: no split
        return {}
    return out


def _event(record: CallRecord, split: dict[str, int], app: AppCall | None) -> CallEvent:
    tokens = dict(split)
    if split:
        tokens["output"] = record.completion_tokens
    return CallEvent(
        id=record.id,
        created=record.created,
        model=record.model,
        endpoint=record.endpoint,
        status=record.status,
        error=record.error,
        prompt_tokens=record.prompt_tokens,
        completion_tokens=record.completion_tokens,
        latency_ms=record.latency_ms,
        ttft_ms=record.ttft_ms,
        cost=record.cost,
        stream=record.stream,
        key_id=record.key_id,
        app=record.app,
        variant=record.variant,
        prompt_version=record.prompt_version,
        finish_reason=record.finish_reason,
        tokens=tokens,
        moderation=[f.as_dict() for f in app.flags] if app else [],
        retries=record.retries,
    )
