"""v03: FlashAttention-1's forward. A program owns BLOCK_M queries and streams K and V through in
BLOCK_N tiles; each tile's scores come from one tl.dot, and a running row max ``m_i`` and row sum
``l_i`` let the softmax be computed piece by piece (online softmax). The N x N matrix is never
written: memory is O(N), and each K/V tile is read once per query block instead of once per query.

As in FlashAttention-1 the accumulator is kept normalised after every tile (divide by the new
row sum each step); v04 defers that division to the end.
"""

import torch
import triton
import triton.language as tl

from common.grid_limits import split_batch_heads
from common.triton_helpers import cast, dot, interp_bf16
from common.validation import check_inputs, interpreting, is_empty, new_output

from . import CAPABILITIES


@triton.jit
def _attn_fwd(
    Q, K, V, Out,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_oz, stride_oh, stride_om, stride_ok,
    H, N_Q, N_KV, sm_scale,
    HEAD_DIM: tl.constexpr,
    IS_CAUSAL: tl.constexpr,
    BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr,
    EVEN_N: tl.constexpr,
):
    start_m = tl.program_id(0) * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    q_head = Q + off_z * stride_qz + off_h * stride_qh
    k_head = K + off_z * stride_kz + off_h * stride_kh
    v_head = V + off_z * stride_vz + off_h * stride_vh

    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    # Head dims like 96 are padded to BLOCK_D = 128 with zeros. For a power-of-two head dim the
    # column mask is a compile-time all-true constant, so masks vary only by row and loads stay
    # 16-byte vectors (with a run-time column mask every element was loaded on its own).
    if HEAD_DIM == BLOCK_D:
        d_mask = tl.full([BLOCK_D], 1, tl.int1)
    else:
        d_mask = offs_d < HEAD_DIM
    q = tl.load(q_head + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                mask=(offs_m[:, None] < N_Q) & d_mask[None, :], other=0.0)

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    # A causal block needs keys up to its last query only (top-left aligned mask).
    hi = N_KV
    if IS_CAUSAL:
        hi = tl.minimum(start_m + BLOCK_M, N_KV)
    for start_n in range(0, hi, BLOCK_N):
        cols = start_n + offs_n
        # Rows past N_KV exist only in a ragged last tile; with EVEN_N the mask is the column
        # mask alone, constant true for a power-of-two head dim (unpredicated vector loads).
        if EVEN_N:
            kv_mask = tl.full([BLOCK_N, 1], 1, tl.int1) & d_mask[None, :]
        else:
            kv_mask = (cols[:, None] < N_KV) & d_mask[None, :]
        k = tl.load(k_head + cols[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                    mask=kv_mask, other=0.0)
        v = tl.load(v_head + cols[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                    mask=kv_mask, other=0.0)
        # -- scores of this tile; keys past the end (and after the query, if causal) get -inf.
        # A non-causal problem whose length is a multiple of BLOCK_N has no such keys.
        s = dot(q, tl.trans(k), None, INTERP_BF16) * sm_scale
        if IS_CAUSAL or not EVEN_N:
            keep = cols[None, :] < N_KV
            if IS_CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None])
            s = tl.where(keep, s, float("-inf"))
        # -- update m_i and l_i; the first tile always holds key 0, so m_new is finite
        m_new = tl.maximum(m_i, tl.max(s, axis=1))
        alpha = tl.exp(m_i - m_new)
        p = tl.exp(s - m_new[:, None])
        l_new = l_i * alpha + tl.sum(p, axis=1)
        # -- keep acc normalised (FlashAttention-1):
        #    acc_new = acc * (l_i * alpha / l_new) + (p / l_new) @ v
        # The old average is rescaled by one factor per row and this tile's p is divided by
        # l_new before the MMA, which then adds p @ v into acc: one multiply per [BLOCK_M, d]
        # accumulator element and one per [BLOCK_M, BLOCK_N] score, instead of two per
        # accumulator element (at d = 128, BLOCK_N = 64: 24K multiplies per tile, not 32K).
        inv_l = 1.0 / l_new
        acc = dot(cast(p * inv_l[:, None], v.dtype, INTERP_BF16), v,
                  acc * (l_i * alpha * inv_l)[:, None], INTERP_BF16)
        m_i, l_i = m_new, l_new

    tl.store(Out + off_z * stride_oz + off_h * stride_oh
             + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
             cast(acc, Out.dtype.element_ty, INTERP_BF16),
             mask=(offs_m[:, None] < N_Q) & d_mask[None, :])


def _config(head_dim: int, dtype):
    """Block sizes and launch shape. One fixed choice per head dim (autotuning is v04's idea);
    tiny blocks under the interpreter so CPU tests cross several tiles and ragged edges, and
    small ones for fp32, whose dots run as fp32 FMAs (big tiles spill: 0.8 TFLOP/s on an H200)."""
    if interpreting():
        return dict(BLOCK_M=32, BLOCK_N=16, num_warps=4, num_stages=1)
    if dtype == torch.float32:
        return dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)
    if head_dim <= 128:
        # Measured on an H200 (bench/tune.py, NOTES.md): 64x64 with 4 warps beat 128x64 with 4
        # or 8 warps on 7 of the 8 flash workloads, by up to 1.5x at d = 128.
        return dict(BLOCK_M=64, BLOCK_N=64, num_warps=4, num_stages=3)
    return dict(BLOCK_M=64, BLOCK_N=32, num_warps=4, num_stages=2)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors."""
    scale = check_inputs("v03_tiled", CAPABILITIES, query, key, value, is_causal, scale)
    B, H, n_q, d = query.shape
    out = new_output((B, H, n_q, d), query)
    if is_empty(query):
        return out
    cfg = _config(d, query.dtype)
    grid = (triton.cdiv(n_q, cfg["BLOCK_M"]), B * H)
    _attn_fwd[grid](
        query, key, value, out,
        *query.stride(), *key.stride(), *value.stride(), *out.stride(),
        H, n_q, key.shape[2], scale,
        HEAD_DIM=d, IS_CAUSAL=is_causal, BLOCK_D=max(16, triton.next_power_of_2(d)),
        INTERP_BF16=interp_bf16(query.dtype), EVEN_N=key.shape[2] % cfg["BLOCK_N"] == 0,
        **cfg,
    )
    return out
