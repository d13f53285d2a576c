"""Batch picking at scale: throughput and peak memory of 'picker-gui pick' on 2,000 and 10,000
micrographs, in one process and on a Dask LocalCluster of 2 workers.

The micrographs are links to 16 generated ones (the demo generator at 128 x 128, 2 Å/px,
60 Å particles: small, since the micrograph count is what matters here), named uniquely;
the model is the default architecture for the particle size (untrained weights: scoring
costs the same). Each
run is the real command line in a child process (``python -m picker_gui pick ...``); its
peak resident memory is that of the whole process tree (the command, the Dask scheduler,
nanny and worker processes), polled from /proc every 0.1 s. Throughput is micrographs per
second of wall time, start-up included. Memory must stay flat from 2,000 to 10,000
micrographs (within 10 %), and 2 workers on 2 cores must beat one process.

usage: python benchmarks/batch_pick.py [--counts 2000 10000] [--modes serial workers2] [--out bench_out/batch]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))
sys.path.insert(0, str(HERE))

from vs_topaz import PeakRSS  # noqa: E402

MODES = {"serial": ["--workers", "0"], "workers2": ["--workers", "2"]}


def make_data(root: Path, count: int, distinct: int = 16) -> Path:
    import dataclasses

    from picker_gui.core.mrc_io import write_mrc
    from picker_gui.core.synthetic import SyntheticConfig, generate_micrographs

    base = root / "base"
    if not base.exists():
        base.mkdir(parents=True)
        config = dataclasses.replace(SyntheticConfig(), shape=(128, 128), particles_per_micrograph=2,
                                     particle_diameter_a=60.0)
        for i, m in enumerate(generate_micrographs(distinct, config, seed=0)):
            write_mrc(base / f"b{i:02d}.mrc", m.image, m.pixel_size_a)
    folder = root / f"mics{count}"
    if not folder.exists() or len(list(folder.iterdir())) != count:
        shutil.rmtree(folder, ignore_errors=True)
        folder.mkdir()
        for i in range(count):
            os.symlink((base / f"b{i % distinct:02d}.mrc").resolve(), folder / f"mic{i:06d}.mrc")
    return folder


def make_model(root: Path) -> Path:
    from picker_gui.core.models import PickerNet, choose_architecture, save_model

    path = root / "model.pt"
    if not path.exists():
        diameter_a, pixel = 60.0, 2.0
        downsample = 2.0
        d_px = diameter_a / (pixel * downsample)
        arch, _ = choose_architecture(d_px, pooled=True)
        meta = {"downsample": downsample, "downsampled_pixel_size_a": pixel * downsample, "original_pixel_size_a": pixel,
                "normalization": "gmm", "particle_diameter_a": diameter_a, "particle_diameter_px": d_px,
                "nms_radius_px": d_px / 2}
        save_model(path, PickerNet(arch, 16), meta)
    return path


def run(model: Path, folder: Path, out: Path, mode: str) -> dict:
    shutil.rmtree(out.parent, ignore_errors=True)
    out.parent.mkdir(parents=True)
    cmd = [sys.executable, "-m", "picker_gui", "-q", "pick", str(model), str(folder), "--out", str(out),
           "--threshold", "0", "--device", "cpu", *MODES[mode]]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=open(out.parent / "log.txt", "w"))
    with PeakRSS(proc.pid) as mem:
        code = proc.wait()
    wall = time.perf_counter() - t0
    if code != 0:
        raise SystemExit(f"{' '.join(cmd)} failed ({code}); see {out.parent / 'log.txt'}")
    n = len(list(folder.iterdir()))
    return {"mode": mode, "micrographs": n, "wall_s": wall, "per_s": n / wall, "peak_mib": mem.peak / 2**20}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--counts", nargs="+", type=int, default=[2000, 10000])
    ap.add_argument("--modes", nargs="+", default=list(MODES), choices=list(MODES))
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--out", default="bench_out/batch")
    args = ap.parse_args()
    root = Path(args.out)
    model = make_model(root)
    rows = []
    for count in args.counts:
        folder = make_data(root, count)
        for mode in args.modes:
            for r in range(args.repeats):
                row = run(model, folder, root / "runs" / f"{mode}_{count}_{r}" / "picks.star", mode)
                rows.append(row)
                print(json.dumps(row), flush=True)
    print()
    print("mode\tmicrographs\twall_s\tmic_per_s\tpeak_MiB")
    for row in rows:
        print(f"{row['mode']}\t{row['micrographs']}\t{row['wall_s']:.0f}\t{row['per_s']:.2f}\t{row['peak_mib']:.0f}")
    for mode in args.modes:
        sub = {row["micrographs"]: row for row in rows if row["mode"] == mode}
        if len(sub) >= 2:
            lo, hi = min(sub), max(sub)
            print(f"{mode}: peak memory {hi} vs {lo} micrographs: x{sub[hi]['peak_mib'] / sub[lo]['peak_mib']:.3f}")
    for count in args.counts:
        pair = {row["mode"]: row for row in rows if row["micrographs"] == count}
        if "serial" in pair and "workers2" in pair:
            print(f"{count}: 2 workers / serial throughput x{pair['workers2']['per_s'] / pair['serial']['per_s']:.2f}")
    (root / "result.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
