"""Backward tile configs of v07 and v09 beside v04's backward and cuDNN's, checked and timed in
one run.

``python -m bench.tune_bwd [--out DIR] [--dims 64 128] [--quick] [--only v09 ...]``: for every
flash workload (bf16, causal and not) it runs v06's forward once (O and the log-sum-exp the
backwards need), times cuDNN's backward through autograd, v04's two-kernel backward at its
first-choice configs, each v07 config launched directly, both with TMA reduce-adds and (first
config) with element atomics for dQ, and each v09 config (Gluon; Hopper only). Every
candidate's dQ, dK, dV are checked against cuDNN's; a timing covers everything the backward
launches (Delta, the dQ buffer's zeroing and conversion included).
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import os
from pathlib import Path

import torch

from bench.attention import WORKLOADS
from bench.tune import _ms, precompile, print_best, time_candidate
from common.timing import attention_flops


def _v04(cfg):
    from variants.v04_flash2 import kernel

    def run(q, k, v, o, lse, do, causal):
        return kernel._backward(do, q, k, v, o, lse, causal, q.shape[-1] ** -0.5)

    return run


def _v07(cfg):
    from variants.v07_fused_bwd import kernel

    cfg = dict(cfg)
    dq_tma = cfg.pop("DQ_TMA")

    def run(q, k, v, o, lse, do, causal):
        dq_acc = kernel.dq_buffer(q)
        dk, dv = torch.empty_like(k), torch.empty_like(v)
        kernel.launch_backward(do, q, k, v, lse, kernel.v04.preprocess(do, o), dq_acc, dk, dv,
                               causal, q.shape[-1] ** -0.5, config=cfg, dq_tma=dq_tma)  # fmt: skip
        return dq_acc.view(q.shape).to(q.dtype), dk, dv

    return run


def _v09(cfg):
    from variants.v09_gluon_bwd import kernel

    def run(q, k, v, o, lse, do, causal):
        return kernel._backward(do, q, k, v, o, lse, causal, q.shape[-1] ** -0.5, config=cfg)

    return run


BUILD = {"v04": _v04, "v07": _v07, "v09": _v09}

# v09: query rows per step and ring stages, then the switches that are on (configs.py): dQ split
# between the consumers by query rows (DQ_ROWS, 128-row steps only) rather than by columns, dK's
# product issued after dQ's so it runs while dQ is sent (DQ_UNDER_DK), and dQ's rows staged in
# a bank-conflict-free order (DQ_PERM). Host-built descriptors throughout (in-kernel ones cost
# 1-15%: v09 NOTES, run 4). 128-row steps at d=64 spill a little but hold twice the work per
# barrier.
_V09_SWITCHES = ("DQ_ROWS", "DQ_UNDER_DK", "DQ_PERM")
V09 = {
    64: [(128, 2, "DQ_ROWS", "DQ_PERM"), (128, 2, "DQ_ROWS")],
    128: [
        (64, 2, "DQ_UNDER_DK", "DQ_PERM"),
        (64, 2, "DQ_UNDER_DK"),
        (64, 2),
        (64, 2, "DQ_PERM"),
    ],
}


def candidates(head_dim, only=()):
    """(stage, label, config): v04 once, v07's listed configs with TMA reduce-adds, its first
    config with element atomics (what the reduce-add is worth), and v09's configs; ``only``
    keeps the named stages."""
    from variants.v07_fused_bwd import configs

    out = [("v04", "first choice", {})]
    for block_m, stages, *switches in V09[head_dim]:
        tag = " ".join([f"{block_m}x128 s{stages}", *(s.lower() for s in switches)])
        cfg = dict(BLOCK_M=block_m, STAGES=stages, HOST_DESC=True)
        cfg.update((s, s in switches) for s in _V09_SWITCHES)
        out.append(("v09", tag, cfg))
    for i, c in enumerate(configs.BWD[configs.v04_configs.head_dim_class(head_dim)]):
        kw = dict(c.all_kwargs())
        tag = f"{kw['BLOCK_M']}x{kw['BLOCK_N']} w{kw['num_warps']} s{kw['num_stages']}"
        out.append(("v07", tag + " tma", dict(kw, DQ_TMA=True)))
        if i == 0:
            out.append(("v07", tag + " atomics", dict(kw, DQ_TMA=False)))
    return [c for c in out if not only or c[0] in only]


def _inputs(B, H, N, D, causal):
    from variants.v06_warpspec import kernel as v06

    torch.manual_seed(0)
    q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
    do = torch.randn_like(q)
    o, lse = v06._forward(q, k, v, causal, D**-0.5)
    return q, k, v, o, lse, do


def _compile_one(job):
    stage, cfg, head_dim, causal = job
    try:
        BUILD[stage](cfg)(*_inputs(1, 16, 256, head_dim, causal), causal)
        torch.cuda.synchronize()
    except Exception as exc:  # the timed pass records it
        return f"{stage} {cfg}: {type(exc).__name__}"
    return None


def _relative_error(want, got):
    """Largest gradient error relative to the gradient's largest entry, worst of dQ, dK, dV."""
    return max(
        ((g.float() - w.float()).abs().max() / w.float().abs().max()).item()
        for g, w in zip(got, want, strict=True)
    )


