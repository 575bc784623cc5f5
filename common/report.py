"""The series report: every stage on one problem, checked against the reference and timed beside
eager PyTorch and ``scaled_dot_product_attention``, in one table. A stage that fails, errors or
refuses is reported and the run goes on."""

from __future__ import annotations

import argparse
import csv
import json
import math
import platform
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

import torch

from common import cost, registry
from common.plots import write_plots
from common.reference import reference_attention
from common.testing import (
    Problem,
    backward_verdicts,
    judge,
    make_inputs,
    torch_matmul_precision,
)
from common.timing import attention_flops, bench_ms, ceilings, peak_extra_bytes
from common.validation import check_inputs, interpreting

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass
class Row:
    stage: str
    idea: str
    status: str  # "ok", "wrong", "refused", "error", "unavailable"
    detail: str = ""
    max_error: float | None = None
    budget: float | None = None
    ms: float | None = None
    tflops: float | None = None
    vs_parent: float | None = None
    vs_eager: float | None = None
    vs_sdpa: float | None = None
    model_gb: float | None = None  # bytes the stage's cost model says it moves
    gbps: float | None = None  # model bytes over measured time
    refuses: list[str] = field(default_factory=list)


def _probes(p: Problem) -> list[Problem]:
    """Problems beyond the default that show each stage's declared limits."""
    return [
        Problem(1, 1, 32, 32, p.head_dim, dtype=torch.bfloat16),
        Problem(1, 1, 32, 32, 256),
        Problem(1, 1, 32, 32, 96),
        Problem(1, 1, 32, 32, p.head_dim, causal=True),
        Problem(1, 1, 16384, 16384, p.head_dim),
    ]


def _refusals(stage, p: Problem, device: str) -> list[str]:
    found = []
    for probe in _probes(p):
        q = torch.empty(1, 1, probe.n_q, probe.head_dim, dtype=probe.dtype, device=device)
        try:
            check_inputs(stage.name, stage.capabilities, q, q, q, probe.causal, None)
        except (TypeError, ValueError) as exc:
            found.append(str(exc).split(": ", 1)[-1])
    return found


def _step(attend, q, k, v, causal, do=None):
    """One timed call: the forward, or with ``do`` the forward and the backward to q, k, v."""
    if do is None:
        return lambda: attend(q, k, v, is_causal=causal)
    return lambda: torch.autograd.grad(attend(q, k, v, is_causal=causal), (q, k, v), do)


def _eager(q, k, v, is_causal):
    return reference_attention(q, k, v, is_causal=is_causal, dtype=q.dtype)


def run(problem: Problem, names: list[str] | None, device: str, backward=False) -> list[Row]:
    q, k, v = make_inputs(problem, device, requires_grad=backward)
    do = torch.randn_like(q) if backward else None
    ref = reference_attention(q, k, v, is_causal=problem.causal)
    sdpa = torch.nn.functional.scaled_dot_product_attention
    eager_ms = bench_ms(_step(_eager, q, k, v, problem.causal, do), device)
    sdpa_ms = bench_ms(_step(sdpa, q, k, v, problem.causal, do), device)
    flops = attention_flops(
        problem.batch, problem.heads, problem.n_q, problem.n_k, problem.head_dim, problem.causal
    ) * (3.5 if backward else 1.0)
    rows, ms_by_name = [], {}
    stages = registry.discover()
    if names:
        stages = [s for s in stages if s.name in names or s.name[:3] in names]
    for stage in stages:
        if not stage.available:
            rows.append(Row(stage.name, "", "unavailable", stage.error))
            continue
        row = Row(stage.name, stage.idea, "ok", refuses=_refusals(stage, problem, device))
        rows.append(row)
        if backward and not stage.capabilities.backward:
            row.status, row.detail = "refused", f"{stage.name}: no backward declared"
            continue
        try:
            if backward:  # outputs and dq, dk, dv against float64 autograd
                verdicts = backward_verdicts(stage, problem, device)
            else:
                out = stage.attention(q, k, v, is_causal=problem.causal)
                with torch_matmul_precision(stage.capabilities):
                    lowp = _eager(q, k, v, problem.causal)
                verdicts = [judge(stage.name, out, ref, lowp)]
        except (TypeError, ValueError) as exc:
            row.status, row.detail = "refused", str(exc)
            continue
        except Exception as exc:  # reported, and the run goes on to the next stage
            row.status, row.detail = "error", f"{type(exc).__name__}: {exc}"
            continue
        worst = max(verdicts, key=lambda vd: vd.error / vd.budget if vd.budget else vd.error)
        row.max_error, row.budget = worst.error, worst.budget
        if not all(vd.ok for vd in verdicts):
            row.status, row.detail = "wrong", "; ".join(str(vd) for vd in verdicts if not vd.ok)
        row.ms = bench_ms(_step(stage.attention, q, k, v, problem.causal, do), device)
        ms_by_name[stage.name] = row.ms
        row.tflops = flops / row.ms / 1e9
        # The cost models describe the forward; with the backward the bytes are not modelled.
        moved = None if backward else cost.model(stage, problem)["bytes"]
        if moved:
            row.model_gb, row.gbps = moved / 1e9, moved / row.ms / 1e6
        row.vs_eager, row.vs_sdpa = eager_ms / row.ms, sdpa_ms / row.ms
        if stage.parent in ms_by_name:
            row.vs_parent = ms_by_name[stage.parent] / row.ms
    rows.append(
        Row(
            "torch eager",
            "softmax(QK^T)V in the input dtype",
            "ok",
            ms=eager_ms,
            tflops=flops / eager_ms / 1e9,
        )
    )
    rows.append(
        Row(
            "torch SDPA",
            "scaled_dot_product_attention",
            "ok",
            ms=sdpa_ms,
            tflops=flops / sdpa_ms / 1e9,
        )
    )
    return rows


