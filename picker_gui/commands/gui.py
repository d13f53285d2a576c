"""Open the window.

FOLDER may be a folder of micrographs (its project is made on first use, in
FOLDER/picker-gui, or in the user's data folder when FOLDER cannot be written; the window
asks for the particle diameter and confirms the pixel size), a micrograph in such a folder
(shown first), or a picker-gui project folder. With no FOLDER the window offers the recent
projects, or opens the built-in demo dataset on a first start; --demo opens the demo
dataset. With no display, say so and stop.

examples:
  picker-gui gui
  picker-gui gui --demo
  picker-gui gui /data/session1/MotionCorr/job002/Movies
"""

from __future__ import annotations

import argparse


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("target", nargs="?", metavar="FOLDER|PROJECT", help="micrograph folder, micrograph or project (default: recent projects, or the demo)")
    parser.add_argument("--demo", action="store_true", help="open the built-in demo dataset (made on first use)")


def main(args: argparse.Namespace) -> int:
    from picker_gui.gui.app import run  # Qt is imported only here

    return run(args.target, demo=args.demo)
