"""GGUF files that `pull` downloads become `[models."<name>"]` entries in models.toml."""

from __future__ import annotations

import tomllib
from pathlib import Path

import gguf
import numpy as np
import pytest

from hearth.config import Settings, _model_spec
from hearth.errors import ConfigError
from hearth.hub import pull as hub_pull
from hearth.hub.local import MODELS_FILE, model_name, register, registered_models
from tests.hub.hubserver import FakeHub, HubFile

REPO = "acme/Tiny-Llama-GGUF"


def tiny_gguf(path: Path, context: int) -> bytes:
    writer = gguf.GGUFWriter(path, "llama")
    writer.add_context_length(context)
    writer.add_tensor("token_embd.weight", np.zeros((4, 8), dtype=np.float32))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path.read_bytes()


def test_pulled_ggufs_are_registered_with_their_context(
    fake_hub: FakeHub, home_settings: Settings, tmp_path: Path
) -> None:
    fake_hub.repos[REPO] = {
        "tiny-llama-q4_k_m.gguf": HubFile(tiny_gguf(tmp_path / "a.gguf", 8192)),
        "sub/Other.Q8_0.gguf": HubFile(tiny_gguf(tmp_path / "b.gguf", 2048)),
        "mmproj-f16.gguf": HubFile(tiny_gguf(tmp_path / "c.gguf", 2048)),
        "README.md": HubFile(b"# tiny\n", lfs=False),
    }
    result = hub_pull.pull(home_settings, REPO, patterns=["*.gguf"])
    home = home_settings.home
    root = "models/hf/acme--Tiny-Llama-GGUF/main"
    assert result.registered == {
        "tiny-llama-q4_k_m": home / root / "tiny-llama-q4_k_m.gguf",
        "tiny-llama-other.q8_0": home / root / "sub/Other.Q8_0.gguf",
    }
    models = registered_models(home)
    assert models["tiny-llama-q4_k_m"] == {
        "engine": "llamacpp",
        "path": f"{root}/tiny-llama-q4_k_m.gguf",
        "context": 4096,  # 8192 trained, capped
        "description": f"tiny-llama-q4_k_m.gguf from hf:{REPO}@main (commit 0123456789ab)",
    }
    assert models["tiny-llama-other.q8_0"]["context"] == 2048
    # The tables are in config.toml's shape: config's own parser accepts them as they are.
    spec = _model_spec("tiny-llama-q4_k_m", models["tiny-llama-q4_k_m"], home)
    assert spec.path == str(home / root / "tiny-llama-q4_k_m.gguf") and spec.context == 4096


def test_re_registering_keeps_hand_edits(home_settings: Settings) -> None:
    home = home_settings.home
    register(home, "m", {"engine": "llamacpp", "path": "a.gguf", "context": 4096})
    text = (home / MODELS_FILE).read_text()
    (home / MODELS_FILE).write_text(
        text.replace("context = 4096", "context = 8192\nparallel = 2\nsampling = { top_p = 0.9 }")
    )
    register(home, "m", {"engine": "llamacpp", "path": "b.gguf", "context": 4096})
    register(home, 'quo"ted', {"engine": "llamacpp", "path": "c d.gguf", "description": "中文"})
    models = tomllib.loads((home / MODELS_FILE).read_text())["models"]
    assert models["m"] == {
        "engine": "llamacpp",
        "path": "b.gguf",
        "context": 8192,
        "parallel": 2,
        "sampling": {"top_p": 0.9},
    }
    assert models['quo"ted']["description"] == "中文"


def test_broken_models_toml_says_how_to_fix(home_settings: Settings) -> None:
    (home_settings.home / MODELS_FILE).write_text("[models.x\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        registered_models(home_settings.home)
    assert registered_models(home_settings.home / "nowhere") == {}


@pytest.mark.parametrize(
    ("repo", "path", "name"),
    [
        ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "qwen2.5-0.5b-instruct-q4_k_m.gguf",
         "qwen2.5-0.5b-instruct-q4_k_m"),
        ("TheBloke/Mistral-7B-GGUF", "model.Q4_0.gguf", "mistral-7b-model.q4_0"),
        ("org/Big-GGUF", "Q4/big-q4-00001-of-00003.gguf", "big-q4"),
        ("org/Big-GGUF", "Q4/big-q4-00002-of-00003.gguf", None),
        ("org/Vision-GGUF", "mmproj-model-f16.gguf", None),
        ("org/x", "weights.safetensors", None),
    ],
)  # fmt: skip
def test_model_names(repo: str, path: str, name: str | None) -> None:
    assert model_name(repo, path) == name
