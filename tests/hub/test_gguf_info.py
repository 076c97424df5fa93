"""Reading model facts: a tiny GGUF written here with gguf.GGUFWriter, Hugging Face configs,
the registry, ``hearth models info`` / ``estimate`` on files, and the real bundled models."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import gguf
import numpy as np
import pytest
import typer
from typer.testing import CliRunner

from hearth.cli.estimate import estimate, info
from hearth.config import load_settings
from hearth.hub.bundled import ensure
from hearth.hub.gguf_info import (
    NotAModelFile,
    UnknownModel,
    read_facts,
    read_gguf,
    read_hf_config,
    resolve,
)
from tests.conftest import make_settings

app = typer.Typer(pretty_exceptions_enable=False)
app.command("estimate")(estimate)
app.command("info")(info)

TEMPLATE = "{% for m in messages %}\n{{ m['content'] }}\n{% endfor %}"
LAYERS, HIDDEN, HEADS, KV_HEADS, FFN, VOCAB = 2, 32, 4, 2, 64, 100
HEAD_DIM = HIDDEN // HEADS


def write_tiny_gguf(path: Path) -> Path:
    """A two-layer llama-shaped GGUF: F16 matrices, F32 norms, one Q8_0 tensor, no output.weight."""
    w = gguf.GGUFWriter(path, "llama")
    w.add_name("tiny")
    w.add_block_count(LAYERS)
    w.add_context_length(256)
    w.add_embedding_length(HIDDEN)
    w.add_feed_forward_length(FFN)
    w.add_head_count(HEADS)
    w.add_head_count_kv(KV_HEADS)
    w.add_rope_freq_base(10000.0)
    w.add_rope_dimension_count(HEAD_DIM)
    w.add_file_type(gguf.LlamaFileType.MOSTLY_F16)
    w.add_tokenizer_model("llama")
    w.add_token_list([f"t{i}" for i in range(VOCAB)])  # longer than the reader keeps in full
    w.add_chat_template(TEMPLATE)
    rng = np.random.default_rng(0)

    def f16(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape).astype(np.float16)

    w.add_tensor("token_embd.weight", f16(VOCAB, HIDDEN))
    kv = KV_HEADS * HEAD_DIM
    for i in range(LAYERS):
        w.add_tensor(f"blk.{i}.attn_norm.weight", np.ones(HIDDEN, np.float32))
        w.add_tensor(f"blk.{i}.attn_q.weight", f16(HIDDEN, HIDDEN))
        w.add_tensor(f"blk.{i}.attn_k.weight", f16(kv, HIDDEN))
        w.add_tensor(f"blk.{i}.attn_v.weight", f16(kv, HIDDEN))
        w.add_tensor(f"blk.{i}.attn_output.weight", f16(HIDDEN, HIDDEN))
        w.add_tensor(f"blk.{i}.ffn_norm.weight", np.ones(HIDDEN, np.float32))
        w.add_tensor(f"blk.{i}.ffn_gate.weight", f16(FFN, HIDDEN))
        w.add_tensor(f"blk.{i}.ffn_up.weight", f16(FFN, HIDDEN))
        down = rng.standard_normal((HIDDEN, FFN)).astype(np.float32)
        q8 = gguf.quants.quantize(down, gguf.GGMLQuantizationType.Q8_0)
        w.add_tensor(f"blk.{i}.ffn_down.weight", q8, raw_dtype=gguf.GGMLQuantizationType.Q8_0)
    w.add_tensor("output_norm.weight", np.ones(HIDDEN, np.float32))
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


@pytest.fixture
def tiny(tmp_path: Path) -> Path:
    return write_tiny_gguf(tmp_path / "tiny.gguf")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, tiny: Path) -> Path:
    config = f'[models.tiny]\nengine = "llamacpp"\npath = "{tiny}"\ncontext = 64\nparallel = 3\n'
    home = tmp_path / "home"
    make_settings(home, config)
    monkeypatch.setenv("HEARTH_HOME", str(home))
    return home


def expected_params() -> int:
    kv = KV_HEADS * HEAD_DIM
    layer = 2 * HIDDEN + 2 * HIDDEN * HIDDEN + 2 * kv * HIDDEN + 3 * FFN * HIDDEN
    return VOCAB * HIDDEN + LAYERS * layer + HIDDEN


def test_tiny_gguf_facts(tiny: Path) -> None:
    facts = read_facts(tiny)
    assert (facts.format, facts.architecture, facts.name) == ("gguf", "llama", "tiny")
    assert facts.params == expected_params()
    assert (facts.layers, facts.heads, facts.kv_heads, facts.head_dim) == (2, 4, 2, 8)
    assert (facts.embedding_length, facts.feed_forward_length, facts.context_length) == (
        HIDDEN,
        FFN,
        256,
    )
    assert (facts.vocab_size, facts.tokenizer) == (VOCAB, "llama")
    assert facts.file_type == "F16"
    assert facts.chat_template == TEMPLATE
    assert facts.rope == {"freq_base": 10000.0, "dimension_count": HEAD_DIM}
    assert facts.tied_embeddings is True
    mix = {m.type: m for m in facts.tensor_mix}
    assert set(mix) == {"F16", "F32", "Q8_0"}
    assert mix["Q8_0"].tensors == LAYERS
    assert mix["Q8_0"].bytes == LAYERS * HIDDEN * FFN // 32 * 34  # 34-byte blocks of 32
    assert mix["F32"].bytes == 4 * mix["F32"].params
    json.dumps(facts.to_dict())  # serialisable as-is


def test_tiny_gguf_agrees_with_gguf_reader(tiny: Path) -> None:
    assert_agrees_with_reader(tiny)


def assert_agrees_with_reader(path: Path) -> None:
    facts = read_gguf(path)
    reader = gguf.GGUFReader(path)
    assert facts.params == sum(t.n_elements for t in reader.tensors)
    assert facts.weights_bytes == sum(t.n_bytes for t in reader.tensors)
    data = path.stat().st_size - reader.data_offset  # tensors, each padded to the alignment
    assert data - reader.alignment * len(reader.tensors) < facts.weights_bytes <= data
    counts = Counter(t.tensor_type.name for t in reader.tensors)
    assert {m.type: m.tensors for m in facts.tensor_mix} == counts
    arch = reader.fields["general.architecture"].contents()
    assert facts.architecture == arch
    assert facts.layers == reader.fields[f"{arch}.block_count"].contents()
    assert facts.heads == reader.fields[f"{arch}.attention.head_count"].contents()
    assert facts.vocab_size == len(reader.fields["tokenizer.ggml.tokens"].data)
    assert facts.chat_template == reader.fields["tokenizer.chat_template"].contents()


def test_not_a_gguf_file(tmp_path: Path) -> None:
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 not a model")
    with pytest.raises(NotAModelFile, match="not a GGUF file"):
        read_facts(bogus)


def test_truncated_gguf(tiny: Path) -> None:
    data = tiny.read_bytes()
    tiny.write_bytes(data[:200])
    with pytest.raises(NotAModelFile, match="not a readable GGUF file"):
        read_facts(tiny)


LLAMA_7B = {
    "architectures": ["LlamaForCausalLM"],
    "model_type": "llama",
    "hidden_size": 4096,
    "intermediate_size": 11008,
    "num_attention_heads": 32,
    "num_hidden_layers": 32,
    "num_key_value_heads": 32,
    "max_position_embeddings": 4096,
    "rope_theta": 10000.0,
    "rope_scaling": None,
    "tie_word_embeddings": False,
    "torch_dtype": "float16",
    "vocab_size": 32000,
}


def test_hf_config_llama_7b(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_7B))
    facts = read_hf_config(tmp_path)
    assert facts.params == 6_738_415_616  # Llama-2-7b-hf's parameter count, norms included
    assert (facts.layers, facts.heads, facts.kv_heads, facts.head_dim) == (32, 32, 32, 128)
    assert (facts.file_type, facts.context_length, facts.vocab_size) == ("fp16", 4096, 32000)
    assert facts.rope == {"rope_theta": 10000.0}
    assert facts.weights_bytes is None and facts.chat_template is None


def test_hf_directory_with_tokenizer_files(tmp_path: Path) -> None:
    qwen = {
        "model_type": "qwen2",
        "hidden_size": 896,
        "intermediate_size": 4864,
        "num_attention_heads": 14,
        "num_hidden_layers": 24,
        "num_key_value_heads": 2,
        "tie_word_embeddings": True,
        "torch_dtype": "bfloat16",
        "vocab_size": 151936,
    }
    (tmp_path / "config.json").write_text(json.dumps(qwen))
    (tmp_path / "tokenizer.json").write_text(json.dumps({"model": {"type": "BPE"}}))
    (tmp_path / "tokenizer_config.json").write_text(json.dumps({"chat_template": TEMPLATE}))
    index = {"metadata": {"total_size": 988_097_536}, "weight_map": {}}
    (tmp_path / "model.safetensors.index.json").write_text(json.dumps(index))
    facts = read_facts(tmp_path)
    # Qwen2.5-0.5B has 494,032,768 parameters; the q/k/v biases (27,648) are not counted.
    assert facts.params == pytest.approx(494_032_768, rel=1e-3)
    assert (facts.kv_heads, facts.tied_embeddings, facts.file_type) == (2, True, "bf16")
    assert (facts.tokenizer, facts.chat_template) == ("BPE", TEMPLATE)
    assert facts.weights_bytes == 988_097_536


def test_bad_hf_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(NotAModelFile, match="as a Hugging Face config"):
        read_facts(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "bert"}))
    with pytest.raises(NotAModelFile, match="hidden_size"):
        read_facts(tmp_path / "config.json")


def test_resolve(home: Path, tiny: Path) -> None:
    settings = load_settings()
    assert resolve("tiny", settings) == tiny
    assert resolve(str(tiny), settings) == tiny
    with pytest.raises(UnknownModel, match="hearth models list"):
        resolve("no-such-model", settings)


def test_resolve_model_without_a_file(tmp_path: Path) -> None:
    settings = make_settings(tmp_path)  # the fake models of tests/conftest.py
    with pytest.raises(NotAModelFile, match="no GGUF file"):
        resolve("fake", settings)


def test_cli_info(home: Path, tiny: Path) -> None:
    runner = CliRunner()
    result = runner.invoke(app, ["info", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["params"] == expected_params()
    assert data["tokenizer"] == "llama" and data["vocab_size"] == VOCAB
    result = runner.invoke(app, ["info", str(tiny)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("llama", "F16", "Q8_0", "4 / 2", "present, 3 lines", "freq_base=10000"):
        assert text in result.output


def test_cli_estimate_registered_gguf(home: Path, tiny: Path) -> None:
    result = CliRunner().invoke(app, ["estimate", "tiny", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    facts = read_facts(tiny)
    assert data["weights"] == facts.weights_bytes  # the file's own tensor bytes
    assert data["inputs"]["context"] == 64 and data["inputs"]["parallel"] == 3  # registered
    assert data["kv_cache"] == 2 * LAYERS * KV_HEADS * HEAD_DIM * 64 * 3 * 2
    assert data["inputs"]["shapes_assumed"] is False
    assert data["total"] == sum(data[k] for k in ("weights", "kv_cache", "activations"))


def test_cli_estimate_gguf_as_another_dtype(tiny: Path) -> None:
    args = ["estimate", str(tiny), "--dtype", "q4_0", "--context", "128", "--json"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["weights"] == round(expected_params() * 4.5 / 8)
    assert data["inputs"]["dtype"] == "q4_0" and data["inputs"]["parallel"] == 1


def test_cli_estimate_hf_config(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text(json.dumps(LLAMA_7B))
    result = CliRunner().invoke(app, ["estimate", str(tmp_path / "config.json"), "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["weights"] == 2 * 6_738_415_616  # torch_dtype float16
    assert data["kv_cache"] == 2 * 32 * 32 * 128 * 4096 * 2


# --- the real bundled models (slow tier) ------------------------------------------------------


@pytest.fixture(scope="session")
def bundled_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One HEARTH_HOME for the session: qwen is 470 MB, assembled once."""
    home = tmp_path_factory.mktemp("bundled-home")
    for name in ("smollm2-135m-instruct", "qwen2.5-0.5b-instruct"):
        ensure(name, home / "models")
    yield home


