"""v01: the most literal attention kernel.

One Triton program owns one query row. It walks the keys one at a time, writing each score into a
row vector, takes the softmax of that row, then walks the values one at a time and accumulates
their weighted sum. Every program re-reads all of K and V, so the kernel moves
2·N·d elements per query instead of 2·N·d per head: that waste is what the later stages remove.
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
    # -- which query row this program owns (64-bit offsets: B*H*N*D can pass 2**31)
    row = tl.program_id(0).to(tl.int64)
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    q_row = Q + off_z * stride_qz + off_h * stride_qh + row * stride_qm
    k_head = K + off_z * stride_kz + off_h * stride_kh
    v_head = V + off_z * stride_vz + off_h * stride_vh

    offs_d = tl.arange(0, BLOCK_D)
    d_mask = offs_d < HEAD_DIM
    q = tl.load(q_row + offs_d * stride_qk, mask=d_mask, other=0.0).to(tl.float32)

    # A causal query sees keys 0..row only (top-left aligned, like SDPA's is_causal).
    n_keys = N_KV
    if IS_CAUSAL:
        n_keys = tl.minimum(row + 1, N_KV)

    # -- pass 1: one key at a time, each score written into its slot of the row vector
    offs_n = tl.arange(0, BLOCK_N)
    scores = tl.full([BLOCK_N], float("-inf"), dtype=tl.float32)
    for j in range(0, n_keys):
        k = tl.load(k_head + j * stride_kn + offs_d * stride_kk, mask=d_mask, other=0.0)
        s = tl.sum(q * k.to(tl.float32)) * sm_scale
        scores = tl.where(offs_n == j, s, scores)

    # -- softmax of the row; slots past n_keys hold -inf and become exactly 0
    m = tl.max(scores, axis=0)
    p = tl.exp(scores - m)
    p = p / tl.sum(p, axis=0)

    # -- pass 2: one value at a time, weighted by its probability
    acc = tl.zeros([BLOCK_D], dtype=tl.float32)
    for j in range(0, n_keys):
        v = tl.load(v_head + j * stride_vn + offs_d * stride_vk, mask=d_mask, other=0.0)
        w = tl.sum(tl.where(offs_n == j, p, 0.0))
        acc += w * v.to(tl.float32)

    o_row = Out + off_z * stride_oz + off_h * stride_oh + row * stride_om
    # Rounded to nearest even, as the GPU does, also under the interpreter (its bf16 cast
    # truncates: a full ulp off in half the elements; common/triton_helpers.py).
    out = cast(acc, Out.dtype.element_ty, INTERP_BF16)
    tl.store(o_row + offs_d * stride_ok, out, mask=d_mask)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors."""
    scale = check_inputs("v01_basic", CAPABILITIES, query, key, value, is_causal, scale)
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

