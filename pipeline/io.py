"""Reading the Parquet parts stages hand to each other, surviving a damaged one.

A part can be damaged by a full disk, a copy cut short or a bad block: pyarrow
then raises ``ArrowInvalid``/``OSError`` deep inside a stage. Here a damaged part
becomes a ``DamagedPart`` that names the file and what is wrong with it; a stage
whose input parts are work in progress (filter, dedup) skips it, names it in its
summary and does not mark it done, so a later run takes it once it is restored or
rebuilt; the final corpus (shards, tokenize) refuses to go on without it.
"""

from __future__ import annotations

from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from .config import InputError


class DamagedPart(InputError):
    """A Parquet file that cannot be read (truncated, not Parquet, corrupt)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: damaged Parquet file ({reason}); restore it or delete it and re-run the stage "
                         "that wrote it")


def read_part(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    try:
        return pq.read_table(path, columns=columns)
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as exc:
        raise DamagedPart(path, str(exc).splitlines()[0][:300]) from exc
