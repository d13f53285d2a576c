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

from picker_gui.commands._common import check_model_output, first_interrupt_stops, positive_float, positive_int, report_failures
from picker_gui.core.cache import PreprocessCache
from picker_gui.core.coords import CoordinateTable
from picker_gui.core.errors import UsageError
from picker_gui.core.formats import READ_FORMATS, read_coordinates
from picker_gui.core.jobs import JobReport, TrainSettings, run_job, train_job
from picker_gui.core.models import known_architectures, save_model
from picker_gui.core.mrc_io import find_micrographs
from picker_gui.core.objectives import OBJECTIVES
from picker_gui.core.training import TrainConfig

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
    parser.add_argument("--model", choices=known_architectures(), help="architecture (default: from the diameter: pool34/50/74, or conv31/47/71 below 16 px across)")
    parser.add_argument("--radius", type=positive_float, default=3.0, metavar="PX", help="labels mark a disc of this radius, downsampled px (default 3)")
    parser.add_argument("--autoencoder", type=float, default=0.0, metavar="W", help="weight of the autoencoder regulariser (Topaz finds it helps below ~250 labels; try 1)")
    parser.add_argument("--epochs", type=positive_int, metavar="N", help="at most N epochs of 40 steps (default: until validation stops improving)")
    parser.add_argument("--max-minutes", type=positive_float, default=2.5, metavar="M", help="time cap in minutes (default 2.5)")
    parser.add_argument("--patience", type=positive_int, default=None, metavar="N",
                        help="stop early when validation AP has stayed clearly below its best (by 1/sqrt(held-out labels), "
                             "10-30 %%) for N checks of 40 steps (default: off; the run uses its time budget and keeps the final model)")
    parser.add_argument("--device", default="auto", help="auto (CUDA, then MPS, then CPU), cpu, cuda, cuda:N or mps")
    parser.add_argument("--start", choices=("general", "scratch"), default=None,
                        help=f"start from the shipped general model (where it fits: 16 px or more across, no --model) "
                             f"or from fresh weights (default: {TrainConfig.start})")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", required=True, type=Path, metavar="MODEL", help="where to save the model (.pt)")


def _read_labels(path: Path, fmt: str | None) -> CoordinateTable:
    if not path.exists():
        raise UsageError(f"{path}: no such file or folder")
    return read_coordinates(path, fmt)


def settings_from_args(args: argparse.Namespace) -> TrainSettings:
    """The run's settings, from the options."""
    return TrainSettings(
        diameter_a=args.diameter_a,
        expected_per_micrograph=args.expected_per_micrograph,
        pi=args.pi,
        objective=args.objective,
        downsample=args.downsample,
        pixel_size_a=args.pixel_size,
        architecture=args.model,
        radius_px=args.radius,
        autoencoder=args.autoencoder,
        max_steps=args.epochs * TrainConfig.eval_every if args.epochs else None,
        max_minutes=args.max_minutes,
        patience=args.patience,
        device=args.device,
        seed=args.seed,
        start=args.start,
    )


def _log_step(report: JobReport) -> None:
    """Validation steps at INFO, the others at DEBUG (``-v``); the job logs everything else."""
    step = report.train
    if step is None:
        return
    if step.val_ap is None:
        logger.debug("step %5d  %5.0f s  loss %.4f", step.step, step.elapsed_s, step.loss)
    else:
        logger.info(
            "step %5d  %5.0f s  loss %.4f%s  validation AP %.3f (best %.3f)",
            step.step,
            step.elapsed_s,
            step.loss,
            f"  GE {step.ge_penalty:.4f}" if step.ge_penalty is not None else "",
            step.val_ap,
            step.best_val_ap,
        )


def main(args: argparse.Namespace) -> int:
    found = find_micrographs(args.micrographs)
    label_files = [args.labels] + ([args.negatives] if args.negatives else [])
    check_model_output(args.out, [*found, *label_files])
    positives = _read_labels(args.labels, args.labels_format)
    negatives = _read_labels(args.negatives, args.labels_format) if args.negatives else None
    settings = settings_from_args(args)
    total = 0  # labelled micrographs, for the failure summary

    def on_report(report: JobReport) -> None:
        nonlocal total
        if report.stage == "preprocess":
            total = report.total or 0
        _log_step(report)

    stop = threading.Event()
    with first_interrupt_stops(stop, "Ctrl-C: stopping after this step and saving the best model so far "
                                     "(Ctrl-C again to quit at once, saving nothing)"):
        result = run_job(train_job(found, positives, negatives, settings, stop=stop, cache=PreprocessCache()), on_report)
    code = report_failures(result.failures, total, "micrographs")
    meta = result.saved.metadata
    if stop.is_set():
        if not meta["steps"]:
            logger.warning("interrupted before the first training step; nothing saved")
            return 130
        save_model(args.out, result.saved.model, meta)
        ap = meta["best_validation_ap"]
        logger.warning(
            "interrupted: saved the best model so far (step %d, validation AP %s) to %s",
            meta["best_step"],
            "n/a" if ap is None else f"{ap:.3f}",
            args.out,
        )
        return 130
    save_model(args.out, result.saved.model, meta)
    logger.info("saved the model to %s", args.out)
    return code
