"""describe(): the per-token view shared by `hearth tokens inspect` and /tokenize."""

from __future__ import annotations

import itertools
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from hearth.tokens import describe
from hearth.tokens.corpus import sample_corpus
from hearth.tokens.encodings import load_encoding
from hearth.tokens.files import load_file
from hearth.tokens.train import train
from hearth.types import TokenPiece

RARE = "𠀋"  # CJK Extension B: in no small vocabulary, so it is spelled in bytes


def test_rare_cjk_character_split_by_tiktoken_is_marked_partial() -> None:
    infos = describe(load_encoding("cl100k_base").tokenize(f"a{RARE}b"))
    assert b"".join(i.bytes for i in infos) == f"a{RARE}b".encode()
    middle = [i for i in infos if i.partial]
    assert len(middle) >= 2  # four bytes over several tokens
    assert b"".join(i.bytes for i in middle) == RARE.encode()
    # the character appears once, at the token that completes it
    assert [i.text for i in middle][-1].endswith(RARE)
    assert all(i.text == "" for i in middle[:-1])
    assert "".join(i.text for i in infos) == f"a{RARE}b"
    assert all("\ufffd" in i.piece for i in middle)


def test_byte_fallback_pieces_of_a_trained_sentencepiece(tmp_path: Path) -> None:
    model = train(sample_corpus(), tmp_path / "m", vocab_size=1000).model
    infos = describe(load_file(model).tokenize(f"河{RARE}"))
    partial = [i for i in infos if i.partial]
    assert [i.bytes for i in partial] == [bytes([b]) for b in RARE.encode()]
    assert [i.hex for i in partial] == ["f0", "a0", "80", "8b"]
    assert "".join(i.text for i in infos).strip() == f"河{RARE}"  # " " is SentencePiece's start
    assert "河" in [i.text.strip() for i in infos if not i.partial]


def test_positions_and_dict_match_the_tokenize_route() -> None:
    pieces = [TokenPiece(7, b"hi"), TokenPiece(8, b"\xe4\xbd"), TokenPiece(9, b"\xa0!")]
    rows = [i.as_dict() for i in describe(pieces)]
    assert [r["position"] for r in rows] == [0, 1, 2]
    # the keys /tokenize answers today are all there, with the same meaning
    for row, piece in zip(rows, pieces, strict=True):
        assert row["id"] == piece.id
        assert row["piece"] == piece.text
        assert row["bytes"] == list(piece.piece)
        assert row["partial"] == piece.partial
    assert [r["text"] for r in rows] == ["hi", "", "你!"]
    assert rows[1]["hex"] == "e4 bd"
    assert describe([]) == []


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(st.characters(codec="utf-8"), max_size=40),
    cuts=st.lists(st.integers(min_value=0, max_value=200), max_size=10),
)
def test_texts_join_to_the_decoded_text_however_bytes_are_split(text: str, cuts: list[int]) -> None:
    data = text.encode()
    bounds = sorted({0, len(data), *(c for c in cuts if c <= len(data))})
    pieces = [TokenPiece(n, data[a:b]) for n, (a, b) in enumerate(itertools.pairwise(bounds))]
    infos = describe(pieces)
    assert "".join(i.text for i in infos) == text
    for info, piece in zip(infos, pieces, strict=True):
        assert info.partial == piece.partial
        assert info.bytes == piece.piece
