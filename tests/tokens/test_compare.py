"""Corpus parts, comparison rows, and the chart with its HTML page."""

from __future__ import annotations

import base64
from pathlib import Path

import pytest

from hearth.errors import UserError
from hearth.tokens.compare import ALL, compare
from hearth.tokens.corpus import (
    CHINESE,
    CODE,
    ENGLISH,
    Section,
    detect,
    load_corpus,
    read_text,
    sample_corpus,
    split,
)
from hearth.tokens.encodings import load_encoding
from hearth.tokens.report import write_chart

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"


def test_sample_corpus_ships_one_file_per_part() -> None:
    files = {p.name: p for p in sample_corpus()}
    assert set(files) == {"zh.txt", "en.txt", "code.txt"}
    for name, part in (("zh.txt", CHINESE), ("en.txt", ENGLISH), ("code.txt", CODE)):
        text = read_text(files[name])
        assert len(text.encode()) > 3000  # a few KB each
        assert [s.part for s in split(text, name)] == [part]  # by file


def test_a_mixed_file_is_split_by_detection(tmp_path: Path) -> None:
    mixed = tmp_path / "mixed.md"
    mixed.write_text("\n\n".join(read_text(p) for p in sample_corpus()), encoding="utf-8")
    sections = load_corpus([mixed])
    assert {s.part for s in sections} == {CHINESE, ENGLISH, CODE}
    by_part = {p: sum(len(s.text) for s in sections if s.part == p) for p in (CHINESE, CODE)}
    assert by_part[CHINESE] == pytest.approx(len(read_text(sample_corpus()[2])), rel=0.02)
    assert by_part[CODE] == pytest.approx(len(read_text(sample_corpus()[0])), rel=0.02)


@pytest.mark.parametrize(
    ("block", "part"),
    [
        ("今天天气很好，我们去河边散步吧。", CHINESE),
        ("我们用 LLaMA 和 Qwen 两个模型做了对比实验。", CHINESE),
        ("The quick brown fox jumps over the lazy dog.", ENGLISH),
        ("def f(x):\n    return x + 1\n", CODE),
        ("const x = [1, 2, 3].map((n) => n * 2);", CODE),
        ("SELECT id, name\nFROM users\nWHERE id = 1;", CODE),
    ],
)
def test_detect(block: str, part: str) -> None:
    assert detect(block) == part


def test_source_files_are_code_by_suffix(tmp_path: Path) -> None:
    src = tmp_path / "notes.py"
    src.write_text('"""今天天气很好，我们去河边散步吧。这是中文注释。"""\n', encoding="utf-8")
    assert [s.part for s in load_corpus([tmp_path])] == [CODE]


def test_compare_rows_against_a_reference() -> None:
    cl100k, o200k = load_encoding("cl100k_base"), load_encoding("o200k_base")
    sections = load_corpus()
    rows = compare([cl100k, o200k], sections, reference=0)
    assert [(r.part, r.tokenizer) for r in rows[:2]] == [
        (CHINESE, "cl100k_base"),
        (CHINESE, "o200k_base"),
    ]
    assert {r.part for r in rows} == {CHINESE, ENGLISH, CODE, ALL}
    zh = {r.tokenizer: r for r in rows if r.part == CHINESE}
    assert zh["cl100k_base"].relative == 1.0
    assert zh["o200k_base"].relative == pytest.approx(
        zh["o200k_base"].tokens / zh["cl100k_base"].tokens
    )
    assert zh["o200k_base"].relative < 0.9  # o200k's larger vocabulary holds more Chinese
    zh_text = next(s.text for s in sections if s.part == CHINESE)
    assert zh["cl100k_base"].tokens == cl100k.count(zh_text)
    assert zh["cl100k_base"].characters == len(zh_text)
    assert zh["cl100k_base"].bytes == len(zh_text.encode())
    total = {r.tokenizer: r for r in rows if r.part == ALL}
    assert total["cl100k_base"].tokens == sum(
        r.tokens for r in rows if r.tokenizer == "cl100k_base" and r.part != ALL
    )
    assert total["cl100k_base"].chars_per_token == pytest.approx(
        total["cl100k_base"].characters / total["cl100k_base"].tokens
    )


def test_same_name_twice_is_numbered() -> None:
    tok = load_encoding("cl100k_base")
    rows = compare([tok, tok], [Section(ENGLISH, "x", "hello world")], reference=1)
    assert [r.tokenizer for r in rows[:2]] == ["cl100k_base#1", "cl100k_base#2"]


def test_chart_png_and_self_contained_page(tmp_path: Path) -> None:
    rows = compare([load_encoding("cl100k_base"), load_encoding("o200k_base")], load_corpus())
    png = tmp_path / "charts" / "cmp.png"
    page = write_chart(rows, png, reference="cl100k_base")
    assert png.read_bytes().startswith(PNG_MAGIC)
    from PIL import Image

    with Image.open(png) as image:
        assert image.format == "PNG" and image.width > 300
    assert page == png.with_suffix(".html")
    html = page.read_text(encoding="utf-8")
    assert base64.b64encode(png.read_bytes()).decode() in html
    assert "<table>" in html and "<td>o200k_base</td>" in html and "<td>chinese</td>" in html


def test_empty_corpus_is_an_error(tmp_path: Path) -> None:
    empty = tmp_path / "empty.txt"
    empty.write_text("  \n", encoding="utf-8")
    with pytest.raises(UserError, match="corpus is empty"):
        load_corpus([empty])
    with pytest.raises(UserError, match="does not exist"):
        load_corpus([tmp_path / "missing.txt"])
    (tmp_path / "latin1.txt").write_bytes("café".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        load_corpus([tmp_path / "latin1.txt"])
