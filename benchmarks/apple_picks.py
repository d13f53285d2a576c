"""ASPIRE's APPLE picker on micrographs, as its users run it, for benchmarks/consensus.py.

Run with the ASPIRE environment (``.venv-aspire/bin/python``, see benchmarks/README.md):

    .venv-aspire/bin/python benchmarks/apple_picks.py --particle-px 27 --out apple.csv MIC.mrc ...

APPLE 0.14.3 refuses an MRC whose header has a pixel size (each micrograph is copied with
voxel size 0 first), its default query-window thresholds (tau1, tau2) assume a 4k x 4k
micrograph (they are scaled by the area it searches here; its container size too, to a
quarter of the edge). Its margins of about 100 px stay as they are, and it picks the top-left
square of a micrograph, as it does for its users. Picks have no score; on the beta-gal
micrograph of ../shared/FIELD.md it finds 257 picks, 80 % of them within 8 px of a particle. Writes CSV: micrograph, x, y (original pixels, x = column).
"""

from __future__ import annotations

import argparse
import csv
import logging
import sys
import tempfile
import time
from pathlib import Path

import mrcfile
import numpy as np


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("micrographs", nargs="+", type=Path)
    ap.add_argument("--particle-px", type=float, required=True, help="particle diameter in pixels of the micrographs")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args()
    logging.basicConfig(level=logging.WARNING)
    from aspire.apple.apple import Apple

    rows = []
    tmp = Path(tempfile.mkdtemp())
    for path in args.micrographs:
        with mrcfile.open(path, permissive=True) as m:
            data = np.asarray(m.data, dtype=np.float32)
        h, w = data.shape
        data = data[: min(h, w), : min(h, w)]  # it reads square micrographs only (and picks the top-left square)
        copy = tmp / path.name
        with mrcfile.new(copy, overwrite=True) as m:
            m.set_data(data)
            m.voxel_size = 0
        edge = min(h, w)
        size = int(round(args.particle_px))
        # Its default margins (99/100 px) stay: its centres come back in original pixels with them.
        apple = Apple(particle_size=size, container_size=max(size, min(450, edge // 4)), n_processes=1,
                      output_dir=str(tmp))
        # The windows' thresholds as a fraction of the query windows there are, not of 4k x 4k.
        apple.q_box = apple.q_box * ((edge - 199) ** 2) / 4000**2
        apple.tau1 = max(1, int(apple.q_box * 0.03))
        apple.tau2 = max(apple.tau1 + 1, int(apple.q_box * 0.3))
        t = time.perf_counter()
        try:
            centers = np.asarray(apple.process_micrograph_centers(str(copy)), dtype=np.float64).reshape(-1, 2)
        except Exception as exc:  # noqa: BLE001 - report the micrograph and go on
            print(f"{path.name}: APPLE failed: {type(exc).__name__}: {exc}", file=sys.stderr)
            continue
        for x, y in centers:
            rows.append((path.name, x, y))
        print(f"{path.name}: {len(centers)} picks in {time.perf_counter() - t:.1f} s", file=sys.stderr)
    with open(args.out, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["micrograph", "x", "y"])
        w.writerows(rows)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
