"""Write a synthetic demo dataset: micrographs, true particle centres and junk.

Micrographs are projections of one asymmetric 3D density in random orientations, through
a CTF with varying defocus and at a realistic signal-to-noise ratio, with things a picker
must not pick (small dense blobs, ice contamination, carbon edges, thickness gradients).
OUTDIR gets micrographs/*.mrc, particles.star (true centres), junk.star (the things not
to pick), labels.star (a sparse subset of the true centres, as a user would click them:
--labels-per-micrograph on all but the last quarter of the micrographs, which are left
for testing), dataset.json and README.txt. The same seed gives the same dataset.

example:
  picker-gui demo demo_data --n-micrographs 12 --seed 1
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
from pathlib import Path

from picker_gui.commands._common import positive_int
from picker_gui.core.demo_data import write_sparse_labels
from picker_gui.core.errors import UsageError
from picker_gui.core.paths import check_outputs
from picker_gui.core.synthetic import SyntheticConfig, write_demo_dataset

logger = logging.getLogger(__name__)


def _size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT such as 2048x1536, got {text!r}") from None
    if min(w, h) < 64:
        raise argparse.ArgumentTypeError(f"micrographs must be at least 64x64 pixels, got {text}")
    return w, h


def add_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("outdir", type=Path, metavar="OUTDIR", help="folder to write (created; must be empty if it exists)")
    parser.add_argument("--n-micrographs", type=positive_int, default=8, metavar="N", help="number of micrographs (default 8)")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--labels-per-micrograph", type=positive_int, default=25, metavar="K", help="sparse labels per training micrograph (default 25)")
    parser.add_argument("--size", type=_size, default=(2048, 1536), metavar="WxH", help="micrograph size in pixels (default 2048x1536)")


def main(args: argparse.Namespace) -> int:
    # Refused before anything is written: a file in OUTDIR's place, a folder with files in
    # it (nothing is ever replaced), a folder that cannot be written.
    if args.outdir.is_dir() and any(args.outdir.iterdir()):
        raise UsageError(f"{args.outdir}: folder exists and is not empty; give a new or empty folder")
    check_outputs([(args.outdir, "OUTDIR")], folder_outputs=["OUTDIR"])
    width, height = args.size
    config = dataclasses.replace(SyntheticConfig(), shape=(height, width))
    from tqdm import tqdm

    with tqdm(total=args.n_micrographs, desc="demo", unit="mic", disable=None, leave=False) as bar:
        dataset = write_demo_dataset(
            args.outdir,
            n_micrographs=args.n_micrographs,
            seed=args.seed,
            config=config,
            progress=lambda done, total: bar.update(done - bar.n),
        )
    labels = write_sparse_labels(args.outdir, dataset.particles, args.labels_per_micrograph, args.seed)
    logger.info(
        "wrote %d micrographs (%dx%d px, %.3g Å/px, particle %.0f Å) with %d particles to %s",
        args.n_micrographs,
        width,
        height,
        dataset.pixel_size_a,
        dataset.diameter_a,
        len(dataset.particles),
        args.outdir,
    )
    logger.info("labels.star: %d sparse labels on %d micrograph(s)", len(labels), len(labels.micrographs()))
    return 0
