"""Fixtures the slow tier shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.hub import bundled

SMOL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smol_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled SmolLM2 GGUF as transformers reads it (dequantised to float32), saved in
    Hugging Face layout: what `snapshot_download` of a model gives, made from the bundled
    weights since nothing is downloaded when tests run."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    torch.set_num_threads(1)
    gguf = bundled.ensure(SMOL, tmp_path_factory.mktemp("bundled"))
    tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    loaded = AutoModelForCausalLM.from_pretrained(
        gguf.parent, gguf_file=gguf.name, dtype=torch.float32
    )
    config = loaded.config
    if hasattr(config, "quantization_config"):
        del config.quantization_config  # the dequantised weights are plain tensors now
    plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
    plain.load_state_dict(loaded.state_dict())
    out = tmp_path_factory.mktemp("SmolLM2-135M-Instruct")
    plain.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return out
