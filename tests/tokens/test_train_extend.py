"""SentencePiece training and the Chinese-LLaMA vocabulary merge."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hearth.errors import UserError
from hearth.tokens.corpus import CHINESE, load_corpus, sample_corpus
from hearth.tokens.extend import extend
from hearth.tokens.files import load_file
from hearth.tokens.train import Progress, train

RARE = "𠀋"


def _corpus(name: str) -> list[Path]:
    return [p for p in sample_corpus() if p.name == name]


@pytest.mark.parametrize("model_type", ["bpe", "unigram"])
def test_train_writes_model_and_vocab(tmp_path: Path, model_type: str) -> None:
    seen: list[Progress] = []
    trained = train(
        sample_corpus(), tmp_path / "out", model_type=model_type, vocab_size=1000,
        on_progress=seen.append,
    )  # fmt: skip
    assert trained.model == tmp_path / "out.model" and trained.model.is_file()
    assert trained.vocab == tmp_path / "out.vocab"
    assert len(trained.vocab.read_text(encoding="utf-8").splitlines()) == 1000
    tok = load_file(trained.model)
    assert tok.vocab_size == 1000
    assert trained.sentences > 50
    stages = [p.stage for p in seen]
    assert stages[0] == "reading corpus" and "saving" in stages
    assert ("merging" if model_type == "bpe" else "pruning") in stages
    assert all(p.total is None or 0 <= p.done <= p.total for p in seen)


def test_byte_fallback_and_split_digits(tmp_path: Path) -> None:
    on = load_file(
        train(sample_corpus(), tmp_path / "on", vocab_size=1000, split_digits=True).model
    )
    ids = on.encode(f"{RARE} 2024")
    assert on.decode(ids) == f"{RARE} 2024"
    assert [on.piece_bytes(i) for i in ids[-4:]] == [b"2", b"0", b"2", b"4"]
    off = load_file(
        train(sample_corpus(), tmp_path / "off", vocab_size=800, byte_fallback=False).model
    )
    assert 0 in off.encode(RARE)  # <unk>: no bytes to fall back on
    assert off.decode(off.encode(RARE)) != RARE


def test_vocab_size_too_large_for_the_corpus(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--vocab-size 100000 is too large .* at most \d+"):
        train(sample_corpus(), tmp_path / "x", vocab_size=100_000)


def test_vocab_size_too_small(tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"--vocab-size 50 is too small: .* Use --vocab-size \d+"):
        train(sample_corpus(), tmp_path / "x", vocab_size=50)


def test_bad_training_inputs(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="--type must be one of bpe, unigram"):
        train(sample_corpus(), tmp_path / "x", model_type="wordpiece")
    (tmp_path / "blank.txt").write_text("\n\n", encoding="utf-8")
    with pytest.raises(UserError, match="no text to train on"):
        train([tmp_path / "blank.txt"], tmp_path / "x")


@pytest.fixture(scope="module")
def models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("ext")
    base = train([*_corpus("en.txt"), *_corpus("code.txt")], root / "base", vocab_size=700).model
    chinese = train(_corpus("zh.txt"), root / "zh", vocab_size=1000).model
    return {"root": root, "base": base, "zh": chinese}


def test_extend_sentencepiece_keeps_ids_and_compresses_chinese(models: dict[str, Path]) -> None:
    merged = extend(models["base"], models["zh"], models["root"] / "merged")
    assert merged.output == models["root"] / "merged.model"
    base, after = load_file(models["base"]), load_file(merged.output)
    assert merged.base_size == base.vocab_size == 700 and merged.new_size == 1000
    assert after.vocab_size == merged.size == 700 + merged.added and merged.added > 300
    # every existing id keeps its piece: a model trained on BASE stays valid
    assert all(base.piece_bytes(i) == after.piece_bytes(i) for i in range(700))
    zh = next(s.text for s in load_corpus() if s.part == CHINESE)
    assert after.count(zh) < 0.5 * base.count(zh)
    assert after.decode(after.encode(zh)) == zh
    # pieces already in BASE are not added twice
    again = extend(merged.output, models["zh"], models["root"] / "again")
    assert again.added == 0


def test_extend_huggingface_bpe(models: dict[str, Path], tmp_path: Path) -> None:
    from tokenizers import Tokenizer, decoders, pre_tokenizers, trainers
    from tokenizers import models as hf_models

    tok = Tokenizer(hf_models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=600, initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False
    )
    tok.train_from_iterator(_corpus("en.txt")[0].read_text().splitlines(), trainer)
    (tmp_path / "base").mkdir()
    tok.save(str(tmp_path / "base" / "tokenizer.json"))
    merged = extend(tmp_path / "base", models["zh"], tmp_path / "out" / "tokenizer.json")
    assert merged.output == tmp_path / "out" / "tokenizer.json"
    before, after = load_file(tmp_path / "base"), load_file(merged.output)
    zh = next(s.text for s in load_corpus() if s.part == CHINESE)
    assert after.count(zh) < 0.6 * before.count(zh)
    assert after.decode(after.encode(zh)) == zh
    vocab = json.loads(merged.output.read_text(encoding="utf-8"))["model"]["vocab"]
    original = json.loads((tmp_path / "base" / "tokenizer.json").read_text())["model"]["vocab"]
    assert all(vocab[k] == v for k, v in original.items())


def test_extend_errors(models: dict[str, Path], tmp_path: Path) -> None:
    with pytest.raises(UserError, match=r"NEW must be a SentencePiece \.model"):
        extend(models["base"], tmp_path / "missing.model", tmp_path / "o")
    with pytest.raises(UserError, match="does not exist"):
        extend(tmp_path / "nope.model", models["zh"], tmp_path / "o")
    bogus = tmp_path / "bogus.model"
    bogus.write_bytes(b"\xff\xff\xff")
    with pytest.raises(UserError, match="not a SentencePiece model"):
        extend(bogus, models["zh"], tmp_path / "o")
