"""Forward tile configs of v03 to v06, v08 and v10, each checked and timed beside cuDNN in one run.

``python -m bench.tune [--out DIR] [--only v05] [--quick]``: for every flash workload (bf16,
causal and not) it times SDPA-cuDNN, then each candidate config of each stage's forward kernel
launched directly (bypassing autotune), checks the candidate's output against cuDNN's, and prints
TFLOP/s and the ratio to cuDNN. A candidate that fails to compile or is wrong is recorded as such
and the run goes on. The winners go into the stages' config tables; the log into their NOTES.md.
"""

from __future__ import annotations

import argparse
import functools
import itertools
import json
import time
from pathlib import Path

import torch
import triton

from bench.attention import WORKLOADS
from common.timing import attention_flops

LOG2E = 1.4426950408889634


def _launch_forward(kernel, cfg, **kwargs):
    """A run(q, k, v, causal) through ``kernel.launch_forward`` with the fixed ``cfg``."""

    def run(q, k, v, causal):
        o = torch.empty_like(q)
        lse = torch.empty(q.shape[:3], device=q.device, dtype=torch.float32)
        kernel.launch_forward(q, k, v, o, lse, causal, q.shape[-1] ** -0.5, config=cfg, **kwargs)
        return o

    return run


def _v05(cfg):
    from variants.v05_hopper import kernel

    cfg = dict(cfg)
    host_desc = cfg.pop("HOST_DESC")
    return _launch_forward(kernel, cfg, host_desc=host_desc)


def _v06(cfg):
    from variants.v06_warpspec import kernel

    return _launch_forward(kernel, cfg)


def _v08(cfg):
    from variants.v08_gluon import kernel

    return _launch_forward(kernel, {"STAGES": cfg["num_stages"], "CONSUMERS": cfg["CONSUMERS"]})


def _v10(cfg):
    from variants.v10_persistent import kernel

    return _launch_forward(kernel, {"STAGES": cfg["num_stages"], "CONSUMERS": cfg["CONSUMERS"]})


def _v04(cfg):
    from variants.v04_flash2 import kernel

    def run(q, k, v, causal):
        B, H, n, _ = q.shape
        o = torch.empty_like(q)
        lse = torch.empty(q.shape[:3], device=q.device, dtype=torch.float32)
        grid = (triton.cdiv(n, cfg["BLOCK_M"]), B * H)
        kernel._attn_fwd[grid](
            q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            H, n, n, kernel._n_key(q, k), q.shape[-1] ** -0.5 * LOG2E,
            SCALE_POSITIVE=True, **kernel._meta(q, causal), **cfg,
        )  # fmt: skip
        return o

    return run


def _v03(cfg):
    from variants.v03_tiled import kernel

    def run(q, k, v, causal):
        B, H, n, d = q.shape
        o = torch.empty_like(q)
        grid = (triton.cdiv(n, cfg["BLOCK_M"]), B * H)
        kernel._attn_fwd[grid](
            q, k, v, o, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            H, n, n, d ** -0.5, HEAD_DIM=d, IS_CAUSAL=causal, BLOCK_D=d, INTERP_BF16=False,
            EVEN_N=n % cfg["BLOCK_N"] == 0, **cfg,
        )  # fmt: skip
        return o

    return run


def _cfg(m, n, w, s, **flags):
    return dict(BLOCK_M=m, BLOCK_N=n, num_warps=w, num_stages=s, **flags)


