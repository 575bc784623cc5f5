"""Small Triton helpers shared by the tiled stages.

Both exist for Triton's interpreter (the CPU test path), which stores bf16 as raw uint16: its
``tl.dot`` multiplies the bit patterns (triton-lang/triton#11584, "not supported yet") and its
fp32 -> bf16 cast truncates (round toward zero; ``fp_downcast_rounding="rtne"`` is ignored) where
the GPU rounds to nearest even. ``INTERP_BF16`` is True only for bf16 under the interpreter; on a
GPU both helpers are the plain operation.
"""

import triton
import triton.language as tl

from common.validation import interpreting


@triton.jit
def dot(a, b, acc, INTERP_BF16: tl.constexpr):
    """``tl.dot(a, b, acc)`` (the MMA accumulates into ``acc``; None for a fresh result).

    fp32 operands are multiplied in full fp32, as PyTorch's default matmul precision does: Triton's
    default (tf32, operands truncated to 10 mantissa bits) measured 2-4x the error of PyTorch's own
    tf32 path on an H200 (d=64/128, N=1000-4096). Under the interpreter bf16 operands are widened
    to fp32, which is exact, so the products match the GPU's bf16 MMA with fp32 accumulation."""
    if INTERP_BF16:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif a.dtype == tl.float32:
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


@triton.jit
def cast(x, dtype: tl.constexpr, INTERP_BF16: tl.constexpr):
    """``x.to(dtype)`` rounding to nearest even, as the GPU does, also under the interpreter."""
    if INTERP_BF16:
        # Add half an ulp of bf16 (plus one if the kept bit is odd) before the truncating cast.
        bits = x.to(tl.float32).to(tl.uint32, bitcast=True)
        bits = (bits + 0x7FFF + ((bits >> 16) & 1)) & 0xFFFF0000
        return bits.to(tl.float32, bitcast=True).to(dtype)
    return x.to(dtype)


def interp_bf16(dtype) -> bool:
    """The ``INTERP_BF16`` argument of :func:`dot` and :func:`cast` for tensors of ``dtype``."""
    import torch

    return interpreting() and dtype == torch.bfloat16
