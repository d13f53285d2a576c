"""Rescore a stored ``consensus.py`` run with the network's rank fused with our picker's.

For every OR cluster of ``bench_out/consensus/TAG/DATASET_seedN/consensus.npz``: our
picker's score (its score where it found the cluster, else that of its nearest candidate
within the particle radius, below its cut too, else its lowest), then a weighted mean of the
two ranks (network weight w). Printed: F1 / MCC of our picker at its cut, of the network
alone and of each fusion, scored as ``consensus.py`` scores (same population, one-to-one
matching). No training: seconds per run.

usage: python benchmarks/consensus_fusion.py --tag tz4 [--datasets ...] [--seeds 0] [--weights 0.3 0.5 0.7]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
from scipy.stats import rankdata

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import consensus  # noqa: E402
import vs_topaz  # noqa: E402

from picker_gui.core.consensus import ConsensusSets  # noqa: E402
from picker_gui.core.coords import CoordinateTable  # noqa: E402
from picker_gui.core.formats import read_coordinates  # noqa: E402


def ours_everywhere(z, full: CoordinateTable, reach: float) -> np.ndarray:
    """Our picker's score for every cluster, below its cut too (nearest candidate within ``reach``)."""
    scores = z["set_scores"][:, z["set_names"].tolist().index("ours")].copy()
    low = float(np.min(full.score))
    for i in np.flatnonzero(~np.isfinite(scores)):
        sub = full.for_micrograph(f"{z['keys'][i]}.mrc")
        d = np.hypot(sub.x - z["x"][i], sub.y - z["y"][i]) if len(sub) else np.array([np.inf])
        scores[i] = sub.score[int(np.argmin(d))] if d.min() < reach else low
    return scores


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--datasets", nargs="+", default=["demo", "betagal", "aspire-small"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--weights", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    ap.add_argument("--out", default="bench_out/consensus")
    args = ap.parse_args()
    print("dataset\tseed\tmethod\tf1\tmcc")
    for dataset in args.datasets:
        for seed in args.seeds:
            work = Path(args.out) / args.tag / f"{dataset}_seed{seed}"
            if not (work / "consensus.npz").exists():
                print(f"{dataset}\t{seed}\t(no stored run in {work})")
                continue
            ns = argparse.Namespace(n_train=8, n_test=4)
            data = vs_topaz.preprocess_all(vs_topaz.load_dataset(dataset, work, seed, ns), work)
            names = tuple(p.name for p in data["raw"])
            original_px = data["ds_pixel_a"] / data["scales"][names[0]][1]
            radius = vs_topaz.MATCH_FRACTION * data["diameter_a"] / original_px
            half = data["diameter_a"] / 2 / original_px
            z = np.load(work / "consensus.npz")
            full = read_coordinates(Path(args.out) / "inputs" / f"{dataset}_seed{seed}" / "ours_150s.star")
            ours = ours_everywhere(z, full, half)
            net = z["score"]
            variants = {"network": net, **{f"fused w={w:g}": w * rankdata(net) + (1 - w) * rankdata(ours)
                                           for w in args.weights}}
            set_names = tuple(z["set_names"].tolist())
            for i, (name, score) in enumerate(variants.items()):
                table = CoordinateTable.from_arrays([f"{k}.mrc" for k in z["keys"]], z["x"], z["y"], score=score)
                cons = ConsensusSets(set_names, table, z["found_by"], z["set_scores"], 1.0, names).fold_duplicates(half)
                # score_all wants every input's own table for its own_f1 column, which is not printed here
                rows = {r["method"]: r for r in consensus.score_all(cons, data["truth"], data["test"], radius,
                                                                    {n: full for n in set_names})}
                if i == 0:
                    print(f"{dataset}\t{seed}\tours at its cut\t{rows['ours']['f1']:.3f}\t{rows['ours']['mcc']:.3f}")
                net_row = rows["consensus network"]
                print(f"{dataset}\t{seed}\t{name}\t{net_row['f1']:.3f}\t{net_row['mcc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
