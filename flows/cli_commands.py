"""Subcommands beyond `links`; each registers itself with flows.cli."""
