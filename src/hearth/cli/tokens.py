"""``hearth tokens``: count, inspect, compare, train, extend and price tokens."""

from __future__ import annotations

import json
import sys
from contextlib import ExitStack, closing
from pathlib import Path
from typing import Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table
from rich.text import Text

from hearth.config import load_settings
from hearth.errors import ModelNotFound, UserError
from hearth.tokens import Tokenizer, describe, open_tokenizer
from hearth.tokens.corpus import load_corpus, read_text
from hearth.tokens.messages import read_messages
from hearth.types import Message, Usage

app = typer.Typer(
    help="Count, inspect, compare and train tokenizers. A tokenizer is a registered model "
    "(its own tokenizer, as the server counts), a tiktoken encoding, a Hugging Face "
    "tokenizer.json (or its directory) or a SentencePiece .model.",
    no_args_is_help=True,
)
console = Console()

_JSON = typer.Option(False, "--json", help="Print JSON.")
_TOKENIZER = typer.Option(
    None, "--tokenizer", "-t", help="A registered model, a tiktoken encoding, or a path."
)
_MODEL = typer.Option(None, "--model", "-m", help="A registered model (default: the default).")
_ENCODING = typer.Option(None, "--encoding", "-e", help="A tiktoken encoding, e.g. cl100k_base.")
_TEXT = typer.Argument(None, help="The text; `-` reads standard input.")
_FILE = typer.Option(None, "--file", "-f", help="Read the text from this file.")
_CHAT = typer.Option(
    None, "--chat", help='A JSON file: a list of {"role", "content"} or {"messages": [...]}.'
)
_COLOURS = ("on #264653", "on #2a6f62", "on #6b4e16", "on #5c2a3e", "on #3d3a6b")


def _emit(data: dict[str, Any]) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2))


def _open(tokenizer: str | None, model: str | None, encoding: str | None) -> Tokenizer:
    named = (("model", model), ("encoding", encoding), (None, tokenizer))
    given: list[tuple[str | None, str]] = [(k, v) for k, v in named if v is not None]
    if len(given) > 1:
        raise UserError("give one of --tokenizer, --model or --encoding")
    if given and given[0][0] == "encoding":
        return open_tokenizer(given[0][1], kind="encoding")  # needs no config
    settings = load_settings()
    kind, ref = given[0] if given else ("model", settings.default_model)
    return open_tokenizer(ref, settings, kind)


def _text(text: str | None, file: Path | None) -> str:
    if text is not None and file is not None:
        raise UserError("give either TEXT or --file, not both")
    if text == "-":
        data = sys.stdin.read()
    elif file is not None:
        if not file.is_file():
            raise UserError(f"{file} does not exist")
        data = read_text(file)
    elif text is not None:
        data = text
    else:
        raise UserError("give TEXT, --file FILE, or `-` to read standard input")
    if not data:
        raise UserError("the input is empty: there is nothing to count")
    try:
        data.encode()  # argv arrives with undecodable bytes as lone surrogates
    except UnicodeEncodeError as e:
        raise UserError("the input is not valid UTF-8 text") from e
    return data


def _input(text: str | None, file: Path | None, chat: Path | None) -> str | list[Message]:
    """Read and check the input before any tokenizer (maybe a model) is started."""
    if chat is None:
        return _text(text, file)
    if text is not None or file is not None:
        raise UserError("give either --chat or a text, not both")
    return read_messages(chat)


def _count(tok: Tokenizer, given: str | list[Message]) -> int:
    if isinstance(given, str):
        return tok.count(given)
    from hearth.tokens.model import ModelTokenizer

    if not isinstance(tok, ModelTokenizer):
        raise UserError(
            f"--chat counts with a model's chat template; {tok.name} is a {tok.kind} tokenizer "
            "without one. Use --model NAME."
        )
    return tok.count_chat(given)


@app.command()
def count(
    text: str | None = _TEXT,
    file: Path | None = _FILE,
    chat: Path | None = _CHAT,
    tokenizer: str | None = _TOKENIZER,
    model: str | None = _MODEL,
    encoding: str | None = _ENCODING,
    as_json: bool = _JSON,
) -> None:
    """Count the tokens of a text, or the prompt tokens of a chat request (--chat)."""
    given = _input(text, file, chat)
    with closing(_open(tokenizer, model, encoding)) as tok:
        tokens = _count(tok, given)
        name, kind = tok.name, tok.kind
    if as_json:
        _emit({"tokenizer": name, "kind": kind, "tokens": tokens, "chat": chat is not None})
    else:
        typer.echo(tokens)


