"""Fine-tuning pieces that need no model: data formats and their problems, the template's
loss mask, token labels, and the adapter GGUF's names, permute and metadata."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from gguf import GGUFReader

from hearth.finetune.adapter import BaseShape, _permute, gguf_tensors, write
from hearth.finetune.data import load
from hearth.finetune.encode import IGNORE, Encoder
from hearth.finetune.template import ChatTemplate
from hearth.types import TokenPiece

CHATML = (
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n"
    "{% endfor %}{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def write_lines(path: Path, *records: object) -> Path:
    path.write_text(
        "\n".join(r if isinstance(r, str) else json.dumps(r, ensure_ascii=False) for r in records)
        + "\n",
        encoding="utf-8",
    )
    return path


def test_every_format_becomes_a_chat(tmp_path: Path) -> None:
    data = write_lines(
        tmp_path / "mixed.jsonl",
        {"instruction": "翻译", "input": "你好", "output": "Hello", "system": "你是翻译"},
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"messages": [{"role": "user", "content": "1+1?"}, {"role": "assistant", "content": "2"}]},
        {"prompt": "Best fruit?", "chosen": "Apples.", "rejected": "Rocks."},
    )
    ds = load([data])
    assert not ds.problems
    formats = [e.format for e in ds.examples]
    assert formats == ["alpaca", "sharegpt", "messages", "preference"]
    alpaca = ds.examples[0].messages
    assert alpaca[0] == {"role": "system", "content": "你是翻译"}
    assert alpaca[-1] == {"role": "assistant", "content": "Hello"}
    assert "你好" in alpaca[1]["content"] and "翻译" in alpaca[1]["content"]
    assert ds.examples[3].chosen == "Apples." and ds.examples[3].rejected == "Rocks."


def test_problems_name_file_and_line_and_do_not_hide_each_other(tmp_path: Path) -> None:
    data = write_lines(
        tmp_path / "bad.jsonl",
        {"instruction": "ok", "output": "fine"},
        "{not json",
        {"instruction": "no answer"},
        {"conversations": [{"from": "gpt", "value": "answer first"}]},
        {"something": "else"},
    )
    ds = load([data])
    assert len(ds.examples) == 1
    where = sorted(p.source.rsplit("/", 1)[-1] for p in ds.problems)
    assert where == ["bad.jsonl:2", "bad.jsonl:3", "bad.jsonl:4", "bad.jsonl:5"]


def test_a_json_array_file_reports_the_element_line(tmp_path: Path) -> None:
    path = tmp_path / "data.json"
    path.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"}\n]\n', encoding="utf-8"
    )
    ds = load([path])
    assert len(ds.examples) == 1
    assert [Path(p.source).name for p in ds.problems] == ["data.json:3"]


def test_segments_mark_only_assistant_turns_trained() -> None:
    t = ChatTemplate(CHATML)
    chat = [
        {"role": "system", "content": "简短回答"},
        {"role": "user", "content": "你好"},
        {"role": "assistant", "content": "你好！"},
        {"role": "user", "content": "再见"},
        {"role": "assistant", "content": "再见！"},
    ]
    segs = t.segments(chat)
    assert "".join(s for s, _ in segs) == t.render(chat, add_generation_prompt=False)
    trained = [s for s, on in segs if on]
    assert trained == ["你好！<|im_end|>\n", "再见！<|im_end|>\n"]
    assert all("你好" not in s or "<|im_start|>user" in s for s, on in segs if not on)


class ByteTokenizer:
    """One token per UTF-8 byte (ids 0-255): pieces add up to the text exactly."""

    def tokenize(self, text: str) -> list[TokenPiece]:
        return [TokenPiece(b, bytes([b])) for b in text.encode("utf-8")]


def test_labels_cover_exactly_the_answer_bytes() -> None:
    enc = Encoder(ChatTemplate(CHATML), ByteTokenizer(), prefix=[999])
    segs = [
        ("<|im_start|>user\n问<|im_end|>\n<|im_start|>assistant\n", False),
        ("答<|im_end|>\n", True),
    ]
    ids, labels = enc.tokens(segs)
    assert ids[0] == 999 and labels[0] == IGNORE
    trained = bytes(label for label in labels if label != IGNORE).decode("utf-8")
    assert trained == "答<|im_end|>\n"
    assert len(ids) == len(labels) == 1 + len("".join(s for s, _ in segs).encode("utf-8"))


def test_a_preference_pair_shares_the_prompt_and_splits_the_answers() -> None:
    from hearth.finetune.data import Example

    enc = Encoder(ChatTemplate(CHATML), ByteTokenizer(), prefix=[])
    ex = Example(
        messages=({"role": "user", "content": "好吗"},),
        format="preference",
        source="p:1",
        chosen="好",
        rejected="不好",
    )
    pair = enc.pair(ex)
    prompt = bytes(pair.prompt_ids).decode()
    assert prompt.endswith("<|im_start|>assistant\n")
    assert bytes(pair.chosen_ids).decode().rstrip() == "好<|im_end|>"
    assert bytes(pair.rejected_ids).decode().rstrip() == "不好<|im_end|>"


def test_q_and_k_lora_b_are_permuted_for_llama_only() -> None:
    rng = np.random.default_rng(0)
    heads, kv, dim, rank = 4, 2, 16, 2
    state = {
        "base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight": rng.normal(
            size=(rank, dim)
        ),
        "base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight": rng.normal(
            size=(dim, rank)
        ),
        "base_model.model.model.layers.0.self_attn.k_proj.lora_B.weight": rng.normal(
            size=(8, rank)
        ),
        "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight": rng.normal(size=(dim, rank)),
    }
    llama = gguf_tensors(state, BaseShape("llama", 1, heads, kv))
    qwen = gguf_tensors(state, BaseShape("qwen2", 1, heads, kv))
    assert set(llama) == {
        "blk.0.attn_q.weight.lora_a",
        "blk.0.attn_q.weight.lora_b",
        "blk.0.attn_k.weight.lora_b",
        "blk.0.ffn_down.weight.lora_b",
    }
    q_b = state["base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight"]
    np.testing.assert_allclose(qwen["blk.0.attn_q.weight.lora_b"], q_b)
    np.testing.assert_allclose(llama["blk.0.attn_q.weight.lora_b"], _permute(q_b, heads, heads))
    assert not np.allclose(llama["blk.0.attn_q.weight.lora_b"], q_b)
    # the permute is llama.cpp's: rows of each head's halves interleaved
    rows = np.arange(dim, dtype=np.float32).reshape(dim, 1)
    assert _permute(rows, heads, heads)[:4, 0].tolist() == [0, 2, 1, 3]
    down = state["base_model.model.model.layers.0.mlp.down_proj.lora_B.weight"]
    np.testing.assert_allclose(llama["blk.0.ffn_down.weight.lora_b"], down)


def test_the_adapter_gguf_says_what_it_is(tmp_path: Path) -> None:
    tensors = {"blk.0.attn_q.weight.lora_a": np.ones((2, 8), np.float32)}
    path = tmp_path / "a.gguf"
    write(path, tensors, BaseShape("llama", 1, 2, 2), alpha=16, meta={"base": "smol"})
    reader = GGUFReader(str(path))

    def value(key: str) -> object:
        field = reader.fields[key]
        return field.contents()

    assert value("general.type") == "adapter"
    assert value("adapter.type") == "lora"
    assert value("adapter.lora.alpha") == 16.0
    assert value("hearth.base") == "smol"
    assert [t.name for t in reader.tensors] == ["blk.0.attn_q.weight.lora_a"]


def test_an_unknown_peft_name_is_refused() -> None:
    from hearth.errors import HearthError

    with pytest.raises(HearthError):
        gguf_tensors(
            {"model.layers.0.mlp.up_proj.weight": np.ones((2, 2))}, BaseShape("llama", 1, 2, 2)
        )
