"""Per-commit GPU timings of every stage and of the references, for airspeed velocity.

One class per workload (so ``asv run -b Flash_4x32`` measures one workload alone), each with the
parameters provider (every ``variants/vNN_*`` folder of the working tree, plus ``sdpa_cudnn``,
``sdpa_flash``, ``flex``, ``eager``), mask and direction. A class measures all its combinations
once per run in ``setup_cache`` (CUDA events, ``triton.testing.do_bench`` median) and reports
them through four ``track_*`` metrics. What a commit's stage does not support, what does not fit
in memory, and everything on a machine without a GPU is skipped through ``NotImplementedError``.

Measuring needs only ``common.registry.get`` and a stage's ``attention(q, k, v, is_causal=...)``
from the commit under test: both exist since the first commit, so old commits can be backfilled.
``ATTN_ASV_PROVIDERS=v01_basic,v02_vectorized`` restricts a run to some providers (the others are
skipped), e.g. to backfill old commits without re-measuring the references.
"""

import itertools
import os
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
PARAMS = (STAGES + REFERENCES, ["full", "causal"], ["fwd", "fwd+bwd"])
NAMES = ["provider", "mask", "direction"]


def _provider(name, flash, backward):
    """callable(q, k, v, causal), or the reason there is none."""
    import torch

    sdpa = torch.nn.functional.scaled_dot_product_attention
    if name in ("sdpa_cudnn", "sdpa_flash"):
        from torch.nn.attention import SDPBackend, sdpa_kernel

        backend = SDPBackend.CUDNN_ATTENTION if name == "sdpa_cudnn" else SDPBackend.FLASH_ATTENTION

        def run(q, k, v, causal):
            with sdpa_kernel(backend):
                return sdpa(q, k, v, is_causal=causal)

        return run
    if name == "flex":
        from torch.nn.attention.flex_attention import create_block_mask, flex_attention

        compiled = torch.compile(flex_attention, dynamic=False)
        masks = {}  # the block mask is built once per shape, as a model would, not per call

        def run(q, k, v, causal):
            if not causal:
                return compiled(q, k, v)
            n_q, n_k = q.shape[2], k.shape[2]
            if (n_q, n_k) not in masks:
                masks[n_q, n_k] = create_block_mask(
                    lambda b, h, i, j: j <= i, None, None, n_q, n_k, device=q.device
                )
            return compiled(q, k, v, block_mask=masks[n_q, n_k])

        return run
    if name == "eager":

        def run(q, k, v, causal):
            s = (q @ k.transpose(-1, -2)) * q.shape[-1] ** -0.5
            if causal:
                hidden = torch.ones(s.shape[-2:], dtype=torch.bool, device=q.device).triu(1)
                s = s.masked_fill(hidden, float("-inf"))
            return torch.softmax(s, dim=-1) @ v

        return run
    from common import registry

    try:
        stage = registry.get(name)
    except KeyError:
        return f"{name} is not in this commit"
    if not stage.available:
        return f"{name} does not import: {stage.error}"
    if flash and getattr(stage.capabilities, "max_seq_len", None) is not None:
        # v01/v02 would take seconds per call at 4096 tokens (and the whole time budget)
        return f"{name} is a series stage (sequence limit); it runs the Series workload only"
    if backward and not getattr(stage.capabilities, "backward", True):
        return f"{name} has no backward (forward only)"
    return lambda q, k, v, causal: stage.attention(q, k, v, is_causal=causal)


