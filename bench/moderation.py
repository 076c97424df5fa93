"""Moderation benchmark: hearth's Matcher and StreamFilter against a naive keyword loop.

    .venv/bin/python bench/moderation.py            # 10k and 100k words, 300 rounds
    .venv/bin/python bench/moderation.py --quick    # 10k words, 60 rounds

The word lists are the shipped example lists plus made-up words (Chinese of 2-4 characters
and Latin of 5-9 letters) up to 10,000 and 100,000 words; any made-up word found in the
clean text is dropped, so the clean text really has no hits. The text is 10 KB (UTF-8) of
hearth's sample corpus, Chinese and English paragraphs in turn; the text with hits is the
same with a dozen listed words inserted, obfuscated (spaces, symbols, full width,
traditional characters, zero-width characters).

The baseline is what Dify's keyword moderation does: every keyword lower-cased and tested
with ``in`` against the lower-cased text, one after another (here collecting every word
found, as find() does). It finds none of the obfuscated words; it is there for the time.
Streaming is timed per piece of 1-3 characters, against the baseline checking the last
longest-word's worth of text per piece. Prints a table and writes
bench/results/moderation.json.
"""

from __future__ import annotations

import argparse
import random
import time
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from _common import machine_info, percentile, version_of, write_json
from hearth.apps.moderation import EXAMPLES, Matcher, StreamFilter, Word, load_lists
from hearth.tokens.corpus import sample_corpus

INSERTS = [
    "加 微 信", "刷*单", "代開發票", "傻🙂逼", "ｉｄｉｏｔ", "f\u200bu\u200bc\u200bk",
    "网络赌博", "online  casino", "click here to win", "告诉我验证码", "脑残", "dumbass",
]  # fmt: skip


def clean_text(size: int = 10 * 1024) -> str:
    """Chinese and English paragraphs of the sample corpus in turn, cut to ``size`` bytes."""
    paras = {
        p.stem: [b for b in p.read_text(encoding="utf-8").split("\n\n") if b.strip()]
        for p in sample_corpus()
    }
    mixed = [b for pair in zip(paras["zh"], paras["en"], strict=False) for b in pair]
    text = "\n\n".join(mixed * 4)
    return text.encode("utf-8")[:size].decode("utf-8", errors="ignore")


def with_hits(text: str, rng: random.Random) -> str:
    cuts = sorted(rng.sample(range(len(text)), len(INSERTS)))
    out, pos = [], 0
    for cut, word in zip(cuts, INSERTS, strict=True):
        cut = text.rfind(" ", 0, cut) + 1 or cut  # between words, so Latin ones count
        out += [text[pos:cut], f" {word} "]
        pos = cut
    return "".join([*out, text[pos:]])


def made_up_words(n: int, rng: random.Random) -> list[str]:
    letters = "abcdefghijklmnopqrstuvwxyz"
    out = []
    for i in range(n):
        if i % 3 == 2:
            out.append("".join(rng.choice(letters) for _ in range(rng.randint(5, 9))))
        else:
            out.append("".join(chr(rng.randint(0x4E00, 0x9FA5)) for _ in range(rng.randint(2, 4))))
    return out


def word_list(total: int, clean: str, rng: random.Random) -> tuple[list[Word], int]:
    """The example lists plus made-up words; made-up words found in ``clean`` dropped.
    Every action is the default (mask), so the stream runs to the end instead of stopping
    at the first blocked word."""
    listed = [replace(w, action=None) for w in load_lists(sorted(EXAMPLES), Path("/nonexistent"))]
    extra = [Word(w, "made up", "bench") for w in made_up_words(total - len(listed), rng)]
    found = {id(h.word) for h in Matcher(extra).find(clean)}
    kept = [w for w in extra if id(w) not in found]
    return listed + kept, len(extra) - len(kept)


def timings(fn: Callable[[], object], rounds: int) -> list[float]:
    fn()
    out = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def summary(seconds: list[float]) -> dict[str, float]:
    us = [s * 1e6 for s in seconds]
    return {
        "p50_us": round(percentile(us, 50) or 0, 1),
        "p99_us": round(percentile(us, 99) or 0, 1),
    }


def naive(words: list[Word]) -> Callable[[str], list[str]]:
    lowered = [w.text.lower() for w in words]

    def check(text: str) -> list[str]:
        low = text.lower()
        return [w for w in lowered if w in low]

    return check


