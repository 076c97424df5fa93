"""`hearth tokens ...` through typer's CliRunner, errors handled as cli/main.py main() does."""

from __future__ import annotations

import asyncio
import base64
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from hearth.cli.tokens import app
from hearth.config import load_settings
from hearth.engines.base import count_chat_tokens
from hearth.engines.fake import FakeEngine
from hearth.errors import HearthError
from hearth.tokens.corpus import sample_corpus
from hearth.types import Message
from tests.conftest import FAKE_MODELS

RARE = "𠀋"
MESSAGES = [
    {"role": "system", "content": "You are terse."},
    {
        "role": "user",
        "content": [{"type": "text", "text": "Hello, "}, {"type": "text", "text": "你好!"}],
    },
]


@dataclass
class Outcome:
    code: int
    out: str
    err: str

    def json(self) -> Any:
        assert self.code == 0, self.err
        return json.loads(self.out)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    (tmp_path / "config.toml").write_text(FAKE_MODELS, encoding="utf-8")
    return tmp_path


def run(home: Path, *args: str, stdin: str | None = None) -> Outcome:
    result = CliRunner().invoke(
        app, list(args), input=stdin, env={"HEARTH_HOME": str(home), "COLUMNS": "200"}
    )
    exc = result.exception
    if isinstance(exc, HearthError):  # main() prints the message and exits 2 (or 1)
        return Outcome(2 if exc.status < 500 else 1, result.stdout, f"error: {exc.message}")
    if exc is not None and not isinstance(exc, SystemExit):
        raise exc
    return Outcome(result.exit_code, result.stdout, result.stderr)


def test_count_text_file_and_stdin(home: Path, tmp_path: Path) -> None:
    assert run(home, "count", "-e", "cl100k_base", "hello world").out.strip() == "2"
    got = run(home, "count", "--tokenizer", "cl100k_base", "hello world", "--json").json()
    assert got == {"tokenizer": "cl100k_base", "kind": "tiktoken", "tokens": 2, "chat": False}
    text = tmp_path / "t.txt"
    text.write_text("hello world", encoding="utf-8")
    assert (
        run(home, "count", "-e", "cl100k_base", "--file", str(text), "--json").json()["tokens"] == 2
    )
    assert run(home, "count", "-e", "cl100k_base", "-", stdin="hello world").out.strip() == "2"


def test_count_with_a_registered_model_and_its_chat_template(home: Path, tmp_path: Path) -> None:
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps({"messages": MESSAGES}), encoding="utf-8")
    got = run(home, "count", "--model", "fake", "--chat", str(chat), "--json").json()
    settings = load_settings(home=home, env={})
    engine = FakeEngine(settings.models["fake"])
    messages = [Message("system", "You are terse."), Message("user", "Hello, 你好!")]
    assert got["tokens"] == asyncio.run(count_chat_tokens(engine, messages))
    assert got == {"tokenizer": "fake", "kind": "model", "tokens": got["tokens"], "chat": True}
    plain = run(home, "count", "-t", "fake", "Hello, 你好!", "--json").json()
    assert 0 < plain["tokens"] < got["tokens"]  # the template adds its markers


def test_inspect_json_and_table(home: Path) -> None:
    got = run(home, "inspect", "-e", "cl100k_base", f"a{RARE}", "--json").json()
    assert got["count"] == len(got["tokens"])
    first = got["tokens"][0]
    assert set(first) >= {"position", "id", "piece", "bytes", "hex", "partial", "text"}
    assert any(t["partial"] for t in got["tokens"])
    assert "".join(t["text"] for t in got["tokens"]) == f"a{RARE}"
    table = run(home, "inspect", "-e", "cl100k_base", f"hi {RARE}")
    assert table.code == 0
    assert "◐ part of a character" in table.out and "f0" in table.out


def test_compare_with_chart(home: Path, tmp_path: Path) -> None:
    png = tmp_path / "cmp.png"
    got = run(
        home, "compare", "-t", "cl100k_base", "-t", "o200k_base", "--reference", "o200k_base",
        "--chart", str(png), "--json",
    ).json()  # fmt: skip
    assert got["reference"] == "o200k_base"
    assert [t["name"] for t in got["tokenizers"]] == ["cl100k_base", "o200k_base"]
    rows = {(r["tokenizer"], r["part"]): r for r in got["rows"]}
    assert rows["o200k_base", "chinese"]["relative"] == 1.0
    assert rows["cl100k_base", "chinese"]["relative"] > 1.0
    assert png.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    page = Path(got["html"]).read_text(encoding="utf-8")
    assert "<table>" in page and base64.b64encode(png.read_bytes()).decode() in page
    explicit = run(
        home, "compare", "-m", "fake", "-e", "cl100k_base", "-r", "cl100k_base", "--json"
    )
    kinds = [(t["name"], t["kind"], t["vocab_size"]) for t in explicit.json()["tokenizers"]]
    assert kinds == [("fake", "model", None), ("cl100k_base", "tiktoken", 100277)]
    table = run(home, "compare", "-t", "cl100k_base", str(Path(__file__)))
    assert table.code == 0 and "code" in table.out and "1.000" in table.out