def _sweep_point(p: Problem, stages, device, backward=False) -> list[dict]:
    q, k, v = make_inputs(p, device, requires_grad=backward)
    do = torch.randn_like(q) if backward else None
    flops = attention_flops(p.batch, p.heads, p.n_q, p.n_k, p.head_dim, p.causal)
    flops *= 3.5 if backward else 1.0
    calls = {
        s.name: _step(s.attention, q, k, v, p.causal, do)
        for s in stages
        if p.fits(s.capabilities, interpreting()) and (s.capabilities.backward or not backward)
    }
    sdpa = torch.nn.functional.scaled_dot_product_attention
    calls["torch SDPA"] = _step(sdpa, q, k, v, p.causal, do)
    scores_bytes = p.batch * p.heads * p.n_q * p.n_k * p.dtype.itemsize
    if device == "cpu" or scores_bytes * 3 < torch.cuda.mem_get_info()[0] / 2:
        calls["torch eager"] = _step(_eager, q, k, v, p.causal, do)
    records, by_name = [], {}
    for name, fn in calls.items():
        rec = {"provider": name, "n": p.n_q, "problem": str(p), "flops": flops}
        records.append(rec)
        try:
            rec["ms"] = bench_ms(fn, device)
        except Exception as exc:  # recorded; the sweep goes on
            rec["error"] = f"{type(exc).__name__}: {exc}"
            continue
        rec["tflops"] = flops / rec["ms"] / 1e9
        stage = next((s for s in stages if s.name == name), None)
        if stage is not None and not backward:  # the cost models describe the forward
            m = cost.model(stage, p)
            rec["bytes"], rec["intensity"] = m["bytes"], m["intensity"]
        if stage is not None and stage.parent in by_name:
            rec["vs_parent"] = by_name[stage.parent] / rec["ms"]
        peak = peak_extra_bytes(fn, device)
        rec["peak_mib"] = peak / 2**20 if peak is not None else None
        by_name[name] = rec["ms"]
    return records


def sweep(template: Problem, lengths, names, device, backward=False) -> list[dict]:
    """Every stage and the two references at each length: time, TFLOP/s, the cost model's
    bytes and intensity, and (on a GPU) peak extra memory. Refusals and errors are recorded."""
    from rich.progress import track

    stages = [s for s in registry.discover() if s.available]
    if names:
        stages = [s for s in stages if s.name in names or s.name[:3] in names]
    records = []
    for n in track(lengths, description="sweep over sequence lengths"):
        records += _sweep_point(replace(template, n_q=n, n_k=n), stages, device, backward)
    return records


