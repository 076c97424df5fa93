"""Every tokenizer source: known counts, exact round trips, exact bytes, offline loading."""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.errors import UserError
from hearth.tokens import Tokenizer, open_tokenizer
from hearth.tokens.corpus import lines, sample_corpus
from hearth.tokens.encodings import ENCODINGS, available, load_encoding, seed
from hearth.tokens.files import load_file
from hearth.tokens.train import train

# Any text that can be written as UTF-8 (no lone surrogates).
TEXT = st.text(st.characters(codec="utf-8"), max_size=200)
MIXED = "Hello, world! 你好，世界。def f(x):\n    return x ** 2  # 𠀋 rare\n"


@pytest.fixture(scope="module")
def cl100k() -> Tokenizer:
    return load_encoding("cl100k_base")


@pytest.fixture(scope="module")
def spm_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spm") / "sample"
    return train(sample_corpus(), out, vocab_size=1000).model


@pytest.fixture(scope="module")
def hf_json(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tokenizers import Tokenizer as HFTokenizer
    from tokenizers import decoders, models, pre_tokenizers, trainers

    tok = HFTokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=1000,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator(lines(sample_corpus()), trainer)
    path = tmp_path_factory.mktemp("hf") / "tokenizer.json"
    tok.save(str(path))
    return path


# -- tiktoken: well-known values as the oracle ----------------------------------------------
@pytest.mark.parametrize(
    ("text", "ids"),
    [
        ("hello world", [15339, 1917]),
        ("Hello, world!", [9906, 11, 1917, 0]),
        ("tiktoken is great!", [83, 1609, 5963, 374, 2294, 0]),
        ("", []),
    ],
)
def test_cl100k_known_ids(cl100k: Tokenizer, text: str, ids: list[int]) -> None:
    assert cl100k.encode(text) == ids
    assert cl100k.count(text) == len(ids)


def test_o200k_known_ids() -> None:
    tok = load_encoding("o200k_base")
    assert tok.encode("hello world") == [24912, 2375]
    assert tok.vocab_size == 200019


def test_special_token_text_is_plain_text_for_tiktoken(cl100k: Tokenizer) -> None:
    # As OpenAI's API reads user content: "<|endoftext|>" is text, not token 100257.
    assert 100257 not in cl100k.encode("<|endoftext|>")


def test_seeded_cache_is_what_tiktoken_reads_offline(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import tiktoken.load
    from tiktoken_ext import openai_public

    from hearth.tokens.encodings import _FILES

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))

    def no_network(url: str) -> bytes:
        raise AssertionError(f"tiktoken tried to download {url}")

    monkeypatch.setattr(tiktoken.load, "read_file", no_network)
    rank = _FILES["cl100k_base"]
    seed(rank)
    assert (tmp_path / hashlib.sha1(rank.url.encode()).hexdigest()).is_file()
    # tiktoken's own constructor, with its own expected_hash, finds the file
    assert len(openai_public.cl100k_base()["mergeable_ranks"]) == 100256
    # a corrupt cache entry is replaced, never handed to tiktoken
    next(tmp_path.iterdir()).write_bytes(b"corrupt")
    seed(rank)
    assert len(openai_public.cl100k_base()["mergeable_ranks"]) == 100256


def test_unshipped_encoding_names_what_is_available(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))
    assert {"cl100k_base", "o200k_base"} <= set(available())
    with pytest.raises(UserError, match=r"r50k_base.*Available offline: cl100k_base, o200k_base"):
        load_encoding("r50k_base")


def test_unknown_encoding_lists_known_ones() -> None:
    with pytest.raises(UserError, match=r"unknown tiktoken encoding 'cl200k'\. Known: cl100k_base"):
        load_encoding("cl200k")


def test_empty_cache_dir_variable_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")
    with pytest.raises(UserError, match="TIKTOKEN_CACHE_DIR is empty"):
        load_encoding("cl100k_base")


# -- round trips and exact bytes, for every in-process source --------------------------------
def _sources(cl100k: Tokenizer, hf_json: Path, spm_model: Path) -> list[Tokenizer]:
    return [cl100k, load_file(hf_json), load_file(hf_json.parent), load_file(spm_model)]


@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_tiktoken_round_trip_and_bytes(cl100k: Tokenizer, text: str) -> None:
    ids = cl100k.encode(text)
    assert cl100k.decode(ids) == text
    assert b"".join(cl100k.piece_bytes(i) for i in ids) == text.encode()
    assert cl100k.count(text) == len(ids)


@settings(max_examples=200, deadline=None)
@given(text=TEXT)
def test_huggingface_round_trip_and_bytes(hf_json: Path, text: str) -> None:
    tok = load_file(hf_json)
    ids = tok.encode(text)
    assert tok.decode(ids) == text
    assert b"".join(p.piece for p in tok.tokenize(text)) == text.encode()
    assert tok.count(text) == len(ids)


@settings(max_examples=200, deadline=None)
@given(text=st.text(st.characters(codec="utf-8", exclude_characters="\u2581"), max_size=200))
def test_sentencepiece_round_trip_and_bytes(spm_model: Path, text: str) -> None:
    tok = load_file(spm_model)
    ids = tok.encode(text)
    assert tok.decode(ids) == text  # byte fallback: nothing becomes <unk>
    # SentencePiece marks the start of a text with a space ("▁"); the rest is exact.
    joined = b"".join(tok.piece_bytes(i) for i in ids)
    assert joined in (text.encode(), b" " + text.encode())
    assert tok.count(text) == len(ids)


def test_sources_agree_on_shape(cl100k: Tokenizer, hf_json: Path, spm_model: Path) -> None:
    for tok in _sources(cl100k, hf_json, spm_model):
        assert isinstance(tok, Tokenizer)
        assert tok.vocab_size and tok.vocab_size > 0
        pieces = tok.tokenize(MIXED)
        assert [p.id for p in pieces] == tok.encode(MIXED)
        assert tok.decode(tok.encode(MIXED)) == MIXED
        with pytest.raises(UserError, match=r"outside the vocabulary|no token"):
            tok.piece_bytes(tok.vocab_size + 10)
        tok.close()


def test_hf_directory_and_name(hf_json: Path) -> None:
    assert load_file(hf_json.parent).name == hf_json.parent.name
    assert load_file(hf_json.parent).encode(MIXED) == load_file(hf_json).encode(MIXED)


def test_open_tokenizer_resolves_each_kind(hf_json: Path, spm_model: Path) -> None:
    assert open_tokenizer("cl100k_base").kind == "tiktoken"
    assert open_tokenizer(str(hf_json)).kind == "huggingface"
    assert open_tokenizer(str(spm_model)).kind == "sentencepiece"
    with pytest.raises(UserError, match=r"not a registered model .* tiktoken encoding"):
        open_tokenizer("no-such-thing")


@pytest.mark.parametrize(
    ("content", "suffix", "message"),
    [
        (b"{not json", ".json", "not a valid Hugging Face tokenizer.json"),
        (b"\x00\x01garbage", ".model", "not a valid SentencePiece model"),
        (b"hello", ".txt", "neither a Hugging Face tokenizer.json"),
    ],
)
def test_bad_files_are_user_errors(
    tmp_path: Path, content: bytes, suffix: str, message: str
) -> None:
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(content)
    with pytest.raises(UserError, match=message):
        load_file(path)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UserError, match="does not exist"):
        load_file(tmp_path / "nope.model")


def test_every_known_encoding_has_a_pinned_file() -> None:
    from hearth.tokens.encodings import _FILES

    assert set(ENCODINGS.values()) <= set(_FILES)
