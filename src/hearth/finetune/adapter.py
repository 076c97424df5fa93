"""A PEFT LoRA adapter as a llama.cpp adapter GGUF, written with the ``gguf`` package.

The layout is what llama.cpp's ``convert_lora_to_gguf.py`` writes: ``general.type =
adapter``, ``adapter.type = lora``, ``adapter.lora.alpha``, and for every adapted weight
``<gguf name>.lora_a`` (PEFT's lora_A, rank x in) and ``.lora_b`` (lora_B, out x rank).
llama.cpp stores the q and k projections of llama-architecture models with their rows
permuted (rotary halves interleaved); transformers undoes that when it loads the GGUF, so
the adapter's lora_B rows must be permuted back the same way. Without it the answers still
read well, but the logprobs drift from the trained model's: the export check catches that.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hearth.errors import HearthError

# Architectures whose q/k rows llama.cpp's converter permutes (LlamaModel.permute).
_PERMUTED = {"llama"}
_PEFT = re.compile(
    r"^(?:base_model\.model\.)?(?P<module>.+)\.lora_(?P<ab>[AB])(?:\.default)?\.weight$"
)


@dataclass(frozen=True)
class BaseShape:
    arch: str  # general.architecture of the base GGUF
    blocks: int
    heads: int
    kv_heads: int


def gguf_tensors(state: dict[str, np.ndarray], base: BaseShape) -> dict[str, np.ndarray]:
    """PEFT state-dict names and arrays -> adapter GGUF tensor names and arrays."""
    import gguf

    arch = {v: k for k, v in gguf.MODEL_ARCH_NAMES.items()}.get(base.arch)
    if arch is None:
        raise HearthError(f"gguf does not know the architecture '{base.arch}'")
    names = gguf.get_tensor_name_map(arch, base.blocks)
    out: dict[str, np.ndarray] = {}
    for key, value in state.items():
        m = _PEFT.match(key)
        if m is None:
            raise HearthError(f"not a LoRA weight: {key}")
        module = m.group("module")
        target = names.get_name(module + ".weight", try_suffixes=(".weight",))
        if target is None:
            raise HearthError(f"no llama.cpp tensor for '{module}' in {base.arch}")
        array = np.ascontiguousarray(value, dtype=np.float32)
        if m.group("ab") == "B" and base.arch in _PERMUTED:
            if module.endswith("q_proj"):
                array = _permute(array, base.heads, base.heads)
            elif module.endswith("k_proj"):
                array = _permute(array, base.heads, base.kv_heads)
        out[f"{target}.lora_{m.group('ab').lower()}"] = array
    return out


def _permute(weights: np.ndarray, heads: int, kv_heads: int) -> np.ndarray:
    # llama.cpp's convert_hf_to_gguf.LlamaModel.permute, applied to the rows of lora_B.
    if kv_heads != heads:
        heads = kv_heads
    shape = weights.shape
    return np.ascontiguousarray(
        weights.reshape(heads, 2, shape[0] // heads // 2, *shape[1:]).swapaxes(1, 2).reshape(shape)
    )


def write(
    path: Path,
    tensors: dict[str, np.ndarray],
    base: BaseShape,
    alpha: float,
    meta: dict[str, Any] | None = None,
) -> None:
    """Write the adapter GGUF to ``path`` (the caller renames it into place)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), base.arch)
    writer.add_type(gguf.GGUFType.ADAPTER)
    writer.add_string(gguf.Keys.Adapter.TYPE, "lora")
    writer.add_float32(gguf.Keys.Adapter.LORA_ALPHA, float(alpha))
    for key, value in (meta or {}).items():
        writer.add_string(f"hearth.{key}", str(value))
    for name in sorted(tensors):
        writer.add_tensor(name, tensors[name])
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
