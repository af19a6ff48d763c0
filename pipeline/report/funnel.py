"""The build's funnel as a plot: links -> fetched -> extracted -> kept -> unique, per drop reason, and its history."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def plot_funnel(stages: list[dict], out_png: str | Path, history: list[tuple[str, list[dict]]] | None = None) -> Path | None:
    """The build's funnel as a picture: per stage (with its unit), what went on
    (dark) and what was dropped, stacked by reason, every reason in the legend
    (and labelled on the bar where wide enough). With ``history`` ((label, stages)
    of every build, oldest first), a second panel shows every build: links
    harvested, pages fetched, documents added to the corpus."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is a convenience; the JSON is the record
        return None
    out_png = Path(out_png)
    names = [f"{s['stage']} ({s.get('unit', 'items')})" for s in stages][::-1]
    rows = 2 if history and len(history) > 1 else 1
    height = 0.6 * len(stages) + 2.2
    fig, axes = plt.subplots(rows, 1, figsize=(11, height + (3.6 if rows == 2 else 0)),
                             gridspec_kw={"height_ratios": [height, 3.6]} if rows == 2 else None, squeeze=False)
    ax = axes[0][0]
    cmap = plt.get_cmap("tab20")
    colors: dict[str, Any] = {}
    ax.barh(0, 0, color="#1f3b57", label="kept (passed on)")
    widest = max([1] + [s["out"] + sum(s["dropped"].values()) for s in stages])
    for y, s in enumerate(stages[::-1]):
        ax.barh(y, s["out"], color="#1f3b57")
        left = s["out"]
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
            if not n:
                continue
            earlier = reason.startswith("already_")  # done by an earlier build: not a drop, one grey
            key = "done by an earlier build (already_*)" if earlier else reason
            new = key not in colors
            c = colors.setdefault(key, "#c8c8c8" if earlier else cmap(sum(not k.startswith("done by") for k in colors) % 20))
            ax.barh(y, n, left=left, color=c, label=key if new else None)
            if n >= 0.12 * widest:  # a label only where it fits
                ax.text(left + n / 2, y, reason, ha="center", va="center", fontsize=7)
            left += n
        ax.text(left, y, f"  {s['out']:,} of {s['in']:,}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("count, in each stage's unit (kept dark; dropped, by reason)")
    ax.set_title("webtext build funnel" + (f": {history[-1][0]}" if history else ""))
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
    if rows == 2:
        hx = axes[1][0]
        labels = [h[0] for h in history]
        x = list(range(len(history)))

        def out_of(st, *stages):
            return next((s["out"] for s in st if s["stage"] in stages), 0)

        for stages_, what, style in ((("links",), "links kept", "o-"), (("fetch",), "pages fetched", "s-"),
                                     (("shard", "shards"), "documents added to the corpus", "^-")):
            hx.plot(x, [out_of(st, *stages_) for _, st in history], style, label=what)
        hx.set_xticks(x, labels, rotation=30, ha="right", fontsize=7)
        hx.set_ylabel("count")
        hx.set_title(f"every build ({len(history)})")
        hx.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.01, 0.5), frameon=False)
        hx.grid(alpha=0.3)
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png


def build_history(reports_dir: str | Path) -> list[tuple[str, list[dict]]]:
    """(label, funnel) of every build recorded under REPORTS_DIR (build-STAMP[-vNNNN]/funnel.json), oldest first."""
    out = []
    for d in sorted(Path(reports_dir).glob("build-*")):
        f = d / "funnel.json"
        if f.is_file():
            try:
                out.append((d.name.removeprefix("build-"), json.loads(f.read_text())))
            except ValueError:
                continue  # a torn file of a killed build: not drawn (the JSON of the next build is whole)
    return out
