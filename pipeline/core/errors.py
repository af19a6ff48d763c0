"""The errors a user acts on: a configuration that cannot work, an input that is refused or damaged."""

from __future__ import annotations

from pathlib import Path


class ConfigError(ValueError):
    """A configuration value that cannot work; raised before any work starts."""


class InputError(ValueError):
    """An input file that is refused or cannot be read; the message names it and says what to do."""


class UnsafeInput(InputError):
    """A file refused because reading it could run code (a pickle with objects)."""


class DamagedPart(InputError):
    """A Parquet file that cannot be read (truncated, not Parquet, corrupt)."""

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: damaged Parquet file ({reason}); restore it or delete it and re-run the stage "
                         "that wrote it")
