"""End-to-end check of runner.py: train and extract with the real Topaz on synthetic micrographs.

Writes a few float32 MRC micrographs (noise, dark Gaussian "particles", bright decoys) and their
Topaz label tables to a temporary folder, trains Topaz for a couple of short epochs, extracts,
and prints speeds and how many true particles the top picks found. The last micrograph is
non-square so that an x/y swap anywhere would show up as near-zero recall.

usage: python benchmarks/topaz/smoke.py [--venv DIR] [--epochs 2] [--epoch-size 20] [--keep]
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path

import mrcfile
import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import runner  # noqa: E402  (benchmarks/ is not a package)

SHAPES = [(256, 256), (256, 256), (256, 256), (256, 256), (256, 320)]  # rows, cols
PARTICLE_SIGMA_PX = 2.5
MIN_SEPARATION_PX = 14


def _blob_centres(rng: np.random.Generator, shape: tuple[int, int], n: int) -> np.ndarray:
    """Up to ``n`` (x, y) centres at least MIN_SEPARATION_PX apart, 8 px from the border."""
    centres: list[tuple[float, float]] = []
    for _ in range(50 * n):
        x, y = rng.uniform(8, shape[1] - 8), rng.uniform(8, shape[0] - 8)
        if all((x - a) ** 2 + (y - b) ** 2 >= MIN_SEPARATION_PX**2 for a, b in centres):
            centres.append((x, y))
        if len(centres) == n:
            break
    return np.array(centres)


def make_micrograph(rng: np.random.Generator, shape: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """A normalised image with dark particles and bright decoys; returns it and the particle (x, y)."""
    centres = _blob_centres(rng, shape, 60)
    particles, decoys = centres[:40], centres[40:]
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    image = rng.normal(0.0, 1.0, shape)
    for (x, y), amplitude in [(c, -2.0) for c in particles] + [(c, 2.0) for c in decoys]:
        image += amplitude * np.exp(-((xx - x) ** 2 + (yy - y) ** 2) / (2 * PARTICLE_SIGMA_PX**2))
    image = (image - image.mean()) / image.std()
    return image.astype(np.float32), particles


def recall_at(picks: pd.DataFrame, truth: pd.DataFrame, name: str, within_px: float = 3.0) -> float:
    """Fraction of true particles with one of the top len(truth) picks within ``within_px``."""
    t = truth[truth.image_name == name][["x_coord", "y_coord"]].to_numpy(float)
    p = picks[picks.image_name == name].nlargest(len(t), "score")[["x_coord", "y_coord"]].to_numpy(float)
    if len(t) == 0 or len(p) == 0:
        return 0.0
    d = np.sqrt(((t[:, None, :] - p[None, :, :]) ** 2).sum(-1))
    return float((d.min(axis=1) <= within_px).mean())


def _mib(n_bytes: int | None) -> str:
    return "unknown" if n_bytes is None else f"{n_bytes / 2**20:.0f} MiB"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--venv", default=None, help="Topaz environment (default: runner.DEFAULT_VENV)")
    ap.add_argument("--epochs", type=int, default=2)
    ap.add_argument("--epoch-size", type=int, default=20)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--keep", action="store_true", help="keep the temporary folder")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")

    work = Path(tempfile.mkdtemp(prefix="topaz_smoke_"))
    try:
        rng = np.random.default_rng(0)
        paths, rows = [], []
        for i, shape in enumerate(SHAPES):
            image, particles = make_micrograph(rng, shape)
            path = work / "mics" / f"mic{i:02d}.mrc"
            path.parent.mkdir(exist_ok=True)
            with mrcfile.new(path, overwrite=True) as mrc:
                mrc.set_data(image)
            paths.append(path)
            rows += [{"image_name": path.stem, "x_coord": x, "y_coord": y} for x, y in particles]
        truth = pd.DataFrame(rows)
        train_paths, test_paths = paths[:3], paths[3:]
        # Label half of the training particles, as in a PU setting; test labels are complete.
        in_train = truth.image_name.isin([p.stem for p in train_paths])
        train_labels = truth[in_train].sample(frac=0.5, random_state=0)
        test_labels = truth[truth.image_name.isin([p.stem for p in test_paths])]

        run = runner.topaz_train(
            train_paths, train_labels, test_paths, test_labels, out_dir=work / "train",
            radius=3, num_particles=40, epochs=args.epochs, epoch_size=args.epoch_size,
            threads=args.threads, venv_dir=args.venv,
        )
        print("\ncommand:", runner.format_command(run.command))
        print(f"pi={run.pi:.5f} passed={run.pi_passed:.5f} p_observed true={run.p_observed_true:.5f} "
              f"topaz={run.p_observed_topaz:.5f} method used={run.method_used}")
        print(f"train: {run.wall_time_s:.1f} s wall, "
              f"{run.train_minibatches_per_s:.2f} minibatches/s while training "
              f"({run.overall_minibatches_per_s:.2f} over the whole run), "
              f"peak RSS {_mib(run.peak_rss_bytes)} ({run.rss_method})")
        print(run.epoch_table().to_string(index=False))
        print("models:", [p.name for p in run.model_paths])

        picks, wall, peak = runner.topaz_extract(
            run.final_model, paths, radius=6, out_path=work / "extract" / "picks.txt",
            threads=args.threads, venv_dir=args.venv,
        )
        print(f"\nextract: {len(paths)} micrographs in {wall:.1f} s "
              f"({wall / len(paths):.2f} s each incl. start-up), "
              f"peak RSS {_mib(peak)}, {len(picks)} picks")
        print(picks.head().to_string(index=False))
        timings = runner.extract_timings(work / "extract" / "picks.log")
        print("per micrograph (read + score + NMS, no start-up):")
        print(timings.to_string(index=False))
        for path, (rows_px, cols_px) in zip(paths, SHAPES):
            split = "train" if path in train_paths else "test"
            print(f"  {path.stem} ({split}, {cols_px}x{rows_px}): "
                  f"recall of top-N picks within 3 px = {recall_at(picks, truth, path.stem):.2f}")
        print(f"\nfiles in {work}" if args.keep else "")
    finally:
        if not args.keep:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
