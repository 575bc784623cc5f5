"""Benchmark the flash-class stages against the same-run references, on the GPU.

``python -m bench.attention [--out DIR] [--quick] [--workload B,H,N,D ...]`` times, in one
process and one run: SDPA with the cuDNN and flash backends, compiled FlexAttention, and every
stage with no sequence limit, on the flash workloads (bf16; forward and forward+backward; causal
and not) or the given ones. It prints TFLOP/s and the ratio to cuDNN, measures the card's bf16
matmul rate and copy bandwidth as ceilings, checks the 128k-token causal run's peak memory
against SDPA's flash backend (``--no-memory`` skips it), and writes everything as JSON.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
import triton

from common import registry
from common.timing import attention_flops, ceilings, peak_extra_bytes

WORKLOADS = [(4, 32, 4096, 64), (2, 32, 16384, 64), (4, 16, 4096, 128), (2, 16, 16384, 128)]


def providers(stages):
    from torch.nn.attention import SDPBackend, sdpa_kernel
    from torch.nn.attention.flex_attention import create_block_mask, flex_attention

    sdpa = torch.nn.functional.scaled_dot_product_attention
    # One compiled flex for every workload: 4 shapes x 2 masks x (inference, training) are 16
    # specialisations, past dynamo's default limit of 8, after which it silently runs flex
    # eagerly (the N x N scores: 8-17 TFLOP/s and out of memory at d=128 in an H200 run, against
    # ~480 TFLOP/s compiled in asv, which measures one workload per process).
    torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 64)
    flex_compiled = torch.compile(flex_attention, dynamic=False)

    def sdpa_with(backend):
        def run(q, k, v, causal):
            with sdpa_kernel(backend):
                return sdpa(q, k, v, is_causal=causal)

        return run

    masks = {}

    def flex(q, k, v, causal):
        if not causal:
            return flex_compiled(q, k, v)
        key = (q.shape[2], k.shape[2])
        if key not in masks:
            masks[key] = create_block_mask(lambda b, h, qi, ki: ki <= qi, None, None, *key)
        return flex_compiled(q, k, v, block_mask=masks[key])

    out = {
        "cudnn": sdpa_with(SDPBackend.CUDNN_ATTENTION),
        "sdpa_flash": sdpa_with(SDPBackend.FLASH_ATTENTION),
        "flex": flex,
    }
    for s in stages:
        out[s.name] = lambda q, k, v, causal, s=s: s.attention(q, k, v, is_causal=causal)
    return out


def time_one(fn, shape, causal, backward):
    B, H, N, D = shape
    q, k, v = (
        torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16, requires_grad=backward)
        for _ in range(3)
    )
    if not backward:
        return triton.testing.do_bench(
            lambda: fn(q, k, v, causal), warmup=25, rep=100, return_mode="median"
        )
    out = fn(q, k, v, causal)
    do = torch.randn_like(out)
    return triton.testing.do_bench(
        lambda: out.backward(do, retain_graph=True),
        warmup=25,
        rep=100,
        grad_to_none=[q, k, v],
        return_mode="median",
    )


def memory_128k(stage) -> dict:
    """Peak extra memory of the 131072-token causal run (B=1, H=8, d=128, bf16) vs SDPA flash."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    shape = (1, 8, 131072, 128)
    q, k, v = (
        torch.randn(*shape, device="cuda", dtype=torch.bfloat16, requires_grad=True)
        for _ in range(3)
    )
    do = torch.randn(*shape, device="cuda", dtype=torch.bfloat16)

    def ours():
        stage.attention(q, k, v, is_causal=True).backward(do)

    def flash():
        with sdpa_kernel(SDPBackend.FLASH_ATTENTION):
            torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=True).backward(do)

    result = {}
    for name, fn in (("stage", ours), ("sdpa_flash", flash)):
        fn()  # warm-up: autotuning and workspaces stay out of the peak
        q.grad = k.grad = v.grad = None
        result[name] = peak_extra_bytes(fn, "cuda")
        q.grad = k.grad = v.grad = None
    result["ratio"] = result["stage"] / result["sdpa_flash"]
    return result


