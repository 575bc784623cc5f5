"""Small Triton helpers shared by the tiled stages."""

import triton
import triton.language as tl

from common.validation import interpreting


@triton.jit
def dot(a, b, acc, UPCAST: tl.constexpr):
    """``tl.dot(a, b, acc)`` (the MMA accumulates into ``acc``; pass None for a fresh result),
    with bf16 operands widened to fp32 when ``UPCAST``.

    Triton's interpreter stores bf16 as raw uint16 and its ``tl.dot`` multiplies the bit patterns
    (triton-lang/triton#11584, "not supported yet"). Widening bf16 to fp32 is exact and the
    products then match the GPU's bf16 MMA with fp32 accumulation, so CPU tests stay meaningful.
    On a GPU ``UPCAST`` is False and this is a plain ``tl.dot`` (full fp32 for fp32 operands)."""
    if UPCAST:
        return tl.dot(a.to(tl.float32), b.to(tl.float32), acc, input_precision="ieee")
    elif a.dtype == tl.float32:
        # fp32 operands: full fp32 products, as PyTorch's default matmul precision does. Triton's
        # default (tf32, operands truncated to 10 mantissa bits) measured 2-4x the error of
        # PyTorch's own tf32 path on an H200 (d=64/128, N=1000-4096).
        return tl.dot(a, b, acc, input_precision="ieee")
    else:
        return tl.dot(a, b, acc)


def dot_upcast(dtype) -> bool:
    """The ``UPCAST`` argument of :func:`dot` for operands of ``dtype``."""
    import torch

    return interpreting() and dtype == torch.bfloat16
