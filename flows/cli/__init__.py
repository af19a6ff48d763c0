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


# Stage commands that write a directory of their own: one writer at a time per directory
# (a lock, shared with a build running that stage), and never into their own input.
STAGE_COMMANDS = ("links", "fetch", "extract", "filter", "dedup", "shard", "tokenize")
_INPUTS = ("src", "links", "fetch", "warc", "state")


def check_out_not_in_inputs(args) -> None:
    """``--out`` equal to or inside one of the command's input directories (``filter --in
    X --out X`` would overwrite the documents it reads) is refused before any work."""
    from pathlib import Path

    out = Path(args.out).resolve()
    for name in _INPUTS:
        values = getattr(args, name, None)
        for v in values if isinstance(values, list) else [values]:
            if not v or name == "state":
                continue
            src = Path(v).resolve()
            if src.is_dir() and (out == src or src in out.parents):
                flag = {"src": "--in"}.get(name, f"--{name}")
                raise ConfigError(f"--out {args.out} is {'the same directory as' if out == src else 'inside'} "
                                  f"{flag} {v}: it would overwrite what it reads; give an output directory of its own")


def _unknown_command(parser, words: list[str]) -> str | None:
    """A first word that names no command, with the nearest ones ("did you mean build?")."""
    import argparse
    import difflib

    if not words or words[0].startswith("-"):
        return None
    commands = next(a.choices for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    if words[0] in commands:
        return None
    near = difflib.get_close_matches(words[0], list(commands), n=2, cutoff=0.6)
    hint = f"; did you mean {' or '.join(near)}?" if near else f"; the commands are: {', '.join(commands)}"
    return f"unknown command {words[0]!r}{hint}"


def main(argv: list[str] | None = None) -> int:
    import os

    # Prefect's server would send usage telemetry to the internet; webtext never talks
    # to anything but the pages it fetches (and the demo: only 127.0.0.1).
    os.environ.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    os.environ.setdefault("DO_NOT_TRACK", "1")  # Prefect's client-side analytics
    # Each module registers its subcommands on import, in the order --help lists them.
    from flows.cli import builds, links, model, stages  # noqa: F401

    parser = build_parser()
    words = sys.argv[1:] if argv is None else argv
    unknown = _unknown_command(parser, words)
    if unknown:
        print(f"webtext: error: {unknown}", file=sys.stderr)
        return 2
    args = parser.parse_args(argv)
    from pipeline.build import BuildLocked

    if args.command in STAGE_COMMANDS + ("build", "demo"):
        from pipeline.core import interrupt

        interrupt.install_sigint()  # Ctrl-C stops the work in every thread, not only the main one

    try:
        if args.command in STAGE_COMMANDS and getattr(args, "out", None):
            from pipeline.build import dir_lock

            check_out_not_in_inputs(args)
            from pathlib import Path

            out = Path(args.out)
            fresh = not out.exists()
            try:
                with dir_lock(out, args.command):
                    return int(args.func(args) or 0)
            finally:  # a command refused before any work leaves no directory of its own behind
                if fresh and out.is_dir() and [p.name for p in out.iterdir()] == [".webtext.lock"]:
                    (out / ".webtext.lock").unlink()
                    out.rmdir()
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

