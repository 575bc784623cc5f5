"""Timing that is honest about where the work runs.

On a GPU, time comes from CUDA events through ``triton.testing.do_bench`` (median of repeats
after warm-up), never from the host clock around an asynchronous launch. Under the interpreter
there is no device: the host clock is the only clock, and the numbers measure the interpreter.
"""

from __future__ import annotations

import time

import torch


def attention_flops(batch, heads, n_q, n_k, head_dim, causal=False, backward=False) -> float:
    """4·B·H·Nq·Nk·d for the two matmuls, halved when causal; the backward is 2.5x the forward."""
    flops = 4.0 * batch * heads * n_q * n_k * head_dim
    if causal:
        flops *= 0.5
    return flops * (2.5 if backward else 1.0)


def bench_ms(fn, device: str, warmup_ms: float = 25, rep_ms: float = 100) -> float:
    """Median milliseconds of ``fn()`` on ``device``."""
    if device == "cuda":
        import triton

        return triton.testing.do_bench(fn, warmup=warmup_ms, rep=rep_ms, return_mode="median")
    # Interpreter: one warm-up (Triton parses the kernel on first use) and one timed run; these
    # times describe the interpreter, not a kernel, so repeating them buys nothing.
    fn()
    t0 = time.perf_counter()
    fn()
    return (time.perf_counter() - t0) * 1e3


def peak_extra_bytes(fn, device: str) -> int | None:
    """Peak GPU memory allocated by ``fn()`` beyond what was live before it (None on CPU)."""
    if device != "cuda":
        return None
    torch.cuda.synchronize()
    torch.cuda.reset_peak_memory_stats()
    base = torch.cuda.memory_allocated()
    fn()
    torch.cuda.synchronize()
    return torch.cuda.max_memory_allocated() - base


def ceilings(device: str, dtype: torch.dtype = torch.bfloat16) -> dict:
    """The card's measured 8192^3 matmul rate in ``dtype`` (fp32 as PyTorch runs it by default, in
    full fp32, not tf32) and its device-copy bandwidth; None without a GPU."""
    name = str(dtype).removeprefix("torch.")
    if device != "cuda":
        return {"matmul_tflops": None, "matmul_dtype": name, "copy_gbps": None}
    import triton

    a = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    b = torch.randn(8192, 8192, device="cuda", dtype=dtype)
    ms = triton.testing.do_bench(lambda: a @ b, warmup=50, rep=300, return_mode="median")
    x = torch.randn(2**28, device="cuda", dtype=torch.bfloat16)  # 512 MiB
    y = torch.empty_like(x)
    copy_ms = triton.testing.do_bench(lambda: y.copy_(x), warmup=50, rep=300, return_mode="median")
    return {
        "matmul_tflops": 2 * 8192**3 / ms / 1e9,
        "matmul_dtype": name,
        "copy_gbps": 2 * x.numel() * x.element_size() / copy_ms / 1e6,
    }
