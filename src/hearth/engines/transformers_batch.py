"""The transformers engine's generation loop: requests batched as transformers allows
(left-padded, one KV cache per batch), on one thread, and each request's sampling."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
import time
from typing import Any

from hearth.config import ModelSpec
from hearth.errors import EngineError
from hearth.types import GenerationParams

log = logging.getLogger(__name__)


class Seq:
    """One generation as the batcher sees it: its prompt and sampling, and the queue its
    tokens go to (then a finish reason, or the exception that ended it)."""

    def __init__(self, prompt: list[int], sampler: Sampler, limit: int, eos: set[int]) -> None:
        self.prompt = prompt
        self.sampler = sampler
        self.limit = limit
        self.eos = eos
        self.produced: list[int] = []
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[int | str | BaseException] = asyncio.Queue()
        self.cancelled = False  # set by the consumer: stop computing for it
        self.done = False

    def send(self, item: int | str | BaseException) -> None:
        self.loop.call_soon_threadsafe(self.queue.put_nowait, item)

    def take(self, token: int) -> None:
        """The token sampled for it (or its end)."""
        if token in self.eos:
            self.finish("stop")
            return
        self.produced.append(token)
        self.send(token)
        if len(self.produced) >= self.limit:
            self.finish("length")

    def finish(self, reason: str | BaseException) -> None:
        if not self.done:
            self.done = True
            with contextlib.suppress(RuntimeError):  # its loop is gone: nobody waits
                self.send(reason)


GATHER_S = 0.02  # how long the first request of an idle model waits for company


class Batcher:
    """Batched generation on one thread, as transformers allows it: requests that arrive
    together are prefilled together as one left-padded batch with one KV cache, and step
    together (one forward pass for the batch per token); batches that started at different
    times take turns, one step each. A finished or abandoned request's row is only masked
    out, its batch keeps going while any row is live."""

    def __init__(self, engine: Any) -> None:  # a TransformersEngine
        self.engine = engine
        self._pending: list[Seq] = []
        self._cond = threading.Condition()
        self._thread: threading.Thread | None = None
        self._closed = False

    def submit(self, seq: Seq) -> None:
        with self._cond:
            if self._closed:
                raise EngineError(f"model '{self.engine.spec.name}' is closed")
            self._pending.append(seq)
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._run, name=f"transformers-{self.engine.spec.name}", daemon=True
                )
                self._thread.start()
            self._cond.notify()

    def close(self) -> None:
        with self._cond:
            self._closed = True
            self._cond.notify()

    def _run(self) -> None:
        import torch

        batches: list[dict[str, Any]] = []
        while True:
            with self._cond:
                while not self._pending and not batches and not self._closed:
                    self._cond.wait()
                if self._closed:
                    for seq in self._pending + [s for b in batches for s in b["seqs"]]:
                        seq.finish(EngineError(f"model '{self.engine.spec.name}' was unloaded"))
                    return
                if self._pending and not batches:
                    # requests sent together arrive a few ms apart: let them share a batch
                    until = time.monotonic() + GATHER_S
                    while (left := until - time.monotonic()) > 0 and not self._closed:
                        self._cond.wait(left)
                new, self._pending = self._pending, []
            with torch.inference_mode():
                live = [s for s in new if not s.cancelled]
                if live:
                    batch = self._guard(live, self._prefill)
                    if batch is not None:
                        batches.append(batch)
                for batch in list(batches):
                    seqs = batch["seqs"]
                    over = all(s.done or s.cancelled for s in seqs)
                    if over or self._guard(seqs, lambda _, b=batch: self._step(b)) is None:
                        batches.remove(batch)

    def _guard(self, seqs: list[Seq], work: Any) -> Any:
        try:
            return work(seqs) or True
        except Exception as e:
            log.exception("transformers generation failed")
            for seq in seqs:
                seq.finish(EngineError(f"model '{self.engine.spec.name}' failed: {e}"))
            return None

    def _prefill(self, seqs: list[Seq]) -> dict[str, Any]:
        import torch

        engine = self.engine
        device = engine._device
        width = max(len(s.prompt) for s in seqs)
        pad = engine._pad
        ids = torch.tensor(
            [[pad] * (width - len(s.prompt)) + s.prompt for s in seqs], device=device
        )
        mask = torch.tensor(
            [[0] * (width - len(s.prompt)) + [1] * len(s.prompt) for s in seqs], device=device
        )
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        out = engine._model(
            input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True
        )
        batch = {
            "seqs": seqs,
            "cache": getattr(out, "cache", None) or out.past_key_values,
            "mask": mask,
            "next": positions[:, -1] + 1,
        }
        self._sample(seqs, out.logits[:, -1].float())
        return batch

    def _step(self, batch: dict[str, Any]) -> None:
        import torch

        engine = self.engine
        seqs: list[Seq] = batch["seqs"]
        last = [s.produced[-1] if s.produced and not s.done else engine._pad for s in seqs]
        ids = torch.tensor([[t] for t in last], device=engine._device)
        mask = torch.cat([batch["mask"], torch.ones_like(batch["mask"][:, :1])], dim=-1)
        out = engine._model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=batch["next"][:, None],
            use_cache=True,
            **{engine._cache_arg: batch["cache"]},
        )
        batch["cache"] = getattr(out, "cache", None) or out.past_key_values
        batch["mask"] = mask
        batch["next"] = batch["next"] + 1
        self._sample(seqs, out.logits[:, -1].float())

    @staticmethod
    def _sample(seqs: list[Seq], logits: Any) -> None:
        for row, seq in enumerate(seqs):
            if seq.cancelled:
                seq.done = True
            if not seq.done:
                seq.take(seq.sampler.pick(logits[row], seq.prompt, seq.produced))


class Sampler:
    """The request's sampling over one step's logits, with transformers' own processors."""

    def __init__(self, spec: ModelSpec, params: GenerationParams, device: str) -> None:
        import torch

        defaults = spec.sampling
        temperature = params.temperature
        self.temperature = float(
            temperature if temperature is not None else defaults.get("temperature", 1.0)
        )
        top_p = params.top_p if params.top_p is not None else defaults.get("top_p", 1.0)
        self.top_p = float(top_p)
        repeat = params.repeat_penalty or defaults.get("repeat_penalty")
        self.repeat = float(repeat) if repeat and repeat != 1.0 else None
        self.presence = params.presence_penalty or 0.0
        self.frequency = params.frequency_penalty or 0.0
        self.bias = params.logit_bias or {}
        self.generator = torch.Generator(device=device)
        if params.seed is not None:
            self.generator.manual_seed(params.seed)
        else:
            self.generator.seed()

    def pick(self, logits: Any, prompt: list[int], produced: list[int]) -> int:
        import torch
        from transformers import RepetitionPenaltyLogitsProcessor, TopPLogitsWarper

        for token, bias in self.bias.items():
            logits[token] += bias
        if produced and (self.presence or self.frequency):
            seen = torch.tensor(produced, device=logits.device)
            counts = torch.bincount(seen, minlength=logits.shape[0]).to(logits.dtype)
            logits -= self.frequency * counts + self.presence * (counts > 0).to(logits.dtype)
        if self.repeat:
            history = torch.tensor([prompt + produced], device=logits.device)
            logits = RepetitionPenaltyLogitsProcessor(self.repeat)(history, logits[None])[0]
        if self.temperature <= 0:
            return int(torch.argmax(logits))
        scores = logits[None] / self.temperature
        if self.top_p < 1.0:
            scores = TopPLogitsWarper(self.top_p)(None, scores)
        probs = torch.softmax(scores[0], -1)
        return int(torch.multinomial(probs, 1, generator=self.generator))
