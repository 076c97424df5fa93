"""Fixtures the slow tier shares."""

from __future__ import annotations

from pathlib import Path

import pytest

from hearth.hub import bundled
from hearth.hub.convert import gguf_to_hf

SMOL = "smollm2-135m-instruct"


@pytest.fixture(scope="session")
def smol_hf(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bundled SmolLM2 GGUF dequantised by transformers and saved in Hugging Face layout:
    what `snapshot_download` of a model gives, made from the bundled weights since nothing
    is downloaded when tests run."""
    import torch

    torch.set_num_threads(1)
    gguf = bundled.ensure(SMOL, tmp_path_factory.mktemp("bundled"))
    return gguf_to_hf(gguf, tmp_path_factory.mktemp("SmolLM2-135M-Instruct"))