def _peak_extra_bytes(fn):
    import torch

    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def _measure(shape, provider, mask, direction):
    """One combination: ms, TFLOP/s and peak extra MiB, or the reason it is skipped."""
    import torch
    import triton

    B, H, N, D, dtype = shape
    causal, backward = mask == "causal", direction == "fwd+bwd"
    wanted = os.environ.get("ATTN_ASV_PROVIDERS")
    if wanted and provider not in wanted.split(","):
        return "not selected for this run (ATTN_ASV_PROVIDERS)"
    fn = _provider(provider, flash=dtype != "float32", backward=backward)
    if isinstance(fn, str):
        return fn
    if provider == "eager" and 3 * B * H * N * N * 4 > torch.cuda.mem_get_info()[0]:
        return "eager scores do not fit in memory"
    dtype = getattr(torch, dtype)
    q, k, v = (
        torch.randn(B, H, N, D, device="cuda", dtype=dtype, requires_grad=backward)
        for _ in range(3)
    )
    do = torch.randn(B, H, N, D, device="cuda", dtype=dtype)

    def step():
        out = fn(q, k, v, causal)
        if backward:
            out.backward(do)

    try:
        step()  # compiles, autotunes, and says whether the stage takes this problem at all
        ms = triton.testing.do_bench(
            step, warmup=25, rep=100, grad_to_none=[q, k, v], return_mode="median"
        )
        peak = _peak_extra_bytes(step)
    except (ValueError, TypeError, NotImplementedError, RuntimeError) as exc:
        # Refused (a stage's declared limits, no backward) or failed: skipped for this combo.
        return f"{type(exc).__name__}: {str(exc)[:200]}"
    finally:
        torch.cuda.empty_cache()
    flops = 4 * B * H * N * N * D * (0.5 if causal else 1.0) * (3.5 if backward else 1.0)
    return {"ms": ms, "tflops": flops / ms / 1e9, "peak_mib": peak / 2**20}


def _measure_all(shape):
    import torch
    import triton

    if not torch.cuda.is_available():
        return {"error": "no GPU"}
    a, b = (torch.randn(8192, 8192, device="cuda", dtype=torch.bfloat16) for _ in range(2))
    matmul_ms = triton.testing.do_bench(lambda: a @ b, warmup=25, rep=100, return_mode="median")
    cache = {"matmul_tflops": 2 * 8192**3 / matmul_ms / 1e9}
    for combo in itertools.product(*PARAMS):
        cache["/".join(combo)] = _measure(shape, *combo)
    return cache


class _Workload:
    """The metrics; a subclass names its workload and measures it in its own setup_cache (asv
    keys the cache by the method's source line, so each class needs its own method)."""

    params = PARAMS
    param_names = NAMES
    version = "1"  # bump only when what is measured changes, not when this file is refactored
    timeout = 1800

    def setup(self, cache, provider, mask, direction):
        if "error" in cache:
            raise NotImplementedError(cache["error"])
        self.result = cache["/".join((provider, mask, direction))]
        if isinstance(self.result, str):
            raise NotImplementedError(self.result)
        self.matmul_tflops = cache["matmul_tflops"]

    def track_ms(self, cache, provider, mask, direction):
        return self.result["ms"]

    track_ms.unit = "ms"

    def track_tflops(self, cache, provider, mask, direction):
        return self.result["tflops"]

    track_tflops.unit = "TFLOP/s"

    def track_percent_of_matmul(self, cache, provider, mask, direction):
        return 100 * self.result["tflops"] / self.matmul_tflops

    track_percent_of_matmul.unit = "% of bf16 matmul"

    def track_peak_extra_mib(self, cache, provider, mask, direction):
        return self.result["peak_mib"]

    track_peak_extra_mib.unit = "MiB"


class Series_2x8x1024x64_fp32(_Workload):
    """Small and fp32, so that v01 and v02 appear in the history beside the flash stages."""

    def setup_cache(self):
        return _measure_all((2, 8, 1024, 64, "float32"))


class Flash_4x32x4096x64_bf16(_Workload):
    def setup_cache(self):
        return _measure_all((4, 32, 4096, 64, "bfloat16"))


class Flash_2x32x16384x64_bf16(_Workload):
    def setup_cache(self):
        return _measure_all((2, 32, 16384, 64, "bfloat16"))


class Flash_4x16x4096x128_bf16(_Workload):
    def setup_cache(self):
        return _measure_all((4, 16, 4096, 128, "bfloat16"))


class Flash_2x16x16384x128_bf16(_Workload):
    def setup_cache(self):
        return _measure_all((2, 16, 16384, 128, "bfloat16"))