def _cudnn_backward(q, k, v, do, causal):
    """cuDNN's gradients and a callable that reruns its backward (what gets timed)."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    q, k, v = (t.detach().requires_grad_() for t in (q, k, v))
    with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
        out = torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)
    grads = torch.autograd.grad(out, (q, k, v), do, retain_graph=True)
    return grads, lambda: torch.autograd.grad(out, (q, k, v), do, retain_graph=True)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune_bwd", description=__doc__)
    parser.add_argument("--out", default="results/tune_bwd")
    parser.add_argument("--quick", action="store_true", help="the 4096-token workloads only")
    parser.add_argument("--dims", type=int, nargs="*", default=[64, 128], help="head dims")
    parser.add_argument("--workers", type=int, default=12, help="processes that precompile")
    parser.add_argument("--only", nargs="*", default=[], help="stages to time: v04, v07, v09")
    args = parser.parse_args(argv)
    # v04's backward at its first-choice configs and v06's forward without a search per shape
    # (set before the precompiling processes start, which inherit it).
    os.environ["ATTN_AUTOTUNE"] = "0"
    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    workloads = [w for w in WORKLOADS if (not args.quick or w[2] == 4096) and w[3] in args.dims]
    jobs = [
        (stage, cfg, d, causal)
        for d in sorted({w[3] for w in workloads})
        for causal in (False, True)
        for stage, _, cfg in candidates(d, args.only)
    ]
    if args.workers > 1:
        precompile(jobs, args.workers, _compile_one)
    rows = []
    for shape, causal in itertools.product(workloads, (False, True)):
        q, k, v, o, lse, do = _inputs(*shape, causal)
        flops = attention_flops(*shape[:3], shape[2], shape[3], causal, backward=True)
        want, cudnn = _cudnn_backward(q, k, v, do, causal)
        ref_tf = flops / _ms(cudnn) / 1e9
        rows.append(dict(shape=shape, causal=causal, stage="cudnn", label="", tflops=ref_tf))
        print(f"\n{shape} causal={causal}: cudnn backward {ref_tf:.0f} TFLOP/s", flush=True)
        for stage, label, cfg in candidates(shape[3], args.only):
            row = dict(shape=shape, causal=causal, stage=stage, label=label)
            args_ = (q, k, v, o, lse, do, causal)
            error_of = functools.partial(_relative_error, want)
            rows.append(time_candidate(row, BUILD[stage], cfg, args_, error_of, flops, ref_tf))
        (out_dir / "tune_bwd.json").write_text(json.dumps(rows, indent=1))
        del q, k, v, o, lse, do, want, cudnn
        torch.cuda.empty_cache()
    print_best(rows, workloads, "backward")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
