"""Streaming moderation: a listed word split across pieces at any point, with noise inside,
never leaves the filter unmasked, and with block the output stops before it; clean text
comes out unchanged and mostly before the end of the stream."""

from __future__ import annotations

import random
import time
from collections.abc import Iterable
from pathlib import Path

import pytest

from hearth.apps.moderation import (
    EXAMPLES,
    Matcher,
    StreamFilter,
    Word,
    load_lists,
    moderate,
    parse_list,
)
from hearth.errors import UserError


@pytest.fixture(scope="module")
def words() -> list[Word]:
    return load_lists(sorted(EXAMPLES), Path("/nonexistent"))


@pytest.fixture(scope="module")
def matcher(words: list[Word]) -> Matcher:
    return Matcher(words)


def stream(matcher: Matcher, pieces: Iterable[str], action: str) -> tuple[str, StreamFilter]:
    filt = StreamFilter(matcher, action)
    out = "".join(filt.feed(p) for p in pieces) + filt.flush()
    return out, filt


def with_noise(text: str, rng: random.Random) -> str:
    """The word with noise that keeps it a hit: symbols or invisible characters between
    every two characters, or a combining stroke through each (spaces only where the word
    has its own)."""
    noise = ["*", "\u200b", "🙂", "~", "-", "\ufeff"]
    if rng.random() < 0.3:
        return "".join(c + ("\u0336" if c != " " else "") for c in text)
    return rng.choice(noise).join(text)


def contexts(word: Word) -> tuple[str, str]:
    if word.text.isascii():
        return "Sure. Here it is: ", ", thanks for asking. "
    return "好的，这是你要的内容：", "。谢谢！"


def test_every_example_word_split_at_every_point(matcher: Matcher, words: list[Word]) -> None:
    rng = random.Random(1)
    for word in words:
        before, after = contexts(word)
        for body in (word.text, with_noise(word.text, rng)):
            text = before + body + after
            masked, hits, _ = moderate(matcher, text, "mask")
            hit = next(h for h in hits if h.word == word)
            assert hit.start == len(before) and hit.end == len(before) + len(body), text
            for cut in range(1, len(text)):
                out, filt = stream(matcher, [text[:cut], text[cut:]], "mask")
                if word.action == "block":
                    assert filt.blocked == hit and out == text[: hit.start], (text, cut)
                else:
                    assert out == (masked if word.action != "review" else text), (text, cut)
                    assert filt.hits == hits


def test_random_small_pieces_mask_and_block(matcher: Matcher, words: list[Word]) -> None:
    rng = random.Random(2)
    for word in words:
        before, after = contexts(word)
        for _ in range(4):
            text = before + with_noise(word.text, rng) + after + before
            pieces = split(text, rng)
            for action in ("mask", "block"):
                masked, hits, blocking = moderate(matcher, text, action)
                assert hits
                out, filt = stream(matcher, pieces, action)
                if blocking is None:
                    assert out == masked and filt.hits == hits and filt.blocked is None
                else:
                    assert out == text[: blocking.start] and filt.blocked == blocking


def split(text: str, rng: random.Random) -> list[str]:
    pieces = []
    i = 0
    while i < len(text):
        n = rng.randint(1, 3)
        pieces.append(text[i : i + n])
        i += n
    return pieces


def test_offsets_count_the_whole_stream(matcher: Matcher) -> None:
    text = "第一段很长。" * 2000 + "快来刷单吧，" + "over here: idiot!" + "后面。" * 10
    out, filt = stream(matcher, split(text, random.Random(3)), "mask")
    assert [(h.text, h.start) for h in filt.hits] == [
        ("刷单", text.index("刷单")),
        ("idiot", text.index("idiot")),
    ]
    assert out == moderate(matcher, text, "mask")[0]
    assert len(filt._text) < 6000  # released text does not pile up in the buffer


def test_after_a_block_nothing_more(matcher: Matcher) -> None:
    filt = StreamFilter(matcher, "mask")
    assert filt.feed("你好，代开") == "你好，"
    assert filt.feed("发票") == ""
    assert filt.feed("请联系我") == ""
    assert filt.blocked is not None and filt.blocked.text == "代开发票"
    assert filt.feed("more") == filt.flush() == ""
    assert filt.action(filt.blocked) == "block"