# (BLOCK_M, BLOCK_N, num_warps, num_stages) per stage and head dim: v04's and v05's chosen
# configs, then v06's warp-specialised candidates ("ws") beside the same kernel and tiles
# without the split ("plain"), which isolates what the warp roles are worth. (v06 hands head
# dims up to 64 to v05; its d=64 entry is the measurement behind that.) v08's Gluon kernel walks
# 128-key tiles with two or three consumer warpgroups of 64 rows ("c2", "c3": BLOCK_M 128 or
# 192); its candidates differ in that and in K/V ring stages. v10 is v08's kernel made
# persistent (one program per SM), with the same candidates (three stages do not fit at d=128).
TILES = {
    64: {
        "v04": [(128, 64, 8, 3)],
        "v05 host": [(128, 64, 4, 3)],
        "v06 ws": [(128, 128, 4, 2)],
        "v08 c2": [(128, 128, 4, 2), (128, 128, 4, 3)],
        "v08 c3": [(192, 128, 4, 2), (192, 128, 4, 3)],
        "v10 c2": [(128, 128, 4, 2)],
        "v10 c3": [(192, 128, 4, 2), (192, 128, 4, 3)],
        "v03": [(64, 64, 4, 3)],
    },
    128: {
        "v04": [(128, 64, 8, 3)],
        "v05 host": [(128, 128, 8, 3)],
        "v06 ws": [(128, 128, 4, 2), (128, 64, 4, 2)],
        "v06 plain": [(128, 128, 4, 2)],
        "v08 c2": [(128, 128, 4, 2), (128, 128, 4, 3)],
        "v10 c2": [(128, 128, 4, 2)],
        "v03": [(64, 64, 4, 3)],
    },
}


def candidates(head_dim):
    """(stage, label, config) to try at this head dim."""
    out = []
    for name, tiles in TILES[head_dim].items():
        stage, _, how = name.partition(" ")
        for m, n, w, s in tiles:
            tag = f"{m}x{n} w{w} s{s}" + (f" {how}" if how else "")
            flags = {}
            if stage == "v05":
                flags = dict(LAZY_RESCALE=False, HOST_DESC=how == "host")
            elif stage == "v06":
                flags = dict(WARP_SPECIALIZE=how == "ws")
            elif stage in ("v08", "v10"):  # "c2" or "c3": consumer warpgroups
                flags = dict(CONSUMERS=int(how.removeprefix("c")))
            out.append((stage, tag, _cfg(m, n, w, s, **flags)))
    return out


BUILD = {"v03": _v03, "v04": _v04, "v05": _v05, "v06": _v06, "v08": _v08, "v10": _v10}


def _compile_one(job):
    """Run one candidate once on a small input with the same specialisation as the workloads
    (every int a multiple of 16), so its binary lands in Triton's on-disk cache."""
    stage, cfg, head_dim, causal = job
    q, k, v = (
        torch.randn(1, 16, 256, head_dim, device="cuda", dtype=torch.bfloat16) for _ in "qkv"
    )
    try:
        BUILD[stage](cfg)(q, k, v, causal)
        torch.cuda.synchronize()
    except Exception as exc:  # the timed pass records it
        return f"{stage} {cfg}: {type(exc).__name__}"
    return None


def precompile(jobs, workers, compile_one=_compile_one):
    """Compile every candidate in parallel processes (``compile_one(job)`` runs one and returns
    an error line or None): ~100 kernels at a few seconds each would otherwise be compiled one
    after another by the timing process."""
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.time()
    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn")) as pool:
        failed = [f for f in pool.map(compile_one, jobs) if f]
    print(f"precompiled {len(jobs)} kernels in {time.time() - t0:.0f}s; failed: {failed}")


def _sdpa(q, k, v, causal):
    return torch.nn.functional.scaled_dot_product_attention(q, k, v, is_causal=causal)


def _ms(fn, *args):
    return triton.testing.do_bench(lambda: fn(*args), warmup=25, rep=100, return_mode="median")


def _max_error(want, got):
    return (got.float() - want.float()).abs().max().item()


