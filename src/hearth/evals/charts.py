"""Charts of evaluation reports (matplotlib, written as PNG)."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hearth.evals.report import LETTERS, Report, wilson


def chart(reports: Sequence[Report], path: Path) -> Path:
    """Accuracy per subject, one bar per model, with 95% intervals and the chance line."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib import font_manager

    # Subject names may be Chinese: prefer a CJK font where one is installed.
    have = {f.name for f in font_manager.fontManager.ttflist}
    cjk = [
        f for f in ("WenQuanYi Micro Hei", "Noto Sans CJK SC", "Source Han Sans SC") if f in have
    ]
    plt.rcParams["font.sans-serif"] = [*cjk, "DejaVu Sans"]
    subjects = sorted({s.subject for r in reports for s in r.subjects()})
    labels = [*subjects, "over questions", "over subjects"]
    width = 0.8 / max(1, len(reports))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.9 * len(labels) * max(1, len(reports)) ** 0.5), 4.5))
    for i, r in enumerate(reports):
        by = {s.subject: s for s in r.subjects()}
        values, lows, highs = [], [], []
        for name in subjects:
            s = by.get(name)
            acc = s.accuracy if s else 0.0
            lo, hi = wilson(s.correct, s.questions) if s else (0.0, 0.0)
            values.append(acc)
            lows.append(acc - lo)
            highs.append(hi - acc)
        lo, hi = wilson(r.correct, r.questions)
        values.append(r.accuracy)
        lows.append(r.accuracy - lo)
        highs.append(hi - r.accuracy)
        slo, shi = r.subject_mean_ci()
        values.append(r.subject_mean)
        lows.append(r.subject_mean - slo)
        highs.append(shi - r.subject_mean)
        xs = [x + (i - (len(reports) - 1) / 2) * width for x in range(len(labels))]
        ax.bar(xs, values, width, yerr=[lows, highs], capsize=2, label=r.model)
    ax.axhline(1 / len(LETTERS), color="grey", linestyle="--", linewidth=1, label="chance")
    ax.set_xticks(range(len(labels)), labels, rotation=35, ha="right")
    ax.set_ylim(0, 1)
    ax.set_ylabel("accuracy")
    mode = ", ".join(sorted({f"{r.mode}, {r.shots}-shot" for r in reports}))
    ax.set_title(f"multiple choice ({mode}), 95% intervals")
    ax.legend(fontsize="small")
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path
