"""The run summary every stage writes: counts in, out, and dropped per reason.

Like datatrove's stats: each stage counts what came in, what went out and why
everything else was dropped; ``check`` asserts that they add up, so nothing is
silently lost. Written as ``summary.json`` beside the output and printed as a
short table.
"""

from __future__ import annotations

import json
import os
import threading
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


def atomic_write_bytes(path: str | Path, data: bytes) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # pid and thread: concurrent writers (threaded task runners) never share a temporary file
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}-{threading.get_ident()}")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def atomic_write_json(path: str | Path, obj: Any) -> None:
    atomic_write_bytes(path, json.dumps(obj, indent=2, sort_keys=False, default=str).encode() + b"\n")


@dataclass
class RunSummary:
    stage: str
    unit: str = "records"  # what is counted: submissions, urls, documents
    n_in: int = 0
    n_out: int = 0
    dropped: Counter = field(default_factory=Counter)
    notes: list[str] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.time)
    finished: float | None = None

    def drop(self, reason: str, n: int = 1) -> None:
        self.dropped[reason] += n

    def note(self, text: str) -> None:
        self.notes.append(text)

    @property
    def n_dropped(self) -> int:
        return sum(self.dropped.values())

    def balanced(self) -> bool:
        return self.n_in == self.n_out + self.n_dropped

    def check(self) -> None:
        if not self.balanced():
            raise AssertionError(
                f"{self.stage}: counts do not add up: in={self.n_in} out={self.n_out} "
                f"dropped={self.n_dropped} ({dict(self.dropped)})"
            )

    def finish(self) -> "RunSummary":
        self.finished = time.time()
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "stage": self.stage,
            "unit": self.unit,
            "in": self.n_in,
            "out": self.n_out,
            "dropped": dict(self.dropped.most_common()),
            "dropped_total": self.n_dropped,
            "balanced": self.balanced(),
            "seconds": round((self.finished or time.time()) - self.started, 3),
            "notes": self.notes,
            **({"extra": self.extra} if self.extra else {}),
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSummary":
        s = cls(stage=d["stage"], unit=d.get("unit", "records"), n_in=d["in"], n_out=d["out"])
        s.dropped = Counter(d.get("dropped", {}))
        s.notes = list(d.get("notes", []))
        s.extra = dict(d.get("extra", {}))
        return s

    def write(self, out_dir: str | Path, name: str | None = None) -> Path:
        path = Path(out_dir) / (name or f"summary.{self.stage}.json")
        atomic_write_json(path, self.to_dict())
        return path

    def table(self) -> str:
        width = max([len(r) for r in self.dropped] + [12])
        lines = [f"== {self.stage}: {self.n_in:,} {self.unit} in -> {self.n_out:,} out"]
        for reason, n in self.dropped.most_common():
            pct = 100.0 * n / self.n_in if self.n_in else 0.0
            lines.append(f"   dropped {reason:<{width}} {n:>12,}  {pct:5.1f}%")
        for note in self.notes:
            lines.append(f"   note: {note}")
        return "\n".join(lines)

    def print(self, file=None) -> None:
        print(self.table(), file=file or sys.stderr)


def combine_summaries(stage: str, unit: str, parts: list[dict]) -> RunSummary:
    """One stage's summary from its partitions' summaries (dicts): counts and drop
    reasons added, notes kept in order; each partition's ``extra`` under
    ``extra["partitions"]``."""
    s = RunSummary(stage, unit=unit)
    for p in parts:
        s.n_in += p["in"]
        s.n_out += p["out"]
        for r, n in p["dropped"].items():
            s.drop(r, n)
        s.notes.extend(p.get("notes", []))
    s.extra["partitions"] = len(parts)
    return s


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on stderr, quiet when not attached to a terminal unless asked."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", None)  # None: disable when not a TTY
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)


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