def time_candidate(row, build, cfg, args, error_of, flops, ref_tf, tolerance=0.05):
    """Build ``build(cfg)``, run it once on ``args`` and check the result (``error_of(result)``,
    within ``tolerance``), then time it; record it all in ``row`` and print one line. A candidate
    that fails to build or run is recorded as such, so a sweep goes on."""
    t0 = time.time()
    try:
        fn = build(cfg)
        err = error_of(fn(*args))
        ms = _ms(fn, *args)
        row.update(err=err, ok=err < tolerance, tflops=flops / ms / 1e9)
        row["ratio"] = row["tflops"] / ref_tf
    except Exception as exc:  # recorded; the sweep goes on
        row.update(error=f"{type(exc).__name__}: {str(exc)[:300]}")
    row["seconds"] = time.time() - t0
    tag = f"  {row['stage']} {row['label']:24s}"
    if "error" in row:
        print(f"{tag} ERROR {row['error'][:120]}", flush=True)
    else:
        flag = "" if row["ok"] else "  WRONG"
        print(
            f"{tag} {row['tflops']:6.0f} TFLOP/s  {row['ratio']:.3f}x  err {row['err']:.1e}  "
            f"({row['seconds']:.0f}s){flag}",
            flush=True,
        )
    return row


def print_best(rows, workloads, what):
    """The best checked candidate of each stage per workload, as ratios to cuDNN."""
    print(f"\nbest per stage and workload, {what} (x cuDNN):")
    for shape, causal in itertools.product(workloads, (False, True)):
        best = {}
        for r in rows:
            if r["shape"] == shape and r["causal"] == causal and r.get("ok"):
                if r["ratio"] > best.get(r["stage"], {}).get("ratio", 0):
                    best[r["stage"]] = r
        cells = "  ".join(f"{s} {r['ratio']:.3f} ({r['label']})" for s, r in sorted(best.items()))
        print(f"{shape!s:22s} {'causal' if causal else 'full  '}  {cells}")


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.tune", description=__doc__)
    parser.add_argument("--out", default="results/tune")
    parser.add_argument("--only", action="append", default=[], help="v03 ... v06, v08, v10")
    parser.add_argument("--quick", action="store_true", help="the 4096-token workloads only")
    parser.add_argument("--dims", type=int, nargs="*", default=[64, 128], help="head dims")
    parser.add_argument("--workers", type=int, default=12, help="processes that precompile")
    args = parser.parse_args(argv)
    from torch.nn.attention import SDPBackend, sdpa_kernel

    out_dir = Path(args.out)
    out_dir.mkdir(parents=True, exist_ok=True)
    rows = []
    workloads = [w for w in WORKLOADS if (not args.quick or w[2] == 4096) and w[3] in args.dims]
    jobs = [
        (stage, cfg, d, causal)
        for d in sorted({w[3] for w in workloads})
        for causal in (False, True)
        for stage, _, cfg in candidates(d)
        if not args.only or stage in args.only
    ]
    if args.workers > 1:
        precompile(jobs, args.workers)
    for shape, causal in itertools.product(workloads, (False, True)):
        B, H, N, D = shape
        torch.manual_seed(0)
        q, k, v = (torch.randn(B, H, N, D, device="cuda", dtype=torch.bfloat16) for _ in range(3))
        flops = attention_flops(B, H, N, N, D, causal)
        with sdpa_kernel(SDPBackend.CUDNN_ATTENTION):
            want = _sdpa(q, k, v, causal)
            ref_ms = _ms(_sdpa, q, k, v, causal)
        ref_tf = flops / ref_ms / 1e9
        rows.append(dict(shape=shape, causal=causal, stage="cudnn", label="", tflops=ref_tf))
        print(f"\n{shape} causal={causal}: cudnn {ref_tf:.0f} TFLOP/s", flush=True)
        for stage, label, cfg in candidates(D):
            if args.only and stage not in args.only:
                continue
            row = dict(shape=shape, causal=causal, stage=stage, label=label)
            error_of = functools.partial(_max_error, want)
            rows.append(
                time_candidate(row, BUILD[stage], cfg, (q, k, v, causal), error_of, flops, ref_tf)
            )
        (out_dir / "tune.json").write_text(json.dumps(rows, indent=1))
    print_best(rows, workloads, "forward")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
