"""Train a picker from sparse particle labels (positive-unlabeled, as Topaz).

Labels may be in any coordinate format picker-gui reads, in original-micrograph pixels;
only micrographs with labels are used for training. The downsampling factor and the model
size follow from the particle diameter, pi from the expected number of particles per
micrograph (or give --pi), and training stops by itself when the validation average
precision (on micrographs held out from the labels) stops improving, or at the time cap.
The log says what was chosen and why. Settings that cannot work (pi above 0.5, a particle
too small or too large, labels all outside their micrographs) are refused before training.
The first Ctrl-C stops training at the next step and saves the best model so far (exit
code 130); a second one quits at once.

examples:
  picker-gui train demo_data/micrographs --labels labels.star --diameter-a 150 \\
      --expected-per-micrograph 180 --out model.pt
  picker-gui train mics/*.mrc --labels picks.txt --negatives carbon.star --diameter-a 190 --out m.pt
"""

from __future__ import annotations

import argparse
import logging
import threading
from pathlib import Path

from picker_gui.commands._common import (
    check_first_micrograph,
    check_model_output,
    first_interrupt_stops,
    positive_float,
    positive_int,
    report_failures,
)
from picker_gui.core.cache import PreprocessCache
from picker_gui.core.coords import CoordinateTable, micrograph_key
from picker_gui.core.errors import MicrographError, UsageError
from picker_gui.core.formats import READ_FORMATS, read_coordinates
from picker_gui.core.models import ARCHITECTURES, save_model
from picker_gui.core.mrc_io import find_micrographs, require_unique_micrographs
from picker_gui.core.objectives import OBJECTIVES
from picker_gui.core.preprocess import PreprocessParams, preprocess_file
from picker_gui.core.training import LabeledMicrograph, TrainConfig, check_config, run_training, train

logger = logging.getLogger(__name__)


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("micrographs", nargs="+", metavar="MICROGRAPHS", help="MRC files, folders or glob patterns")
    parser.add_argument("--labels", required=True, type=Path, metavar="FILE", help="particle centres (any readable format)")
    parser.add_argument("--labels-format", choices=READ_FORMATS, help="format of --labels and --negatives (default: from the extension)")
    parser.add_argument("--negatives", type=Path, metavar="FILE", help="things that are not particles (ice, carbon edge)")
    parser.add_argument("--diameter-a", required=True, type=positive_float, metavar="D", help="particle diameter in Å")
    parser.add_argument("--pixel-size", type=positive_float, metavar="A", help="pixel size in Å (overrides the headers)")
    prior = parser.add_mutually_exclusive_group()
    prior.add_argument("--expected-per-micrograph", type=positive_float, metavar="N", help="expected particles per micrograph (sets pi)")
    prior.add_argument("--pi", type=positive_float, metavar="P", help="fraction of the unlabelled pixels that are particle centres, in (0, 0.5]; usually 0.001-0.05")
    parser.add_argument("--objective", choices=OBJECTIVES, default="ge-binomial", help="training objective (default: ge-binomial)")
    parser.add_argument("--downsample", type=positive_float, metavar="F", help="downsampling factor (default: from the diameter)")
    parser.add_argument("--model", choices=sorted(ARCHITECTURES), help="architecture (default: from the diameter)")
    parser.add_argument("--radius", type=positive_float, default=3.0, metavar="PX", help="labels mark a disc of this radius, downsampled px (default 3)")
    parser.add_argument("--autoencoder", type=float, default=0.0, metavar="W", help="weight of the autoencoder regulariser (Topaz finds it helps below ~250 labels; try 1)")
    parser.add_argument("--epochs", type=positive_int, metavar="N", help="at most N epochs of 40 steps (default: until validation stops improving)")
    parser.add_argument("--max-minutes", type=positive_float, default=110 / 60, metavar="M", help="time cap in minutes (default 1.8)")
    parser.add_argument("--patience", type=positive_int, default=TrainConfig.patience, metavar="N",
                        help=f"stop when validation AP has not improved for N checks of 40 steps (default {TrainConfig.patience})")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL", help="where to save the model (.pt)")


def _read_labels(path: Path, fmt: str | None) -> CoordinateTable:
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    return read_coordinates(path, fmt)


def _config(args: argparse.Namespace, diameter_px: float) -> TrainConfig:
    return TrainConfig(
        particle_diameter_px=diameter_px,
        objective=args.objective,
        pi=args.pi,
        expected_per_micrograph=args.expected_per_micrograph,
        radius_px=args.radius,
        architecture=args.model,
        autoencoder=args.autoencoder,
        max_steps=args.epochs * TrainConfig.eval_every if args.epochs else TrainConfig.max_steps,
        max_seconds=args.max_minutes * 60,
        patience=args.patience,
        seed=args.seed,
        device=args.device,
    )


