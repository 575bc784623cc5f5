"""Per-commit GPU timings of every stage and of the references, for airspeed velocity.

Parameters are plain strings: provider (every ``variants/vNN_*`` folder of the working tree, plus
``sdpa_cudnn``, ``sdpa_flash``, ``flex``, ``eager``), workload, mask and direction. Every
combination is measured once per run in ``setup_cache`` (CUDA events, ``do_bench`` median) and
reported by four ``track_*`` metrics; what a commit's stage does not support, what does not fit in
memory, and everything on a machine without a GPU is skipped through ``NotImplementedError``.
"""

import re
from pathlib import Path

# Read from the working tree the benchmarks live in, not from the installed package: an older
# commit has fewer stages, and a parameter list that shrinks aborts asv. A stage the commit under
# test lacks is skipped in setup.
STAGES = sorted(
    p.name
    for p in (Path(__file__).resolve().parent.parent / "variants").iterdir()
    if re.match(r"^v\d{2}_[a-z0-9_]+$", p.name)
)
REFERENCES = ["sdpa_cudnn", "sdpa_flash", "flex", "eager"]

# name: (B, H, N, d, dtype). "series" is small and fp32 so that v01 and v02 appear in the history.
WORKLOADS = {
    "series_2x8x1024x64_fp32": (2, 8, 1024, 64, "float32"),
    "4x32x4096x64_bf16": (4, 32, 4096, 64, "bfloat16"),
    "2x32x16384x64_bf16": (2, 32, 16384, 64, "bfloat16"),
    "4x16x4096x128_bf16": (4, 16, 4096, 128, "bfloat16"),
    "2x16x16384x128_bf16": (2, 16, 16384, 128, "bfloat16"),
}
PARAMS = (STAGES + REFERENCES, list(WORKLOADS), ["full", "causal"], ["fwd", "fwd+bwd"])
NAMES = ["provider", "workload", "mask", "direction"]


def _provider(name):
    """(callable(q, k, v, causal), supports_backward, capabilities or None), or None."""
    import torch

    sdpa = torch.nn.functional.scaled_dot_product_attention
    if name in ("sdpa_cudnn", "sdpa_flash"):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = SDPBackend.CUDNN_ATTENTION if name == "sdpa_cudnn" else SDPBackend.FLASH_ATTENTION

        def run(q, k, v, causal):
            with sdpa_kernel(backend):
                return sdpa(q, k, v, is_causal=causal)

        return run, True, None
    if name == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        compiled = torch.compile(flex_attention, dynamic=False)

        def run(q, k, v, causal):
            if not causal:
                return compiled(q, k, v)
            n_q, n_k = q.shape[2], k.shape[2]
            mask = create_block_mask(lambda b, h, i, j: j <= i, None, None, n_q, n_k)
            return compiled(q, k, v, block_mask=mask)

        return run, True, None
    if name == "eager":
        from common.reference import reference_attention

        return (
            (lambda q, k, v, causal: reference_attention(q, k, v, is_causal=causal, dtype=q.dtype)),
            True,
            None,
        )
    from common import registry

    try:
        stage = registry.get(name)
    except KeyError:
        return None  # this commit predates the stage
    if not stage.available:
        return None
    run = lambda q, k, v, causal: stage.attention(q, k, v, is_causal=causal)  # noqa: E731
    return run, stage.capabilities.backward, stage.capabilities


def _measure(provider, workload, mask, direction):
    """One combination: ms, TFLOP/s and peak extra MiB, or the reason it is skipped."""
    import torch
    import triton

    from common.testing import Problem
    from common.timing import attention_flops, peak_extra_bytes

    B, H, N, D, dtype = WORKLOADS[workload]
    causal, backward = mask == "causal", direction == "fwd+bwd"
    found = _provider(provider)
    if found is None:
        return f"{provider} is not in this commit"
    fn, has_backward, caps = found
    problem = Problem(B, H, N, N, D, causal, getattr(torch, dtype))
    if caps is not None and not problem.fits(caps):
        return f"{provider} does not support {problem}"
    if backward and not has_backward:
        return f"{provider} has no backward"
    if (
        provider == "eager"
        and 3 * B * H * N * N * problem.dtype.itemsize > torch.cuda.mem_get_info()[0]
    ):
        return "eager scores do not fit in memory"
    q, k, v = (
        torch.randn(B, H, N, D, device="cuda", dtype=problem.dtype, requires_grad=backward)
        for _ in range(3)
    )
    do = torch.randn(B, H, N, D, device="cuda", dtype=problem.dtype)

    def step():
        out = fn(q, k, v, causal)
        if backward:
            out.backward(do)

    try:
        ms = triton.testing.do_bench(
            step, warmup=25, rep=100, grad_to_none=[q, k, v], return_mode="median"
        )
        peak = peak_extra_bytes(step, "cuda")
    except Exception as exc:  # recorded as skipped for this combination; the run goes on
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        torch.cuda.empty_cache()
    flops = attention_flops(B, H, N, N, D, causal) * (3.5 if backward else 1.0)
    return {"ms": ms, "tflops": flops / ms / 1e9, "peak_mib": peak / 2**20}


class Attention:
    params = PARAMS
    param_names = NAMES
    version = "1"  # bump only when what is measured changes, not when this file is refactored
    timeout = 1800

    def setup_cache(self):
        import itertools

        import torch

        if not torch.cuda.is_available():
            return {"error": "no GPU"}
        from common.timing import ceilings

        cache = {"matmul_tflops": ceilings("cuda")["bf16_matmul_tflops"]}
        for combo in itertools.product(*PARAMS):
            cache["/".join(combo)] = _measure(*combo)
        return cache

    def setup(self, cache, provider, workload, mask, direction):
        if "error" in cache:
            raise NotImplementedError(cache["error"])
        self.result = cache["/".join((provider, workload, mask, direction))]
        if isinstance(self.result, str):
            raise NotImplementedError(self.result)
        self.matmul_tflops = cache["matmul_tflops"]

    def track_ms(self, cache, provider, workload, mask, direction):
        return self.result["ms"]

    track_ms.unit = "ms"

    def track_tflops(self, cache, provider, workload, mask, direction):
        return self.result["tflops"]

    track_tflops.unit = "TFLOP/s"

    def track_percent_of_matmul(self, cache, provider, workload, mask, direction):
        return 100 * self.result["tflops"] / self.matmul_tflops

    track_percent_of_matmul.unit = "% of bf16 matmul"

    def track_peak_extra_mib(self, cache, provider, workload, mask, direction):
        return self.result["peak_mib"]

    track_peak_extra_mib.unit = "MiB"
