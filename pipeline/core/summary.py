"""The run summary every stage writes: counts in, out, and dropped per reason.

Like datatrove's stats: each stage counts what came in, what went out and why
everything else was dropped; ``check`` asserts that they add up, so nothing is
silently lost. Written as ``summary.json`` beside the output and printed as a
short table.
"""

from __future__ import annotations

import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pipeline.core.io import atomic_write_json


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

    def close(self, out_dir: str | Path, name: str | None = None) -> "RunSummary":
        """The end of every stage's run, written once: the counts must add up (else
        AssertionError: something was lost), the end time is stamped, and the summary is
        written beside the stage's output."""
        self.check()
        self.finish().write(out_dir, name)
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
