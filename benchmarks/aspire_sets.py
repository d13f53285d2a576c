"""Micrographs from a second simulator, ASPIRE, for the picker benchmarks.

Our own generator (``picker_gui.core.synthetic``) made the demo data and so shaped our
defaults; a picker tuned to it proves little. ASPIRE (``aspire.source.MicrographSimulation``)
projects a 3-D volume at random orientations, applies a CTF per micrograph and places the
projections at random, non-overlapping centres. This script writes sets of different particle
size, pixel size and SNR, each as float32 MRC files (pixel size in the header) and a
``particles.star`` of the true centres (x = column, y = row, original pixels), plus
``set.json`` with the diameter and the counts.

Run it with ASPIRE's own environment (ASPIRE stays out of picker-gui's install)::

    python3 -m venv .venv-aspire && .venv-aspire/bin/pip install aspire mrcfile
    .venv-aspire/bin/python benchmarks/aspire_sets.py --out bench_out/data

Noise: white Gaussian noise of variance P / SNR, where P is the mean power of the clean
projections over their boxes (ASPIRE's definition of SNR), plus a slow intensity gradient
(ice thickness), so that normalisation has something to do. Junk: ``junk`` blobs per
micrograph that are not particles (ice crystals, aggregates, contamination): Gaussian
blobs from a quarter to twice the particle's size, dark or bright, some elongated, with
contrast from half to three times a particle's, so that a blob detector sized from the
diameter does not find the particles alone.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import mrcfile
import numpy as np

#: name: (particle diameter Å, pixel size Å/px, micrograph side px, particles per micrograph,
#: SNR, cyclic order of the volume, micrographs)
SETS = {
    # A ~120 Å particle (a small complex) at 1.6 Å/px, moderately crowded.
    "aspire-small": dict(diameter_a=120.0, pixel_a=1.6, side=1536, per_mic=90, snr=0.003, order=3, n=12, junk=40),
    # A ~300 Å particle (ribosome-sized) at 3.2 Å/px, sparse, at low SNR.
    "aspire-large-lowsnr": dict(diameter_a=300.0, pixel_a=3.2, side=1536, per_mic=35, snr=0.0015, order=1, n=12, junk=20),
}


def volume(diameter_a: float, pixel_a: float, order: int, seed: int):
    from aspire.volume import AsymmetricVolume, CnSymmetricVolume

    box = int(np.ceil(diameter_a / pixel_a / 0.8)) // 2 * 2 + 2  # the blobs fill ~80 % of the box
    if order >= 2:
        vol = CnSymmetricVolume(L=box, C=1, order=order, K=12, pixel_size=pixel_a, seed=seed, dtype=np.float32).generate()
    else:
        vol = AsymmetricVolume(L=box, C=1, K=24, pixel_size=pixel_a, seed=seed, dtype=np.float32).generate()
    return vol, box


def make_set(name: str, spec: dict, out: Path, seed: int) -> None:
    from aspire.operators import RadialCTFFilter
    from aspire.source import MicrographSimulation

    rng = np.random.default_rng(seed)
    vol, box = volume(spec["diameter_a"], spec["pixel_a"], spec["order"], seed)
    defoci = rng.uniform(10000, 25000, spec["n"])  # Å
    ctfs = [RadialCTFFilter(voltage=300, defocus=float(d), Cs=2.7, alpha=0.07, B=50) for d in defoci]
    sim = MicrographSimulation(
        vol,
        micrograph_size=spec["side"],
        micrograph_count=spec["n"],
        particles_per_micrograph=spec["per_mic"],
        ctf_filters=ctfs,
        seed=seed,
        interparticle_distance=int(0.9 * spec["diameter_a"] / spec["pixel_a"]),
    )
    folder = out / name
    (folder / "micrographs").mkdir(parents=True, exist_ok=True)
    rows = []
    for m in range(spec["n"]):
        clean = np.asarray(sim.clean_images[m].asnumpy()[0], dtype=np.float64)
        centers = np.asarray(sim.centers[m])  # (row, col)
        half = box // 2
        power = []
        for r, c in centers.astype(int):
            patch = clean[max(r - half, 0) : r + half, max(c - half, 0) : c + half]
            power.append(np.mean(patch**2))
        p = float(np.mean(power))
        noise = rng.normal(0.0, np.sqrt(p / spec["snr"]), clean.shape)
        yy, xx = np.mgrid[0 : clean.shape[0], 0 : clean.shape[1]] / clean.shape[0]
        gx, gy = rng.normal(0, 0.3, 2)
        gradient = (gx * xx + gy * yy) * np.sqrt(p / spec["snr"])
        junk = np.zeros_like(clean)
        peak = float(np.percentile(np.abs(clean), 99.9))
        polarity = np.sign(np.mean([clean[int(r), int(c)] for r, c in centers])) or 1.0
        r_px = spec["diameter_a"] / spec["pixel_a"] / 2
        for _ in range(spec.get("junk", 0)):
            cy, cx = rng.uniform(0, clean.shape[0]), rng.uniform(0, clean.shape[1])
            s1 = r_px * rng.uniform(0.25, 2.0) / 2
            s2 = s1 * rng.uniform(0.3, 1.0)  # elongated sometimes
            ang = rng.uniform(0, np.pi)
            u = (xx * clean.shape[0] - cx) * np.cos(ang) + (yy * clean.shape[0] - cy) * np.sin(ang)
            v = -(xx * clean.shape[0] - cx) * np.sin(ang) + (yy * clean.shape[0] - cy) * np.cos(ang)
            sign = polarity if rng.random() < 0.7 else -polarity  # mostly the particles' polarity
            junk += sign * peak * rng.uniform(0.5, 3.0) * np.exp(-0.5 * ((u / s1) ** 2 + (v / s2) ** 2))
        image = (clean + junk + noise + gradient).astype(np.float32)
        mic = f"{name}_{m:02d}.mrc"
        with mrcfile.new(folder / "micrographs" / mic, overwrite=True) as f:
            f.set_data(image)
            f.voxel_size = spec["pixel_a"]
        for r, c in centers:
            rows.append((mic, float(c), float(r)))
    with open(folder / "particles.star", "w") as fh:
        fh.write("\ndata_particles\n\nloop_\n_rlnMicrographName #1\n_rlnCoordinateX #2\n_rlnCoordinateY #3\n")
        for mic, x, y in rows:
            fh.write(f"{mic} {x:.1f} {y:.1f}\n")
    (folder / "set.json").write_text(json.dumps({**spec, "box_px": box, "seed": seed, "simulator": "aspire",
                                                 "particles": len(rows)}, indent=1))
    print(f"{name}: {spec['n']} micrographs of {spec['side']} px, {len(rows)} particles, box {box} px")


def random_spec(rng: np.random.Generator) -> dict:
    """A random set for the general model's training data (tools/build_general_model.py):
    particle 100-400 Å, 40-130 px across in the raw pixels (so the picker downsamples it),
    SNR 0.001-0.01 (log-uniform), any cyclic order, sparse to crowded, 0-40 junk blobs."""
    d = float(rng.uniform(100, 400))
    pixel = round(d / rng.uniform(40, 130), 2)
    d_px = d / pixel
    side = 1536 if d_px < 90 else 2048
    area_fraction = rng.uniform(0.05, 0.3)  # of the micrograph covered by particles
    per_mic = int(max(8, min(150, area_fraction * side * side / (np.pi * (d_px / 2) ** 2))))
    return dict(diameter_a=round(d, 1), pixel_a=pixel, side=side, per_mic=per_mic,
                snr=float(np.exp(rng.uniform(np.log(0.001), np.log(0.01)))),
                order=int(rng.choice([1, 1, 2, 3, 4, 6])), n=4, junk=int(rng.integers(0, 41)))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="bench_out/data")
    ap.add_argument("--sets", nargs="+", default=list(SETS), choices=list(SETS))
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument("--general", type=int, default=0, metavar="K",
                    help="instead of the benchmark sets, write K random sets (general-K) for the general "
                         "model's training data; seeds 1000 + k, never the benchmark's")
    args = ap.parse_args()
    if args.general:
        for k in range(args.general):
            rng = np.random.default_rng(1000 + k)
            spec = random_spec(rng)
            try:
                make_set(f"general-{k:02d}", spec, Path(args.out), 1000 + k)
            except Exception as exc:  # noqa: BLE001 - a crowded spec ASPIRE cannot place: fewer particles
                print(f"general-{k:02d}: {exc}; retrying with half the particles")
                make_set(f"general-{k:02d}", {**spec, "per_mic": max(8, spec["per_mic"] // 2)}, Path(args.out), 1000 + k)
        return
    for name in args.sets:
        make_set(name, SETS[name], Path(args.out), args.seed)


if __name__ == "__main__":
    main()
