"""Parsers against the bundled sample corpus and against files made to be broken."""

from __future__ import annotations

import io
import json
import re
from pathlib import Path

import docx
import pytest
from pypdf import PdfWriter

import hearth
from hearth.errors import ParseError, UserError
from hearth.evals.retrieval import QA
from hearth.evals.retrieval import direction as direction_of
from hearth.rag.parse import SEPARATOR, SUPPORTED, parse
from hearth.rag.parse.document import RawBlock, assemble
from hearth.rag.parse.pdf import paragraphs
from hearth.types import Block, ParsedDocument

SAMPLE = Path(hearth.__file__).parent / "data" / "kb_sample"
DOCS = SAMPLE / "docs"
FILES = sorted(DOCS.iterdir())


def block_with(doc: ParsedDocument, needle: str) -> Block:
    found = [b for b in doc.blocks if needle in b.text]
    assert found, f"no block of {doc.source} contains {needle!r}"
    return found[0]


def check_offsets(doc: ParsedDocument) -> None:
    assert doc.blocks
    assert doc.text == SEPARATOR.join(b.text for b in doc.blocks)
    for block in doc.blocks:
        assert doc.text[block.start : block.end] == block.text
        assert block.text == block.text.strip()
        if block.kind != "code":
            assert SEPARATOR not in block.text
    starts = [b.start for b in doc.blocks]
    assert starts == sorted(starts)


# -- the sample corpus --------------------------------------------------------------------


def test_corpus_covers_every_format() -> None:
    assert {p.suffix for p in FILES} == {".pdf", ".docx", ".md", ".txt", ".html"}
    assert 24 <= len(FILES) <= 30
    for path in FILES:
        if path.suffix in (".pdf", ".docx"):
            assert path.stat().st_size < 50_000, path


@pytest.mark.parametrize("path", FILES, ids=[p.name for p in FILES])
def test_every_sample_parses_with_exact_offsets(path: Path) -> None:
    doc = parse(path)
    assert doc.source == str(path)
    assert doc.format == {".htm": "html"}.get(path.suffix, path.suffix[1:])
    assert doc.title
    check_offsets(doc)
    # The same bytes given as an upload parse the same.
    assert parse(Path(path.name), path.read_bytes()).text == doc.text


def test_qa_set_points_at_real_passages() -> None:
    lines = (SAMPLE / "qa.jsonl").read_text(encoding="utf-8").splitlines()
    assert 36 <= len(lines) <= 50
    texts = {p.name: parse(p).text for p in FILES}
    chinese = 0
    for line in lines:
        row = json.loads(line)
        assert set(row) == {"question", "document", "answer_contains"}
        holders = [name for name, text in texts.items() if row["answer_contains"] in text]
        assert holders == [row["document"]], row
        chinese += any("\u4e00" <= c <= "\u9fff" for c in row["question"])
    assert 0.4 <= chinese / len(lines) <= 0.6
    smalltalk = (SAMPLE / "smalltalk.txt").read_text(encoding="utf-8").splitlines()
    assert len(smalltalk) >= 40 and smalltalk[:5] == [
        "你好",
        "谢谢",
        "hello",
        "how are you",
        "再见",
    ]


def test_crosslingual_qa_set_points_at_real_passages_in_the_other_language() -> None:
    lines = (SAMPLE / "qa_crosslingual.jsonl").read_text(encoding="utf-8").splitlines()
    texts = {p.name: parse(p).text for p in FILES}
    directions = {"en→zh": 0, "zh→en": 0}
    for line in lines:
        row = json.loads(line)
        holders = [name for name, text in texts.items() if row["answer_contains"] in text]
        assert holders == [row["document"]], row
        text = texts[row["document"]]
        chinese = sum(1 for c in text if "\u4e00" <= c <= "\u9fff") > len(text) / 4
        direction = direction_of(QA(**row), "zh" if chinese else "en")
        assert direction in directions, row
        directions[direction] += 1
    assert min(directions.values()) >= 10 and sum(directions.values()) >= 20


# -- PDF ----------------------------------------------------------------------------------


