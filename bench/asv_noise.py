"""Run-to-run noise of the asv suite: ``python -m bench.asv_noise RUN1 RUN2 ...``.

Each RUN is asv's result file (``.json``) of the same commit, machine and environment, or the
console log of that ``asv run --show-stderr`` (its tables print every value in full), from
separate runs. For every measured ``track_ms`` value it takes max/min over the runs and prints
the distribution of that spread; the regression factor of ``nox -s regress`` is chosen above
its worst case.
"""

import json
import re
import sys

import numpy as np

# A row of a track_ms table in asv's console output: provider, mask, direction, value.
_ROW = re.compile(r"^\s+(\S+)\s+(full|causal)\s+(fwd\+bwd|fwd)\s+(\S+)\s*$")
_HEADER = re.compile(r"\.(\w+)\.(track_\w+)\s+(ok|failed)")


def track_ms_from_log(path):
    """{(benchmark, params): ms} from the console log of one ``asv run``."""
    out, name = {}, None
    for line in open(path):
        header = _HEADER.search(line)
        if header:
            name = f"benchmarks.{header[1]}.track_ms" if header[2] == "track_ms" else None
            continue
        row = _ROW.match(line)
        if name and row and row[4] != "n/a":
            out[(name, row.groups()[:3])] = float(row[4])
    return out


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
                out[(name, tuple(str(c).strip("'") for c in combo))] = value
    return out


def main(paths):
    runs = [track_ms(p) if p.endswith(".json") else track_ms_from_log(p) for p in paths]
    common = set.intersection(*(set(r) for r in runs))
    if not common:
        sys.exit("no track_ms value is present in every run")
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
