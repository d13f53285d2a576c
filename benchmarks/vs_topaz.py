"""Our picker against the real Topaz, side by side on the same pixels and the same labels.

For each dataset and seed:

1. micrographs: the demo generator (``demo``: 8 training + 4 test micrographs of 2048x1536 by
   default) or the real EMPIAR-10017 beta-galactosidase set in ../shared/data (``betagal``:
   5 training + 3 test, when that folder exists);
2. our preprocessing (Fourier-crop downsampling from the particle diameter, GMM
   normalisation) writes the downsampled micrographs that BOTH pickers read;
3. a sparse label set, as a user would click (200 positives spread over the training
   micrographs), in Topaz text format on the downsampled grid;
4. our picker trains with its defaults (it stops itself; time cap 110 s), in a child process
   whose peak memory is measured, and records test AP against time at every validation;
5. Topaz 0.3.20 (resnet8, radius 3, GE-binomial, the same pi given explicitly, from scratch)
   trains for --topaz-epochs x --topaz-epoch-size minibatches, then extracts the test
   micrographs with the model of its best test epoch at threshold -20 (every candidate);
6. both pick sets are scored by the same metric (AP within the particle radius, against all
   true centres of the test micrographs) and the script prints AP, best-F1
   precision/recall, training wall time, time for our picker to reach Topaz's AP,
   extraction time per micrograph, peak memory, and the ratios; then the medians over seeds.

Set Topaz up first with ``bash benchmarks/topaz/setup_topaz.sh`` (see benchmarks/topaz/README.md).

usage: python benchmarks/vs_topaz.py [--datasets demo betagal] [--seeds 0 1 2] [--labels 200]
           [--topaz-epochs 8] [--topaz-epoch-size 100] [--out bench_out/vs_topaz]
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE / "topaz"))
sys.path.insert(0, str(HERE.parent))

import runner  # noqa: E402

from picker_gui.core.coords import CoordinateTable, micrograph_key  # noqa: E402
from picker_gui.core.formats import read_coordinates  # noqa: E402
from picker_gui.core.metrics import best_f1, evaluate, match_picks  # noqa: E402
from picker_gui.core.mrc_io import Micrograph, MicrographHeader, read_micrograph, write_mrc  # noqa: E402
from picker_gui.core.objectives import pi_from_expected  # noqa: E402
from picker_gui.core.preprocess import Normalization, Preprocessed, PreprocessParams, preprocess_micrograph  # noqa: E402

logger = logging.getLogger("vs_topaz")
BETAGAL = HERE.parent.parent / "shared" / "data" / "empiar10017-betagal"


# -- data ------------------------------------------------------------------------------
def make_demo(work: Path, seed: int, n_train: int, n_test: int) -> dict:
    from picker_gui.core.synthetic import SyntheticConfig, generate_micrographs

    cfg = SyntheticConfig()
    raw = work / "raw"
    raw.mkdir(parents=True, exist_ok=True)
    names, truths = [], []
    for m in generate_micrographs(n_train + n_test, cfg, seed=1000 + seed):
        write_mrc(raw / f"{m.name}.mrc", m.image, m.pixel_size_a)
        names.append(f"{m.name}.mrc")
        truths.append(m.particles.replace(micrograph=f"{m.name}.mrc"))
    return {
        "raw": [raw / n for n in names],
        "truth": CoordinateTable.concat(truths),
        "train": names[:n_train],
        "test": names[n_train:],
        "diameter_a": cfg.particle_diameter_a,
        "expected_per_micrograph": float(cfg.particles_per_micrograph),
    }


def make_betagal(work: Path, seed: int, n_train: int = 5) -> dict:
    mics = sorted((BETAGAL / "micrographs").glob("*.mrc"))
    truth = read_coordinates(BETAGAL / "particles.star")
    truth = truth.replace(micrograph=[f"{k}.mrc" for k in truth.keys])
    order = np.random.default_rng(seed).permutation(len(mics))
    names = [mics[i].name for i in order]
    counts = [len(truth.for_micrograph(n)) for n in names]
    return {
        "raw": [BETAGAL / "micrographs" / n for n in names],
        "truth": truth,
        "train": names[:n_train],
        "test": names[n_train:],
        "diameter_a": 190.0,  # README: about 27 px at 7.08 Å/px
        "expected_per_micrograph": float(np.mean(counts)),
    }


def preprocess_all(data: dict, work: Path) -> dict:
    """Our preprocessing, written as float32 MRC for both pickers."""
    prep_dir = work / "prep"
    prep_dir.mkdir(exist_ok=True)
    params = PreprocessParams(diameter_a=data["diameter_a"])
    scales, shapes, pixel = {}, {}, None
    for path in data["raw"]:
        mic = read_micrograph(path)
        prep = preprocess_micrograph(mic, params)
        write_mrc(prep_dir / path.name, prep.image, prep.pixel_size_a)
        scales[path.name] = prep.scale
        shapes[path.name] = prep.image.shape
        pixel = prep.pixel_size_a
    data.update(prep_dir=prep_dir, scales=scales, shapes=shapes, ds_pixel_a=pixel)
    return data


def sample_labels(data: dict, n_labels: int, seed: int) -> CoordinateTable:
    rng = np.random.default_rng(seed)
    per = int(np.ceil(n_labels / len(data["train"])))
    parts = []
    for name in data["train"]:
        t = data["truth"].for_micrograph(name)
        parts.append(t[rng.choice(len(t), min(per, len(t)), replace=False)].replace(micrograph=name))
    return CoordinateTable.concat(parts)[:n_labels]


# -- peak memory of a child ------------------------------------------------------------
class PeakRSS:
    """Polls /proc for the resident memory of a process and its children."""

    def __init__(self, pid: int):
        self.pid, self.peak, self._stop = pid, 0, threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> int:
        total, todo = 0, [self.pid]
        while todo:
            pid = todo.pop()
            try:
                with open(f"/proc/{pid}/status") as fh:
                    total += next(int(line.split()[1]) * 1024 for line in fh if line.startswith("VmRSS:"))
                for tid in os.listdir(f"/proc/{pid}/task"):
                    with open(f"/proc/{pid}/task/{tid}/children") as fh:
                        todo += [int(c) for c in fh.read().split()]
            except (OSError, StopIteration):
                continue
        return total

    def _run(self):
        while not self._stop.is_set():
            self.peak = max(self.peak, self._tree())
            time.sleep(0.1)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join()


# -- our picker (child process) ----------------------------------------------------------
def _load_prep(path: Path, scale) -> Preprocessed:
    mic = read_micrograph(path)
    return Preprocessed(path, mic.image, tuple(scale), (0, 0), mic.pixel_size_a, Normalization("gmm", 0.0, 1.0))


def ours_worker(job_path: Path) -> None:
    """Train with the defaults, following test AP against time; then time extraction.

    This calls :func:`picker_gui.core.training.train`, not the train job that the command
    line and the window run (:func:`picker_gui.core.jobs.train_job`), on purpose: both
    pickers must learn from the very same downsampled pixels, which ``preprocess_all``
    wrote once for Topaz to read, and this process's peak memory and time must be those of
    training alone, as Topaz's are. The job would preprocess the raw micrographs again
    (to the same pixels: the same parameters, see ``PreprocessParams(diameter_a=...)``),
    inside the measurement. No model is saved here, so no model metadata is built.
    """
    import torch

    from picker_gui.core.inference import extract_picks, score_map
    from picker_gui.core.jobs import TrainSettings, run_job, train_config
    from picker_gui.core.training import LabeledMicrograph, train

    job = json.loads(job_path.read_text())
    torch.set_num_threads(job["threads"])
    labels = read_coordinates(job["labels"])
    truth = read_coordinates(job["truth"])
    prep_dir = Path(job["prep_dir"])
    items = [LabeledMicrograph(_load_prep(prep_dir / n, job["scales"][n]), labels.for_micrograph(n)) for n in job["train"]]
    tests = [_load_prep(prep_dir / n, job["scales"][n]) for n in job["test"]]
    radius_ds = job["diameter_px_ds"] / 2

    def test_picks(model) -> CoordinateTable:
        return CoordinateTable.concat(
            extract_picks(score_map(model, p.image), p, radius_ds, name=p.path.name) for p in tests
        )

    curve = []

    def on_validation(report, model):
        result = evaluate(test_picks(model), truth, job["match_radius"])
        curve.append({"elapsed_s": report.elapsed_s, "step": report.step, "val_ap": report.val_ap, "test_ap": result["average_precision"]})

    # The settings of 'picker-gui train' with its defaults, as the job would make them.
    settings = TrainSettings(
        diameter_a=job["diameter_a"],
        expected_per_micrograph=job["expected"],
        seed=job["seed"],
        device="cpu",
        max_minutes=job["max_seconds"] / 60,
    )
    config = train_config(settings, job["diameter_px_ds"])
    t0 = time.perf_counter()
    result = run_job(train(items, config, on_validation=on_validation))
    wall = time.perf_counter() - t0  # includes the test evaluations; train_time_s below does not
    per_mic = []
    picks = []
    for p in tests:
        t = time.perf_counter()
        picks.append(extract_picks(score_map(result.model, p.image), p, radius_ds, name=p.path.name))
        per_mic.append(time.perf_counter() - t)
    final = evaluate(CoordinateTable.concat(picks), truth, job["match_radius"])
    out = {
        "train_time_s": result.history[-1].elapsed_s if result.history else wall,
        "wall_with_test_evals_s": wall,
        "steps": result.metadata["steps"],
        "stopped_by": result.stopped_by,
        "pi": result.metadata["pi"],
        "architecture": result.model.architecture,
        "curve": curve,
        "final": final,
        "extract_s_per_mic": per_mic,
    }
    Path(job["result"]).write_text(json.dumps(out, indent=1))


def run_ours(work: Path, data: dict, labels_path: Path, truth_path: Path, seed: int, max_seconds: float) -> dict:
    job = {
        "labels": str(labels_path),
        "truth": str(truth_path),
        "prep_dir": str(data["prep_dir"]),
        "train": data["train"],
        "test": data["test"],
        "scales": data["scales"],
        "diameter_a": data["diameter_a"],
        "diameter_px_ds": data["diameter_a"] / data["ds_pixel_a"],
        "match_radius": data["match_radius"],
        "expected": data["expected_per_micrograph"],
        "seed": seed,
        "threads": 2,
        "max_seconds": max_seconds,
        "result": str(work / "ours.json"),
    }
    job_path = work / "ours_job.json"
    job_path.write_text(json.dumps(job))
    t0 = time.perf_counter()
    proc = subprocess.Popen([sys.executable, __file__, "--worker", str(job_path)], stdout=open(work / "ours.log", "w"), stderr=subprocess.STDOUT)
    with PeakRSS(proc.pid) as mem:
        rc = proc.wait()
    if rc != 0:
        raise RuntimeError(f"our picker failed; see {work / 'ours.log'}")
    out = json.loads((work / "ours.json").read_text())
    out["process_wall_s"] = time.perf_counter() - t0
    out["peak_rss_bytes"] = mem.peak
    return out


# -- Topaz -----------------------------------------------------------------------------
def run_topaz(work: Path, data: dict, labels: CoordinateTable, truth: CoordinateTable, pi: float, seed: int, args) -> dict:
    def topaz_table(table: CoordinateTable) -> pd.DataFrame:
        rows = []
        for key, part in table.groupby_micrograph():
            sy, sx = data["scales"][f"{key}.mrc"]
            rows.append(pd.DataFrame({"image_name": key, "x_coord": part.x / sx, "y_coord": part.y / sy}))
        return pd.concat(rows, ignore_index=True)

    prep = data["prep_dir"]
    test_truth = CoordinateTable.concat(truth.for_micrograph(n) for n in data["test"])
    run = runner.topaz_train(
        [prep / n for n in data["train"]],
        topaz_table(labels),
        [prep / n for n in data["test"]],
        topaz_table(test_truth),
        out_dir=work / "topaz",
        radius=3,
        pi=pi,
        epochs=args.topaz_epochs,
        epoch_size=args.topaz_epoch_size,
        seed=seed,
        threads=2,
    )
    epochs = run.epoch_table()
    test_rows = epochs.dropna(subset=["auprc"]) if "auprc" in epochs else epochs.iloc[0:0]
    best_epoch = int(test_rows.loc[test_rows["auprc"].idxmax(), "epoch"]) if len(test_rows) else len(run.model_paths)
    model = run.model_paths[best_epoch - 1]
    radius_ds = int(round(data["diameter_a"] / data["ds_pixel_a"] / 2))
    picks_df, extract_wall, extract_rss = runner.topaz_extract(
        model, [prep / n for n in data["test"]], radius=radius_ds, out_path=work / "topaz" / "picks.txt", threshold=-20
    )
    timings = runner.extract_timings(work / "topaz" / "picks.log")
    parts = []
    for key, part in picks_df.groupby("image_name"):
        sy, sx = data["scales"][f"{key}.mrc"]
        parts.append(CoordinateTable.from_arrays(f"{key}.mrc", part.x_coord * sx, part.y_coord * sy, part.score))
    final = evaluate(CoordinateTable.concat(parts), test_truth, data["match_radius"])
    secs = timings["seconds"].to_numpy()
    return {
        "train_time_s": run.wall_time_s,
        "best_epoch": best_epoch,
        "epochs": len(run.model_paths),
        "minibatches_per_s": run.train_minibatches_per_s,
        "method_used": run.method_used,
        "peak_rss_bytes": run.peak_rss_bytes,
        "extract_wall_s": extract_wall,
        # The first micrograph's time includes loading the model: leave it out.
        "extract_s_per_mic": list(secs[1:] if len(secs) > 1 else secs),
        "final": final,
        "epoch_auprc": test_rows[["epoch", "auprc", "elapsed_s"]].to_dict("records") if len(test_rows) else [],
    }


# -- one comparison ----------------------------------------------------------------------
def compare(dataset: str, seed: int, args) -> dict:
    work = Path(args.out) / f"{dataset}_seed{seed}"
    work.mkdir(parents=True, exist_ok=True)
    data = make_demo(work, seed, args.n_train, args.n_test) if dataset == "demo" else make_betagal(work, seed)
    data = preprocess_all(data, work)
    data["match_radius"] = data["diameter_a"] / 2 / (data["ds_pixel_a"] / data["scales"][data["train"][0]][1])
    labels = sample_labels(data, args.labels, seed)
    truth_test = CoordinateTable.concat(data["truth"].for_micrograph(n).replace(micrograph=n) for n in data["test"])
    from picker_gui.core.formats import write_coordinates

    labels_path = work / "labels.star"
    truth_path = work / "truth_test.star"
    write_coordinates(labels, labels_path, "star-particles")
    write_coordinates(truth_test, truth_path, "star-particles")

    ds_area = float(np.mean([h * w for h, w in data["shapes"].values()]))
    pi = pi_from_expected(data["expected_per_micrograph"], 3, ds_area)
    logger.info("[%s seed %d] %d labels on %d training micrographs, %d test; pi %.4g; ours first", dataset, seed, len(labels), len(data["train"]), len(data["test"]), pi)
    ours = run_ours(work, data, labels_path, truth_path, seed, args.our_max_seconds)
    logger.info("[%s seed %d] ours: AP %.3f in %.0f s; Topaz next", dataset, seed, ours["final"]["average_precision"], ours["train_time_s"])
    topaz = run_topaz(work, data, labels, data["truth"], pi, seed, args)
    topaz_ap = topaz["final"]["average_precision"]
    reach = next((c["elapsed_s"] for c in ours["curve"] if c["test_ap"] >= topaz_ap), None)
    row = {
        "dataset": dataset,
        "seed": seed,
        "labels": len(labels),
        "ours_ap": ours["final"]["average_precision"],
        "topaz_ap": topaz_ap,
        "ours_best_f1_p": ours["final"]["best_f1_precision"],
        "ours_best_f1_r": ours["final"]["best_f1_recall"],
        "topaz_best_f1_p": topaz["final"]["best_f1_precision"],
        "topaz_best_f1_r": topaz["final"]["best_f1_recall"],
        "ours_train_s": ours["train_time_s"],
        "topaz_train_s": topaz["train_time_s"],
        "ours_time_to_topaz_ap_s": reach,
        "ours_extract_s": statistics.median(ours["extract_s_per_mic"]),
        "topaz_extract_s": statistics.median(topaz["extract_s_per_mic"]),
        "ours_peak_mib": ours["peak_rss_bytes"] / 2**20,
        "topaz_peak_mib": (topaz["peak_rss_bytes"] or 0) / 2**20,
        "topaz_method": topaz["method_used"],
        "ours_stopped_by": ours["stopped_by"],
    }
    row["ap_ratio"] = row["ours_ap"] / row["topaz_ap"] if row["topaz_ap"] else float("nan")
    row["time_to_ap_ratio"] = (reach / row["topaz_train_s"]) if reach is not None else float("nan")
    row["extract_ratio"] = row["ours_extract_s"] / row["topaz_extract_s"]
    (work / "result.json").write_text(json.dumps({"row": row, "ours": ours, "topaz": topaz}, indent=1, default=float))
    return row


def _print(rows: list[dict]) -> None:
    cols = [
        ("dataset", "{}"), ("seed", "{}"), ("ours_ap", "{:.3f}"), ("topaz_ap", "{:.3f}"), ("ap_ratio", "{:.2f}"),
        ("ours_best_f1_p", "{:.2f}"), ("ours_best_f1_r", "{:.2f}"), ("topaz_best_f1_p", "{:.2f}"), ("topaz_best_f1_r", "{:.2f}"),
        ("ours_train_s", "{:.0f}"), ("topaz_train_s", "{:.0f}"), ("ours_time_to_topaz_ap_s", "{}"), ("time_to_ap_ratio", "{:.3f}"),
        ("ours_extract_s", "{:.3f}"), ("topaz_extract_s", "{:.3f}"), ("extract_ratio", "{:.2f}"),
        ("ours_peak_mib", "{:.0f}"), ("topaz_peak_mib", "{:.0f}"),
    ]
    print("\t".join(c for c, _ in cols))
    for r in rows:
        print("\t".join(fmt.format(r[c]) if r[c] is not None else "n/a" for c, fmt in cols))
    for dataset in sorted({r["dataset"] for r in rows}):
        sub = [r for r in rows if r["dataset"] == dataset]
        med = {}
        for c, _ in cols[2:]:
            vals = [r[c] for r in sub if isinstance(r[c], (int, float)) and r[c] == r[c]]
            med[c] = statistics.median(vals) if vals else None
        print(f"MEDIAN {dataset} over {len(sub)} seed(s): " + ", ".join(f"{c}={v:.3f}" for c, v in med.items() if v is not None))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--datasets", nargs="+", default=["demo", "betagal"], choices=["demo", "betagal"])
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--n-train", type=int, default=8)
    ap.add_argument("--n-test", type=int, default=4)
    ap.add_argument("--labels", type=int, default=200)
    ap.add_argument("--topaz-epochs", type=int, default=8)
    ap.add_argument("--topaz-epoch-size", type=int, default=100)
    ap.add_argument("--our-max-seconds", type=float, default=110.0, help="our time cap (the default of 'picker-gui train')")
    ap.add_argument("--out", default="bench_out/vs_topaz")
    ap.add_argument("--worker", help=argparse.SUPPRESS)
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    if args.worker:
        ours_worker(Path(args.worker))
        return
    runner.find_topaz()  # fail early, with the set-up hint
    rows = []
    for dataset in args.datasets:
        if dataset == "betagal" and not BETAGAL.exists():
            logger.warning("%s not found: skipping the real-data comparison", BETAGAL)
            continue
        for seed in args.seeds:
            rows.append(compare(dataset, seed, args))
            _print(rows)
    Path(args.out, "summary.json").write_text(json.dumps(rows, indent=1, default=float))


if __name__ == "__main__":
    main()