def test_pdf_pages_headings_and_running_lines() -> None:
    doc = parse(DOCS / "remote_work.pdf")
    assert doc.title == "Remote Work Policy"
    assert {b.page for b in doc.blocks} == {1, 2, 3}
    subsidy = block_with(doc, "monthly internet subsidy of 100 CNY")
    assert subsidy.page == 2
    assert subsidy.headings == ("Remote Work Policy", "3. Equipment and allowances")
    assert block_with(doc, "HexuLink VPN").page == 3
    # The running header and the "Page N of 3" footers are layout, not text.
    assert "Hexu Technology - Remote Work Policy" not in doc.text
    assert "Page 1 of 3" not in doc.text
    # Wrapped lines are joined into one paragraph, with single spaces.
    assert "may work remotely for up to 2 days per week. Remote days" in doc.text
    assert "  " not in doc.text


def test_pdf_chinese_lines_join_without_spaces() -> None:
    doc = parse(DOCS / "company_profile.pdf")
    assert [b.page for b in doc.blocks if "发展历程" in b.text] == [2]
    assert "是一家专注于智能家居环境控制的科技公司。" in doc.text
    assert "- 1 -" not in doc.text


def test_pdf_paragraphs_open_at_questions_and_answers() -> None:
    lines = [
        "常见问题",
        "问：HX-2040 支持哪种 Wi-Fi？",
        "答：只支持2.4GHz频段的Wi-Fi，",
        "不支持5GHz。",
    ]
    found = paragraphs(lines)
    doc = assemble("faq.pdf", "", "pdf", [RawBlock(text) for text, _ in found])
    qa = [b for b in doc.blocks if b.kind == "qa"]
    assert [b.text for b in qa] == [
        "问：HX-2040 支持哪种 Wi-Fi？\n答：只支持2.4GHz频段的Wi-Fi，不支持5GHz。"
    ]


def pdf_bytes(user_password: str | None = None, owner_password: str | None = None) -> bytes:
    writer = PdfWriter(clone_from=DOCS / "remote_work.pdf")
    if user_password is not None:
        writer.encrypt(user_password, owner_password, algorithm="RC4-128")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def test_pdf_with_only_an_owner_password_is_read() -> None:
    doc = parse(Path("restricted.pdf"), pdf_bytes(user_password="", owner_password="owner"))
    assert "internet subsidy" in doc.text


# -- DOCX ---------------------------------------------------------------------------------


def test_docx_tables_in_document_order() -> None:
    doc = parse(DOCS / "expense_rules.docx")
    assert doc.title == "差旅与费用报销规定"
    table = next(b for b in doc.blocks if b.kind == "table")
    rows = table.text.split("\n")
    assert rows[0] == "城市类别 | 包含城市 | 住宿上限（每晚） | 餐补（每天）"
    assert "一类城市 | 北京、上海、广州、深圳 | 600元 | 100元" in rows
    assert len(rows) == 5
    assert table.headings == ("差旅与费用报销规定", "二、住宿与餐补标准")
    order = [b.text[:6] for b in doc.blocks]
    assert order.index("住宿费按城市") < order.index("城市类别 |") < order.index("两人同行且性")


def test_docx_merged_cells_and_line_breaks(tmp_path: Path) -> None:
    document = docx.Document()
    document.add_heading("FAQ", level=1)
    document.add_paragraph("Q: Can I merge cells?\nA: Yes, and they are read once.")
    grid = document.add_table(rows=2, cols=3)
    grid.cell(0, 0).merge(grid.cell(0, 1)).text = "Merged"
    grid.cell(0, 2).text = "Right"
    grid.cell(1, 0).text = "a"
    grid.cell(1, 2).text = "c"
    path = tmp_path / "merged.docx"
    document.save(str(path))
    doc = parse(path)
    check_offsets(doc)
    assert [b.kind for b in doc.blocks] == ["heading", "qa", "table"]
    assert doc.blocks[2].text == "Merged | Right\na | | c"


# -- Markdown -----------------------------------------------------------------------------


