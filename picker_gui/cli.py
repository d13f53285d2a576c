"""The ``picker-gui`` command line: headless access to the same core the window drives.

Run ``picker-gui COMMAND --help`` for each command. Errors in the input (a bad file, a
missing option) end with a one-line reason and a non-zero exit code; in a batch, a bad
micrograph is reported and the others still go through.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

from picker_gui import __version__
from picker_gui.commands import COMMANDS
from picker_gui.core.errors import PickerError

logger = logging.getLogger("picker_gui")


def _load(name: str):
    module = importlib.import_module(f"picker_gui.commands.{name.replace('-', '_')}")
    for attr in ("add_args", "main"):
        if not hasattr(module, attr):
            raise RuntimeError(f"command module {module.__name__} has no {attr}()")
    return module


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="picker-gui",
        description="Positive-unlabeled particle picking for cryo-EM micrographs.",
        epilog="Run 'picker-gui COMMAND --help' for the options of a command.",
    )
    parser.add_argument("--version", action="version", version=f"picker-gui {__version__}")
    verbosity = parser.add_mutually_exclusive_group()
    verbosity.add_argument("-v", "--verbose", action="store_true", help="log debugging detail")
    verbosity.add_argument("-q", "--quiet", action="store_true", help="log only warnings and errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMANDS:
        module = _load(name)
        doc = (module.__doc__ or "").strip()
        summary, _, rest = doc.partition("\n")
        p = sub.add_parser(
            name,
            help=summary,
            description=summary,
            epilog=rest.strip() or None,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_args(p)
        p.set_defaults(_command=module)
    return parser


def _setup_logging(verbose: bool, quiet: bool) -> None:
    level = logging.DEBUG if verbose else logging.WARNING if quiet else logging.INFO
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(levelname)s: %(message)s" if verbose else "%(message)s"))
    root = logging.getLogger("picker_gui")
    root.handlers[:] = [handler]
    root.setLevel(level)
    root.propagate = False


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _setup_logging(args.verbose, args.quiet)
    if args.command is None:
        parser.print_help()
        return 0
    try:
        return int(args._command.main(args) or 0)
    except PickerError as exc:
        logger.error("error: %s", exc)
        return 2
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130


if __name__ == "__main__":
    raise SystemExit(main())
