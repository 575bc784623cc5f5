"""Run-to-run noise of the asv suite: ``python -m bench.asv_noise RUN1.json RUN2.json ...``.

Each file is asv's result file of the same commit, machine and environment, from separate runs.
For every measured ``track_ms`` value it takes max/min over the runs and prints the distribution
of that spread; the regression factor of ``nox -s regress`` is chosen above its worst case.
"""

import json
import sys

import numpy as np


def track_ms(path):
    """{(benchmark, params): ms} from one asv result file."""
    data = json.load(open(path))
    cols = data["result_columns"]
    out = {}
    for name, row in data["results"].items():
        if not name.endswith("track_ms"):
            continue
        entry = dict(zip(cols, row, strict=False))
        values = entry["result"] or []
        combos = (
            np.array(np.meshgrid(*entry["params"], indexing="ij"))
            .reshape(len(entry["params"]), -1)
            .T
        )
        for combo, value in zip(combos, values, strict=True):
            if value is not None and value == value:
                out[(name, tuple(combo))] = value
    return out


def main(paths):
    runs = [track_ms(p) for p in paths]
    common = set.intersection(*(set(r) for r in runs))
    spread = {k: max(r[k] for r in runs) / min(r[k] for r in runs) for k in common}
    ratios = np.array(sorted(spread.values()))
    print(f"{len(common)} timings present in all {len(runs)} runs")
    for q in (50, 90, 95, 99, 100):
        print(f"  max/min over runs, {q:3d}th percentile: {np.percentile(ratios, q):.3f}")
    print("worst five:")
    for key, r in sorted(spread.items(), key=lambda kv: -kv[1])[:5]:
        print(f"  {r:.3f}  {key[0].split('.')[1]} {' '.join(key[1])}")


if __name__ == "__main__":
    main(sys.argv[1:])