def test_markdown_heading_paths_code_and_tables() -> None:
    doc = parse(DOCS / "leave_policy.md")
    assert block_with(doc, "158天产假").headings == ("和煦科技请假与休假制度", "婚假与生育相关假期")
    assert block_with(doc, "12天全薪病假").headings[-1] == "病假"
    wal = parse(DOCS / "sqlite_wal.md")
    code = block_with(wal, "PRAGMA journal_mode = WAL;")
    assert code.kind == "code"
    assert code.headings == ("Notes on SQLite write-ahead logging", "Turning it on")
    rooms = parse(DOCS / "meeting_rooms.md")
    assert block_with(rooms, "西湖厅 | 5楼 | 20人").kind == "table"


def test_markdown_nesting_inline_markup_and_front_matter() -> None:
    source = (
        "---\ntitle: ignored\n---\n# A\n\nSee **bold** and [a link](http://x.example).\n\n"
        "## B\n\n### C\n\ntext c\n\n## D\n\n- one\n- two\n  - nested\n\n1. first\n2. second\n"
    )
    doc = parse(Path("n.md"), source.encode())
    check_offsets(doc)
    assert doc.title == "A"
    assert "title: ignored" not in doc.text
    assert block_with(doc, "See bold and a link.").kind == "text"
    assert block_with(doc, "text c").headings == ("A", "B", "C")
    assert block_with(doc, "- one").text == "- one\n- two\n- nested"
    assert block_with(doc, "- one").headings == ("A", "D")
    assert block_with(doc, "1. first").text == "1. first\n2. second"


# -- plain text ---------------------------------------------------------------------------


def test_gbk_file_is_detected() -> None:
    doc = parse(DOCS / "hx2040_faq.txt")
    assert doc.encoding == "gbk"
    assert "问：HX-2040 支持哪种 Wi-Fi？" in doc.text
    assert sum(b.kind == "qa" for b in doc.blocks) == 7


@pytest.mark.parametrize(
    ("encoding", "detected"),
    [
        ("utf-8", "utf-8"),
        ("utf-8-sig", "utf-8-sig"),
        ("utf-16", "utf-16"),
        ("gbk", "gbk"),
        ("gb18030", "gb18030"),
        ("big5", "big5"),
    ],
)
def test_text_encodings(encoding: str, detected: str) -> None:
    # "𠮷" is outside GBK, so only the GB18030 sample carries it.
    extra = "𠮷" if encoding in ("gb18030", "utf-8", "utf-16") else ""
    text = f"標題行\n\n員工每年享有十二天全薪病假{extra}。超過兩天需要證明。"
    if encoding in ("gbk", "gb18030"):
        text = f"标题行\n\n员工每年享有十二天全薪病假{extra}。超过两天需要证明。"
    doc = parse(Path("sample.txt"), text.encode(encoding))
    assert doc.encoding == detected
    assert doc.text == text.replace("\n\n", SEPARATOR)
    assert "\ufeff" not in doc.text


def test_western_legacy_text_is_not_read_as_chinese() -> None:
    data = "Café crème brûlée à la carte. Señor Müller's façade.".encode("latin-1")
    doc = parse(Path("menu.txt"), data)
    assert "Café crème brûlée" in doc.text


def test_text_headings_and_titles() -> None:
    doc = parse(DOCS / "onboarding.txt")
    assert doc.encoding == "utf-8-sig"
    assert doc.title == "和煦科技新员工入职指南"
    assert block_with(doc, "陪伴期为3个月").headings == (
        "和煦科技新员工入职指南",
        "第二章 第一个月",
        "二、导师制度",
    )
    git = parse(DOCS / "git_workflow.txt")
    assert block_with(git, "squash merge").headings[-1] == "Merging"


def test_qa_pairs_in_text_variants() -> None:
    text = (
        "Intro line.\nQ1: First question?\nA1: First answer.\nQuestion: Second?\n"
        "Answer: Second answer\nspans two lines.\n\n"
        "问题：单独一段的问题？\n\n回答：下一段的回答。\n\n问：没有回答的问题？\n\n普通段落。\n\n答：没有问题的回答。"
    )
    doc = parse(Path("qa.txt"), text.encode())
    check_offsets(doc)
    qa = [b.text for b in doc.blocks if b.kind == "qa"]
    assert qa == [
        "Q1: First question?\nA1: First answer.",
        "Question: Second?\nAnswer: Second answer\nspans two lines.",
        "问题：单独一段的问题？\n回答：下一段的回答。",
    ]
    kinds = {b.text: b.kind for b in doc.blocks}
    assert kinds["问：没有回答的问题？"] == "text"
    assert kinds["答：没有问题的回答。"] == "text"


