"""The report's figures (matplotlib, PNG): time and TFLOP/s against length, speed-up of each stage
over its parent, peak extra memory against length, and a roofline of achieved FLOP/s against the
cost model's arithmetic intensity, with the card's measured ceilings."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")  # files only: no display on CI or the GPU machines
import matplotlib.pyplot as plt  # noqa: E402


def _by_series(records, key):
    series = {}
    for r in records:
        if r.get(key) is not None:
            series.setdefault(r["provider"], []).append((r["n"], r[key]))
    return {name: sorted(points) for name, points in series.items()}


def _style(name):
    reference = name.startswith("torch")
    return {
        "linestyle": "--" if reference else "-",
        "marker": "s" if reference else "o",
        "linewidth": 1.2 if reference else 1.8,
        "markersize": 4,
    }


def _lines(ax, series, ylabel, title):
    for name, points in series.items():
        xs, ys = zip(*points, strict=True)
        ax.plot(xs, ys, label=name, **_style(name))
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("sequence length N")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.grid(True, which="both", alpha=0.3)


def _save(fig, path: Path, written: list[Path]) -> None:
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    written.append(path)


def write_plots(records, ceilings, header, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    written = []

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(13, 5))
    _lines(ax1, _by_series(records, "ms"), "time (ms, median)", "time per call")
    _lines(
        ax2,
        _by_series(records, "tflops"),
        "TFLOP/s",
        "throughput (4·B·H·N²·d per forward, x3.5 with backward)",
    )
    ax2.legend(fontsize=8, loc="best")
    fig.suptitle(header, fontsize=9)
    _save(fig, out_dir / "time_tflops.png", written)

    speedups = _by_series(records, "vs_parent")
    if speedups:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        _lines(
            ax,
            speedups,
            "speed-up over the parent stage (x)",
            f"each stage against the one it builds on\n{header}",
        )
        ax.axhline(1.0, color="gray", linewidth=0.8)
        ax.legend(fontsize=8)
        _save(fig, out_dir / "speedup_over_parent.png", written)

    memory = _by_series(records, "peak_mib")
    if memory:
        fig, ax = plt.subplots(figsize=(7, 4.5))
        _lines(ax, memory, "peak extra GPU memory (MiB)", f"memory beyond the inputs\n{header}")
        ax.legend(fontsize=8)
        _save(fig, out_dir / "memory.png", written)

    roof = [r for r in records if r.get("intensity") and r.get("tflops")]
    if roof:
        fig, ax = plt.subplots(figsize=(7, 5))
        for name in dict.fromkeys(r["provider"] for r in roof):
            pts = [(r["intensity"], r["tflops"]) for r in roof if r["provider"] == name]
            ax.scatter(*zip(*pts, strict=True), label=name, s=18)
        peak, bw = ceilings.get("matmul_tflops"), ceilings.get("copy_gbps")
        if peak and bw:
            xs = [2.0**e for e in range(-2, 14)]
            ax.plot(
                xs,
                [min(peak, x * bw / 1e3) for x in xs],
                color="black",
                linewidth=1,
                label=f"roof: {ceilings.get('matmul_dtype')} matmul {peak:.0f} TFLOP/s, "
                f"copy {bw / 1e3:.2f} TB/s (measured)",
            )
        else:
            ax.text(0.02, 0.02, "no GPU: ceilings not measured", transform=ax.transAxes, fontsize=8)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("arithmetic intensity (FLOP per byte, from each stage's cost model)")
        ax.set_ylabel("achieved TFLOP/s")
        ax.set_title(f"roofline\n{header}", fontsize=9)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7)
        _save(fig, out_dir / "roofline.png", written)
    return written