def _check_before_work(args: argparse.Namespace, params: PreprocessParams, paths: list[Path]) -> None:
    """Sizes and settings that cannot work, from the first readable header: refused before
    any micrograph is preprocessed (the core checks again, exactly, before training)."""
    first = check_first_micrograph(paths, params, pixel_size=args.pixel_size, diameter_a=args.diameter_a,
                                   option="--downsample" if args.downsample else "--diameter-a", need_pixel_size=True)
    if first is not None:
        header, factor = first
        check_config(_config(args, args.diameter_a / (header.pixel_size_a * factor)))


def main(args: argparse.Namespace) -> int:
    found = find_micrographs(args.micrographs)
    label_files = [args.labels] + ([args.negatives] if args.negatives else [])
    check_model_output(args.out, [*found, *label_files])
    positives = _read_labels(args.labels, args.labels_format)
    negatives = _read_labels(args.negatives, args.labels_format) if args.negatives else CoordinateTable.empty()
    labelled = set(positives.keys) | set(negatives.keys)
    paths = [p for p in found if micrograph_key(p) in labelled]
    if not paths:
        raise UsageError(f"{args.labels}: no label names one of the given micrographs (names match by basename)")
    paths = require_unique_micrographs(paths)
    missing = labelled - {micrograph_key(p) for p in paths}
    if missing:
        logger.warning("%d labelled micrograph(s) not among MICROGRAPHS, ignored: %s", len(missing), ", ".join(sorted(missing)[:5]))
    params = PreprocessParams(downsample=args.downsample, diameter_a=args.diameter_a, pixel_size_a=args.pixel_size)
    _check_before_work(args, params, paths)
    cache = PreprocessCache()
    items, failures = [], []
    for path in paths:
        try:
            prep = preprocess_file(path, params, cache)
        except (MicrographError, ValueError) as exc:
            failures.append((str(path), str(exc)))
            continue
        key = micrograph_key(path)
        items.append(LabeledMicrograph(prep, positives.for_micrograph(key), negatives.for_micrograph(key).with_kind("negative")))
    if not items:
        report_failures(failures, len(paths), "micrographs")
        raise UsageError("no labelled micrograph could be read")
    first = items[0].prep
    if first.pixel_size_a is None:
        raise UsageError(f"{first.path}: no pixel size in the header; give the pixel size in Å", option="--pixel-size")
    factor, reason = params.factor_for(first.pixel_size_a / first.scale[1])
    logger.info("%s", reason)
    config = _config(args, args.diameter_a / first.pixel_size_a)
    metadata = {
        "downsample": factor,
        "downsampled_pixel_size_a": first.pixel_size_a,
        "normalization": params.normalization,
        "particle_diameter_a": args.diameter_a,
        "original_pixel_size_a": first.pixel_size_a / first.scale[1],
    }

    def log_report(report) -> None:
        if report.val_ap is None:
            logger.debug("step %5d  %5.0f s  loss %.4f", report.step, report.elapsed_s, report.loss)
        else:
            logger.info(
                "step %5d  %5.0f s  loss %.4f%s  validation AP %.3f (best %.3f)",
                report.step,
                report.elapsed_s,
                report.loss,
                f"  GE {report.ge_penalty:.4f}" if report.ge_penalty is not None else "",
                report.val_ap,
                report.best_val_ap,
            )

    stop = threading.Event()
    with first_interrupt_stops(stop, "Ctrl-C: stopping after this step and saving the best model so far "
                                     "(Ctrl-C again to quit at once, saving nothing)"):
        result = run_training(train(items, config, stop=stop, metadata=metadata), log_report)
    code = report_failures(failures, len(paths), "micrographs")
    if stop.is_set():
        meta = result.metadata
        if not meta["steps"]:
            logger.warning("interrupted before the first training step; nothing saved")
            return 130
        save_model(args.out, result.model, meta)
        ap = meta["best_validation_ap"]
        logger.warning(
            "interrupted: saved the best model so far (step %d, validation AP %s) to %s",
            meta["best_step"],
            "n/a" if ap is None else f"{ap:.3f}",
            args.out,
        )
        return 130
    save_model(args.out, result.model, result.metadata)
    logger.info("saved the model to %s", args.out)
    return code
