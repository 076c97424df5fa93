"""Token counting benchmark: hearth's ``count`` against calling the tokenizer library directly.

    .venv/bin/python bench/tokens.py            # 10 MB corpus, 9 rounds
    .venv/bin/python bench/tokens.py --quick    # 1 MB, 5 rounds

The corpus is hearth's sample corpus (Chinese, English, code), its blocks shuffled and
repeated to the target size, so every tokenizer sees the same mixed text. Two sources:
tiktoken cl100k_base, and a Hugging Face byte-level BPE tokenizer.json trained here on the
sample corpus. Each round times hearth and the library back to back on the same string
(alternating which goes first); the goal is a median per-round ratio of hearth <= 1.1x.
Prints a table and writes bench/results/tokens.json.
"""

from __future__ import annotations

import argparse
import random
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

from _common import machine_info, version_of, write_json
from hearth.tokens import open_tokenizer
from hearth.tokens.corpus import lines, load_corpus, sample_corpus

GOAL = 1.1


def mixed_corpus(size: int, seed: int = 0) -> str:
    """Blocks of the sample corpus, shuffled and repeated until ``size`` bytes."""
    blocks = [b for s in load_corpus() for b in s.text.split("\n\n") if b.strip()]
    rng = random.Random(seed)
    out: list[str] = []
    total = 0
    while total < size:
        rng.shuffle(blocks)
        for block in blocks:
            out.append(block)
            total += len(block.encode()) + 2
            if total >= size:
                break
    return "\n\n".join(out)


def train_hf_tokenizer(folder: Path, vocab_size: int = 8000) -> Path:
    """A GPT-2-style byte-level BPE trained on the sample corpus, saved as tokenizer.json."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=["<|endoftext|>"],
        show_progress=False,
    )
    tok.train_from_iterator(lines(sample_corpus()), trainer)
    path = folder / "tokenizer.json"
    tok.save(str(path))
    return path


def race(
    hearth: Callable[[str], int], library: Callable[[str], int], text: str, rounds: int
) -> dict[str, Any]:
    """Paired rounds: each round times both on the same string, alternating which goes
    first, and the ratio is the median of the per-round ratios. Pairing cancels most of the
    drift that other processes on a shared machine cause; min times are reported too."""
    if hearth(text) != library(text):  # also the warm-up
        raise SystemExit("hearth and the library disagree on the count")
    times: dict[str, list[float]] = {"hearth": [], "library": []}
    for i in range(rounds):
        order = [("hearth", hearth), ("library", library)]
        for name, fn in order if i % 2 == 0 else order[::-1]:
            start = time.perf_counter()
            fn(text)
            times[name].append(time.perf_counter() - start)
    ours, theirs = times["hearth"], times["library"]
    ratio = statistics.median(h / lib for h, lib in zip(ours, theirs, strict=True))
    return {
        "tokens": hearth(text),
        "hearth_median_s": round(statistics.median(ours), 4),
        "library_median_s": round(statistics.median(theirs), 4),
        "hearth_min_s": round(min(ours), 4),
        "library_min_s": round(min(theirs), 4),
        "ratio": round(ratio, 3),
        "hearth_all_s": [round(t, 4) for t in ours],
        "library_all_s": [round(t, 4) for t in theirs],
        "goal_met": ratio <= GOAL,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="1 MB and 5 rounds")
    parser.add_argument("--mb", type=float, default=None, help="corpus size in MB")
    parser.add_argument("--rounds", type=int, default=None)
    args = parser.parse_args()
    size = int((args.mb or (1 if args.quick else 10)) * 1_000_000)
    rounds = args.rounds or (5 if args.quick else 9)
    console = Console()
    text = mixed_corpus(size)
    console.print(f"corpus: {len(text.encode()) / 1e6:.1f} MB, {len(text):,} characters")

    import tiktoken
    from tokenizers import Tokenizer

    results: dict[str, dict[str, Any]] = {}
    ours = open_tokenizer("cl100k_base")  # seeds tiktoken's cache, so this is offline too
    enc = tiktoken.get_encoding("cl100k_base")
    results["tiktoken cl100k_base"] = race(
        ours.count, lambda t: len(enc.encode_ordinary(t)), text, rounds
    )
    results["tiktoken cl100k_base encode()"] = race(
        ours.count, lambda t: len(enc.encode(t)), text, rounds
    )
    with tempfile.TemporaryDirectory() as tmp:
        path = train_hf_tokenizer(Path(tmp))
        ours_hf = open_tokenizer(str(path))
        lib = Tokenizer.from_file(str(path))
        results["huggingface byte-level BPE 8k"] = race(
            ours_hf.count,
            lambda t: len(lib.encode(t, add_special_tokens=False)),
            text,
            rounds,
        )

    table = Table(title=f"token count, {len(text.encode()) / 1e6:.1f} MB mixed corpus")
    for col in ("source", "tokens", "hearth s", "library s", "min ratio", "ratio", f"<= {GOAL}x"):
        table.add_column(col, justify="left" if col == "source" else "right")
    for name, r in results.items():
        ok = "[green]yes[/]" if r["goal_met"] else "[red]no[/]"
        table.add_row(
            name,
            f"{r['tokens']:,}",
            f"{r['hearth_median_s']:.3f}",
            f"{r['library_median_s']:.3f}",
            f"{r['hearth_min_s'] / r['library_min_s']:.3f}",
            f"{r['ratio']:.3f}",
            ok,
        )
    console.print(table)
    path = write_json(
        "tokens.json",
        {
            "corpus_bytes": len(text.encode()),
            "corpus_characters": len(text),
            "rounds": rounds,
            "goal_ratio": GOAL,
            "results": results,
            "versions": {d: version_of(d) for d in ("tiktoken", "tokenizers", "hearth")},
            "machine": machine_info(),
        },
    )
    console.print(f"wrote {path}")


if __name__ == "__main__":
    main()
