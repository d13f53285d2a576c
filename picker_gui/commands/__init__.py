"""Subcommands of the ``picker-gui`` command line.

Each module exposes ``NAME``, ``add_args(parser)`` and ``main(args) -> int``; its docstring's
first line is the one-line help and the rest the epilog. Commands translate arguments into
calls of :mod:`picker_gui.core` and never import Qt (except ``gui``, lazily).
"""

COMMANDS = ("gui", "demo", "convert", "preprocess", "train", "pick", "consensus", "evaluate", "export")
