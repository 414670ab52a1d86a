"""The ``grass`` command.

Each package owns its subcommands through an ``add_commands(subparsers)`` function that registers
parsers whose ``func(args)`` does the work; this module only assembles them and turns user errors
(:class:`grass.errors.GrassError`) into one line on stderr and exit status 2.
"""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

from grass.errors import GrassError

# module providing add_commands(subparsers), in the order `grass --help` lists them
COMMAND_MODULES = (
    "grass.commands",        # train, config
    "grass.eval.commands",   # eval
    "grass.data.commands",   # data list | download
    "experiments.commands",  # launch, status
    "analysis.commands",     # tables, plots, report
    "analysis.reproduction", # reproduction (docs/reproduction.md)
    "grass.memory.commands", # memory
    "grass.quickstart",      # quickstart
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grass", description="GRASS and baselines: fine-tune, launch grids, "
                                     "make the paper's tables.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as e:
            if e.name and name.startswith(e.name):  # that command module is not written yet
                continue
            raise
        module.add_commands(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s", datefmt="%H:%M:%S")
    for noisy in ("httpx", "urllib3", "filelock", "datasets", "fsspec"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except GrassError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted: finished runs are kept; run the same command again to resume", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