# -- HTML ---------------------------------------------------------------------------------


def test_html_boilerplate_is_removed() -> None:
    doc = parse(DOCS / "it_security.html")
    assert doc.title == "信息安全规范 - 和煦科技内网"
    for noise in (
        "trackingId",
        "公司新闻",
        "版权所有",
        "相关链接",
        "内网首页",
        "noopener",
        "font-family",
    ):
        assert noise not in doc.text
    assert block_with(doc, "至少为12位").headings == ("信息安全规范", "账号与密码")
    table = block_with(doc, "冒充领导或财务")
    assert table.kind == "table"
    assert table.text.split("\n")[0] == "特征 | 例子"
    assert table.headings == ("信息安全规范", "钓鱼邮件", "常见钓鱼特征")
    assert block_with(doc, "BitLocker").text.startswith("- 公司笔记本必须开启全盘加密")
    # A source line break between two hanzi is not a space.
    assert "三类。密码每90天" in doc.text


def test_html_without_main_and_declared_charset() -> None:
    page = (
        '<html><head><meta http-equiv="Content-Type" content="text/html; charset=gb2312">'
        "<title>标题</title></head><body><div class='navbar'>首页 | 登录</div>"
        "<h2>问答</h2><p>问：营业时间？</p><p>答：每天9点到18点。</p>"
        "<p style='display: none'>隐藏文字</p><footer>页脚</footer></body></html>"
    )
    doc = parse(Path("gb.html"), page.encode("gbk"))
    check_offsets(doc)
    assert doc.encoding == "gbk"
    assert doc.title == "标题"
    assert [(b.kind, b.text) for b in doc.blocks] == [
        ("heading", "问答"),
        ("qa", "问：营业时间？\n答：每天9点到18点。"),
    ]


# -- failures -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "data", "reason"),
    [
        ("notes.doc", b"old word file", "save it as .docx"),
        ("data.xlsx", b"PK\x03\x04", "unsupported file type '.xlsx'"),
        ("empty.md", b"", "empty"),
        ("blank.txt", b"  \n\n\t", "empty"),
        ("broken.docx", b"PK\x03\x04 not a zip at all", "not a readable .docx"),
        ("broken.pdf", b"%PDF-1.4\nnothing here", "not a readable PDF"),
        ("menu.html", b"<html><body><nav>Home</nav><script>x()</script></body></html>", "no text"),
        ("noise.txt", bytes(range(256)) * 4, "not text"),
    ],
)
def test_bad_files_raise_parse_error_naming_the_file(name: str, data: bytes, reason: str) -> None:
    with pytest.raises(ParseError) as caught:
        parse(Path(name), data)
    assert f"'{name}'" in caught.value.message
    assert reason in caught.value.message
    assert isinstance(caught.value, UserError)


def test_unsupported_suffix_lists_supported_ones() -> None:
    with pytest.raises(ParseError) as caught:
        parse(Path("slides.pptx"), b"x")
    for suffix in SUPPORTED:
        assert suffix in caught.value.message


def test_encrypted_truncated_empty_and_missing_pdfs() -> None:
    with pytest.raises(ParseError, match="encrypted with a password") as caught:
        parse(Path("secret.pdf"), pdf_bytes(user_password="secret"))
    assert "'secret.pdf'" in caught.value.message
    data = pdf_bytes()
    with pytest.raises(ParseError, match=re.escape("'half.pdf': it is not a readable PDF")):
        parse(Path("half.pdf"), data[: len(data) // 2])
    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    out = io.BytesIO()
    writer.write(out)
    with pytest.raises(ParseError, match=re.escape("'scan.pdf': no text could be extracted")):
        parse(Path("scan.pdf"), out.getvalue())
    with pytest.raises(ParseError, match=re.escape("missing.pdf")):
        parse(Path("/nonexistent/missing.pdf"))


def test_truncated_docx() -> None:
    data = (DOCS / "support_sla.docx").read_bytes()
    with pytest.raises(ParseError, match=re.escape("'cut.docx': it is not a readable .docx")):
        parse(Path("cut.docx"), data[: len(data) // 2])
