"""Memory estimates for serving and fine-tuning a model: weights, KV cache, activations,
gradients and optimizer state, in bytes.

Pure arithmetic over a :class:`Shape`; reading shapes from files lives in
``hearth.hub.gguf_info``. Figures are decimal (``GB`` = 10^9 bytes), the unit model cards and
"7B at fp16 is 14 GB" use. They cover tensors only: the CUDA context, allocator slack and the
framework itself come on top (typically 0.5-2 GB).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, fields, replace
from enum import StrEnum

from gguf import GGML_QUANT_SIZES, GGMLQuantizationType

from hearth.errors import InvalidRequest

GB = 1_000_000_000


class Train(StrEnum):
    FULL = "full"
    LORA = "lora"
    QLORA = "qlora"


@dataclass(frozen=True)
class Shape:
    """What memory depends on. ``head_dim`` is per attention head; ``ffn`` the MLP width."""

    params: int
    layers: int
    hidden: int
    heads: int
    kv_heads: int
    head_dim: int
    ffn: int
    vocab: int
    tied_embeddings: bool = False
    source: str = ""  # where the shape came from: a file, or "assumed: LLaMA-7B"

    @property
    def embedding_params(self) -> int:
        return self.vocab * self.hidden * (1 if self.tied_embeddings else 2)


# Published shapes of well-known models, used when only a parameter count is given.
TYPICAL: tuple[Shape, ...] = (
    Shape(134_515_008, 30, 576, 9, 3, 64, 1536, 49152, True, "SmolLM2-135M"),
    Shape(494_032_768, 24, 896, 14, 2, 64, 4864, 151936, True, "Qwen2.5-0.5B"),
    Shape(1_235_814_400, 16, 2048, 32, 8, 64, 8192, 128256, True, "Llama-3.2-1B"),
    Shape(3_212_749_824, 28, 3072, 24, 8, 128, 8192, 128256, True, "Llama-3.2-3B"),
    Shape(6_738_415_616, 32, 4096, 32, 32, 128, 11008, 32000, False, "LLaMA-7B"),
    Shape(8_030_261_248, 32, 4096, 32, 8, 128, 14336, 128256, False, "Llama-3.1-8B"),
    Shape(13_015_864_320, 40, 5120, 40, 40, 128, 13824, 32000, False, "LLaMA-13B"),
    Shape(32_528_943_616, 60, 6656, 52, 52, 128, 17920, 32000, False, "LLaMA-33B"),
    Shape(68_976_648_192, 80, 8192, 64, 8, 128, 28672, 32000, False, "Llama-2-70B"),
)

# bitsandbytes formats: only nn.Linear layers are quantized; embeddings and lm_head stay 16-bit.
# NF4 with double quantization: 4 bits + an 8-bit scale per 64 weights + an fp32 scale per
# 256 of those = 4.127 bits (QLoRA paper, section 2).
_BNB_BITS = {"int8": 8.0, "nf4": 4.127, "fp4": 4.127}
_FLOAT_BITS = {"fp32": 32.0, "fp16": 16.0, "bf16": 16.0}
# llama.cpp file types that mix tensor types; bits per weight measured on Llama-2-7B
# (llama.cpp tools/quantize/README.md). Pure tensor types come from gguf's block sizes.
_GGUF_MIX_BITS = {
    "q2_k": 3.35,
    "q3_k_s": 3.50,
    "q3_k_m": 3.91,
    "q3_k_l": 4.27,
    "q4_k_s": 4.58,
    "q4_k_m": 4.84,
    "q5_k_s": 5.52,
    "q5_k_m": 5.68,
    "iq2_m": 2.7,
    "iq3_xs": 3.3,
    "iq3_m": 3.66,
}
_ALIASES = {
    "f32": "fp32",
    "float32": "fp32",
    "float": "fp32",
    "f16": "fp16",
    "float16": "fp16",
    "half": "fp16",
    "bfloat16": "bf16",
    "int4": "nf4",
}
_GGUF_PURE_BITS = {
    t.name.lower(): 8 * GGML_QUANT_SIZES[t][1] / GGML_QUANT_SIZES[t][0]
    for t in GGMLQuantizationType
    if t in GGML_QUANT_SIZES and t.name not in ("I8", "I16", "I32", "I64")
}
BITS: dict[str, float] = {**_GGUF_PURE_BITS, **_GGUF_MIX_BITS, **_BNB_BITS, **_FLOAT_BITS}

_SIZE = re.compile(r"^\s*(\d+(?:\.\d*)?(?:e\d+)?)\s*([kmbt]?)\s*$", re.IGNORECASE)
_SUFFIX = {"": 1, "k": 10**3, "m": 10**6, "b": 10**9, "t": 10**12}


def parse_params(text: str) -> int:
    """``"7b"`` -> 7_000_000_000; also ``0.5B``, ``135m``, ``7e9`` and plain integers."""
    match = _SIZE.match(text)
    if not match or float(match[1]) <= 0:
        raise InvalidRequest(
            f"--params {text!r} is not a parameter count; write it like 7b, 0.5b, 135m or 7e9.",
            param="params",
        )
    return round(float(match[1]) * _SUFFIX[match[2].lower()])


def typical_shape(params: int) -> Shape:
    """The published shape nearest to ``params`` (on a log scale), with ``params`` kept."""
    nearest = min(TYPICAL, key=lambda s: abs(math.log(s.params / params)))
    return replace(nearest, params=params, source=f"assumed: typical {nearest.source} shapes")


def is_dtype(dtype: str) -> bool:
    """Whether :func:`dtype_name` knows ``dtype``."""
    name = dtype.strip().lower()
    return _ALIASES.get(name, name) in BITS


def dtype_name(dtype: str) -> str:
    """Canonical dtype name (``F16`` -> ``fp16``), or an error listing the known ones."""
    name = _ALIASES.get(dtype.strip().lower(), dtype.strip().lower())
    if not is_dtype(name):
        known = ", ".join([*_FLOAT_BITS, *_BNB_BITS, "int4", *sorted(_GGUF_MIX_BITS), "q8_0 ..."])
        raise InvalidRequest(
            f"unknown dtype {dtype!r}. Use one of {known} (any GGUF type name works).",
            param="dtype",
        )
    return name


def weight_bytes(shape: Shape, dtype: str) -> int:
    """Bytes of the weights stored as ``dtype``: parameters x bits per weight / 8.

    bitsandbytes formats leave embeddings and the output head in 16-bit; llama.cpp's
    bits-per-weight figures already average over the file's mix of tensor types.
    """
    name = dtype_name(dtype)
    if name in _BNB_BITS:
        quantized = max(shape.params - shape.embedding_params, 0)
        return round(quantized * BITS[name] / 8) + 2 * (shape.params - quantized)
    return round(shape.params * BITS[name] / 8)


def kv_cache_bytes(shape: Shape, context: int, parallel: int = 1, kv_dtype: str = "f16") -> int:
    """K and V for every layer, KV head and position: 2 x layers x kv_heads x head_dim x
    context x parallel x bytes per element. Each of ``parallel`` slots holds ``context``.
    """
    per_element = BITS[dtype_name(kv_dtype)] / 8
    elements = 2 * shape.layers * shape.kv_heads * shape.head_dim * context * parallel
    return round(elements * per_element)


def lora_params(shape: Shape, rank: int) -> int:
    """Adapter parameters for rank-``rank`` LoRA on every linear layer of each block
    (q, k, v, o, gate, up, down): rank x (d_in + d_out) per adapted matrix.
    """
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    h, f = shape.hidden, shape.ffn
    per_layer = (h + q) + 2 * (h + kv) + (q + h) + 2 * (h + f) + (f + h)
    return rank * per_layer * shape.layers


def layer_activation_bytes(shape: Shape, tokens: int) -> int:
    """Tensors one decoder layer saves for backward, 16-bit, with flash attention (no
    tokens^2 score matrix): RMSNorm inputs and outputs (2 x 2h each block), q, k, v and the
    attention output, the fp32 softmax log-sum-exp per head, and the MLP's gate, up,
    activation and product (4 x f). Per token: 8h + 4q + 4kv + 8f + 4 x heads bytes, the
    gated-MLP analogue of Korthikanti et al. (2022)'s 34 x h.
    """
    q, kv = shape.heads * shape.head_dim, shape.kv_heads * shape.head_dim
    per_token = 8 * shape.hidden + 4 * q + 4 * kv + 8 * shape.ffn + 4 * shape.heads
    return tokens * per_token


def training_activation_bytes(shape: Shape, tokens: int, checkpointing: bool = True) -> int:
    """Activations for one step over ``tokens`` = batch x sequence length.

    With gradient checkpointing (the default in LLaMA-Factory and most recipes) only each
    layer's 16-bit input is kept (2h bytes per token per layer) and one layer at a time is
    recomputed in full; without it every layer keeps everything. The fp32 logits and their
    gradient add vocab x 8 bytes per token.
    """
    one_layer = layer_activation_bytes(shape, tokens)
    if checkpointing:
        layers = shape.layers * tokens * 2 * shape.hidden + one_layer
    else:
        layers = shape.layers * one_layer
    return layers + tokens * shape.vocab * 8


@dataclass(frozen=True)
class Estimate:
    weights: int
    kv_cache: int = 0
    activations: int = 0
    gradients: int = 0
    optimizer: int = 0
    notes: tuple[str, ...] = ()

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.activations + self.gradients + self.optimizer

    def components(self) -> dict[str, int]:
        """Byte counts per component and the total, in display order."""
        parts = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "notes"}
        return {**parts, "total": self.total}


def estimate_inference(
    shape: Shape,
    *,
    dtype: str = "fp16",
    context: int = 4096,
    parallel: int = 1,
    ubatch: int = 512,
    kv_dtype: str = "f16",
    weights: int | None = None,
) -> Estimate:
    """Serving memory. ``weights`` overrides the computed figure (a GGUF's real tensor bytes).

    Activations are llama.cpp's compute buffer for one micro-batch of ``ubatch`` tokens: the
    fp32 logits (ubatch x vocab x 4) and, without flash attention, the fp32 attention scores
    of one layer (ubatch x heads x context x parallel x 4); smaller with flash attention.
    """
    n_ctx = context * parallel
    tokens = min(ubatch, n_ctx)
    return Estimate(
        weights=weight_bytes(shape, dtype) if weights is None else weights,
        kv_cache=kv_cache_bytes(shape, context, parallel, kv_dtype),
        activations=tokens * (shape.vocab + shape.heads * n_ctx) * 4,
        notes=(
            f"KV cache in {dtype_name(kv_dtype)}; activations are the compute buffer without "
            "flash attention (an upper bound)",
        ),
    )


def estimate_training(
    shape: Shape,
    method: Train,
    *,
    dtype: str | None = None,
    context: int = 4096,
    batch: int = 1,
    lora_rank: int = 8,
    checkpointing: bool = True,
) -> Estimate:
    """Fine-tuning memory for one GPU with AdamW.

    - full, mixed precision (bf16/fp16): 16-bit weights (2 B/param) + 16-bit gradients (2) +
      optimizer state of fp32 master weights and two Adam moments (4 + 4 + 4) = 16 B/param;
      fp32 training drops the master copy (4 + 4 + 8 = 16 B/param too).
    - lora: frozen 16-bit weights + fp32 adapters with fp32 gradients and Adam moments
      (4 + 4 + 8 B per adapter parameter).
    - qlora: the same adapters over 4-bit NF4 (default) or int8 weights.
    All three add :func:`training_activation_bytes`; there is no KV cache while training.
    """
    default = "nf4" if method is Train.QLORA else "bf16"
    name = dtype_name(dtype or default)
    allowed = _BNB_BITS if method is Train.QLORA else _FLOAT_BITS
    if name not in allowed:
        hint = "use --train qlora for quantized weights" if method is not Train.QLORA else ""
        raise InvalidRequest(
            f"--train {method.value} needs --dtype {' or '.join(allowed)}, not {name}"
            + (f"; {hint}." if hint else "."),
            param="dtype",
        )
    activations = training_activation_bytes(shape, batch * context, checkpointing)
    if method is Train.FULL:
        width = BITS[name] / 8
        master = 4 if width < 4 else 0
        return Estimate(
            weights=round(shape.params * width),
            gradients=round(shape.params * width),
            optimizer=shape.params * (master + 8),
            activations=activations,
            notes=(f"AdamW, {'mixed precision, fp32 master weights' if master else 'fp32'}",),
        )
    adapters = lora_params(shape, lora_rank)
    return Estimate(
        weights=weight_bytes(shape, name) + adapters * 4,
        gradients=adapters * 4,
        optimizer=adapters * 8,
        activations=activations,
        notes=(f"LoRA rank {lora_rank} on all linear layers: {adapters:,} trainable params",),
    )
