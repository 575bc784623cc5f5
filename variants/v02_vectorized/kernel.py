"""v02: the same one-program-per-query kernel, with the two key loops replaced by block loads.

The program loads every key of its row as one [BLOCK_N, BLOCK_D] tile (addresses built by
broadcasting a column of row offsets against a row of feature offsets), gets all scores with one
broadcast multiply and a row sum, and all of the output with one more. Nothing is re-read inside
the program, and the loads are wide and coalesced; but each program still reads the whole of K
and V, so the traffic per head is still N·(2·N·d) elements — the tiled stage fixes that.
"""

import triton
import triton.language as tl

from common.grid_limits import split_batch_heads
from common.triton_helpers import cast, interp_bf16
from common.validation import check_inputs, is_empty, new_output

from . import CAPABILITIES


@triton.jit
def _attn_fwd_row(
    Q, K, V, Out,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_oz, stride_oh, stride_om, stride_ok,
    H, N_KV, HEAD_DIM, sm_scale,
    IS_CAUSAL: tl.constexpr,
    BLOCK_N: tl.constexpr,
    BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)

    offs_d = tl.arange(0, BLOCK_D)
    offs_n = tl.arange(0, BLOCK_N)
    d_mask = offs_d < HEAD_DIM
    n_mask = offs_n < N_KV
    if IS_CAUSAL:
        n_mask = n_mask & (offs_n <= row)
    tile_mask = n_mask[:, None] & d_mask[None, :]

    q = tl.load(Q + off_z * stride_qz + off_h * stride_qh + row * stride_qm + offs_d * stride_qk,
                mask=d_mask, other=0.0).to(tl.float32)

    # -- all keys of the row in one load: [BLOCK_N, 1] row offsets x [1, BLOCK_D] feature offsets
    k_ptrs = (K + off_z * stride_kz + off_h * stride_kh
              + offs_n[:, None] * stride_kn + offs_d[None, :] * stride_kk)
    k = tl.load(k_ptrs, mask=tile_mask, other=0.0).to(tl.float32)
    scores = tl.sum(q[None, :] * k, axis=1) * sm_scale
    scores = tl.where(n_mask, scores, float("-inf"))

    # -- softmax over the row
    m = tl.max(scores, axis=0)
    p = tl.exp(scores - m)
    p = p / tl.sum(p, axis=0)

    # -- all values in one load, weighted sum down the key axis
    v_ptrs = (V + off_z * stride_vz + off_h * stride_vh
              + offs_n[:, None] * stride_vn + offs_d[None, :] * stride_vk)
    v = tl.load(v_ptrs, mask=tile_mask, other=0.0).to(tl.float32)
    acc = tl.sum(p[:, None] * v, axis=0)

    o_ptrs = Out + off_z * stride_oz + off_h * stride_oh + row * stride_om + offs_d * stride_ok
    # Rounded to nearest even also under the interpreter (common/triton_helpers.py).
    tl.store(o_ptrs, cast(acc, Out.dtype.element_ty, INTERP_BF16), mask=d_mask)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors."""
    scale = check_inputs("v02_vectorized", CAPABILITIES, query, key, value, is_causal, scale)
    B, H, n_q, d = query.shape
    out = new_output((B, H, n_q, d), query)
    if is_empty(query):
        return out
    grid = (n_q, B * H)
    _attn_fwd_row[grid](
        query, key, value, out,
        *query.stride(), *key.stride(), *value.stride(), *out.stride(),
        H, key.shape[2], d, scale,
        IS_CAUSAL=is_causal,
        BLOCK_N=triton.next_power_of_2(key.shape[2]),
        BLOCK_D=triton.next_power_of_2(d),
        INTERP_BF16=interp_bf16(query.dtype),
    )
    return out
