"""Rescore a stored ``consensus.py`` run with ranks: the network's fused with the pickers'.

For every OR cluster of ``bench_out/consensus/TAG/DATASET_seedN/consensus.npz``: each ranked
picker's score (``--pickers``; its score where it found the cluster, else that of its
nearest candidate within the particle radius, below its cut too, else its lowest), the mean
of the pickers' ranks (training-free: where independent pickers agree, both rank a pick
high), and a weighted mean of the network's rank with that (network weight w). Printed:
F1 / MCC of each picker at its cut and over all its picks, of the mean rank, of the network
alone and of each fusion, scored as ``consensus.py`` scores (same population, one-to-one
matching). No training: seconds per run.

usage: python benchmarks/consensus_fusion.py --tag tzt --datasets aspire-small --seeds 1 --pickers ours topaz-trained
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


def full_table(out: Path, dataset: str, seed: int, picker: str, data: dict) -> CoordinateTable:
    """All of a ranked input picker's picks, below its cut too, as ``consensus.py`` stored them."""
    kept = out / "inputs" / f"{dataset}_seed{seed}"
    if picker == "ours":
        return read_coordinates(kept / "ours_150s_v2.star")
    if picker == "topaz-trained":
        model = consensus.trained_topaz_model(out, dataset, seed)
        return consensus.topaz_set(data, [p.name for p in data["raw"]], kept, str(model), "topaz_trained.txt")
    if picker == "topaz":
        return consensus.topaz_set(data, [p.name for p in data["raw"]], kept)
    raise SystemExit(f"{picker}: not a ranked input picker with stored picks (ours, topaz, topaz-trained)")


def everywhere(z, picker: str, full: CoordinateTable, reach: float) -> np.ndarray:
    """A picker's score for every cluster, below its cut too (nearest candidate within ``reach``)."""
    scores = z["set_scores"][:, z["set_names"].tolist().index(picker)].copy()
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
    ap.add_argument("--pickers", nargs="+", default=["ours"], help="ranked input pickers whose ranks are averaged")
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
            fulls = {p: full_table(Path(args.out), dataset, seed, p, data) for p in args.pickers}
            ranks = {p: rankdata(everywhere(z, p, f, half)) for p, f in fulls.items()}
            mean_rank = np.mean(list(ranks.values()), axis=0)
            net = z["score"]
            variants = {"network": net, **{f"{p} (all its picks)": r for p, r in ranks.items()},
                        **({f"mean rank of {' + '.join(args.pickers)}": mean_rank} if len(ranks) > 1 else {}),
                        **{f"fused w={w:g}": w * rankdata(net) + (1 - w) * mean_rank for w in args.weights}}
            set_names = tuple(z["set_names"].tolist())
            if len(ranks) > 1:  # what `picker-gui consensus --rank PICKERS` computes: ranks above each set's cut only
                stored = ConsensusSets(set_names, CoordinateTable.from_arrays([f"{k}.mrc" for k in z["keys"]], z["x"],
                                                                              z["y"]), z["found_by"], z["set_scores"], 1.0, names)
                variants[f"--rank {' '.join(args.pickers)}"] = stored.rank_scores(args.pickers)
            full = fulls[args.pickers[0]]
            for i, (name, score) in enumerate(variants.items()):
                table = CoordinateTable.from_arrays([f"{k}.mrc" for k in z["keys"]], z["x"], z["y"], score=score)
                cons = ConsensusSets(set_names, table, z["found_by"], z["set_scores"], 1.0, names).fold_duplicates(half)
                # score_all wants every input's own table for its own_f1 column, which is not printed here
                rows = {r["method"]: r for r in consensus.score_all(cons, data["truth"], data["test"], radius,
                                                                    {n: full for n in set_names})}
                if i == 0:
                    for p in args.pickers:
                        print(f"{dataset}\t{seed}\t{p} at its cut\t{rows[p]['f1']:.3f}\t{rows[p]['mcc']:.3f}")
                net_row = rows["consensus network"]
                print(f"{dataset}\t{seed}\t{name}\t{net_row['f1']:.3f}\t{net_row['mcc']:.3f}", flush=True)


if __name__ == "__main__":
    main()
