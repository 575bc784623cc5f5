"""The backward's inputs beside Q, K, V and dO, made in one pass before the kernel runs.

For each (batch, head) the Gluon backward reads, padded to whole query blocks (N_pad rows):
- Delta = rowsum(dO * O), times ``delta_scale`` (the softmax scale where the kernel's config
  has DELTA_SCALED), 0 on padded rows;
- the forward's base-2 LSE, +inf on padded rows (so P = exp2(S - LSE) is 0 there, no mask);
- an fp32 dQ buffer [N_pad, BLOCK_D] of zeros that the key blocks reduce-add into.
These took four launches (v04's Delta kernel, two pads and a fill): 74 us of kernels at
4x32x4096x64 on an H200, 40 of them Delta's (v09 NOTES, run 14). Here one program per block of
query rows reads its O and dO rows once and writes all three.
"""

import torch
import triton
import triton.language as tl

from common.launch import Launcher
from common.validation import new_output

BLOCK_ROWS = 64  # query rows per program: 32 KiB of fp32 dQ zeros at BLOCK_D = 128


@triton.jit
def _prepare(O, DO, LSE, LSE_PAD, DELTA_PAD, DQ_ACC,
             stride_oz, stride_oh, stride_om, stride_dz, stride_dh, stride_dm,
             stride_lz, stride_lh, H, N_Q, N_PAD, delta_scale, HEAD_DIM: tl.constexpr,
             BLOCK_D: tl.constexpr, BLOCK_ROWS: tl.constexpr):  # fmt: skip
    rows = tl.program_id(0) * BLOCK_ROWS + tl.arange(0, BLOCK_ROWS)
    cols = tl.arange(0, BLOCK_D)
    bh = tl.program_id(1)
    z = (bh // H).to(tl.int64)
    h = (bh % H).to(tl.int64)
    real = rows < N_Q
    keep = real[:, None] & (cols[None, :] < HEAD_DIM)
    o = tl.load(O + z * stride_oz + h * stride_oh + rows[:, None] * stride_om + cols[None, :],
                mask=keep, other=0.0)  # fmt: skip
    do = tl.load(DO + z * stride_dz + h * stride_dh + rows[:, None] * stride_dm + cols[None, :],
                 mask=keep, other=0.0)  # fmt: skip
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1) * delta_scale
    lse = tl.load(LSE + z * stride_lz + h * stride_lh + rows, mask=real, other=float("inf"))
    out = bh.to(tl.int64) * N_PAD + rows
    tl.store(DELTA_PAD + out, delta)  # the grid covers exactly N_PAD rows
    tl.store(LSE_PAD + out, lse)
    tl.store(DQ_ACC + out[:, None] * BLOCK_D + cols[None, :], tl.zeros_like(o.to(tl.float32)))


_PREPARE = Launcher(_prepare)  # Triton's dispatch once per call key (common/launch.py)


def prepare(
    o: torch.Tensor,
    do: torch.Tensor,
    lse: torch.Tensor,
    n_pad: int,
    block_d: int,
    delta_scale: float = 1.0,
):
    """``(lse_pad, delta_pad, dq_acc)`` for the backward of ``o`` ([B, H, N_Q, d], unit stride
    along d, as is ``do``) whose base-2 log-sum-exp is ``lse`` ([B, H, N_Q] fp32): LSE and Delta
    (times ``delta_scale``) as fp32 [B*H*n_pad] vectors, the zeroed dQ buffer as fp32
    [B*H, n_pad, block_d]. ``n_pad`` must be a multiple of 64, ``block_d`` a power of two of at
    least d."""
    B, H, n_q, d = o.shape
    if n_pad < n_q or n_pad % BLOCK_ROWS:
        raise ValueError(f"n_pad: {n_pad} must be a multiple of {BLOCK_ROWS} of at least {n_q}")
    if block_d < d or block_d != triton.next_power_of_2(block_d):
        raise ValueError(f"block_d: {block_d} must be a power of two of at least {d}")
    if o.stride(3) != 1 or do.stride(3) != 1 or do.shape != o.shape:
        raise ValueError("o, do: same shape, unit stride along the head dim")
    if lse.shape != o.shape[:3] or lse.stride(2) != 1:
        raise ValueError(f"lse: [B, H, N_Q] = {list(o.shape[:3])} with unit stride along N_Q")
    lse_pad = new_output((B * H * n_pad,), o, torch.float32)
    delta_pad = new_output((B * H * n_pad,), o, torch.float32)
    dq_acc = new_output((B * H, n_pad, block_d), o, torch.float32)
    grid = (n_pad // BLOCK_ROWS, B * H)
    _PREPARE[grid](o, do, lse, lse_pad, delta_pad, dq_acc, *o.stride()[:3], *do.stride()[:3],
                   *lse.stride()[:2], H, n_q, n_pad, delta_scale, HEAD_DIM=d, BLOCK_D=block_d,
                   BLOCK_ROWS=BLOCK_ROWS)  # fmt: skip
    return lse_pad, delta_pad, dq_acc