@app.command()
def inspect(
    text: str | None = _TEXT,
    file: Path | None = _FILE,
    tokenizer: str | None = _TOKENIZER,
    model: str | None = _MODEL,
    encoding: str | None = _ENCODING,
    as_json: bool = _JSON,
) -> None:
    """Show every token: position, id, piece, raw bytes, and split characters."""
    data = _text(text, file)
    with closing(_open(tokenizer, model, encoding)) as tok:
        infos = describe(tok.tokenize(data))
        name, kind = tok.name, tok.kind
    if as_json:
        _emit(
            {
                "tokenizer": name,
                "kind": kind,
                "count": len(infos),
                "tokens": [i.as_dict() for i in infos],
            }
        )
        return
    coloured = Text()
    for i in infos:
        style = _COLOURS[i.position % len(_COLOURS)] + (" underline" if i.partial else "")
        coloured.append(i.text, style=style)
    console.print(coloured)
    table = Table(title=f"{len(infos)} tokens ({name})")
    for col in ("#", "id", "piece", "bytes", ""):
        table.add_column(col, justify="right" if col in ("#", "id") else "left")
    for i in infos:
        mark = "◐ part of a character" if i.partial else ""
        table.add_row(str(i.position), str(i.id), _visible(i.piece), i.hex, mark)
    console.print(table)


def _visible(piece: str) -> Text:
    shown = piece.replace(" ", "␣").replace("\n", "\\n").replace("\t", "\\t").replace("\r", "\\r")
    return Text(shown)


@app.command()
def compare(
    corpus: list[Path] | None = typer.Argument(
        None, help="Files or directories; default: hearth's sample corpus."
    ),
    tokenizers: list[str] = typer.Option(
        [], "--tokenizer", "-t", help="Repeat: a registered model, a tiktoken encoding or a path."
    ),
    models: list[str] = typer.Option([], "--model", "-m", help="Repeat: a registered model."),
    encodings: list[str] = typer.Option([], "--encoding", "-e", help="Repeat: an encoding."),
    reference: str | None = typer.Option(
        None, "--reference", "-r", help="Measure against this one (default: the first)."
    ),
    chart: Path | None = typer.Option(
        None, "--chart", help="Write a bar chart (PNG) and an HTML page beside it."
    ),
    as_json: bool = _JSON,
) -> None:
    """Tokens, characters per token and relative size per part of a corpus."""
    from hearth.tokens.compare import compare as run_compare
    from hearth.tokens.compare import reference_index, unique_names

    refs = [(None, t) for t in tokenizers] + [("model", m) for m in models]
    refs += [("encoding", e) for e in encodings]
    if not refs:
        raise UserError("give tokenizers to compare with --tokenizer, e.g. -t cl100k_base")
    sections = load_corpus(corpus or [])
    settings = load_settings()
    with ExitStack() as stack:
        toks = [stack.enter_context(closing(open_tokenizer(r, settings, k))) for k, r in refs]
        names = unique_names(toks)
        ref = reference_index([r for _, r in refs], names, reference)
        rows = run_compare(toks, sections, ref)
        vocab = {n: t.vocab_size for n, t in zip(names, toks, strict=True)}
        kinds = {n: t.kind for n, t in zip(names, toks, strict=True)}
    page = None
    if chart is not None:
        from hearth.tokens.report import write_chart

        page = write_chart(rows, chart, reference=names[ref])
    if as_json:
        about = [{"name": n, "kind": kinds[n], "vocab_size": vocab[n]} for n in names]
        paths = {"chart": chart, "html": page}
        _emit(
            {"reference": names[ref], "tokenizers": about, "sections": len(sections)}
            | {"rows": [r.as_dict() for r in rows]}
            | {k: None if v is None else str(v) for k, v in paths.items()}
        )
        return
    table = Table(title=f"Tokens per part (relative to {names[ref]})")
    for col in (
        "part",
        "tokenizer",
        "vocab",
        "tokens",
        "chars",
        "bytes",
        "chars/token",
        "relative",
    ):
        table.add_column(col, justify="left" if col in ("part", "tokenizer") else "right")
    for r in rows:
        rel = "" if r.relative is None else f"{r.relative:.3f}"
        table.add_row(
            r.part, r.tokenizer, str(vocab[r.tokenizer] or "?"), str(r.tokens), str(r.characters),
            str(r.bytes), f"{r.chars_per_token:.3f}", rel,
        )  # fmt: skip
    console.print(table)
    if page is not None:
        console.print(f"chart: {chart}\npage:  {page}")


