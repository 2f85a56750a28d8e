"""Time FVD's resampling draws: scipy's ``sqrtm`` of a non-symmetric product per draw (what an
interval used to cost) against the symmetric eigenvalue route the harness uses
(``metrics.fvd.set_distances``: for the run's intervals, which resample both sets, and for the
gate, whose reference stays fixed and is decomposed once), on the same draws, and check that the
values agree.

    python scripts/bench_fvd_resampling.py [--dims 128 400] [--clips 256] [--draws 200]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from metrics.fvd import UnitFeatures, frechet_distance, set_distances
from vbench_flow.stats import resample_counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--dims", type=int, nargs="+", default=[128, 400])
    parser.add_argument("--clips", type=int, default=256)
    parser.add_argument("--draws", type=int, default=200)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    for dim in args.dims:
        mixing = rng.normal(size=(dim, dim)) / np.sqrt(dim)
        real = UnitFeatures(list(rng.normal(size=(args.clips, 1, dim)) @ mixing))
        fake = UnitFeatures(list(rng.normal(0.3, 1.0, size=(args.clips, 1, dim)) @ mixing))
        real_counts = resample_counts(rng, args.clips, args.draws)
        fake_counts = resample_counts(rng, args.clips, args.draws)

        def sqrtm_route(real_rows, fake_rows):
            values = []
            for r, f in zip(real_rows, fake_rows):
                a, b = real.stats(r), fake.stats(f)
                values.append(frechet_distance(a.mean(), a.covariance(), b.mean(), b.covariance()))
            return np.array(values)

        start = time.perf_counter()
        old = sqrtm_route(real_counts, fake_counts)
        old_seconds = time.perf_counter() - start
        start = time.perf_counter()
        new = set_distances(real, fake, real_counts, fake_counts)
        new_seconds = time.perf_counter() - start
        whole = np.ones((args.draws, args.clips), dtype=int)
        start = time.perf_counter()
        old_gate = sqrtm_route(whole, fake_counts)
        old_gate_seconds = time.perf_counter() - start
        start = time.perf_counter()
        new_gate = set_distances(real, fake, None, fake_counts)
        new_gate_seconds = time.perf_counter() - start
        print(f"d={dim}, {args.clips} clips a side, {args.draws} draws")
        print(f"  both sets resampled: sqrtm {old_seconds:.2f} s, eigh batched {new_seconds:.2f} s "
              f"({old_seconds / new_seconds:.1f}x); max rel diff {np.max(np.abs(new - old) / np.abs(old)):.1e}")
        print(f"  reference fixed (gate): sqrtm {old_gate_seconds:.2f} s, reference decomposed once, eigvalsh batched "
              f"{new_gate_seconds:.2f} s ({old_gate_seconds / new_gate_seconds:.1f}x); max rel diff "
              f"{np.max(np.abs(new_gate - old_gate) / np.abs(old_gate)):.1e}")


if __name__ == "__main__":
    main()