BUNDLED_FACTS = {
    # name: architecture, layers, heads, kv heads, vocab, file type, tokenizer
    "smollm2-135m-instruct": ("llama", 30, 9, 3, 49152, "Q4_1", "gpt2"),
    "qwen2.5-0.5b-instruct": ("qwen2", 24, 14, 2, 151936, "Q4_K_M", "gpt2"),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(BUNDLED_FACTS))
def test_bundled_facts(name: str, bundled_home: Path) -> None:
    path = resolve(name, load_settings(bundled_home, env={}))
    facts = read_facts(path)
    got = facts.architecture, facts.layers, facts.heads, facts.kv_heads, facts.vocab_size
    assert (*got, facts.file_type, facts.tokenizer) == BUNDLED_FACTS[name]
    assert facts.chat_template and "message" in facts.chat_template
    assert 0.9 * path.stat().st_size < (facts.weights_bytes or 0) < path.stat().st_size
    assert_agrees_with_reader(path)


@pytest.mark.slow
def test_bundled_cli(bundled_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HEARTH_HOME", str(bundled_home))
    runner = CliRunner()
    result = runner.invoke(app, ["estimate", "qwen2.5-0.5b-instruct", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["weights"] == 485_452_288  # tensor bytes of the Q4_K_M file
    assert data["inputs"]["context"] == 4096 and data["inputs"]["parallel"] == 8
    assert data["kv_cache"] == 2 * 24 * 2 * 64 * 4096 * 8 * 2
    result = runner.invoke(app, ["info", "smollm2-135m-instruct"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    assert "134,515,008" in result.output and "Q4_1" in result.output
