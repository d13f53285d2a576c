"""Time to read + downsample + normalise one 4096x4096 float32 micrograph, and a cache hit.

Prints the median (and min/max) of several runs of each stage. The micrograph is written
to a temporary folder first (noise with dark blobs, so the GMM fit has work to do).

usage: python benchmarks/preprocess_speed.py [--runs 5] [--size 4096] [--factor 4]
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from picker_gui.core.cache import PreprocessCache
from picker_gui.core.mrc_io import read_micrograph, write_mrc
from picker_gui.core.preprocess import PreprocessParams, display_image, downsample, fit_normalization, preprocess_file


def _timed(fn, runs: int) -> list[float]:
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def _row(name: str, times: list[float]) -> str:
    return f"{name:<34} median {statistics.median(times) * 1000:8.1f} ms   (min {min(times) * 1000:.1f}, max {max(times) * 1000:.1f}, n={len(times)})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--size", type=int, default=4096)
    ap.add_argument("--factor", type=float, default=4)
    args = ap.parse_args()

    rng = np.random.default_rng(0)
    image = rng.normal(50.0, 7.0, size=(args.size, args.size)).astype(np.float32)
    yy, xx = np.ogrid[: args.size, : args.size]
    for _ in range(5):
        cy, cx, r = rng.integers(0, args.size, 2).tolist() + [int(rng.integers(50, 300))]
        image[(yy - cy) ** 2 + (xx - cx) ** 2 < r * r] -= 30.0

    with tempfile.TemporaryDirectory() as tmp:
        path = write_mrc(Path(tmp) / "bench.mrc", image, 1.0)
        params = PreprocessParams(downsample=args.factor)
        mic = read_micrograph(path)
        small, _ = downsample(mic.image, args.factor)

        print(f"micrograph {args.size}x{args.size} float32, downsample x{args.factor:g}, GMM normalisation; "
              f"torch {torch.__version__}, {torch.get_num_threads()} threads")
        print(_row("read", _timed(lambda: read_micrograph(path), args.runs)))
        print(_row("downsample (Fourier crop)", _timed(lambda: downsample(mic.image, args.factor), args.runs)))
        print(_row("normalise (GMM fit + apply)", _timed(lambda: fit_normalization(small, "gmm").apply(small), args.runs)))
        print(_row("read + downsample + normalise", _timed(lambda: preprocess_file(path, params), args.runs)))
        print(_row("display image (bin + 20 Å low-pass)", _timed(lambda: display_image(mic.image, 1.0), args.runs)))

        cache = PreprocessCache(Path(tmp) / "cache")
        preprocess_file(path, params, cache)  # fill
        hits = _timed(lambda: preprocess_file(path, params, cache), args.runs)
        print(_row("cache hit", hits))
        cold = statistics.median(_timed(lambda: preprocess_file(path, params), args.runs))
        print(f"cache hit is {cold / statistics.median(hits):.0f}x faster than recomputing")


if __name__ == "__main__":
    main()
