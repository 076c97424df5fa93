"""The model source on the real bundled model, and agreement with the server's usage."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from hearth.cli.tokens import app
from hearth.tokens import describe
from hearth.tokens.model import ModelTokenizer, open_model
from tests.conftest import make_settings, serve

pytestmark = pytest.mark.slow
MODEL = "smollm2-135m-instruct"
# llama.cpp's tokenizer for this model drops some C0 controls and unassigned code points
# (measured: U+0004, U+0013, U+001D, ... and category Cn), so the round trip is exact
# for every other character, which is what people type.
TYPED = st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cn", "Cs")), max_size=60)


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture(scope="module")
def smollm(home: Path) -> Iterator[ModelTokenizer]:
    tok = open_model(MODEL, make_settings(home, ""))
    yield tok
    tok.close()


@settings(max_examples=150, deadline=None)
@given(text=TYPED)
def test_model_round_trip_and_exact_bytes(smollm: ModelTokenizer, text: str) -> None:
    pieces = smollm.tokenize(text)
    assert smollm.decode([p.id for p in pieces]) == text
    assert b"".join(p.piece for p in pieces) == text.encode()
    assert smollm.count(text) == len(pieces)
    assert all(smollm.piece_bytes(p.id) == p.piece for p in pieces)


def test_model_marks_split_characters(smollm: ModelTokenizer) -> None:
    infos = describe(smollm.tokenize("hi 𠀋"))
    partial = [i for i in infos if i.partial]
    assert b"".join(i.bytes for i in partial) == "𠀋".encode() and len(partial) > 1
    assert "".join(i.text for i in infos) == "hi 𠀋"


def test_control_tokens_are_read_as_the_server_reads_them(smollm: ModelTokenizer) -> None:
    assert smollm.encode("<|im_start|>")[0] == 1  # one control token, as /tokenize does
    assert smollm.kind == "model" and smollm.vocab_size == 49152


def test_count_chat_equals_server_usage(home: Path, tmp_path: Path) -> None:
    messages = [
        {"role": "system", "content": "You answer in one word."},
        {"role": "user", "content": "What colour is the sky? 天空是什么颜色？"},
        {"role": "assistant", "content": "Blue."},
        {"role": "user", "content": [{"type": "text", "text": "And at night?"}]},
    ]
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(messages, ensure_ascii=False), encoding="utf-8")
    settings_ = make_settings(home, "").with_served([MODEL])
    with serve(settings_) as live:
        resp = httpx.post(
            live.base_url + "/chat/completions",
            json={"model": MODEL, "messages": messages, "max_tokens": 1},
            timeout=120,
        )
        resp.raise_for_status()
        usage = resp.json()["usage"]["prompt_tokens"]
    result = CliRunner().invoke(
        app, ["count", "--model", MODEL, "--chat", str(chat), "--json"],
        env={"HEARTH_HOME": str(home)},
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["tokens"] == usage
    text = CliRunner().invoke(app, ["count", "-t", MODEL, "hello"], env={"HEARTH_HOME": str(home)})
    assert 0 < int(text.stdout) < usage