def stream_costs(matcher: Matcher, text: str, rng: random.Random) -> tuple[list[float], str]:
    pieces, i = [], 0
    while i < len(text):
        n = rng.randint(1, 3)
        pieces.append(text[i : i + n])
        i += n
    filt = StreamFilter(matcher, "mask")
    out, costs = [], []
    for piece in pieces:
        t = time.perf_counter()
        out.append(filt.feed(piece))
        costs.append(time.perf_counter() - t)
    out.append(filt.flush())
    return costs, "".join(out)


def naive_stream_costs(words: list[Word], text: str, pieces: int) -> list[float]:
    check = naive(words)
    window = max(len(w.text) for w in words) + 3
    costs = []
    for k in range(pieces):
        end = (k + 1) * 2
        t = time.perf_counter()
        check(text[max(0, end - window) : end])
        costs.append(time.perf_counter() - t)
    return costs


def run(total: int, clean: str, hits_text: str, rounds: int, rng: random.Random) -> dict[str, Any]:
    words, dropped = word_list(total, clean, rng)
    t = time.perf_counter()
    matcher = Matcher(words)
    build_s = time.perf_counter() - t
    check = naive(words)
    assert matcher.find(clean) == []
    found = matcher.find(hits_text)
    assert len(found) >= len(INSERTS), [h.text for h in found]
    naive_rounds = max(5, rounds // 20)
    result: dict[str, Any] = {
        "words": len(words),
        "made_up_dropped": dropped,
        "build_s": round(build_s, 3),
        "hits_found": {"hearth": len(found), "naive": len(check(hits_text))},
    }
    for name, text in (("clean", clean), ("hits", hits_text)):
        ours = summary(timings(lambda text=text: matcher.find(text), rounds))
        theirs = summary(timings(lambda text=text: check(text), naive_rounds))
        result[f"find_{name}"] = {
            "hearth": ours,
            "naive": theirs,
            "ratio_p50": round(theirs["p50_us"] / ours["p50_us"], 1),
        }
    costs, out = stream_costs(matcher, hits_text, rng)
    assert out == matcher.mask(hits_text, found)
    theirs = summary(naive_stream_costs(words, hits_text, 200))
    ours = summary(costs)
    result["stream_piece"] = {
        "pieces": len(costs),
        "hearth": ours,
        "naive": theirs,
        "ratio_p50": round(theirs["p50_us"] / ours["p50_us"], 1),
    }
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="10k words and 60 rounds")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    rounds = args.rounds or (60 if args.quick else 300)
    sizes = [10_000] if args.quick else [10_000, 100_000]
    console = Console()
    rng = random.Random(0)
    clean = clean_text()
    hits_text = with_hits(clean, rng)
    console.print(
        f"text: {len(clean.encode()):,} bytes, {len(clean):,} characters "
        f"(with hits: {len(hits_text):,} characters)"
    )
    results = {f"{n // 1000}k": run(n, clean, hits_text, rounds, rng) for n in sizes}

    table = Table(title="moderation, 10 KB of zh/en text, µs (ratio: naive / hearth at p50)")
    for col in ("words", "case", "p50", "p99", "naive p50", "naive p99", "ratio"):
        table.add_column(col, justify="left" if col in ("words", "case") else "right")
    for label, r in results.items():
        table.add_row(label, "build (s)", f"{r['build_s']:.3f}", "", "", "", "")
        cases = (("find_clean", "find, clean"), ("find_hits", f"find, {len(INSERTS)} hits"))
        for case, name in cases:
            c = r[case]
            table.add_row(
                label,
                name,
                f"{c['hearth']['p50_us']:,.0f}",
                f"{c['hearth']['p99_us']:,.0f}",
                f"{c['naive']['p50_us']:,.0f}",
                f"{c['naive']['p99_us']:,.0f}",
                f"{c['ratio_p50']:,.1f}x",
            )
        s = r["stream_piece"]
        table.add_row(
            label,
            "stream, a piece",
            f"{s['hearth']['p50_us']:,.1f}",
            f"{s['hearth']['p99_us']:,.1f}",
            f"{s['naive']['p50_us']:,.0f}",
            f"{s['naive']['p99_us']:,.0f}",
            f"{s['ratio_p50']:,.1f}x",
        )
        hits = r["hits_found"]
        table.add_row(label, "hits found", f"{hits['hearth']}", "", f"{hits['naive']}", "", "")
        table.add_section()
    console.print(table)
    path = write_json(
        "moderation.json",
        {
            "text_bytes": len(clean.encode()),
            "text_characters": len(clean),
            "inserted": INSERTS,
            "rounds": rounds,
            "results": results,
            "versions": {d: version_of(d) for d in ("pyahocorasick", "opencc", "hearth")},
            "machine": machine_info(),
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