def _fmt(x, spec):
    return "-" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def print_table(rows: list[Row], header: str) -> None:
    from rich.console import Console
    from rich.table import Table

    table = Table(title=header, title_justify="left")
    table.add_column("stage", no_wrap=True)
    table.add_column("idea", ratio=1, min_width=30)
    for col in (
        "status",
        "max err",
        "ms",
        "TFLOP/s",
        "model GB",
        "GB/s",
        "vs parent",
        "vs eager",
        "vs SDPA",
    ):
        table.add_column(col, no_wrap=True, justify="right")
    for r in rows:
        status = r.status if r.status == "ok" else f"[bold red]{r.status}[/]"
        table.add_row(
            r.stage,
            r.idea,
            status,
            _fmt(r.max_error, ".1e"),
            _fmt(r.ms, ".3f"),
            _fmt(r.tflops, ".3g"),
            _fmt(r.model_gb, ".3g"),
            _fmt(r.gbps, ".4g"),
            _fmt(r.vs_parent, ".3g"),
            _fmt(r.vs_eager, ".3g"),
            _fmt(r.vs_sdpa, ".3g"),
        )
    # A pipe or CI log reports 80 columns; the table needs ~165 to keep one line per stage.
    console = Console(width=max(Console().width, 168))
    console.print(table)
    for r in rows:
        if r.detail:
            console.print(f"[red]{r.stage}[/] {r.status}: {r.detail}")
    for r in rows:
        for reason in r.refuses:
            console.print(f"{r.stage} refuses: {reason}")


def main(argv=None) -> int:
    on_gpu = torch.cuda.is_available()
    parser = argparse.ArgumentParser(prog="python -m common report", description=__doc__)
    parser.add_argument("--stages", nargs="*", help="stage names or vNN prefixes (default: all)")
    parser.add_argument("--dtype", choices=DTYPES, default="float32")
    parser.add_argument("--batch", type=int, default=2 if on_gpu else 1)
    parser.add_argument("--heads", type=int, default=8 if on_gpu else 2)
    parser.add_argument("--seq", type=int, default=1024 if on_gpu else 32)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--causal", action="store_true")
    parser.add_argument(
        "--backward", action="store_true", help="time forward + backward (stages with a backward)"
    )
    parser.add_argument(
        "--sweep",
        type=int,
        nargs="*",
        default=[512, 1024, 2048, 4096, 8192, 16384] if on_gpu else [16, 32],
        help="sequence lengths for the plots (the default problem's other dimensions)",
    )
    parser.add_argument("--quick", action="store_true", help="the table only: no sweep, no plots")
    parser.add_argument(
        "--out",
        type=Path,
        default=Path("results/series.json"),
        help="result file; the PNGs and a CSV are written beside it",
    )
    args = parser.parse_args(argv)
    device = "cuda" if on_gpu else "cpu"
    problem = Problem(
        args.batch, args.heads, args.seq, args.seq, args.head_dim, args.causal, DTYPES[args.dtype]
    )
    where = (
        torch.cuda.get_device_name()
        if on_gpu
        else "no GPU: Triton interpreter on the CPU (times measure the interpreter, not a GPU)"
    )
    direction = "forward + backward" if args.backward else "forward"
    header = f"attention series on {where}\nproblem (B, H, N, N, d) = {problem}, {direction}"
    rows = run(problem, args.stages, device, args.backward)
    print_table(rows, header)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    records, found = [], {}
    if not args.quick and args.sweep:
        found = ceilings(device, DTYPES[args.dtype])
        records = sweep(problem, args.sweep, args.stages, device, args.backward)
        short = (
            f"{where.split(':')[0]}, {args.dtype}, B={args.batch} H={args.heads} "
            f"d={args.head_dim}{' causal' if args.causal else ''}, {direction}"
        )
        for png in write_plots(records, found, short, args.out.parent):
            print(f"plot written to {png}")
        with open(args.out.with_suffix(".csv"), "w", newline="") as fh:
            cols = [
                "provider",
                "n",
                "ms",
                "tflops",
                "bytes",
                "intensity",
                "vs_parent",
                "peak_mib",
                "error",
            ]
            writer = csv.DictWriter(fh, fieldnames=cols, extrasaction="ignore")
            writer.writeheader()
            writer.writerows(records)
    payload = {
        "device": where,
        "interpreter": interpreting(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "problem": str(problem),
        "direction": direction,
        "rows": [asdict(r) for r in rows],
        "ceilings": found,
        "sweep": records,
    }
    args.out.write_text(json.dumps(payload, indent=2))
    print(f"results written to {args.out}")
    return 1 if any(r.status in ("wrong", "error", "unavailable") for r in rows) else 0