def test_train_extend_and_inspect_the_result(home: Path, tmp_path: Path) -> None:
    corpus = {p.name: str(p) for p in sample_corpus()}
    base = run(
        home, "train", corpus["en.txt"], corpus["code.txt"], "-o", str(tmp_path / "base"),
        "--vocab-size", "700", "--json",
    ).json()  # fmt: skip
    assert base["vocab_size"] == 700 and Path(base["model"]).is_file()
    zh = corpus["zh.txt"]
    new = run(
        home, "train", zh, "-o", str(tmp_path / "zh"), "--vocab-size", "540",
        "--type", "unigram", "--no-byte-fallback", "--split-digits", "--json",
    ).json()  # fmt: skip
    assert (new["model_type"], new["byte_fallback"], new["split_digits"]) == (
        "unigram",
        False,
        True,
    )
    got = run(
        home, "extend", base["model"], new["model"], "-o", str(tmp_path / "merged"), "--json"
    ).json()
    assert got["vocab_size"] == got["base_vocab_size"] + got["added"] and got["added"] > 0
    zh_rows = [r for r in got["compression"] if r["part"] == "chinese"]
    assert zh_rows[1]["relative"] < 1.0
    counted = run(home, "count", "-t", got["output"], "河边的小镇", "--json").json()
    assert counted["kind"] == "sentencepiece"


def test_cost_of_text_and_chat(home: Path, tmp_path: Path) -> None:
    got = run(home, "cost", "-m", "fake", "Hello there", "--output-tokens", "100", "--json").json()
    assert got["price_input_per_1k"] == 0.5 and got["price_output_per_1k"] == 1.5
    assert got["output_cost"] == pytest.approx(0.15)
    assert got["total_cost"] == pytest.approx(got["input_tokens"] * 0.5 / 1000 + 0.15)
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(MESSAGES), encoding="utf-8")
    priced = run(home, "cost", "-m", "fake", "--chat", str(chat), "--json").json()
    counted = run(home, "count", "-m", "fake", "--chat", str(chat), "--json").json()
    assert priced["input_tokens"] == counted["tokens"]
    assert "total" in run(home, "cost", "-m", "fake", "hi").out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["count", "-e", "cl999k", "hi"], "unknown tiktoken encoding 'cl999k'"),
        (["count", "-e", "cl100k_base", "--file", "/no/such/file.txt"], "does not exist"),
        (["count", "-e", "cl100k_base", ""], "input is empty"),
        (["count", "-e", "cl100k_base", "bad \udcff byte"], "not valid UTF-8"),
        (["count", "-e", "cl100k_base"], "give TEXT, --file FILE"),
        (["count", "-e", "cl100k_base", "-m", "fake", "hi"], "give one of --tokenizer"),
        (["count", "-t", "/no/such/tokenizer.json", "hi"], "is not a registered model"),
        (["count", "-m", "nope", "hi"], "The model 'nope' does not exist"),
        (["count", "-e", "cl100k_base", "--chat", "{chat}"], "chat template"),
        (["count", "-m", "fake", "--chat", "/no/chat.json"], "does not exist"),
        (
            ["count", "-m", "fake", "--chat", "{bad_chat}"],
            "message 1 has role 'wizard'; use one of system, developer",
        ),
        (["count", "-m", "fake", "--chat", "{chat}", "hi"], "either --chat or a text"),
        (["inspect", "-e", "cl100k_base", "-", "--json"], "input is empty"),
        (["compare", "/no/corpus"], "give tokenizers to compare"),
        (["compare", "-t", "cl100k_base", "/no/corpus"], "does not exist"),
        (["compare", "-t", "cl100k_base", "-r", "gpt2"], "--reference gpt2 is not one of"),
        (["train", "-o", "{tmp}/x", "--vocab-size", "100000"], "too large for this corpus"),
        (["train", "-o", "{tmp}/x", "--type", "wordpiece"], "--type must be one of"),
        (["extend", "/no/base.model", "/no/new.model", "-o", "{tmp}/x"], "NEW must be"),
        (["cost", "-m", "fake", "hi", "--output-tokens", "-1"], "--output-tokens must be 0"),
        (["cost", "-m", "nope", "hi"], "The model 'nope' does not exist"),
    ],
)
def test_bad_inputs_fail_cleanly(home: Path, tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "chat.json").write_text(json.dumps(MESSAGES), encoding="utf-8")
    (tmp_path / "bad.json").write_text('[{"role": "wizard", "content": "hi"}]', encoding="utf-8")
    names = {"{tmp}": str(tmp_path), "{chat}": str(tmp_path / "chat.json")}
    names["{bad_chat}"] = str(tmp_path / "bad.json")
    for key, value in names.items():
        args = [a.replace(key, value) for a in args]
    got = run(home, *args, stdin="")
    assert got.code == 2
    assert re.search(message, got.err), got.err
    assert "Traceback" not in got.err + got.out


def test_chat_file_is_read_as_the_server_reads_messages(tmp_path: Path) -> None:
    from hearth.tokens.messages import read_messages

    path = tmp_path / "chat.json"
    path.write_text(
        json.dumps(
            {
                "model": "ignored",
                "messages": [
                    {"role": "developer", "content": "Be brief."},
                    {
                        "role": "user",
                        "content": [{"type": "text", "text": "a"}, {"type": "text", "text": "b"}],
                    },
                    {"role": "assistant", "content": None, "name": "bot"},
                ],
            }
        ),
        encoding="utf-8",
    )
    assert read_messages(path) == [
        Message("system", "Be brief."),
        Message("user", "ab"),
        Message("assistant", "", name="bot"),
    ]
