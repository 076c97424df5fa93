"""Memory estimates: formulas by hand, the published figures they must land near, and the
``hearth models estimate`` command (registered through a small Typer app, as the lead does)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from hearth.cli import main as cli_main
from hearth.cli.estimate import estimate, info
from hearth.errors import InvalidRequest
from hearth.tokens.memory import (
    BITS,
    GB,
    Shape,
    Train,
    dtype_name,
    estimate_inference,
    estimate_training,
    kv_cache_bytes,
    lora_params,
    parse_params,
    training_activation_bytes,
    typical_shape,
    weight_bytes,
)

app = typer.Typer(pretty_exceptions_enable=False)
app.command("estimate")(estimate)
app.command("info")(info)

SMALL = Shape(params=10_000, layers=2, hidden=12, heads=3, kv_heads=3, head_dim=4, ffn=20, vocab=50)
SEVEN_B = typical_shape(7_000_000_000)


def within(value: float, target: float, tolerance: float = 0.25) -> bool:
    return abs(value - target) <= tolerance * target


@pytest.mark.parametrize(
    ("text", "params"),
    [
        ("7b", 7_000_000_000),
        ("7B", 7_000_000_000),
        ("0.5b", 500_000_000),
        ("1.5B", 1_500_000_000),
        ("135m", 135_000_000),
        ("7e9", 7_000_000_000),
        ("70000", 70_000),
        (" 13b ", 13_000_000_000),
    ],
)
def test_parse_params(text: str, params: int) -> None:
    assert parse_params(text) == params


@pytest.mark.parametrize("text", ["7q", "", "b", "-7b", "0b", "seven", "7bb"])
def test_parse_params_rejects(text: str) -> None:
    with pytest.raises(InvalidRequest, match="write it like 7b"):
        parse_params(text)


def test_typical_shapes() -> None:
    # LLaMA-7B: 32 layers, 32 heads, 4096 hidden, no GQA; the given count is kept.
    assert (SEVEN_B.layers, SEVEN_B.heads, SEVEN_B.kv_heads, SEVEN_B.hidden) == (32, 32, 32, 4096)
    assert SEVEN_B.params == 7_000_000_000 and "LLaMA-7B" in SEVEN_B.source
    assert typical_shape(parse_params("8b")).kv_heads == 8  # Llama-3.1-8B uses GQA
    assert typical_shape(parse_params("70b")).layers == 80
    assert typical_shape(parse_params("0.5b")).source.endswith("Qwen2.5-0.5B shapes")


def test_dtypes() -> None:
    assert dtype_name("F16") == "fp16" and dtype_name("bfloat16") == "bf16"
    assert dtype_name("Q4_K_M") == "q4_k_m" and dtype_name("int4") == "nf4"
    # llama.cpp bits per weight: block formats from their block sizes, mixes as measured
    assert (BITS["q4_0"], BITS["q8_0"], BITS["q6_k"], BITS["fp16"]) == (4.5, 8.5, 6.5625, 16)
    assert BITS["q4_k_m"] == pytest.approx(4.85, abs=0.02)
    assert BITS["q5_k_m"] == pytest.approx(5.69, abs=0.02)
    with pytest.raises(InvalidRequest, match="unknown dtype 'fp12'"):
        dtype_name("fp12")


def test_weights_7b() -> None:
    assert weight_bytes(SEVEN_B, "fp16") == 14 * GB  # "7B at fp16 is 14 GB"
    assert weight_bytes(SEVEN_B, "fp32") == 28 * GB
    assert weight_bytes(SEVEN_B, "q4_0") == 3.9375 * GB
    assert weight_bytes(SEVEN_B, "q4_k_m") == pytest.approx(7e9 * 4.84 / 8)
    # NF4 keeps the embeddings and lm_head (2 x 32000 x 4096) in 16-bit
    embeddings = 2 * 32000 * 4096
    expected = (7e9 - embeddings) * 4.127 / 8 + 2 * embeddings
    assert weight_bytes(SEVEN_B, "nf4") == pytest.approx(expected, abs=1)


def test_kv_cache_by_hand() -> None:
    # 2 (K and V) x layers x kv_heads x head_dim x context x parallel x bytes
    assert kv_cache_bytes(SMALL, context=10, parallel=2) == 2 * 2 * 3 * 4 * 10 * 2 * 2
    assert kv_cache_bytes(SMALL, context=10, parallel=1, kv_dtype="f32") == 2 * 2 * 3 * 4 * 10 * 4
    assert kv_cache_bytes(SMALL, context=32, kv_dtype="q8_0") == 2 * 2 * 3 * 4 * 32 * 34 // 32
    # LLaMA-7B, 4096 tokens, fp16: 0.5 MiB per token, 2 GiB in all
    assert kv_cache_bytes(SEVEN_B, context=4096) == 2 * 1024**3


def test_lora_params_by_hand() -> None:
    # q, o: 12 -> 12; k, v: 12 -> 12; gate, up: 12 -> 20; down: 20 -> 12; rank 2, 2 layers
    per_layer = 4 * (12 + 12) + 2 * (12 + 20) + (20 + 12)
    assert lora_params(SMALL, rank=2) == 2 * 2 * per_layer
    assert lora_params(SEVEN_B, rank=8) == 19_988_480


def test_activations_grow_with_tokens_and_shrink_with_checkpointing() -> None:
    one = training_activation_bytes(SEVEN_B, 1024)
    assert training_activation_bytes(SEVEN_B, 2048) == 2 * one
    assert training_activation_bytes(SEVEN_B, 1024, checkpointing=False) > 5 * one


# LLaMA-Factory's hardware table (README, "Hardware Requirement") for 7B models. Its example
# configs train with cutoff_len 2048 and batch 1; the estimates must hold from 1k to 4k.
KNOWN_7B = [(Train.FULL, "bf16", 120), (Train.LORA, "bf16", 16), (Train.QLORA, "nf4", 6)]


@pytest.mark.parametrize(("method", "dtype", "gb"), KNOWN_7B)
@pytest.mark.parametrize("context", [1024, 2048, 4096])
def test_known_training_figures(method: Train, dtype: str, gb: float, context: int) -> None:
    result = estimate_training(SEVEN_B, method, dtype=dtype, context=context)
    assert within(result.total / GB, gb), f"{method} at {context}: {result.total / GB:.1f} GB"
    assert result.kv_cache == 0


def test_full_finetune_is_16_bytes_per_param_plus_activations() -> None:
    result = estimate_training(SEVEN_B, Train.FULL, context=2048)
    assert (result.weights, result.gradients, result.optimizer) == (14 * GB, 14 * GB, 84 * GB)
    fp32 = estimate_training(SEVEN_B, Train.FULL, dtype="fp32", context=2048)
    assert (fp32.weights, fp32.gradients, fp32.optimizer) == (28 * GB, 28 * GB, 56 * GB)


def test_qlora_8bit_lands_near_the_table() -> None:
    result = estimate_training(SEVEN_B, Train.QLORA, dtype="int8", context=2048)
    assert within(result.total / GB, 10)  # LLaMA-Factory: QLoRA 8-bit, 7B: 10 GB


def test_training_rejects_the_wrong_weight_format() -> None:
    with pytest.raises(InvalidRequest, match="use --train qlora"):
        estimate_training(SEVEN_B, Train.FULL, dtype="q4_k_m")
    with pytest.raises(InvalidRequest, match="needs --dtype int8 or nf4 or fp4"):
        estimate_training(SEVEN_B, Train.QLORA, dtype="bf16")


def test_inference_total() -> None:
    result = estimate_inference(SEVEN_B, dtype="fp16", context=4096, parallel=2)
    assert result.weights == 14 * GB
    assert result.kv_cache == 4 * 1024**3
    assert result.activations == 512 * (32000 + 32 * 8192) * 4
    parts = result.components()
    assert parts["total"] == sum(v for k, v in parts.items() if k != "total")
    assert estimate_inference(SEVEN_B, weights=123).weights == 123


# --- the command ------------------------------------------------------------------------------


def run(*args: str) -> dict[str, object]:
    result = CliRunner().invoke(app, ["estimate", *args, "--json"])
    assert result.exit_code == 0, result.output
    data: dict[str, object] = json.loads(result.output)
    return data


def test_cli_params_json() -> None:
    data = run("--params", "7b", "--dtype", "fp16")
    assert data["weights"] == 14 * GB and data["kv_cache"] == 2 * 1024**3
    assert set(data) >= {"weights", "kv_cache", "activations", "optimizer", "gradients", "total"}
    inputs = data["inputs"]
    assert isinstance(inputs, dict)
    assert inputs["shapes_assumed"] is True and inputs["context"] == 4096
    assert inputs["shape"]["layers"] == 32


def test_cli_training_json() -> None:
    data = run("--params", "7b", "--train", "qlora", "--context", "2048")
    assert within(float(str(data["total"])) / GB, 6)
    inputs = data["inputs"]
    assert isinstance(inputs, dict)
    assert (inputs["dtype"], inputs["batch"], inputs["lora_rank"]) == ("nf4", 1, 8)


def test_cli_table_says_units_and_assumptions() -> None:
    result = CliRunner().invoke(app, ["estimate", "--params", "7b"], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    for text in ("weights", "kv cache", "total", "14.00", "Shapes are assumed", "GB = 10^9"):
        assert text in result.output


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--params", "7q"], "write it like 7b"),
        (["--params", "7b", "--dtype", "fp12"], "unknown dtype 'fp12'"),
        (["no-such-model"], "hearth models list"),
        ([], "give either a MODEL"),
        (["--params", "7b", "--train", "full", "--dtype", "q4_0"], "use --train qlora"),
    ],
)
def test_cli_bad_input_exits_2_without_traceback(
    args: list[str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    tmp_path: Path,
) -> None:
    # Run through hearth's real main(), which turns UserError into a message and exit code 2.
    monkeypatch.setenv("HEARTH_HOME", str(tmp_path))
    monkeypatch.setattr(cli_main, "app", app)
    monkeypatch.setattr(cli_main, "_register", lambda: None)
    monkeypatch.setattr(sys, "argv", ["hearth", "estimate", *args])
    with pytest.raises(SystemExit) as exit_info:
        cli_main.main()
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in " ".join(err.split()) and "Traceback" not in err


def test_cli_unknown_train_method_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["estimate", "--params", "7b", "--train", "dpo"])
    assert result.exit_code == 2 and "dpo" in result.output
