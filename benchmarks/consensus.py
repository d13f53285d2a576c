"""Consensus of real, independent pickers against each of them, on data with known particles.

For each dataset and seed (datasets as benchmarks/vs_topaz.py makes them: ``demo``,
``betagal`` from ../shared/data, ``aspire-small`` / ``aspire-large-lowsnr`` from
``benchmarks/aspire_sets.py``):

1. input pickers on every micrograph (training and test), each as its users run it:
   - ``dog``: the built-in difference-of-Gaussians picker sized from the diameter (its set
     threshold: the expected count per micrograph, as the window and ``--dog`` use);
   - ``apple``: ASPIRE's APPLE picker (``benchmarks/apple_picks.py`` in .venv-aspire; no scores);
   - ``ours``: our PU picker trained with its defaults on 200 sparse labels of the training
     micrographs (set threshold: where its picks per micrograph match the expected count, as
     a user sets the slider by the count the Picks tab shows);
2. the consensus job of ``picker-gui consensus --train --min-votes 2`` (core.consensus_job):
   merge at 0.1 x the box (box 1.5 x the diameter), picks found by at least 2 pickers as
   positives (Scipion's protocol today; the paper's AND of all is bounded by the weakest
   picker's recall) with the 200 labels on the training micrographs (as the window passes a
   user's labels; ``--no-labels``: without), NEG sampled, the network (ensemble of 3)
   scoring every OR pick;
3. scored on the test micrographs only (the PU picker's labels are on the others). Every
   method is judged on one population, as Deep Consensus is: the OR picks (each true when it
   lies within 0.3 x the diameter of a true centre) plus the true particles no picker found
   (missed by every method). A method keeps some OR picks: a picker those it found at or above
   a threshold, AND those all found, OR all of them, the network those it scores at or above
   a threshold. Precision, recall, F1 and MCC at the threshold that maximises each; for the
   input pickers also their own best F1 over all their picks (``own_f1``, as
   ``picker-gui evaluate`` scores them).

usage: python benchmarks/consensus.py [--datasets demo betagal aspire-small] [--seeds 0 1 2] [--tag T] [--fresh-inputs]

Our picker's picks are kept per dataset and seed (``bench_out/consensus/inputs/DATASET_seedN/ours_150s.star``; APPLE's beside it) and
reused by later runs unless ``--fresh-inputs``: the network can be iterated on alone.
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
sys.path.insert(0, str(HERE.parent))

import vs_topaz  # noqa: E402  (datasets, preprocessing, labels: the same as the Topaz benchmark)

from picker_gui.core.consensus import PickSet  # noqa: E402
from picker_gui.core.consensus_job import ConsensusSettings, consensus_job, dog_cut  # noqa: E402
from picker_gui.core.coords import CoordinateTable  # noqa: E402
from picker_gui.core.formats import read_coordinates, write_coordinates  # noqa: E402
from picker_gui.core.jobs import run_job  # noqa: E402
from picker_gui.core.metrics import evaluate  # noqa: E402

logger = logging.getLogger("consensus_bench")
ASPIRE_PY = HERE.parent / ".venv-aspire" / "bin" / "python"


# -- pickers ---------------------------------------------------------------------------------
def dog_set(data: dict, names: list[str]) -> CoordinateTable:
    from picker_gui.core.classical import dog_picks

    d_px = data["diameter_a"] / data["ds_pixel_a"]
    return CoordinateTable.concat(dog_picks(vs_topaz._load_prep(data["prep_dir"] / n, data["scales"][n]), d_px, name=n)
                                  for n in names)


def apple_set(data: dict, names: list[str], work: Path) -> CoordinateTable | None:
    if not ASPIRE_PY.exists():
        logger.warning("no ASPIRE environment (%s): APPLE left out", ASPIRE_PY)
        return None
    out = work / "apple.csv"
    if not out.exists():
        raw = {p.name: p for p in data["raw"]}
        px = data["diameter_a"] / (data["ds_pixel_a"] / data["scales"][names[0]][1])  # diameter in original px
        cmd = [str(ASPIRE_PY), str(HERE / "apple_picks.py"), "--particle-px", f"{px:.1f}", "--out", str(out.resolve()),
               *(str(raw[n].resolve()) for n in names)]
        t = time.perf_counter()
        subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=open(work / "apple.log", "w"), cwd=work)
        logger.info("APPLE: %d micrographs in %.0f s", len(names), time.perf_counter() - t)
    table = read_coordinates(out)
    return table.replace(micrograph=[f"{k}.mrc" for k in table.keys])


def ours_set(data: dict, names: list[str], labels: CoordinateTable, seed: int, max_seconds: float) -> CoordinateTable:
    """Our picker with its defaults ('picker-gui train') on the sparse labels, then every micrograph picked."""
    from picker_gui.core.inference import extract_picks, score_map
    from picker_gui.core.jobs import TrainSettings, train_config
    from picker_gui.core.training import LabeledMicrograph, train

    items = [LabeledMicrograph(vs_topaz._load_prep(data["prep_dir"] / n, data["scales"][n]), labels.for_micrograph(n))
             for n in data["train"]]
    d_px = data["diameter_a"] / data["ds_pixel_a"]
    settings = TrainSettings(diameter_a=data["diameter_a"], expected_per_micrograph=data["expected_per_micrograph"],
                             seed=seed, device="cpu", max_minutes=max_seconds / 60)
    result = run_job(train(items, train_config(settings, d_px)))
    return CoordinateTable.concat(
        extract_picks(score_map(result.model, p.image), p, d_px / 2, name=n)
        for n in names for p in [vs_topaz._load_prep(data["prep_dir"] / n, data["scales"][n])])


# -- scoring -----------------------------------------------------------------------------------
def _scores(tp: int, fp: int, fn: int, tn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    den = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / den if den else 0.0
    return {"precision": p, "recall": r, "f1": f1, "mcc": mcc}


def best_over(kept_masks, true: np.ndarray, missed: int) -> dict:
    """The best F1 and the best MCC over candidate selections ``(threshold, mask)``."""
    best_f1 = best_mcc = None
    for t, m in kept_masks:
        tp = int((m & true).sum())
        fp = int((m & ~true).sum())
        fn = int((~m & true).sum()) + missed
        tn = int((~m & ~true).sum())
        s = {**_scores(tp, fp, fn, tn), "threshold": t}
        if best_f1 is None or s["f1"] > best_f1["f1"]:
            best_f1 = s
        if best_mcc is None or s["mcc"] > best_mcc["mcc"]:
            best_mcc = s
    return {"precision": best_f1["precision"], "recall": best_f1["recall"], "f1": best_f1["f1"],
            "threshold_f1": best_f1["threshold"], "mcc": best_mcc["mcc"], "threshold_mcc": best_mcc["threshold"]}


def _thresholds(scores: np.ndarray) -> np.ndarray:
    s = np.unique(scores[np.isfinite(scores)])
    if len(s) > 200:
        s = np.quantile(s, np.linspace(0, 1, 201))
    return s


def score_all(cons, truth: CoordinateTable, test: list[str], radius: float, inputs: dict[str, CoordinateTable]) -> list[dict]:
    keys = cons.table.keys
    on_test = np.isin(keys, [n.rsplit(".", 1)[0] for n in test])
    xy = cons.table.xy()[on_test]
    ckeys = keys[on_test]
    found = cons.found_by[on_test]
    set_scores = cons.set_scores[on_test]
    net = cons.table.score[on_test]
    true = np.zeros(len(xy), dtype=bool)
    missed = 0
    for n in test:
        k = n.rsplit(".", 1)[0]
        t = truth.for_micrograph(n)
        txy = t.xy()
        m = ckeys == k
        if not len(txy):
            continue
        if m.any():
            d = np.sqrt(((xy[m][:, None] - txy[None]) ** 2).sum(-1))
            true[np.flatnonzero(m)] = d.min(1) <= radius
            missed += int((d.min(0) > radius).sum())
        else:
            missed += len(txy)
    rows = []
    n_sets = cons.n_sets
    for i, name in enumerate(cons.set_names):
        s = set_scores[:, i]
        if np.isfinite(s[found[:, i]]).any():
            masks = [(float(t), found[:, i] & (s >= t)) for t in _thresholds(s[found[:, i]])]
        else:
            masks = [(None, found[:, i])]
        row = {"method": name, **best_over(masks, true, missed)}
        own = inputs[name]
        own = own[np.isin(own.keys, [n.rsplit(".", 1)[0] for n in test])]
        row["own_f1"] = evaluate(own, truth_on(truth, test), radius)["best_f1"]
        rows.append(row)
    votes = found.sum(1)
    rows.append({"method": "AND", **best_over([(None, votes >= n_sets)], true, missed)})
    for k in range(2, n_sets):
        rows.append({"method": f"{k}-of-{n_sets}", **best_over([(None, votes >= k)], true, missed)})
    rows.append({"method": "OR", **best_over([(None, votes >= 1)], true, missed)})
    rows.append({"method": "consensus network", **best_over([(float(t), net >= t) for t in _thresholds(net)], true, missed)})
    at_half = best_over([(0.5, net >= 0.5)], true, missed)
    rows.append({"method": "consensus network at 0.5", **at_half})
    return rows


def truth_on(truth: CoordinateTable, names: list[str]) -> CoordinateTable:
    return CoordinateTable.concat(truth.for_micrograph(n).replace(micrograph=n) for n in names)


# -- one run ---------------------------------------------------------------------------------
def run(dataset: str, seed: int, args) -> list[dict]:
    work = Path(args.out) / (args.tag or "default") / f"{dataset}_seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    kept = Path(args.out) / "inputs" / f"{dataset}_seed{seed}"  # input pickers' picks, whatever the tag
    kept.mkdir(parents=True, exist_ok=True)
    ns = argparse.Namespace(n_train=8, n_test=4)
    data = vs_topaz.preprocess_all(vs_topaz.load_dataset(dataset, work, seed, ns), work)
    names = [p.name for p in data["raw"]]
    original_px = data["ds_pixel_a"] / data["scales"][names[0]][1]
    radius = vs_topaz.MATCH_FRACTION * data["diameter_a"] / original_px
    labels = vs_topaz.sample_labels(data, 200, seed)
    t0 = time.perf_counter()
    inputs = {"dog": dog_set(data, names)}
    apple = apple_set(data, names, kept)
    if apple is not None and len(apple):
        inputs["apple"] = apple
    cached = kept / f"ours_{args.our_max_seconds:g}s.star"
    if cached.exists() and not args.fresh_inputs:  # the same labels and seed: reuse (iterating on the network)
        inputs["ours"] = read_coordinates(cached)
        logger.info("our picks reused from %s", cached)
    else:
        inputs["ours"] = ours_set(data, names, labels, seed, args.our_max_seconds)
        write_coordinates(inputs["ours"], cached, "star-particles")
    # Each picker cut as its users cut it: the built-in picker at the expected count (what the
    # window and --dog use when the count is set), ours where the picks per micrograph match the expected count (what the
    # Picks tab shows beside the slider), APPLE has no scores.
    expected = int(round(data["expected_per_micrograph"] * len(names)))
    ours_scores = np.sort(inputs["ours"].score)[::-1]
    thresholds = {"dog": dog_cut(inputs["dog"].score, len(names), data["expected_per_micrograph"]), "apple": None,
                  "ours": float(ours_scores[min(expected, len(ours_scores)) - 1]) if len(ours_scores) else 0.0}
    sets = [PickSet(n, t, thresholds[n]) for n, t in inputs.items()]
    # Positives: found by at least 2 of the pickers, as Scipion's Deep Consensus protocol does
    # today (AND of all three is bounded by the weakest picker's recall: APPLE finds ~15 %).
    settings = ConsensusSettings(diameter_a=data["diameter_a"], train=True, seed=seed, device="cpu",
                                 max_minutes=args.max_minutes, min_positives=64, min_votes=min(2, len(sets)))
    t1 = time.perf_counter()
    # The user's labels (the 200 the PU picker learnt from, on the training micrographs) join
    # the positives, as the window passes them; --no-labels leaves them out (the paper's setting).
    result = run_job(consensus_job(data["raw"], sets, settings, user_positives=None if args.no_labels else labels))
    t_net = time.perf_counter() - t1
    truth = data["truth"]
    rows = score_all(result.sets, truth, data["test"], radius, inputs)
    total = result.sets.counts()["total"]
    meta = {"dataset": dataset, "seed": seed, "or": total["or"], "and": total["and"],
            "val_accuracy": result.model.val_accuracy if result.model else None, "network_s": t_net,
            "pickers_s": t1 - t0, "thresholds": thresholds}
    for r in rows:
        r.update(dataset=dataset, seed=seed)
    (work / "result.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1, default=float))
    logger.info("[%s seed %d] OR %d, AND %d; network %.0f s, validation accuracy %s", dataset, seed, total["or"],
                total["and"], t_net, meta["val_accuracy"])
    return rows


COLUMNS = ("dataset", "seed", "method", "precision", "recall", "f1", "mcc", "own_f1")


def _print(rows: list[dict]) -> None:
    print("\t".join(COLUMNS))
    for r in rows:
        print("\t".join(f"{r.get(c):.3f}" if isinstance(r.get(c), float) else str(r.get(c, "")) for c in COLUMNS))
    print()
    print("MEDIANS over seeds")
    print("\t".join(("dataset", "method", "n", "precision", "recall", "f1", "mcc")))
    for dataset in dict.fromkeys(r["dataset"] for r in rows):
        for method in dict.fromkeys(r["method"] for r in rows if r["dataset"] == dataset):
            sub = [r for r in rows if r["dataset"] == dataset and r["method"] == method]
            med = {c: statistics.median(r[c] for r in sub) for c in ("precision", "recall", "f1", "mcc")}
            print("\t".join([dataset, method, str(len(sub)), *(f"{med[c]:.3f}" for c in ("precision", "recall", "f1", "mcc"))]))
    sys.stdout.flush()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["demo", "betagal", "aspire-small"], choices=vs_topaz.DATASETS)
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--our-max-seconds", type=float, default=150.0)
    ap.add_argument("--max-minutes", type=float, default=5.0, help="the consensus network's budget")
    ap.add_argument("--tag", default=None)
    ap.add_argument("--no-labels", action="store_true",
                    help="train the network on the agreed picks only, not also on the labels our picker learnt from")
    ap.add_argument("--fresh-inputs", action="store_true",
                    help="train our picker again even when its picks for this dataset and seed are on disk")
    ap.add_argument("--out", default="bench_out/consensus")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    import torch

    torch.set_num_threads(2)
    rows = []
    for dataset in args.datasets:
        why = vs_topaz.available(dataset)
        if why:
            logger.warning("%s skipped: %s", dataset, why)
            continue
        for seed in args.seeds:
            rows += run(dataset, seed, args)
            _print(rows)


if __name__ == "__main__":
    main()
