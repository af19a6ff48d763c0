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


def progress(iterable=None, **kwargs):
    """A tqdm progress bar on stderr, quiet when not attached to a terminal unless asked."""
    from tqdm.auto import tqdm

    kwargs.setdefault("disable", None)  # None: disable when not a TTY
    kwargs.setdefault("dynamic_ncols", True)
    kwargs.setdefault("mininterval", 0.5)
    kwargs.setdefault("file", sys.stderr)
    return tqdm(iterable, **kwargs)


def plot_funnel(stages: list[dict], out_png: str | Path) -> Path | None:
    """The build's funnel as a picture: per stage, what went on (dark) and what
    was dropped, stacked by reason (labelled where wide enough)."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:  # plotting is a convenience; the JSON is the record
        return None
    out_png = Path(out_png)
    names = [s["stage"] for s in stages][::-1]
    fig, ax = plt.subplots(figsize=(10, 0.6 * len(stages) + 1.2))
    cmap = plt.get_cmap("tab20")
    colors: dict[str, Any] = {}
    for y, s in enumerate(stages[::-1]):
        ax.barh(y, s["out"], color="#1f3b57")
        left = s["out"]
        for reason, n in sorted(s["dropped"].items(), key=lambda kv: -kv[1]):
            if not n:
                continue
            c = colors.setdefault(reason, cmap(len(colors) % 20))
            ax.barh(y, n, left=left, color=c)
            if n >= 0.12 * max(1, s["in"]):
                ax.text(left + n / 2, y, reason, ha="center", va="center", fontsize=7)
            left += n
        ax.text(left, y, f"  {s['out']:,} of {s['in']:,}", va="center", fontsize=8)
    ax.set_yticks(range(len(names)), names)
    ax.set_xlabel("items (kept dark; dropped by reason)")
    ax.set_title("webtext build funnel")
    fig.tight_layout()
    out_png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_png, dpi=110)
    plt.close(fig)
    return out_png
