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
   - ``topaz`` (``--inputs ... topaz``): Topaz's pretrained general picker (``topaz extract``
     with its default model, resnet16_u64), zero-shot, on the same downsampled micrographs,
     NMS at the particle radius, cut at the expected count like ours (needs
     ``benchmarks/topaz/setup_topaz.sh``);
2. the consensus job of ``picker-gui consensus --train --min-votes 2`` (core.consensus_job;
   ``--min-votes K`` for another k-of-N):
   merge at 0.1 x the box (box 1.5 x the diameter), picks found by at least 2 pickers as
   positives (Scipion's protocol today; the paper's AND of all is bounded by the weakest
   picker's recall) with the 200 labels on the training micrographs (as the window passes a
   user's labels; ``--no-labels``: without), NEG sampled, the network (ensemble of 3)
   scoring every OR pick;
3. scored on the test micrographs only (the PU picker's labels are on the others). Every
   method is judged on one population, as Deep Consensus is: the OR picks plus the true
   particles no OR pick matches. A method keeps some OR picks: a picker those it found at or
   above a threshold, AND those all found, OR all of them, the network those it scores at
   or above a threshold. The kept picks are matched one to one to the true centres (within
   0.3 x the diameter, greedily in score order, as ``picker-gui evaluate`` does), so two
   unmerged picks on one particle are one true and one false positive. Precision, recall,
   F1 and MCC at the threshold that maximises each; for the input pickers also their own
   best F1 over all their picks, below their cut too (``own_f1``).

usage: python benchmarks/consensus.py [--datasets demo betagal aspire-small] [--seeds 0 1 2] [--tag T] [--fresh-inputs]
       [--inputs dog apple ours topaz] [--min-votes K]

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

from picker_gui.core.consensus import POSITIVE_RANK_QUANTILE, REJECTED_FRACTION, PickSet  # noqa: E402
from picker_gui.core.consensus_job import ConsensusSettings, consensus_job, dog_cut  # noqa: E402
from picker_gui.core.coords import CoordinateTable  # noqa: E402
from picker_gui.core.formats import read_coordinates, write_coordinates  # noqa: E402
from picker_gui.core.jobs import run_job  # noqa: E402
from picker_gui.core.metrics import evaluate, match_picks  # noqa: E402

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


def topaz_set(data: dict, names: list[str], work: Path, model: str = "resnet16",
              out_name: str = "topaz_general.txt") -> CoordinateTable | None:
    """Topaz's pretrained general picker (``topaz extract`` with no model: resnet16_u64), no
    training, on the same downsampled, normalised micrographs as ours, NMS at the particle
    radius; coordinates back in original pixels. None without the Topaz environment.
    ``model``: another model to extract with (a trained one: :func:`trained_topaz_model`)."""
    import runner

    try:
        runner.find_topaz()
    except runner.TopazError as exc:
        logger.warning("no Topaz environment (%s): its general model left out", exc)
        return None
    out = work / out_name
    if not out.exists():
        radius_ds = int(round(data["diameter_a"] / data["ds_pixel_a"] / 2))
        tmp = work / (out_name + ".partial")
        t = time.perf_counter()
        runner.topaz_extract(model, [data["prep_dir"] / n for n in names], radius=radius_ds, out_path=tmp,
                             threshold=-20)
        tmp.replace(out)
        logger.info("Topaz (%s): %d micrographs in %.0f s", model, len(names), time.perf_counter() - t)
    picks = read_coordinates(out, "topaz")  # downsampled pixels, micrograph = Topaz's image_name
    parts = []
    for key, part in picks.groupby_micrograph():
        sy, sx = data["scales"][f"{key}.mrc"]
        parts.append(CoordinateTable.from_arrays(f"{key}.mrc", part.x * sx, part.y * sy, part.score))
    return CoordinateTable.concat(parts)


def trained_topaz_model(out: Path, dataset: str, seed: int) -> Path | None:
    """Topaz trained with its defaults on the same 200 labels by ``vs_topaz.py`` (same
    micrographs, same split, same labels for the same seed): its final epoch's model, as a
    user who runs ``topaz train`` with its defaults gets it. None when that run is not stored."""
    tz = out.parent / "vs_topaz" / "topaz" / f"{dataset}_seed{seed}"
    epochs = sorted(tz.glob("model_epoch*.sav"), key=lambda p: int(p.stem.removeprefix("model_epoch")))
    return epochs[-1] if len(epochs) >= 10 else None


def count_cut(scores: np.ndarray, expected: int) -> float:
    """The score at which a ranked picker keeps the expected count (how a user sets the
    slider by the count shown beside it)."""
    ranked = np.sort(np.asarray(scores))[::-1]
    return float(ranked[min(expected, len(ranked)) - 1]) if len(ranked) else 0.0


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
        # As 'picker-gui pick' and the window pick with it: the eight views averaged where the
        # model says so, no pick within half a particle radius of the edge (extract_picks).
        extract_picks(score_map(result.model, p.image, augment=bool(result.metadata.get("pick_augment"))), p, d_px / 2,
                      name=n)
        for n in names for p in [vs_topaz._load_prep(data["prep_dir"] / n, data["scales"][n])])


# -- scoring -----------------------------------------------------------------------------------
def _scores(tp: int, fp: int, fn: int, tn: int) -> dict:
    p = tp / (tp + fp) if tp + fp else 0.0
    r = tp / (tp + fn) if tp + fn else 0.0
    f1 = 2 * p * r / (p + r) if p + r else 0.0
    den = math.sqrt(float(tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    mcc = (tp * tn - fp * fn) / den if den else 0.0
    return {"precision": p, "recall": r, "f1": f1, "mcc": mcc}


def _curve(table: CoordinateTable, truth: CoordinateTable, radius: float, n_population: int,
           scored: bool) -> list[dict]:
    """Precision, recall, F1 and MCC at every cut of ``table`` (the clusters a method keeps,
    ranked by its score, or all at once when it has none), matched one to one to ``truth``.

    Greedy matching in score order (``metrics.match_picks``, as ``picker-gui evaluate``
    scores) makes a second pick on one particle a false positive, so no method is rewarded
    for keeping two unmerged clusters of one particle. The population is the OR clusters
    plus the true particles no OR cluster matched: of its ``n_population`` members,
    ``len(truth)`` are positives and the rest negatives (false picks and duplicates)."""
    n_true = len(truth)
    n_neg = n_population - n_true
    if not len(table):
        return [{**_scores(0, 0, n_true, n_neg), "threshold": None}]
    m = match_picks(table, truth, radius)
    tp = np.cumsum(m.is_true)
    k = np.arange(1, m.n_picks + 1)
    cuts = np.append(m.scores[1:] != m.scores[:-1], True) if scored else (k == m.n_picks)
    rows = []
    for i in np.flatnonzero(cuts):
        t, kept = int(tp[i]), int(k[i])
        rows.append({**_scores(t, kept - t, n_true - t, n_neg - (kept - t)),
                     "threshold": float(m.scores[i]) if scored else None})
    return rows


def best_over(rows: list[dict]) -> dict:
    """The best F1 (with its precision and recall) and the best MCC over a method's cuts."""
    f1 = max(rows, key=lambda r: r["f1"])
    mcc = max(rows, key=lambda r: r["mcc"])
    return {"precision": f1["precision"], "recall": f1["recall"], "f1": f1["f1"], "threshold_f1": f1["threshold"],
            "mcc": mcc["mcc"], "threshold_mcc": mcc["threshold"]}


def score_all(cons, truth: CoordinateTable, test: list[str], radius: float, inputs: dict[str, CoordinateTable]) -> list[dict]:
    test_keys = [n.rsplit(".", 1)[0] for n in test]
    on_test = np.isin(cons.table.keys, test_keys)
    table = cons.table[on_test]
    found = cons.found_by[on_test]
    set_scores = cons.set_scores[on_test]
    true_set = truth_on(truth, test)
    # The population: the OR clusters, and the true particles none of them matches.
    or_match = match_picks(table.replace(score=np.zeros(len(table))), true_set, radius)
    n_population = len(table) + len(true_set) - int(or_match.is_true.sum())

    def curve(mask: np.ndarray, score: np.ndarray | None) -> list[dict]:
        rows = table[mask]
        rows = rows.replace(score=np.zeros(len(rows)) if score is None else np.asarray(score)[mask])
        return _curve(rows, true_set, radius, n_population, score is not None)

    out = []
    for i, name in enumerate(cons.set_names):
        s = set_scores[:, i]
        scored = bool(np.isfinite(s[found[:, i]]).any())
        row = {"method": name, **best_over(curve(found[:, i], s if scored else None))}
        own = inputs[name]
        own = own[np.isin(own.keys, test_keys)]
        row["own_f1"] = evaluate(own, true_set, radius)["best_f1"]  # all its picks, below its cut too
        out.append(row)
    votes = found.sum(1)
    n_sets = cons.n_sets
    out.append({"method": "AND", **best_over(curve(votes >= n_sets, None))})
    for k in range(2, n_sets):
        out.append({"method": f"{k}-of-{n_sets}", **best_over(curve(votes >= k, None))})
    out.append({"method": "OR", **best_over(curve(votes >= 1, None))})
    net = table.score
    out.append({"method": "consensus network", **best_over(curve(np.ones(len(table), bool), net))})
    out.append({"method": "consensus network at 0.5", **best_over(curve(net >= 0.5, None))})
    return out


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
    inputs = {}
    if "dog" in args.inputs:
        inputs["dog"] = dog_set(data, names)
    apple = apple_set(data, names, kept) if "apple" in args.inputs else None
    if apple is not None and len(apple):
        inputs["apple"] = apple
    if "topaz" in args.inputs:
        topaz = topaz_set(data, names, kept)
        if topaz is not None and len(topaz):
            inputs["topaz"] = topaz
    if "topaz-trained" in args.inputs:
        model = trained_topaz_model(Path(args.out), dataset, seed)
        if model is None:
            raise SystemExit(f"no stored Topaz run for {dataset} seed {seed}: run "
                             f"'vs_topaz.py --datasets {dataset} --seeds {seed}' first")
        trained = topaz_set(data, names, kept, str(model), "topaz_trained.txt")
        if trained is not None and len(trained):
            inputs["topaz-trained"] = trained
    # "_v2": picked with the eight views and the edge margin (earlier files without them).
    cached = kept / f"ours_{args.our_max_seconds:g}s_v2.star"
    if args.rescore:
        return rescore(work, data, radius, {**inputs, "ours": read_coordinates(cached)}, dataset, seed)
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
    thresholds = {"apple": None, "ours": count_cut(inputs["ours"].score, expected)}
    if "dog" in inputs:
        thresholds["dog"] = dog_cut(inputs["dog"].score, len(names), data["expected_per_micrograph"])
    for name in ("topaz", "topaz-trained"):  # ranked, like ours: cut at the expected count
        if name in inputs:
            thresholds[name] = count_cut(inputs[name].score, expected)
    sets = [PickSet(n, t, thresholds[n]) for n, t in inputs.items()]
    # Positives: found by at least 2 of the pickers, as Scipion's Deep Consensus protocol does
    # today (AND of all three is bounded by the weakest picker's recall: APPLE finds ~15 %).
    settings = ConsensusSettings(diameter_a=data["diameter_a"], train=True, seed=seed, device="cpu",
                                 max_minutes=args.max_minutes, min_positives=64, min_votes=min(args.min_votes, len(sets)),
                                 off_centre_negatives=not args.no_off_centre,
                                 rank=tuple(args.rank) if args.rank else None, rejected_fraction=args.rejected_fraction,
                                 positive_rank_quantile=args.positive_rank_quantile)
    t1 = time.perf_counter()
    # The user's labels (the 200 the PU picker learnt from, on the training micrographs) join
    # the positives, as the window passes them; --no-labels leaves them out (the paper's setting).
    result = run_job(consensus_job(data["raw"], sets, settings, user_positives=None if args.no_labels else labels))
    t_net = time.perf_counter() - t1
    truth = data["truth"]
    c = result.sets  # kept for rescoring without training again
    np.savez_compressed(work / "consensus.npz", keys=c.table.keys.astype(str), x=c.table.x, y=c.table.y,
                        score=c.table.score, found_by=c.found_by, set_scores=c.set_scores,
                        set_names=np.array(c.set_names))
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


def rescore(work: Path, data: dict, radius: float, inputs: dict[str, CoordinateTable], dataset: str, seed: int) -> list[dict]:
    """Score a stored run's consensus again (``consensus.npz``), its duplicates folded within
    the particle radius as the job now does (folding is idempotent)."""
    from picker_gui.core.consensus import ConsensusSets

    z = np.load(work / "consensus.npz")
    table = CoordinateTable.from_arrays([f"{k}.mrc" for k in z["keys"]], z["x"], z["y"], score=z["score"])
    names = tuple(p.name for p in data["raw"])
    cons = ConsensusSets(tuple(z["set_names"].tolist()), table, z["found_by"], z["set_scores"], 1.0, names)
    original_px = data["ds_pixel_a"] / data["scales"][names[0]][1]
    cons = cons.fold_duplicates(data["diameter_a"] / 2 / original_px)
    rows = score_all(cons, data["truth"], data["test"], radius, inputs)
    for r in rows:
        r.update(dataset=dataset, seed=seed)
    (work / "rescored.json").write_text(json.dumps({"rows": rows}, indent=1, default=float))
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
    ap.add_argument("--no-off-centre", action="store_true", help="NEG as Xmipp samples it only (no off-centre negatives)")
    ap.add_argument("--rescore", action="store_true",
                    help="score the stored runs of --tag again (consensus.npz) instead of training")
    ap.add_argument("--fresh-inputs", action="store_true",
                    help="train our picker again even when its picks for this dataset and seed are on disk")
    ap.add_argument("--net-set", action="append", default=[], metavar="NAME=VALUE",
                    help="override a ConsensusConfig field of the network (ablation), e.g. filters=[8,64] or balanced_validation=true")
    ap.add_argument("--inputs", nargs="+", default=["dog", "apple", "ours"], choices=["dog", "apple", "ours", "topaz", "topaz-trained"],
                    help="input pickers (ours always; topaz: Topaz's pretrained general model, zero-shot, "
                         "needs benchmarks/topaz/setup_topaz.sh)")
    ap.add_argument("--rank", nargs="+", default=None, metavar="PICKER",
                    help="rank-guided network: the mean rank in these input pickers also chooses its examples "
                         "(picker-gui consensus --train --rank)")
    ap.add_argument("--rejected-fraction", type=float, default=REJECTED_FRACTION,
                    help="rank-guided: this fraction of the OR picks, the lowest by mean rank, joins NEG")
    ap.add_argument("--positive-rank-quantile", type=float, default=POSITIVE_RANK_QUANTILE,
                    help="rank-guided: agreed picks below this quantile of the mean ranks are no positives")
    ap.add_argument("--min-votes", type=int, default=2, help="pickers that must agree for a positive")
    ap.add_argument("--out", default="bench_out/consensus")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.net_set:  # the job builds its ConsensusConfig from the settings: override its defaults
        from picker_gui.core import consensus_net

        base = consensus_net.ConsensusConfig
        overrides = vs_topaz.parse_overrides(args.net_set, base, "--net-set")
        consensus_net.ConsensusConfig = lambda **kw: base(**{**kw, **overrides})
        logger.info("network overrides: %s", overrides)
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
