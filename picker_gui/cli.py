"""The ``picker-gui`` command line: headless access to the same core the window drives.

Run ``picker-gui COMMAND --help`` for each command. Errors in the input (a bad file, a
missing option, a disk that is full) end with one line naming the file or option and exit
code 2; in a batch, a bad micrograph is reported and the others still go through (exit
code 1). A bug ends with one line too, and its traceback is saved to
``<user cache>/last-error.txt`` (``-v`` prints it as well). Ctrl-C exits with 130.
"""

from __future__ import annotations

import argparse
import errno
import importlib
import logging
import shlex
import sys
import traceback
from pathlib import Path
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


#: Errors that can only come from writing.
_WRITE_ERRNOS = {errno.ENOSPC, errno.EROFS, errno.EFBIG, getattr(errno, "EDQUOT", errno.ENOSPC)}


def describe_os_error(exc: OSError) -> str:
    """One line for a failed file operation: the file (writes name their target, never a
    temporary name: see :mod:`picker_gui.core.paths`) and the system's reason, e.g.
    "cannot write /x/y.star: No space left on device"."""
    reason = exc.strerror or str(exc)
    if exc.filename is None:
        return reason
    verb = "cannot write " if exc.errno in _WRITE_ERRNOS else ""
    other = f" -> {exc.filename2}" if exc.filename2 is not None else ""
    return f"{verb}{exc.filename}{other}: {reason}"


def _save_traceback(text: str) -> Path | None:
    from picker_gui.core.paths import atomic_write_text, user_folder

    try:
        folder = user_folder("cache")
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / "last-error.txt"
        atomic_write_text(path, text)
        return path
    except OSError:
        return None


def _report_bug(exc: BaseException, argv: Sequence[str] | None, verbose: bool) -> None:
    text = (f"picker-gui {__version__}, python {sys.version.split()[0]}\n"
            f"command: picker-gui {shlex.join(list(argv if argv is not None else sys.argv[1:]))}\n\n"
            + "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)))
    saved = _save_traceback(text)
    summary = (str(exc).strip().splitlines() or [""])[0][:200]
    where = f"the traceback was saved to {saved}" if saved else "the traceback follows"
    logger.error("error: unexpected error (%s%s); this is a bug — %s", type(exc).__name__,
                 f": {summary}" if summary else "", where)
    if verbose or saved is None:
        sys.stderr.write(text)


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
    except OSError as exc:
        logger.error("error: %s", describe_os_error(exc))
        if args.verbose:
            traceback.print_exc(file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        logger.error("interrupted")
        return 130
    except Exception as exc:  # noqa: BLE001 - a bug: one line, the traceback kept in a file
        _report_bug(exc, argv, args.verbose)
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
