"""The live stores: 200,000 picks over 400 micrographs.

targets (issue 8): one micrograph's picks in < 1 ms, threshold counts for all micrographs
in < 20 ms. Printed as medians over --runs:

- PickStore (what the window draws from): one micrograph's picks above a threshold, the
  counts of every micrograph at a threshold, and (once per change of the least distance)
  filtering every micrograph's candidates again;
- CoordinateTable (the canonical table of files and jobs): one micrograph's rows, and
  grouping the whole table by micrograph.

usage: python benchmarks/coordinate_store.py [--picks 200000] [--micrographs 400] [--runs 20]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def _time(fn, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t)
    return out


def _row(name: str, times: list[float], target_ms: float | None = None) -> str:
    med = statistics.median(times) * 1000
    verdict = "" if target_ms is None else f"  target < {target_ms:g} ms: {'ok' if med < target_ms else 'MISSED'}"
    return f"{name:<48} median {med:8.3f} ms (min {min(times) * 1000:.3f}, max {max(times) * 1000:.3f}, n={len(times)}){verdict}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--picks", type=int, default=200_000)
    ap.add_argument("--micrographs", type=int, default=400)
    ap.add_argument("--runs", type=int, default=20)
    args = ap.parse_args()

    import numpy as np

    from picker_gui.core.coords import CoordinateTable
    from picker_gui.core.picks import PickStore

    rng = np.random.default_rng(0)
    n, m = args.picks, args.micrographs
    names = np.array([f"MotionCorr/job002/Movies/mic_{i:04d}.mrc" for i in rng.integers(0, m, n)], dtype=object)
    table = CoordinateTable.from_arrays(names, rng.uniform(0, 4096, n), rng.uniform(0, 4096, n), rng.normal(size=n))

    store = PickStore()
    t0 = time.perf_counter()
    store.set_table(table)
    fill = time.perf_counter() - t0
    keys = store.keys()
    one = [0]

    def one_micrograph() -> None:
        one[0] += 1
        store.picks(keys[one[0] % len(keys)], 0.5)

    print(f"{n} picks over {m} micrographs")
    print(f"{'PickStore: fill from a table (once)':<48} {fill * 1000:8.1f} ms")
    print(_row("PickStore: one micrograph's picks above t", _time(one_micrograph, args.runs * 10), 1))
    thresholds = iter(np.linspace(-2, 2, args.runs))
    print(_row("PickStore: counts of every micrograph at t", _time(lambda: store.counts(next(thresholds)), args.runs), 20))
    distances = iter(np.linspace(20, 60, 3))
    print(_row("PickStore: least distance changed, all filtered", _time(
        lambda: (store.set_min_distance(next(distances)), store.counts(0.0)), 3)))
    print(_row("CoordinateTable: one micrograph's rows", _time(lambda: table.for_micrograph(keys[7]), args.runs)))
    print(_row("CoordinateTable: group by micrograph", _time(lambda: list(table.groupby_micrograph()), 5)))


if __name__ == "__main__":
    main()
