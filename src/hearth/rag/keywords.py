"""Keyword terms for Chinese and English text, the same for indexing and for queries.

:func:`terms` turns text into the lowercase terms a keyword index stores: jieba's search-mode
segmentation for Chinese (so "中华人民共和国" is findable as "中华", "人民", "共和国" and as a
whole), and word tokens for Latin text, keeping product codes and names such as ``hx-2040``,
``c++`` and ``node.js`` whole while also emitting their parts. Stopwords and punctuation are
dropped. The stores index ``" ".join(terms(chunk_text))`` and search for ``terms(query)``.
"""

from __future__ import annotations

import functools
import itertools
import logging
import re
import unicodedata
from collections.abc import Callable, Iterator

# CJK Unified Ideographs, Extension A and the compatibility block: the runs jieba segments.
_HAN = "\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
# A word is letters/digits (not Han) optionally joined by - . + # _ (hx-2040, node.js, 3.5),
# with a trailing + or # kept for c++ and c#.
_PIECES = re.compile(
    rf"(?P<han>[{_HAN}]+)|(?P<word>[^\W{_HAN}]+(?:[-.+#][^\W{_HAN}]+)*[+#]*)",
)
_JOINERS = re.compile(r"[-.+#_]+")

_EN = """a about after all also am an and any are as at be been being but by can could did do
    does each for from had has have he her him his how i if in into is it its just me my no
    nor not of on only or our over s she should so some such t than that the their them then
    there these they this those through to too under up us very was we were what when where
    which while who whom why will with would you your"""
_ZH = """的 了 是 在 和 与 及 或 就 都 而 也 还 又 被 把 让 给 对 从 向 于 以 之 其 这 那 我 你
    他 她 它 吗 呢 吧 啊 呀 哦 嗯 么 个 有 不 没 很 更 最 等 着 过 得 地 我们 你们 他们 她们
    它们 这个 那个 这些 那些 这里 那里 一个 什么 怎么 怎样 如何 为什么 哪 哪些 哪里 没有
    可以 需要 应该 请问 以及 或者 但是 因为 所以 如果 虽然 然后 还是 就是 已经 自己"""
STOPWORDS_EN = frozenset(_EN.split())
STOPWORDS_ZH = frozenset(_ZH.split())


def terms(text: str) -> list[str]:
    """The keyword terms of ``text`` in reading order, repeats kept (they count for BM25)."""
    # NFKC folds full-width letters and digits (ＨＸ－２０４０) into their ASCII forms.
    text = unicodedata.normalize("NFKC", text)
    out: list[str] = []
    for match in _PIECES.finditer(text):
        han, word = match.group("han"), match.group("word")
        if han:
            out.extend(_han_terms(han))
        else:
            out.extend(_word_terms(word.lower()))
    return out


def query_terms(text: str) -> list[str]:
    """:func:`terms` without repeats: what a keyword search for ``text`` looks for."""
    return list(dict.fromkeys(terms(text)))


def _word_terms(word: str) -> Iterator[str]:
    if word in STOPWORDS_EN:
        return
    yield word
    parts = [p for p in _JOINERS.split(word) if p]
    # The parts make "2040" find "hx-2040"; a single part (c++ -> c) would only add noise.
    if len(parts) > 1:
        yield from (p for p in parts if p not in STOPWORDS_EN)


def _han_terms(run: str) -> Iterator[str]:
    singles: list[str] = []
    for word in _segmenter()(run):
        if len(word) == 1 and word not in STOPWORDS_ZH:
            yield word
            singles.append(word)
            continue
        yield from _bigrams(singles)
        singles = []
        if word not in STOPWORDS_ZH:
            yield word
    yield from _bigrams(singles)


def _bigrams(singles: list[str]) -> Iterator[str]:
    # jieba splits words missing from its dictionary into single characters (年假 -> 年, 假);
    # the bigrams of such a stretch put the word back, and a query for it is split the same way.
    for left, right in itertools.pairwise(singles):
        yield left + right


@functools.cache
def _segmenter() -> Callable[[str], Iterator[str]]:
    # Imported on first use: loading jieba's dictionary takes about a second.
    import jieba

    jieba.setLogLevel(logging.WARNING)
    cut: Callable[[str], Iterator[str]] = jieba.cut_for_search
    return cut
