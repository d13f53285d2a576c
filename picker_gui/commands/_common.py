"""Helpers shared by the subcommands."""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
logger = logging.getLogger("picker_gui")


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None
    if value <= 0:
        raise argparse.ArgumentTypeError(f"must be positive, got {text}")
    return value


def progress(items: Iterable[T], total: int | None = None, desc: str = "") -> Iterator[T]:
    """A tqdm bar on stderr when it is a terminal; plain iteration otherwise."""
    from tqdm import tqdm

    return iter(tqdm(items, total=total, desc=desc, unit="mic", disable=None, file=sys.stderr, leave=False))


def report_failures(failures: list[tuple[str, str]], total: int, what: str) -> int:
    """Log a batch's failures; return the exit code (0 all good, 1 some failed)."""
    if not failures:
        return 0
    for name, problem in failures:
        logger.error("%s", problem if name in problem else f"{name}: {problem}")
    logger.error("%d of %d %s failed (listed above); the others were processed", len(failures), total, what)
    return 1
