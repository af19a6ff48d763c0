"""`webtext`: one command, a subcommand per stage and for whole builds.

Stages run directly (no Prefect); `build`, `demo` and `serve` go through the
Prefect flows. Heavy imports happen inside each subcommand so `--help` is fast.
"""

from __future__ import annotations

import sys

from flows.cli.options import build_parser
from model.errors import ConfigError as ModelConfigError
from model.errors import InputError as ModelInputError
from pipeline.core.errors import ConfigError, InputError


def disk_full(exc: BaseException) -> bool:
    """Out of space or quota, however it surfaced (Python's errno, or pyarrow's message)."""
    import errno

    while exc is not None:
        if isinstance(exc, OSError) and (exc.errno in (errno.ENOSPC, errno.EDQUOT)
                                         or "No space left on device" in str(exc)):
            return True
        exc = exc.__cause__ or exc.__context__
    return False


def main(argv: list[str] | None = None) -> int:
    import os

    # Prefect's server would send usage telemetry to the internet; webtext never talks
    # to anything but the pages it fetches (and the demo: only 127.0.0.1).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side analytics
    # Each module registers its subcommands on import, in the order --help lists them.
    from flows.cli import builds, links, model, stages  # noqa: F401

    parser = build_parser()
    args = parser.parse_args(argv)
    from pipeline.build import BuildLocked

    try:
        return int(args.func(args) or 0)
    except (ConfigError, ModelConfigError, FileNotFoundError, BuildLocked, InputError, ModelInputError) as exc:
        print(f"webtext {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        if not disk_full(exc):
            raise
        where = f" (writing {exc.filename})" if getattr(exc, "filename", None) else ""
        print(f"webtext {args.command}: error: the disk is full{where}. Free some space and run the same command "
              "again: finished work is kept and the run resumes.", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted; re-run the same command to resume", file=sys.stderr)
        return 130

