"""Rescore a stored ``consensus.py`` run with ranks: the network's fused with the pickers'.

For every OR cluster of ``bench_out/consensus/TAG/DATASET_seedN/consensus.npz``: each ranked
picker's score (``--pickers``; its score where it found the cluster, else that of its
nearest candidate within the particle radius, below its cut too, else its lowest), the mean
of the pickers' ranks (training-free: where independent pickers agree, both rank a pick
high), a weighted mean of the network's rank with that (network weight w), weighted means
of the pickers' ranks (``--pick-weights``: the weight on the first), and the posterior of a
two-component Gaussian mixture fitted to the pickers' scores (which weighs a picker by how
well its scores separate, where the mean rank weighs them alike). Printed:
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


def mixture_posterior(score_sets: list[np.ndarray], iterations: int = 200, transform: str = "normal") -> np.ndarray:
    """P(particle) under a two-component Gaussian mixture (full covariances) fitted to the
    pickers' normal scores (each picker's ranks mapped through the inverse normal CDF). A
    picker whose scores separate the two components well pulls the posterior more than a
    noisier one, where the mean rank weighs them alike. The component with the higher
    mean is the particles'."""
    from scipy.stats import multivariate_normal, norm

    if transform == "normal":
        x = np.column_stack([norm.ppf((rankdata(s) - 0.5) / len(s)) for s in score_sets])
    else:  # the scores themselves, standardised (logits: roughly normal within each class)
        x = np.column_stack([(s - s.mean()) / s.std() for s in score_sets])
    mean_rank = x.mean(axis=1)
    r = (mean_rank > np.median(mean_rank)).astype(float)  # start: the top half of the mean rank
    for _ in range(iterations):
        w = r.mean()
        comps = []
        for resp in (r, 1 - r):
            mu = (resp[:, None] * x).sum(0) / resp.sum()
            d = x - mu
            cov = (resp[:, None, None] * d[:, :, None] * d[:, None, :]).sum(0) / resp.sum() + 1e-3 * np.eye(x.shape[1])
            comps.append((mu, cov))
        p1 = w * multivariate_normal(comps[0][0], comps[0][1]).pdf(x)
        p0 = (1 - w) * multivariate_normal(comps[1][0], comps[1][1]).pdf(x)
        new = p1 / np.maximum(p1 + p0, 1e-300)
        if np.max(np.abs(new - r)) < 1e-6:
            r = new
            break
        r = new
    if comps[0][0].sum() < comps[1][0].sum():
        r = 1 - r
    return r


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tag", required=True)
    ap.add_argument("--datasets", nargs="+", default=["demo", "betagal", "aspire-small"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0])
    ap.add_argument("--weights", nargs="+", type=float, default=[0.3, 0.5, 0.7])
    ap.add_argument("--pickers", nargs="+", default=["ours"], help="ranked input pickers whose ranks are averaged")
    ap.add_argument("--pick-weights", nargs="*", type=float, default=[],
                    help="also a weighted mean of the pickers' ranks: this weight on the first, the rest shared")
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
                rl = list(ranks.values())
                raw = [everywhere(z, p, f, half) for p, f in fulls.items()]
                variants["mixture posterior, standardised scores"] = (
                    mixture_posterior(raw, transform="standard") + 1e-6 * rankdata(mean_rank) / len(mean_rank))
                for w in args.pick_weights:
                    variants[f"{w:g} x {args.pickers[0]} + rest"] = w * rl[0] + (1 - w) * np.mean(rl[1:], axis=0)
                variants["mixture posterior, normal scores of the ranks"] = (
                    mixture_posterior(rl) + 1e-6 * rankdata(mean_rank) / len(mean_rank))
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
