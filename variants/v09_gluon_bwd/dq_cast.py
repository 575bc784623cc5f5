"""dQ's last pass: the fp32 buffer the backward reduce-added into, back to query order, cut to
[B, H, N_Q, d] and cast, in one kernel.

The buffer is [B*H, N_pad, BLOCK_D] fp32, each head padded to whole query blocks and d to a power
of two; with DQ_PERM its rows come in the order the kernel staged them (gluon_bwd._add_dq: query
4a + b of each group of 8 at row 2b + a). Torch did this as a copy from a transposed view, which
its generic (not vectorised) elementwise kernel ran in 98 us at 4x32x4096x64 on an H200, 3.5% of
the whole backward, where cuDNN's own dQ conversion takes 55 us (v10 NOTES, run 5). Here each
row is read as one contiguous run of 16-byte loads, wherever it lies.
"""

import torch
import triton
import triton.language as tl

from common.launch import Launcher
from common.validation import new_output

BLOCK_ROWS = 64  # rows per program: 32 KiB of fp32 at BLOCK_D = 128, 64 registers per thread


@triton.jit
def _dq_cast(DQ_ACC, DQ, N_Q, N_PAD, PERM: tl.constexpr, HEAD_DIM: tl.constexpr,
             BLOCK_D: tl.constexpr, BLOCK_ROWS: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    src = rows
    if PERM:  # query 4a + b of each group of 8 sits at row 2b + a
        src = rows // 8 * 8 + rows % 4 * 2 + rows % 8 // 4
    cols = tl.arange(0, BLOCK_D)
    bh = tl.program_id(1).to(tl.int64)
    keep = (rows[:, None] < N_Q) & (cols[None, :] < HEAD_DIM)
    x = tl.load(DQ_ACC + (bh * N_PAD + src[:, None]) * BLOCK_D + cols[None, :], mask=keep)
    out = DQ + (bh * N_Q + rows[:, None]) * HEAD_DIM + cols[None, :]
    tl.store(out, x.to(DQ.dtype.element_ty), mask=keep)


_DQ_CAST = Launcher(_dq_cast)  # Triton's dispatch once per call key (common/launch.py)


def dq_from_buffer(dq_acc: torch.Tensor, like: torch.Tensor, perm: bool) -> torch.Tensor:
    """dQ shaped, typed and placed like ``like`` ([B, H, N_Q, d], contiguous) from the fp32
    buffer ``dq_acc`` ([B*H, N_pad, BLOCK_D]; rows permuted when ``perm``)."""
    B, H, n_q, d = like.shape
    bh, n_pad, block_d = dq_acc.shape
    if bh != B * H or n_pad < n_q or block_d < d or (perm and n_pad % 8):
        raise ValueError(f"dq_acc: shape {tuple(dq_acc.shape)} does not hold {tuple(like.shape)}")
    dq = new_output(like.shape, like)
    grid = (triton.cdiv(n_q, BLOCK_ROWS), B * H)
    _DQ_CAST[grid](dq_acc, dq, n_q, n_pad, PERM=perm, HEAD_DIM=d, BLOCK_D=block_d,
                   BLOCK_ROWS=BLOCK_ROWS)  # fmt: skip
    return dq
