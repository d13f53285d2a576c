"""Combine several pickers' coordinate sets: AND/OR sets and a Deep Consensus network.

Each SET is a coordinate file or folder in any format picker-gui reads (RELION STAR,
cryoSPARC .cs, crYOLO .cbox, EMAN .box, Topaz text, CSV, JSON), optionally named NAME=PATH.
Micrograph names are matched to the micrographs robustly (folders, extensions and
suffixes such as _DW or _autopick do not matter). Picks of different sets within the merge
radius (default 0.1 x the box, as Xmipp) are one particle with one vote per set; AND is
what every set found, --min-votes K asks for K of them, OR is everything. --dog adds a
built-in difference-of-Gaussians picker as one more set, so that a single picker still
has a consensus.

With --train a small CNN (Deep Consensus, Sanchez-Garcia et al. 2018) learns AND (or
K-of-N) against random spots away from every pick (NEG) and scores every OR pick in
[0, 1]; --rank scores it, without training, by the mean of its ranks in the sets (those
named, or all): where independent pickers agree each ranks a particle high; otherwise a
pick's score is the fraction of sets that found it. --train with --rank (rank-guided):
the ranks also choose the network's examples: the 30 % of OR picks ranked lowest join NEG
(what the pickers got wrong, which random spots never show the network), and only agreed
picks in the top half of the ranks are positives. --out FILE.csv
writes the whole scored OR set (score, votes, and which set found each pick); any other
coordinate format writes the picks scoring at least --cut, scores as the figure of merit.

examples:
  picker-gui consensus topaz=picks.txt cryolo=CBOX/ --micrographs mics/ --diameter-a 180 --train --out consensus.csv
  picker-gui consensus ours=picks.star topaz=topaz.txt --micrographs mics/ --diameter-a 180 --rank --out ranked.csv
  picker-gui consensus ours=picks.star topaz=topaz.txt --dog --min-votes 2 --micrographs mics/ --diameter-a 180 \
      --train --rank ours topaz --out consensus.csv
  picker-gui consensus autopick.star --dog --micrographs mics/ --diameter-a 180 --train --cut 0.5 --out kept.star
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path


from picker_gui.commands._common import (
    check_coordinate_output,
    first_interrupt_stops,
    positive_float,
    positive_int,
    progress_bar,
    report_failures,
)
from picker_gui.core.cache import PreprocessCache
from picker_gui.core.consensus import PickSet, write_consensus_csv
from picker_gui.core.consensus_job import ConsensusSettings, consensus_job
from picker_gui.core.coords import NEGATIVE, PARTICLE, CoordinateTable
from picker_gui.core.errors import UsageError
from picker_gui.core.formats import WRITE_FORMATS, read_coordinates, write_coordinates
from picker_gui.core.jobs import run_job
from picker_gui.core.mrc_io import find_micrographs, require_unique_micrographs
from picker_gui.core.paths import check_outputs
from picker_gui.core.training import check_device_name

logger = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("sets", nargs="*", metavar="SET", help="coordinate file or folder, or NAME=PATH")
    parser.add_argument("--micrographs", nargs="+", required=True, metavar="MICROGRAPHS", help="MRC files, folders or glob patterns")
    parser.add_argument("--diameter-a", required=True, type=positive_float, metavar="A", help="particle diameter in Å")
    parser.add_argument("--box-a", type=positive_float, metavar="A", help="box edge in Å (default 1.5 x the diameter)")
    parser.add_argument("--merge-radius-a", type=positive_float, metavar="A", help="picks of different sets this close are one particle (default 0.1 x the box)")
    parser.add_argument("--min-votes", type=positive_int, metavar="K", help="positives for the network: found by at least K sets (default: all sets, AND)")
    parser.add_argument("--set-threshold", action="append", default=[], metavar="NAME=T", help="use only picks of set NAME scoring at least T (repeatable)")
    parser.add_argument("--dog", action="store_true", help="add the built-in difference-of-Gaussians picker as a set")
    parser.add_argument("--expected-per-micrograph", type=positive_float, metavar="N", help="particles per micrograph: the built-in picker keeps this many (default: half its candidates)")
    parser.add_argument("--train", action="store_true", help="train the consensus network and score every OR pick with it")
    parser.add_argument("--rank", nargs="*", metavar="SET", default=None,
                        help="score every OR pick by its mean rank in these ranked sets (all when none is named); where "
                             "strong, independent pickers agree the score stays high. With --train: the ranks choose the "
                             "network's examples (the lowest-ranked 30%% of OR join NEG; positives: agreed picks in the top half)")
    parser.add_argument("--negatives", type=Path, metavar="FILE", help="coordinates of things that are not particles (ice, carbon), more negatives for the network")
    parser.add_argument("--labels", type=Path, metavar="FILE", help="your labels (e.g. a project's labels.star): particles join the agreed picks as positives, negatives join NEG")
    parser.add_argument("--min-positives", type=positive_int, default=256, metavar="N", help="refuse to train on fewer positives than N (default 256, as Xmipp)")
    parser.add_argument("--ensemble", type=positive_int, default=3, metavar="N", help="networks in the ensemble (default 3)")
    parser.add_argument("--max-minutes", type=positive_float, default=5.0, metavar="M", help="time budget of the network (default 5)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, metavar="FILE", help="output: .csv for the whole scored set, or any coordinate format")
    parser.add_argument("--format", choices=WRITE_FORMATS, help="output format (default: from the extension)")
    parser.add_argument("--cut", type=float, default=None, metavar="P", help="keep picks scoring at least P (default: all)")
    parser.add_argument("--box-size", type=positive_float, metavar="PX", help="box edge in pixels, for .box output")
    parser.add_argument("--pixel-size", type=positive_float, metavar="A", help="pixel size in Å (overrides the headers)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:N or mps")


def _named(spec: str) -> tuple[str, Path]:
    name, sep, path = spec.partition("=")
    if sep and name and not Path(spec).exists():
        return name, Path(path)
    p = Path(spec)
    return p.stem if p.suffix else p.name, p


def _thresholds(pairs: list[str], names: list[str]) -> dict[str, float]:
    out = {}
    for pair in pairs:
        name, _, value = pair.partition("=")
        if name not in names:
            raise UsageError(f"{pair}: no set named {name!r} (sets: {', '.join(names) or 'none'})", option="--set-threshold")
        try:
            out[name] = float(value)
        except ValueError:
            raise UsageError(f"{pair}: {value!r} is not a number", option="--set-threshold") from None
    return out


def main(args: argparse.Namespace) -> int:
    paths = require_unique_micrographs(find_micrographs(args.micrographs))
    named = [_named(s) for s in args.sets]
    names = [n for n, _ in named]
    if len(set(names)) != len(names):
        raise UsageError(f"two sets share a name ({', '.join(names)}); name them NAME=PATH")
    thresholds = _thresholds(args.set_threshold, names)
    inputs = [*paths, *(p for _, p in named), *([args.negatives] if args.negatives else []),
              *([args.labels] if args.labels else [])]
    full_table = args.format is None and args.out.suffix.lower() == ".csv"
    if full_table:
        check_outputs([(args.out, "--out")], inputs)
        fmt = None
    else:
        fmt = check_coordinate_output(args.out, args.format, inputs=inputs, box_size=args.box_size, n_micrographs=len(paths))
    check_device_name(args.device)
    sets = []
    for name, path in named:
        table = read_coordinates(path)
        logger.info("set %s: %d picks on %d micrograph(s) from %s", name, len(table), len(table.micrographs()), path)
        sets.append(PickSet(name, table, thresholds.get(name)))
    negatives = read_coordinates(args.negatives).with_kind(NEGATIVE) if args.negatives else None
    positives = None
    if args.labels:
        labels = read_coordinates(args.labels)
        positives = labels[labels.kind == PARTICLE]
        own_negatives = labels[labels.kind == NEGATIVE]
        if len(own_negatives):
            negatives = own_negatives if negatives is None else CoordinateTable.concat([negatives, own_negatives])
        logger.info("labels %s: %d particle(s), %d negative(s)", args.labels, len(positives), len(own_negatives))
    settings = ConsensusSettings(diameter_a=args.diameter_a, box_a=args.box_a, merge_radius_a=args.merge_radius_a,
                                 min_votes=args.min_votes, min_positives=args.min_positives, train=args.train,
                                 rank=None if args.rank is None else tuple(args.rank), dog=args.dog,
                                 expected_per_micrograph=args.expected_per_micrograph, pixel_size_a=args.pixel_size,
                                 ensemble=args.ensemble, max_minutes=args.max_minutes, seed=args.seed, device=args.device)
    stop = threading.Event()
    with first_interrupt_stops(stop, "stopping after this minibatch; the sets so far are written"), \
            progress_bar(len(paths), "consensus") as bar:
        def on_report(report) -> None:
            if report.stage == "preprocess":
                bar.update(1)
            elif report.consensus is not None and report.consensus.val_accuracy is not None:
                c = report.consensus
                bar.set_postfix_str(f"network {c.member + 1}/{c.members} validation accuracy {c.val_accuracy:.3f}")

        result = run_job(consensus_job(paths, sets, settings, user_negatives=negatives, user_positives=positives, stop=stop,
                                       cache=PreprocessCache()), on_report)
    cons = result.sets
    k = settings.min_votes or cons.n_sets
    total = cons.counts(k)["total"]
    logger.info("OR %d, AND %d, %d-of-%d %d on %d micrograph(s)%s", total["or"], total["and"], k, cons.n_sets,
                total[f"{k}-of-{cons.n_sets}"], len(cons.micrographs),
                f"; network validation accuracy {', '.join(f'{a:.3f}' for a in result.model.val_accuracy)}"
                if result.model else "")
    keep = None if args.cut is None else cons.table.score >= args.cut
    if full_table:
        n = write_consensus_csv(cons, args.out, keep)
    else:
        table = cons.table if keep is None else cons.table[keep]
        write_coordinates(table, args.out, fmt, box_size=args.box_size)
        n = len(table)
    logger.info("wrote %d pick(s) to %s", n, args.out)
    return report_failures(result.failures, len(paths), "micrographs")
