"""Open the window (on the built-in demo dataset when no folder is given).

FOLDER may be a folder of micrographs (its project is made on first use, in
FOLDER/picker-gui, or in the user's data folder when FOLDER cannot be written) or a
picker-gui project folder. With no display, say so and stop.

examples:
  picker-gui gui
  picker-gui gui /data/session1/MotionCorr/job002/Movies
"""

from __future__ import annotations

import argparse


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="FOLDER|PROJECT", help="micrograph folder or project (default: the demo dataset)")


def main(args: argparse.Namespace) -> int:
    from picker_gui.gui.app import run  # Qt is imported only here

    return run(args.target)
