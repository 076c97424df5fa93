"""A comparison as a bar chart (PNG) and a self-contained HTML page beside it."""

from __future__ import annotations

import base64
import html
from collections.abc import Sequence
from pathlib import Path

from hearth.errors import UserError
from hearth.tokens.compare import Row

_COLUMNS = ("tokenizer", "part", "tokens", "characters", "bytes", "chars/token", "relative")


def write_chart(rows: Sequence[Row], png: Path, *, reference: str) -> Path:
    """Write the chart to ``png`` and the page to ``png`` with ``.html``; return the page."""
    # Figure without pyplot: no global backend or figure state, so this is safe to call
    # from a server thread as well as the CLI; savefig renders with Agg.
    from matplotlib.figure import Figure

    parts = list(dict.fromkeys(r.part for r in rows))
    names = list(dict.fromkeys(r.tokenizer for r in rows))
    by = {(r.tokenizer, r.part): r for r in rows}
    fig = Figure(figsize=(max(6.0, 2.2 * len(parts) + 1), 7), layout="constrained")
    top, bottom = fig.subplots(2, 1, sharex=True)
    width = 0.8 / len(names)
    for i, name in enumerate(names):
        xs = [p + (i - (len(names) - 1) / 2) * width for p in range(len(parts))]
        top.bar(xs, [by[name, p].chars_per_token for p in parts], width, label=name)
        bottom.bar(xs, [by[name, p].relative or 0.0 for p in parts], width, label=name)
    top.set_ylabel("characters per token (higher is better)")
    bottom.set_ylabel(f"tokens relative to {reference} (lower is better)")
    bottom.axhline(1.0, color="grey", linewidth=0.8, linestyle="--")
    bottom.set_xticks(range(len(parts)), parts)
    top.legend(fontsize="small")
    top.set_title("Tokenizer comparison")
    try:
        png.parent.mkdir(parents=True, exist_ok=True)
        fig.savefig(png, format="png", dpi=110)
        page = png.with_suffix(".html")
        page.write_text(_page(rows, png.read_bytes(), reference), encoding="utf-8")
    except OSError as e:
        raise UserError(f"cannot write the chart to {png}: {e.strerror}") from e
    return page


def _page(rows: Sequence[Row], png: bytes, reference: str) -> str:
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    body = "\n".join(
        "<tr>"
        + "".join(
            f"<td>{html.escape(str(v))}</td>"
            for v in (
                r.tokenizer,
                r.part,
                r.tokens,
                r.characters,
                r.bytes,
                f"{r.chars_per_token:.3f}",
                "" if r.relative is None else f"{r.relative:.3f}",
            )
        )
        + "</tr>"
        for r in rows
    )
    image = base64.b64encode(png).decode("ascii")
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Tokenizer comparison</title>
<style>
body {{ font-family: system-ui, sans-serif; margin: 2rem; }}
table {{ border-collapse: collapse; }}
th, td {{ border: 1px solid #ccc; padding: 0.3rem 0.6rem; text-align: right; }}
td:nth-child(-n+2), th:nth-child(-n+2) {{ text-align: left; }}
</style></head><body>
<h1>Tokenizer comparison</h1>
<p>Reference: <b>{html.escape(reference)}</b>. <i>relative</i> is tokens divided by the
reference's tokens on the same part: below 1 needs fewer tokens.</p>
<table><thead><tr>{head}</tr></thead><tbody>
{body}
</tbody></table>
<p><img alt="tokenizer comparison chart" src="data:image/png;base64,{image}"></p>
</body></html>
"""