@app.command()
def train(
    corpus: list[Path] | None = typer.Argument(
        None, help="Files or directories; default: hearth's sample corpus."
    ),
    output: Path = typer.Option(..., "--output", "-o", help="Writes OUT.model and OUT.vocab."),
    model_type: str = typer.Option("bpe", "--type", help="bpe or unigram."),
    vocab_size: int = typer.Option(8000, "--vocab-size", help="Pieces in the vocabulary."),
    byte_fallback: bool = typer.Option(
        True, "--byte-fallback/--no-byte-fallback", help="Spell unknown characters as bytes."
    ),
    split_digits: bool = typer.Option(False, "--split-digits", help="One digit per piece."),
    as_json: bool = _JSON,
) -> None:
    """Train a SentencePiece tokenizer."""
    from hearth.tokens import train as training

    columns = (TextColumn("{task.description}"), BarColumn(), TimeElapsedColumn())
    # Transient: the bar goes when training ends, leaving the result or the error alone.
    with Progress(*columns, console=console, disable=as_json, transient=True) as progress:
        task = progress.add_task("starting", total=None)

        def show(p: training.Progress) -> None:
            progress.update(task, description=p.stage, completed=p.done, total=p.total)

        trained = training.train(
            corpus or [],
            output,
            model_type=model_type,
            vocab_size=vocab_size,
            byte_fallback=byte_fallback,
            split_digits=split_digits,
            on_progress=show,
        )
    if as_json:
        _emit(trained.as_dict())
    else:
        console.print(
            f"trained a {trained.model_type} tokenizer of {trained.vocab_size} pieces on "
            f"{trained.sentences} lines: {trained.model}, {trained.vocab}"
        )


@app.command()
def extend(
    base: Path = typer.Argument(..., help="Base SentencePiece .model or tokenizer.json."),
    new: Path = typer.Argument(..., help="SentencePiece .model whose pieces are added."),
    output: Path = typer.Option(..., "--output", "-o", help="Where the merged tokenizer goes."),
    corpus: list[Path] = typer.Option(
        [], "--corpus", help="Measure compression on these; default: the sample corpus."
    ),
    as_json: bool = _JSON,
) -> None:
    """Add NEW's pieces that BASE lacks (the Chinese-LLaMA recipe) and measure the gain."""
    from hearth.tokens.compare import compare as run_compare
    from hearth.tokens.extend import extend as run_extend
    from hearth.tokens.files import load_file

    merged = run_extend(base, new, output)
    sections = load_corpus(corpus)
    with closing(load_file(base)) as before, closing(load_file(merged.output)) as after:
        rows = run_compare([before, after], sections, 0)
    info = {"base": str(base), "new": str(new), **merged.as_dict()}
    info["compression"] = [r.as_dict() for r in rows]
    if as_json:
        _emit(info)
        return
    console.print(
        f"{merged.base_size} + {merged.added} pieces = {merged.size} "
        f"(NEW had {merged.new_size}); wrote {merged.output}"
    )
    table = Table(title="Tokens on the corpus, before and after")
    for col in ("part", "before", "after", "after/before"):
        table.add_column(col, justify="left" if col == "part" else "right")
    for b, a in zip(rows[::2], rows[1::2], strict=True):
        rel = "" if a.relative is None else f"{a.relative:.3f}"
        table.add_row(b.part, str(b.tokens), str(a.tokens), rel)
    console.print(table)


@app.command()
def cost(
    text: str | None = _TEXT,
    file: Path | None = _FILE,
    chat: Path | None = _CHAT,
    model: str | None = _MODEL,
    output_tokens: int = typer.Option(0, "--output-tokens", help="Expected completion tokens."),
    as_json: bool = _JSON,
) -> None:
    """Price a text or chat request at a model's input and output prices."""
    from hearth.tokens.cost import Cost
    from hearth.tokens.model import open_model

    if output_tokens < 0:
        raise UserError(f"--output-tokens must be 0 or more, got {output_tokens}")
    settings = load_settings()
    name = model or settings.default_model
    if name not in settings.models:
        raise ModelNotFound(name, list(settings.models))
    given = _input(text, file, chat)
    with closing(open_model(name, settings)) as tok:
        tokens = _count(tok, given)
    priced = Cost(name, Usage(tokens, output_tokens), settings.models[name].price)
    if as_json:
        _emit(priced.as_dict())
        return
    table = Table(title=f"Cost on {name} (prices per 1K tokens)")
    for col in ("", "tokens", "price / 1K", "cost"):
        table.add_column(col, justify="left" if not col else "right")
    table.add_row("input", str(tokens), f"{priced.price.input:g}", f"{priced.input_cost:.6f}")
    table.add_row(
        "output", str(output_tokens), f"{priced.price.output:g}", f"{priced.output_cost:.6f}"
    )
    table.add_row("total", str(tokens + output_tokens), "", f"{priced.total:.6f}")
    console.print(table)
