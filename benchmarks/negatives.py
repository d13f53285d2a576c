"""Do labelled negatives keep picks off junk? Same positives, trained with and without them.

On demo data (junk on: small dense blobs, ice, carbon edges), the picker is trained twice
with the same sparse positive labels: once plain PU, once adding "not a particle" clicks
on the junk of the training micrographs (the demo's junk.star, as a user would click ice
and carbon edges). On the test micrographs, each model's picks are cut where recall of
the true particles reaches the target (0.8 by default), and the script prints how many of
those picks land on junk (within one particle diameter of a junk point and not on a true
particle) and the precision. Medians over seeds.

usage: python benchmarks/negatives.py [--seeds 0 1 2] [--recall 0.8] [--max-seconds 60]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from picker_gui.core.cache import PreprocessCache  # noqa: E402
from picker_gui.core.coords import CoordinateTable  # noqa: E402
from picker_gui.core.jobs import TrainSettings, pick_job, run_job, train_job  # noqa: E402
from picker_gui.core.metrics import match_picks, precision_recall_curve  # noqa: E402
from picker_gui.core.mrc_io import write_mrc  # noqa: E402
from picker_gui.core.synthetic import SyntheticConfig, generate_micrographs  # noqa: E402


def _on_junk(picks: CoordinateTable, junk: CoordinateTable, truth: CoordinateTable, diameter: float) -> np.ndarray:
    near_junk = np.zeros(len(picks), bool)
    near_truth = np.zeros(len(picks), bool)
    for ref, out, radius in ((junk, near_junk, diameter), (truth, near_truth, diameter / 2)):
        for key in set(picks.keys):
            sel = np.flatnonzero(picks.keys == key)
            r = ref.for_micrograph(key)
            if not len(r) or not len(sel):
                continue
            d2 = (picks.x[sel, None] - r.x[None]) ** 2 + (picks.y[sel, None] - r.y[None]) ** 2
            out[sel] = (d2 <= radius**2).any(axis=1)
    return near_junk & ~near_truth


def one_seed(seed: int, args) -> dict:
    """Both trainings and their test picks, through the jobs a user runs (train_job,
    pick_job): the micrographs are written as MRC files and preprocessed once, through a
    cache that both runs share."""
    with tempfile.TemporaryDirectory(prefix="negatives_") as tmp:
        return _one_seed(seed, args, Path(tmp))


def _one_seed(seed: int, args, work: Path) -> dict:
    cfg = SyntheticConfig()
    mics = list(generate_micrographs(args.n_train + args.n_test, cfg, seed=2000 + seed))
    paths = [write_mrc(work / f"{m.name}.mrc", m.image, m.pixel_size_a) for m in mics]
    cache = PreprocessCache(work / "cache")
    rng = np.random.default_rng(seed)
    diameter_px = cfg.particle_diameter_a / cfg.pixel_size_a
    train_m = list(zip(mics[: args.n_train], paths[: args.n_train]))
    test_m = list(zip(mics[args.n_train :], paths[args.n_train :]))
    per = args.labels // args.n_train
    positives = CoordinateTable.concat(
        m.particles[rng.choice(len(m.particles), min(per, len(m.particles)), replace=False)].replace(micrograph=p.name)
        for m, p in train_m
    )
    negatives = CoordinateTable.concat(
        m.junk[rng.permutation(len(m.junk))[: args.negatives_per_micrograph]].replace(micrograph=p.name) for m, p in train_m
    )
    truth = CoordinateTable.concat(m.particles.replace(micrograph=p.name) for m, p in test_m)
    junk = CoordinateTable.concat(m.junk.replace(micrograph=p.name) for m, p in test_m)
    settings = TrainSettings(
        diameter_a=cfg.particle_diameter_a,
        expected_per_micrograph=cfg.particles_per_micrograph,
        max_minutes=args.max_seconds / 60,
        seed=seed,
        device="cpu",
    )
    out = {}
    for label, use_neg in (("without", False), ("with", True)):
        result = run_job(train_job([p for _, p in train_m], positives, negatives if use_neg else None, settings, cache=cache))
        # Every candidate, at the particle radius the model was trained with (pick_job's default).
        picks = run_job(pick_job(result.saved, [p for _, p in test_m], device="cpu", cache=cache)).picks
        m = match_picks(picks, truth, diameter_px / 2)
        precision, recall, thresholds = precision_recall_curve(m)
        i = int(np.searchsorted(recall, args.recall))
        if i >= len(recall):
            out[label] = {"reached": False, "max_recall": float(recall.max())}
            continue
        kept = picks[picks.score >= thresholds[i]]
        on_junk = _on_junk(kept, junk, truth, diameter_px)
        out[label] = {
            "reached": True,
            "n_picks": len(kept),
            "on_junk": int(on_junk.sum()),
            "precision": float(precision[i]),
            "n_negative_labels": len(negatives) if use_neg else 0,
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--n-train", type=int, default=6)
    ap.add_argument("--n-test", type=int, default=3)
    ap.add_argument("--labels", type=int, default=150)
    ap.add_argument("--negatives-per-micrograph", type=int, default=15)
    ap.add_argument("--recall", type=float, default=0.8)
    ap.add_argument("--max-seconds", type=float, default=60.0)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    rows = []
    for seed in args.seeds:
        r = one_seed(seed, args)
        rows.append(r)
        print(f"seed {seed}: " + "; ".join(f"{k} negatives: {v}" for k, v in r.items()), flush=True)
    for label in ("without", "with"):
        ok = [r[label] for r in rows if r[label]["reached"]]
        if ok:
            print(
                f"MEDIAN {label} negatives, at recall {args.recall}: picks on junk "
                f"{statistics.median(v['on_junk'] for v in ok):.0f} of {statistics.median(v['n_picks'] for v in ok):.0f}, "
                f"precision {statistics.median(v['precision'] for v in ok):.3f} ({len(ok)} seed(s))"
            )


if __name__ == "__main__":
    main()
