"""The errors the model's commands raise for a user to act on; the CLI prints each in one line.

``model`` imports nothing of ``pipeline`` or ``flows`` (a GPT-2 package that stands on
its own), so it declares its own: ``ConfigError`` (a training or model option that
cannot work, raised before any work), ``InputError`` (a file refused or unreadable,
named in the message), ``UnsafeInput`` (a file refused because reading it could run
code) and ``DamagedFile`` (a Parquet file that cannot be read).
"""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A training or model option that cannot work; raised before any work starts."""


class InputError(ValueError):
    """An input file that is refused or cannot be read; the message names it and says what to do."""


class UnsafeInput(InputError):
    """A file refused because reading it could run code (a pickle with objects)."""


class DamagedFile(InputError):
    """A Parquet file of documents that cannot be read (truncated, not Parquet, corrupt)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: damaged Parquet file ({reason}); restore it or delete it and re-run the stage "
                         "that wrote it")
