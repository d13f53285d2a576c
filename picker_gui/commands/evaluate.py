"""Compare picks with true (or held-out) centres; print JSON.

Prints average precision, the best F1 with its threshold, precision and recall, and the
counts. A pick matches a true centre within --radius-px (original-micrograph pixels) that
no higher-scoring pick has taken. Only micrographs that appear in both files count, unless
--all-truth-micrographs makes every true centre count (a micrograph without picks is then
all misses).

example:
  picker-gui evaluate picks.star demo_data/particles.star --radius-px 37
"""

from __future__ import annotations

import argparse
import json
import math
import logging
import sys
from pathlib import Path


from picker_gui.commands._common import positive_float
from picker_gui.core.errors import UsageError
from picker_gui.core.formats import READ_FORMATS, read_coordinates
from picker_gui.core.metrics import at_threshold, evaluate, match_picks

logger = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("picks", type=Path, metavar="PICKS", help="scored picks (any readable format)")
    parser.add_argument("truth", type=Path, metavar="TRUTH", help="true centres (any readable format)")
    parser.add_argument("--radius-px", required=True, type=positive_float, metavar="R", help="matching radius in original-micrograph pixels (as every coordinate)")
    parser.add_argument("--threshold", type=float, metavar="T", help="also report precision/recall/F1 at this threshold")
    parser.add_argument("--all-truth-micrographs", action="store_true", help="count true centres on micrographs with no picks")
    parser.add_argument("--picks-format", choices=READ_FORMATS)
    parser.add_argument("--truth-format", choices=READ_FORMATS)


def main(args: argparse.Namespace) -> int:
    for path in (args.picks, args.truth):
        if not path.exists():
            raise UsageError(f"{path}: no such file or folder")
    picks = read_coordinates(args.picks, args.picks_format)
    truth = read_coordinates(args.truth, args.truth_format)
    if not args.all_truth_micrographs:
        picked = picks.micrographs()
        kept = truth[truth.on_micrographs(picked)]
        if len(kept) < len(truth):
            logger.info("counting %d of %d true centres: those on the %d picked micrograph(s)", len(kept), len(truth), len(picked))
        truth = kept
    result = evaluate(picks, truth, args.radius_px)
    if args.threshold is not None:
        at = at_threshold(match_picks(picks, truth, args.radius_px), args.threshold)
        result.update({f"at_threshold_{k}": v for k, v in at.items()})
    clean = {k: (None if isinstance(v, float) and not math.isfinite(v) else v) for k, v in result.items()}
    json.dump(clean, sys.stdout, indent=2)
    sys.stdout.write("\n")
    return 0
