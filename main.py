"""Launcher: ``python main.py [FOLDER|PROJECT]`` opens the window; ``python main.py COMMAND ...``
runs a command of the command line (``python main.py --help`` lists them)."""

from __future__ import annotations

import sys

from picker_gui.cli import main
from picker_gui.commands import COMMANDS

if __name__ == "__main__":
    args = sys.argv[1:]
    if not args or (args[0] not in COMMANDS and not args[0].startswith("-")):
        args = ["gui", *args]
    raise SystemExit(main(args))
