"""Which engine serves which model; loads on first use, unloads the least recently used."""

from __future__ import annotations

import asyncio
import hashlib
import importlib
import logging
import time
from dataclasses import replace

from hearth.config import ModelSpec, Settings
from hearth.engines.base import Engine
from hearth.engines.runner import Runner
from hearth.errors import ConfigError, ModelNotFound
from hearth.hub import bundled

log = logging.getLogger(__name__)

# engine kind -> "module:Class"; imported lazily so heavy bindings load only when used.
ENGINE_CLASSES = {
    "llamacpp": "hearth.engines.llamacpp:LlamaCppEngine",
    "remote": "hearth.engines.remote:RemoteEngine",
    "fake": "hearth.engines.fake:FakeEngine",
    "transformers": "hearth.engines.transformers:TransformersEngine",
    "e5": "hearth.engines.e5:E5Engine",
}


def engine_class(kind: str) -> type:
    module, _, cls = ENGINE_CLASSES[kind].partition(":")
    return getattr(importlib.import_module(module), cls)  # type: ignore[no-any-return]


def resolve(spec: ModelSpec, settings: Settings) -> ModelSpec:
    """Fill in the file path of a bundled model, assembling it on first use."""
    if spec.path or not spec.bundled or spec.bundled not in bundled.BUNDLED:
        return spec
    return replace(spec, path=str(bundled.ensure(spec.bundled, settings.models_dir)))


class ModelRegistry:
    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self._runners: dict[str, Runner] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._pinned: set[str] = set()  # tokenizers that remote engines hold on to

    def names(self) -> list[str]:
        return self.settings.served_models()

    def spec(self, name: str) -> ModelSpec:
        if name not in self.names():
            raise ModelNotFound(name, self.names())
        return self.settings.models[name]

    def loaded(self) -> list[Runner]:
        return list(self._runners.values())

    async def get(self, name: str, *, served_only: bool = True) -> Runner:
        runner = self._runners.get(name)
        if runner is not None:
            runner.last_used = time.monotonic()
            return runner
        spec = self.spec(name) if served_only else self.settings.models[name]
        async with self._locks.setdefault(name, asyncio.Lock()):
            if name in self._runners:
                return self._runners[name]
            await self._make_room()
            if spec.base:
                runner = await self._adapter(spec)
                self._runners[name] = runner
                return runner
            spec = await asyncio.to_thread(resolve, spec, self.settings)
            if spec.engine == "llamacpp":
                spec = replace(spec, loras=self._adapters_of(name))
            extra = {}
            if spec.engine == "remote" and spec.tokenizer:
                extra["tokenizer"] = (await self._tokenizer(spec)).engine
            engine: Engine = engine_class(spec.engine)(spec, **extra)
            log.info("loading model %s (%s)", name, spec.engine)
            await engine.start()
            runner = Runner(
                spec,
                engine,
                queue_size=self.settings.queue_size,
                timeout=self.settings.request_timeout,
            )
            self._runners[name] = runner
            return runner

    def _adapters_of(self, name: str) -> tuple[str, ...]:
        """The adapter GGUFs registered over model ``name``: loaded with it, chosen per request."""
        return tuple(
            m.adapter
            for m in sorted(self.settings.models.values(), key=lambda m: m.name)
            if m.base == name and m.adapter
        )

    async def _adapter(self, spec: ModelSpec) -> Runner:
        # An adapter shares its base's loaded weights, slots and KV cache; only the
        # adapter's own tensors (a few MB) are extra, loaded with the base.
        base = await self.get(spec.base or "", served_only=False)
        self._pinned.add(base.spec.name)
        props = getattr(base.engine, "props", None)
        if spec.template_sha256 and props is not None:
            source = str((await props()).get("chat_template") or "")
            if hashlib.sha256(source.encode("utf-8")).hexdigest() != spec.template_sha256:
                raise ConfigError(
                    f"adapter '{spec.name}' was trained with another chat template than "
                    f"'{base.spec.name}' has now; retrain it on this base (`hearth finetune run`)"
                )
        merged = replace(
            base.spec,
            name=spec.name,
            base=spec.base,
            adapter=spec.adapter,
            adapter_scale=spec.adapter_scale,
            template_sha256=spec.template_sha256,
            price=spec.price,
            description=spec.description,
            sampling=spec.sampling or base.spec.sampling,
            memory=spec.memory if spec.memory is not None else base.spec.memory,
        )
        view = base.engine.with_adapter(merged)  # type: ignore[attr-defined]
        log.info("serving adapter %s over %s", spec.name, base.spec.name)
        return Runner(
            merged, view, queue_size=self.settings.queue_size, timeout=self.settings.request_timeout
        )

    async def _tokenizer(self, spec: ModelSpec) -> Runner:
        name = spec.tokenizer or ""
        if name not in self.settings.models or name == spec.name:
            raise ConfigError(
                f"model '{spec.name}' names tokenizer '{name}', which is not a registered model"
            )
        self._pinned.add(name)
        return await self.get(name, served_only=False)

    async def _make_room(self) -> None:
        while len(self._runners) >= self.settings.max_loaded:
            idle = [
                r for r in self._runners.values() if not r.busy and r.spec.name not in self._pinned
            ]
            if not idle:
                return  # everything is busy: go over the limit rather than fail a request
            victim = min(idle, key=lambda r: r.last_used)
            log.info("unloading least recently used model %s", victim.spec.name)
            del self._runners[victim.spec.name]
            await victim.engine.close()

    async def close(self) -> None:
        runners, self._runners = list(self._runners.values()), {}
        for runner in runners:
            await runner.engine.close()