def time_cell(provs, stages, shape, causal, backward, rounds: int) -> list[dict]:
    """One row per provider for one workload, mask and direction. With ``rounds`` > 1 the
    providers are timed round after round, each round starting one provider later, so a drift of
    the card's clocks during the cell reaches every provider alike; a row keeps the median and
    every reading."""
    names = []
    for name in provs:
        caps = next((s.capabilities for s in stages if s.name == name), None)
        if not (backward and caps is not None and not caps.backward):
            names.append(name)
    readings = {name: [] for name in names}
    errors, wall = {}, dict.fromkeys(names, 0.0)
    for r in range(rounds):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            if name in errors:
                continue
            t0 = time.time()
            try:
                readings[name].append(time_one(provs[name], shape, causal, backward))
            except Exception as exc:  # recorded; the other providers still run
                errors[name] = f"{type(exc).__name__}: {str(exc)[:300]}"
            wall[name] += time.time() - t0
            torch.cuda.empty_cache()
    rows = []
    flops = attention_flops(*shape[:3], shape[2], shape[3], causal, backward)
    for name in names:
        ms = statistics.median(readings[name]) if name not in errors else None
        row = {
            "provider": name,
            "shape": list(shape),
            "causal": causal,
            "direction": "bwd" if backward else "fwd",
            "ms": ms,
            "tflops": flops / ms / 1e9 if ms else None,
            "error": errors.get(name),
            "wall_s": round(wall[name], 1),
        }
        if rounds > 1:
            row["ms_rounds"] = readings[name]
        print(json.dumps(row), flush=True)
        rows.append(row)
    return rows


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.attention", description=__doc__)
    parser.add_argument("--out", type=Path, default=Path("results/bench"))
    parser.add_argument("--quick", action="store_true", help="first two workloads only")
    parser.add_argument("--skip", nargs="*", default=[], help="providers to leave out")
    parser.add_argument("--only", nargs="*", default=None, help="run only these providers")
    parser.add_argument(
        "--workload",
        action="append",
        type=lambda text: tuple(int(x) for x in text.split(",")),
        help="B,H,N,D instead of the flash workloads (repeatable), e.g. 4,16,4096,96",
    )
    parser.add_argument("--no-memory", action="store_true", help="skip the 128k memory check")
    parser.add_argument(
        "--rounds",
        type=int,
        default=1,
        help="time every provider this many times per workload, in rotated order, and keep the "
        "median (one reading of the same kernel moved 5-10%% between runs on an H200)",
    )
    args = parser.parse_args(argv)
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    args.out.mkdir(parents=True, exist_ok=True)
    stages = [s for s in registry.discover() if s.available and s.capabilities.max_seq_len is None]
    report = {
        "device": torch.cuda.get_device_name(),
        "torch": torch.__version__,
        "triton": triton.__version__,
        "ceilings": ceilings("cuda"),
        "rows": [],
    }
    print(report["device"], report["ceilings"], flush=True)
    provs = {
        k: v
        for k, v in providers(stages).items()
        if k not in args.skip and (args.only is None or k in args.only)
    }
    workloads = args.workload or (WORKLOADS[:2] if args.quick else WORKLOADS)
    for shape in workloads:
        for causal in (False, True):
            for backward in (False, True):
                report["rows"] += time_cell(provs, stages, shape, causal, backward, args.rounds)
    v04 = next((s for s in stages if s.capabilities.backward and s.name in provs), None)
    if v04 is not None and not args.no_memory:
        report["memory_128k"] = {"stage": v04.name, **memory_128k(v04)}
        print("memory_128k", report["memory_128k"], flush=True)
    (args.out / "bench.json").write_text(json.dumps(report, indent=2))
    print_table(report)
    return 0


def print_table(report) -> None:
    rows = report["rows"]
    cudnn = {
        (tuple(r["shape"]), r["causal"], r["direction"]): r["tflops"]
        for r in rows
        if r["provider"] == "cudnn"
    }
    peak = report["ceilings"]["matmul_tflops"]
    print(
        f"\n{report['device']}  bf16 matmul {peak:.0f} TFLOP/s  "
        f"copy {report['ceilings']['copy_gbps']:.0f} GB/s"
    )
    print(f"{'workload':24} {'dir':4} {'provider':16} {'TFLOP/s':>8} {'x cuDNN':>8} {'% mm':>6}")
    for r in rows:
        key = (tuple(r["shape"]), r["causal"], r["direction"])
        tag = "x".join(map(str, r["shape"])) + (" causal" if r["causal"] else "")
        if r["tflops"] is None:
            print(f"{tag:24} {r['direction']:4} {r['provider']:16} {'failed':>8}  {r['error']}")
            continue
        ratio = r["tflops"] / cudnn[key] if cudnn.get(key) else float("nan")
        print(
            f"{tag:24} {r['direction']:4} {r['provider']:16} {r['tflops']:8.1f} "
            f"{ratio:8.2f} {100 * r['tflops'] / peak:6.1f}"
        )


if __name__ == "__main__":
    raise SystemExit(main())