def test_hit_at_the_very_end_is_decided_by_flush(matcher: Matcher) -> None:
    filt = StreamFilter(matcher, "mask")
    assert filt.feed("you are an idiot") == "you are an "
    assert filt.flush() == "*****"
    filt = StreamFilter(matcher, "mask")
    assert filt.feed("you are an idiot") + filt.feed("ic") + filt.flush() == "you are an idiotic"
    assert filt.hits == []


CLEAN_EN = Path(str(EXAMPLES["ads"])).parents[1] / "corpus" / "en.txt"
CLEAN_ZH = CLEAN_EN.with_name("zh.txt")


@pytest.mark.parametrize("path", [CLEAN_EN, CLEAN_ZH], ids=["en", "zh"])
def test_clean_text_unchanged_and_mostly_released_early(matcher: Matcher, path: Path) -> None:
    text = path.read_text(encoding="utf-8")
    filt = StreamFilter(matcher, "block")
    released = ""
    worst_held = 0
    fed = 0
    for piece in split(text, random.Random(4)):
        released += filt.feed(piece)
        fed += len(piece)
        worst_held = max(worst_held, fed - len(released))
    assert len(released) >= 0.99 * len(text)
    assert worst_held <= 40  # never more than a listed phrase's length behind
    assert released + filt.flush() == text
    assert filt.hits == [] and filt.blocked is None


def test_review_is_reported_not_changed() -> None:
    m = Matcher(parse_list("t", "发票\treview\n刷单\n"))
    out, filt = stream(m, list("开发票吧，刷单吧"), "mask")
    assert out == "开发票吧，**吧"
    assert [(h.text, filt.action(h)) for h in filt.hits] == [("发票", "review"), ("刷单", "mask")]


def test_bad_default_action() -> None:
    with pytest.raises(UserError):
        StreamFilter(Matcher([]), "hide")


def test_empty_matcher_passes_everything() -> None:
    out, filt = stream(Matcher([]), ["a", "b"], "block")
    assert out == "ab" and filt.hits == []


def test_stream_agrees_with_whole_text_on_random_text() -> None:
    """Random words and text, noise of every kind, pieces of 1-3 characters: the stream
    gives what moderating the whole text gives, for mask and for block."""
    rng = random.Random(5)
    cjk, latin = "发票哈刷单加微信法轮功一二㍻⑩", "sexaclgＳ"
    noise = [" ", "*", "。", "，", "\n", "\u200b", "'", "🙂", "\u0336", ".", "-"]
    for _ in range(400):
        words = {
            "".join(rng.choice(cjk[:-2] if rng.random() < 0.5 else latin) for _ in range(n))
            for n in [rng.randint(1, 4) for _ in range(rng.randint(1, 6))]
        }
        actions = [None, None, "block", "review"]
        matcher = Matcher(Word(w, "", "t", rng.choice(actions)) for w in sorted(words))
        text = "".join(
            rng.choice(cjk + latin) if rng.random() < 0.7 else rng.choice(noise)
            for _ in range(rng.randint(1, 30))
        )
        for action in ("mask", "block"):
            masked, hits, blocking = moderate(matcher, text, action)
            out, filt = stream(matcher, split(text, rng), action)
            assert filt.blocked == blocking, (text, words)
            if blocking is None:
                assert out == masked and filt.hits == hits, (text, words)
            else:
                assert out == masked[: blocking.start], (text, words)


def test_held_text_is_bounded() -> None:
    """A model stuck on one character that starts a listed word: the filter keeps at most
    MAX_HOLD characters back, and each piece stays cheap."""
    from hearth.apps.moderation.stream import MAX_HOLD

    m = Matcher(parse_list("t", "哈X\n"))
    filt = StreamFilter(m, "mask")
    released = fed = 0
    start = time.perf_counter()
    for piece in ["哈", " "] * 1000:
        fed += len(piece)
        released += len(filt.feed(piece))
        assert fed - released <= MAX_HOLD
    assert time.perf_counter() - start < 2  # about 0.3 s: no piece looks back further
    assert released >= fed - MAX_HOLD
    filt = StreamFilter(m, "mask")
    out = "".join(filt.feed(p) for p in ["哈"] * 10 + ["X"]) + filt.flush()
    assert out == "*" * 11  # within the bound, the whole run belongs to the hit
