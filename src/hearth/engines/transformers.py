"""A Hugging Face model directory served directly with ``transformers`` (PyTorch): CPU, or
the GPU when one is there.

For the models a user has as safetensors (``snapshot_download``, ``huggingface-cli
download``) and has not converted to GGUF yet, or whose architecture llama.cpp does not
know. The chat template is the tokenizer's own; usage is counted with that tokenizer, so it
is exact. Generation runs on one thread (PyTorch's own threads inside each forward pass),
with the KV cache kept between steps: requests that arrive together are batched
(``transformers_batch``), a stream ends within one step of its client going away, and
stop sequences are matched on the decoded text (held back while they may still be
starting).

Code shipped with a model (``auto_map`` in its config.json) runs only when the model's
table says ``trust_remote_code = true``.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import logging
import os
from collections.abc import AsyncIterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from hearth.config import ModelSpec
from hearth.engines.base import Capabilities
from hearth.engines.transformers_batch import Batcher, Sampler, Seq
from hearth.errors import ContextLengthExceeded, EngineError, Unsupported
from hearth.types import (
    ChatRequest,
    CompletionRequest,
    Delta,
    Embeddings,
    GenerationParams,
    Message,
    TokenPiece,
    Usage,
)

log = logging.getLogger(__name__)


def remote_code(directory: Path) -> bool:
    """The model ships Python code of its own (``auto_map`` in config.json)."""
    try:
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return bool(config.get("auto_map"))


class TransformersEngine:
    capabilities = Capabilities(chat=True, max_n=1)

    def __init__(self, spec: ModelSpec) -> None:
        self.spec = spec
        self.context_length = spec.context
        self.vocab_size: int | None = None
        # loading runs here; generation on the batcher's thread (PyTorch threads inside)
        self._pool = ThreadPoolExecutor(1, thread_name_prefix=f"transformers-{spec.name}")
        self._batcher = Batcher(self)
        self._pad = 0
        self._model: Any = None
        self._tokenizer: Any = None
        self._eos: set[int] = set()
        self._device = "cpu"
        self._cache_arg = "past_key_values"

    # -- lifecycle ----------------------------------------------------------------------
    async def start(self) -> None:
        await asyncio.get_running_loop().run_in_executor(self._pool, self._load)

    def _load(self) -> None:
        directory = Path(self.spec.path or "")
        if not (directory / "config.json").is_file():
            raise EngineError(
                f"model '{self.spec.name}': {directory} is not a Hugging Face model directory "
                "(no config.json)"
            )
        custom = remote_code(directory)
        if custom and not self.spec.trust_remote_code:
            raise EngineError(
                f"model '{self.spec.name}' ships its own Python code (auto_map in "
                f"{directory / 'config.json'}); hearth runs it only if you trust it: set "
                f'trust_remote_code = true under [models."{self.spec.name}"]'
            )
        try:
            import torch
            from transformers import AutoModelForCausalLM, AutoTokenizer
        except ImportError as e:
            raise EngineError(
                f'engine = "transformers" needs torch and transformers: pip install '
                f"'hearth[transformers]' ({e})"
            ) from e
        torch.set_num_threads(self.spec.threads or os.cpu_count() or 1)
        self._device = "cuda" if torch.cuda.is_available() else "cpu"
        # CPUs run float32 fastest and exactly; a GPU takes the checkpoint's own dtype
        dtype = torch.float32 if self._device == "cpu" else "auto"
        try:
            tokenizer = AutoTokenizer.from_pretrained(directory, trust_remote_code=custom)
            model = AutoModelForCausalLM.from_pretrained(
                directory, dtype=dtype, trust_remote_code=custom
            )
        except (OSError, ValueError, KeyError) as e:
            raise EngineError(f"transformers could not load {directory}: {e}") from e
        self._model = model.to(self._device).eval()
        # transformers 5 renamed the KV cache argument (past_key_values -> cache)
        forward = inspect.signature(model.forward).parameters
        self._cache_arg = "cache" if "cache" in forward else "past_key_values"
        self._tokenizer = tokenizer
        positions = getattr(model.config, "max_position_embeddings", None)
        if isinstance(positions, int) and positions > 0:
            self.context_length = min(self.spec.context, positions)
        self.vocab_size = len(tokenizer)
        eos = getattr(model.generation_config, "eos_token_id", None)
        ids = eos if isinstance(eos, list) else [eos]
        self._eos = {int(i) for i in [*ids, tokenizer.eos_token_id] if i is not None}
        pad = tokenizer.pad_token_id
        self._pad = int(pad) if pad is not None else min(self._eos, default=0)
        log.info(
            "transformers: %s on %s (%s), context %d",
            self.spec.name,
            self._device,
            dtype,
            self.context_length,
        )

    async def close(self) -> None:
        self._batcher.close()
        self._model = None
        self._pool.shutdown(wait=False, cancel_futures=True)

    def check(self, request: ChatRequest | CompletionRequest) -> None:
        params = request.params
        if params.logit_bias and self.vocab_size is not None:
            bad = [i for i in params.logit_bias if not 0 <= i < self.vocab_size]
            if bad:
                raise Unsupported(f"logit_bias token {bad[0]} is not in the vocabulary")

    # -- tokens -------------------------------------------------------------------------
    async def tokenize(
        self, text: str, *, add_special: bool = False, parse_special: bool = True
    ) -> list[TokenPiece]:
        tok = self._tokenizer
        ids = tok.encode(
            text, add_special_tokens=add_special, split_special_tokens=not parse_special
        )
        return [TokenPiece(int(i), tok.decode([i]).encode("utf-8")) for i in ids]

    async def detokenize(self, ids: list[int]) -> str:
        return str(self._tokenizer.decode(ids))

    async def render_chat(self, messages: list[Message]) -> str:
        tok = self._tokenizer
        if not getattr(tok, "chat_template", None):
            raise Unsupported(
                f"model '{self.spec.name}' has no chat template in its tokenizer config; "
                "use /v1/completions with your own prompt"
            )
        rendered = tok.apply_chat_template(
            [m.to_openai() for m in messages], tokenize=False, add_generation_prompt=True
        )
        return str(rendered)

    async def embed(self, texts: list[str], *, query: bool = False) -> Embeddings:
        raise Unsupported(f"model '{self.spec.name}' generates text; it serves no embeddings")

    # -- generation ---------------------------------------------------------------------
    async def stream_chat(self, request: ChatRequest) -> AsyncIterator[Delta]:
        if request.callable_tools:
            raise Unsupported(f"model '{self.spec.name}' does not call tools", param="tools")
        prompt = await self.render_chat(request.messages)
        # the template writes the special tokens (BOS) itself
        ids = self._tokenizer.encode(prompt, add_special_tokens=False)
        async for delta in self._generate(ids, request.params):
            yield delta

    async def stream_completion(self, request: CompletionRequest) -> AsyncIterator[Delta]:
        ids = self._tokenizer.encode(request.prompt, add_special_tokens=True)
        if request.echo:
            yield Delta(text=request.prompt)
        async for delta in self._generate(ids, request.params):
            yield delta

    async def _generate(self, prompt: list[int], params: GenerationParams) -> AsyncIterator[Delta]:
        if self._model is None:
            raise EngineError(f"model '{self.spec.name}' is not loaded")
        if len(prompt) >= self.context_length:
            raise ContextLengthExceeded(len(prompt), self.context_length)
        room = self.context_length - len(prompt)
        limit = min(params.max_tokens, room) if params.max_tokens else room
        stops = [s for s in params.stop if s]
        hold = max((len(s) for s in stops), default=1) - 1
        seq = Seq(prompt, Sampler(self.spec, params, self._device), limit, self._eos)
        self._batcher.submit(seq)
        produced: list[int] = []
        sent = ""  # the text already streamed: always a prefix of the decoded answer
        try:
            while True:
                item = await seq.queue.get()
                if isinstance(item, BaseException):
                    raise item
                if isinstance(item, str):
                    finish = item  # the end: "stop" (end of sequence) or "length"
                    break
                produced.append(item)
                text = self._tokenizer.decode(produced, skip_special_tokens=True)
                if text.endswith("\ufffd"):
                    continue  # part of a character: wait for the rest of its bytes
                safe = len(text)
                if stops:
                    start = max(len(sent) - hold, 0)
                    found = [i for i in (text.find(s, start) for s in stops) if i >= 0]
                    if found:
                        cut = min(found)
                        if cut > len(sent):
                            yield Delta(text=text[len(sent) : cut])
                        yield Delta(finish_reason="stop")
                        yield Delta(usage=Usage(len(prompt), len(produced)))
                        return
                    safe -= hold  # what may be the start of a stop sequence waits
                if safe > len(sent):
                    yield Delta(text=text[len(sent) : safe])
                    sent = text[:safe]
        finally:
            seq.cancelled = True  # finished, stopped or abandoned: the batch drops it
        rest = self._tokenizer.decode(produced, skip_special_tokens=True)[len(sent) :]
        if rest:
            yield Delta(text=rest)
        yield Delta(finish_reason=finish)
        yield Delta(usage=Usage(len(prompt), len(produced)))
