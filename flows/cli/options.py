"""What every `webtext` subcommand shares: the help formatter, the --config option, the registry of subcommands."""

from __future__ import annotations

import argparse
import dataclasses

from pipeline.core.config import Config

FORMATTER = argparse.ArgumentDefaultsHelpFormatter


def _config(args) -> Config:
    """The configuration file (or the defaults), then every --set, checked once."""
    cfg = Config.load(getattr(args, "config", None))
    pairs = getattr(args, "set", None) or []
    return cfg.with_overrides(pairs) if pairs else cfg


def _add_config(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", metavar="TOML", help="configuration file (sections [links], [fetch], ...); defaults are WebText-faithful")
    sections = ", ".join(f.name for f in dataclasses.fields(Config))
    p.add_argument("--set", action="append", metavar="SECTION.KEY=VALUE",
                   help=f"change one configuration key after the file (repeatable; sections: {sections}; VALUE "
                        "as in TOML), e.g. --set fetch.workers=8 --set 'filter.languages=[\"en\", \"de\"]'")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="webtext",
        formatter_class=FORMATTER,
        description="Rebuild OpenAI's WebText from Reddit links, and train and evaluate GPT-2 on it.",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in _ADDERS:
        add(sub)
    return parser


_ADDERS: list = []  # in the order of `webtext --help`


def register(adder):
    _ADDERS.append(adder)
    return adder
