"""Rebuild the general model (resources/general_model/general.pt) from simulated data.

The general model is where training starts (``TrainConfig.start="general"``) and what can
pick a folder before any label. It is trained on two simulators, so that it learns what a
particle looks like after our preprocessing, not one generator's habits:

- our own generator (:mod:`picker_gui.core.synthetic`), ``--ours`` random sets: particle
  100-400 Å and 40-130 px across in the raw pixels, SNR 0.02-0.2, defocus, crowding, ice,
  carbon and blobs all drawn at random (seeds 3000 + k; the demo benchmark uses 1000-1002);
- ASPIRE, the sets written by ``benchmarks/aspire_sets.py --general K`` (seeds 1000 + k; the
  benchmark sets use seed 7).

Every micrograph goes through the picker's own preprocessing (downsampled from the
diameter so the particle is 16-45 px across, GMM-normalised) and every true centre is a
label: dense labels, so the objective is plain positive-vs-negative. The real data in
../shared/data is left out on purpose: the β-gal set is the benchmark's real test set, and
the other has no true centres.

Usage (from the repository root)::

    .venv-aspire/bin/python benchmarks/aspire_sets.py --general 12 --out bench_out/data/general
    .venv/bin/python tools/build_general_model.py --aspire bench_out/data/general --ours 24 --minutes 12

Both steps are seeded; the training is capped by time, so a rebuild on another machine
trains a different number of steps (the README beside the model gives the figures of the
shipped one), unless ``--steps N`` fixes the count (with ``--minutes`` large enough).
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from picker_gui.core.coords import CoordinateTable  # noqa: E402
from picker_gui.core.formats import read_coordinates  # noqa: E402
from picker_gui.core.models import save_model  # noqa: E402
from picker_gui.core.mrc_io import read_micrograph, write_mrc  # noqa: E402
from picker_gui.core.preprocess import PreprocessParams, preprocess_micrograph  # noqa: E402
from picker_gui.core.training import LabeledMicrograph, TrainConfig, run_training, train  # noqa: E402

logger = logging.getLogger("build_general_model")


def random_synthetic(k: int):
    """A random configuration of our generator for set ``k`` (seeded by ``3000 + k``)."""
    from picker_gui.core.synthetic import SyntheticConfig

    rng = np.random.default_rng(3000 + k)
    d = float(rng.uniform(100, 400))
    pixel = round(d / rng.uniform(40, 130), 2)
    d_px = d / pixel
    side = 1536 if d_px < 90 else 2048
    coverage = rng.uniform(0.05, 0.3)
    per_mic = int(max(8, min(250, coverage * side * side / (np.pi * (d_px / 2) ** 2))))
    lo = float(rng.uniform(0.6, 2.0))
    junk = bool(rng.random() < 0.8)
    return SyntheticConfig(
        shape=(side, side), pixel_size_a=pixel, particle_diameter_a=d, particles_per_micrograph=per_mic,
        snr=float(np.exp(rng.uniform(np.log(0.02), np.log(0.2)))),
        defocus_range_um=(lo, lo + float(rng.uniform(0.3, 1.5))),
        n_atoms=int(rng.integers(200, 1200)), junk=junk,
        blobs_per_micrograph=(0, int(rng.integers(1, 40))),
        ice_per_micrograph=float(rng.uniform(0, 2)), carbon_probability=float(rng.uniform(0, 0.5)),
        background_mottle=float(rng.uniform(0.01, 0.08)), name_prefix=f"ours{k:02d}",
    )


def write_synthetic_sets(out: Path, n_sets: int, per_set: int) -> list[Path]:
    """Write ``n_sets`` random sets of our generator as folders the reader below takes."""
    from picker_gui.core.synthetic import generate_micrographs

    folders = []
    for k in range(n_sets):
        folder = out / f"ours-{k:02d}"
        folders.append(folder)
        if (folder / "set.json").exists():
            continue
        cfg = random_synthetic(k)
        (folder / "micrographs").mkdir(parents=True, exist_ok=True)
        rows = []
        for m in generate_micrographs(per_set, cfg, seed=3000 + k):
            write_mrc(folder / "micrographs" / f"{m.name}.mrc", m.image, m.pixel_size_a)
            rows += [(f"{m.name}.mrc", float(x), float(y)) for x, y in zip(m.particles.x, m.particles.y)]
        with open(folder / "particles.star", "w") as fh:
            fh.write("\ndata_particles\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n")
            fh.writelines(f"{n} {x:.1f} {y:.1f}\n" for n, x, y in rows)
        (folder / "set.json").write_text(json.dumps(
            {"simulator": "picker_gui.core.synthetic", "diameter_a": cfg.particle_diameter_a, "pixel_a": cfg.pixel_size_a,
             "snr": cfg.snr, "per_mic": cfg.particles_per_micrograph, "seed": 3000 + k, "particles": len(rows)}, indent=1))
        logger.info("%s: %d micrographs, %d particles, %.0f Å at %.2f Å/px, SNR %.3f", folder.name, per_set, len(rows),
                    cfg.particle_diameter_a, cfg.pixel_size_a, cfg.snr)
    return folders


def load_set(folder: Path) -> tuple[list[LabeledMicrograph], dict]:
    """One set's micrographs through the picker's preprocessing, every true centre a label."""
    spec = json.loads((folder / "set.json").read_text())
    truth = read_coordinates(folder / "particles.star")
    params = PreprocessParams(diameter_a=float(spec["diameter_a"]))
    items = []
    for path in sorted((folder / "micrographs").glob("*.mrc")):
        prep = preprocess_micrograph(read_micrograph(path), params)
        items.append(LabeledMicrograph(prep, truth.for_micrograph(path.stem).replace(micrograph=path.name)))
    d_px = float(spec["diameter_a"]) / items[0].prep.pixel_size_a
    spec.update(name=folder.name, diameter_px=d_px, n_micrographs=len(items),
                n_labels=int(sum(len(it.positives) for it in items)))
    return items, spec


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aspire", type=Path, default=ROOT / "bench_out" / "data" / "general",
                    help="folder of ASPIRE sets (general-*) from benchmarks/aspire_sets.py --general K")
    ap.add_argument("--ours", type=int, default=24, help="random sets of our generator")
    ap.add_argument("--per-set", type=int, default=4, help="micrographs per set of our generator")
    ap.add_argument("--work", type=Path, default=ROOT / "bench_out" / "data" / "general")
    ap.add_argument("--minutes", type=float, default=12.0)
    ap.add_argument("--steps", type=int, default=None,
                    help="stop after this many steps (the same model on any machine; --minutes still caps the time)")
    ap.add_argument("--width", type=int, default=16)
    ap.add_argument("--architecture", default="pool74")
    ap.add_argument("--no-aspire", action="store_true", help="our generator only (an ablation)")
    ap.add_argument("--no-ours", action="store_true", help="ASPIRE only (an ablation)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=ROOT / "resources" / "general_model" / "general.pt")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")

    folders = [] if args.no_ours else write_synthetic_sets(args.work, args.ours, args.per_set)
    if not args.no_aspire:
        aspire = sorted(p for p in args.aspire.glob("general-*") if (p / "set.json").exists())
        if not aspire:
            raise SystemExit(f"no ASPIRE sets in {args.aspire}: run benchmarks/aspire_sets.py --general K first "
                             f"(or --no-aspire)")
        folders += aspire
    items, specs = [], []
    t0 = time.perf_counter()
    for folder in folders:
        its, spec = load_set(folder)
        items += its
        specs.append(spec)
        logger.info("%s: %d micrographs, %d labels, %.1f px across after downsampling", folder.name,
                    spec["n_micrographs"], spec["n_labels"], spec["diameter_px"])
    logger.info("preprocessed %d micrographs in %.0f s", len(items), time.perf_counter() - t0)
    d_px = [s["diameter_px"] for s in specs]
    config = TrainConfig(
        particle_diameter_px=float(np.median(d_px)), objective="pn", pi=0.25, architecture=args.architecture,
        width=args.width, max_seconds=args.minutes * 60, max_steps=args.steps or 10**7, eval_every=1000,
        validation_fraction=0.05, seed=args.seed, device="auto",
    )
    result = run_training(train(items, config))
    meta = dict(result.metadata)
    meta.update(
        general=True,
        training_sets=[{k: s[k] for k in ("name", "diameter_a", "pixel_a", "diameter_px", "snr", "n_labels")}
                       for s in specs],
        diameter_px_range=[round(min(d_px), 1), round(max(d_px), 1)],
        normalization="gmm",
    )
    save_model(args.out, result.model, meta)
    logger.info("saved %s: %d steps, %s; %d micrographs of %d sets, particles %.0f-%.0f px across", args.out,
                meta["steps"], meta["stopped_by"], len(items), len(specs), min(d_px), max(d_px))


if __name__ == "__main__":
    main()
