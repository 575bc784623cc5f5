"""v05: v04's forward with every tile moved by the Hopper TMA copy engine; the backward is v04's.

A tensor descriptor names a matrix in global memory (base, shape, row stride, tile shape); a load
is then one instruction for a whole [BLOCK, d] tile, issued by one thread and completed
asynchronously into shared memory, where the MMAs read it: no thread computes addresses or masks
for a load, and rows past the matrix and columns past d arrive as zeros.

Two ways to get descriptors. When each operand's heads are stacked rows (any contiguous tensor),
one descriptor per operand is built on the host over all B*H*N rows, and a program adds its
head's first row to the tile's; the last tile of a head then reads the next head's first rows,
which the key mask hides (and V's are zeroed), and the output goes out through masked pointer
stores. Otherwise (a transposed [B, N, H, d] view) each program builds per-head descriptors in
the kernel (``tl.make_tensor_descriptor``), which costs it a descriptor write and fence: on an
H200 host descriptors ran 2-7% faster (NOTES.md).

``LAZY_RESCALE`` (a tuning option) moves the running max, and rescales the accumulator, only when
some row's max grew by more than 2^8. It measured slower on an H200 so far (NOTES.md).

Inputs TMA cannot address (a row stride or base not a multiple of 16 bytes, e.g. d=20 in bf16)
go through v04's pointer kernel, so every input v04 takes is still taken.
"""

import math

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from common.grid_limits import split_batch_heads
from common.triton_helpers import cast, dot
from common.validation import autotuning, check_inputs, interpreting, new_output
from variants.v04_flash2 import kernel as v04

from . import CAPABILITIES, configs

LOG2E = math.log2(math.e)
# Descriptors built once on the host over all heads when the layout allows (stacked heads), else
# per program in the kernel; see NOTES.md for what each measured.
HOST_DESCRIPTORS = True


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, row0, lo, hi, offs_m, N_KV, qk_scale,
                    MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr, BLOCK_N: tl.constexpr,
                    INTERP_BF16: tl.constexpr, SCALE_POSITIVE: tl.constexpr,
                    LAZY_RESCALE: tl.constexpr, HOST_DESC: tl.constexpr):
    """v04's loop, with each K and V tile a single descriptor load at row ``row0 + start_n``
    (``row0`` is 0 for a per-head descriptor; the head's first row in a host descriptor over all
    heads' rows). Only the scores of a masked tile need ``tl.where``."""
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        qk = dot(q, tl.trans(desc_k.load([row0 + start_n, 0])), None, INTERP_BF16)
        if MASKED:
            cols = start_n + offs_n
            keep = cols[None, :] < N_KV
            if IS_CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None])
            qk = tl.where(keep, qk * qk_scale, float("-inf"))
            m_ij = tl.maximum(m_i, tl.max(qk, axis=1))
        elif SCALE_POSITIVE:  # row max of the raw scores, scaled per row: one FMA per score
            m_ij = tl.maximum(m_i, tl.max(qk, axis=1) * qk_scale)
        else:  # a negative scale turns the smallest raw score into the largest
            m_ij = tl.maximum(m_i, tl.min(qk, axis=1) * qk_scale)
        if LAZY_RESCALE:
            # Move the reference max (and rescale acc, l) only when some row's max grew by more
            # than 2^8 since the last move: P = exp2(s - m) then stays <= 256, exact enough in
            # fp32 sums and bf16 operands, and the [BLOCK_M, d] multiply is skipped on most
            # tiles. NaN growth (NaN inputs) rescales, as the eager path would.
            grow = tl.max(m_ij - m_i, axis=0)
            if (grow > 8.0) | (grow != grow):
                alpha = tl.math.exp2(m_i - m_ij)
                acc = acc * alpha[:, None]
                l_i = l_i * alpha
                m_i = m_ij
        else:
            alpha = tl.math.exp2(m_i - m_ij)
            acc = acc * alpha[:, None]
            l_i = l_i * alpha
            m_i = m_ij
        if MASKED:
            p = tl.math.exp2(qk - m_i[:, None])
        else:
            p = tl.math.exp2(qk * qk_scale - m_i[:, None])
        l_i += tl.sum(p, axis=1)
        v = desc_v.load([row0 + start_n, 0])
        if MASKED and HOST_DESC:
            # Past N_KV a host descriptor reads the next head's rows, not zeros: their P is 0,
            # but 0 * inf would still be NaN.
            v = tl.where((start_n + offs_n)[:, None] < N_KV, v, 0.0)
        acc = dot(cast(p, v.dtype, INTERP_BF16), v, acc, INTERP_BF16)
    return acc, l_i, m_i


@triton.jit
def _attn_fwd(
    Q, K, V, Out, LSE,
    stride_qz, stride_qh, stride_qm,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_oz, stride_oh, stride_om,
    H, N_Q, N_KV, N_KEY, qk_scale,
    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr, SCALE_POSITIVE: tl.constexpr, HOST_DESC: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, LAZY_RESCALE: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if IS_CAUSAL:  # longest rows first (v04)
        pid_m = tl.num_programs(0) - 1 - pid_m
    start_m = pid_m * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    if HOST_DESC:
        # Q, K, V are descriptors built on the host over every head's rows ([B*H*N, d]); this
        # head starts at row off_hz * N. The output is stored through pointers (below).
        desc_q, desc_k, desc_v = Q, K, V
        q_row0 = off_hz * N_Q
        kv_row0 = off_hz * N_KV
    else:
        # One descriptor per operand over this head's [N, d] slice: TMA zero-fills rows >= N
        # and columns >= d on load and drops them on store, which is all the masking needed.
        desc_q = tl.make_tensor_descriptor(Q + off_z * stride_qz + off_h * stride_qh,
                                           shape=[N_Q, HEAD_DIM], strides=[stride_qm, 1],
                                           block_shape=[BLOCK_M, BLOCK_D])
        desc_k = tl.make_tensor_descriptor(K + off_z * stride_kz + off_h * stride_kh,
                                           shape=[N_KV, HEAD_DIM], strides=[stride_kn, 1],
                                           block_shape=[BLOCK_N, BLOCK_D])
        desc_v = tl.make_tensor_descriptor(V + off_z * stride_vz + off_h * stride_vh,
                                           shape=[N_KV, HEAD_DIM], strides=[stride_vn, 1],
                                           block_shape=[BLOCK_N, BLOCK_D])
        q_row0 = 0
        kv_row0 = 0
    q = desc_q.load([q_row0 + start_m, 0])

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    lo, hi = v04._key_range(start_m, N_KV, IS_CAUSAL, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_row0, 0, lo, offs_m,
                                    N_KV, qk_scale, False, IS_CAUSAL, BLOCK_N, INTERP_BF16,
                                    SCALE_POSITIVE, LAZY_RESCALE, HOST_DESC)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, desc_k, desc_v, kv_row0, lo, hi, offs_m,
                                    N_KV, qk_scale, True, IS_CAUSAL, BLOCK_N, INTERP_BF16,
                                    SCALE_POSITIVE, LAZY_RESCALE, HOST_DESC)

    acc = acc / l_i[:, None]
    tl.store(LSE + off_hz.to(tl.int64) * N_Q + offs_m, m_i + tl.math.log2(l_i),
             mask=offs_m < N_Q)
    o_head = Out + off_z * stride_oz + off_h * stride_oh
    out = cast(acc, Out.dtype.element_ty, INTERP_BF16)
    if HOST_DESC:
        # A [BLOCK_M, d] store at the last, ragged block would overwrite the next head's rows.
        offs_d = tl.arange(0, BLOCK_D)
        tl.store(o_head + offs_m[:, None] * stride_om + offs_d[None, :], out,
                 mask=(offs_m[:, None] < N_Q) & (offs_d[None, :] < HEAD_DIM))
    else:
        desc_o = tl.make_tensor_descriptor(o_head, shape=[N_Q, HEAD_DIM], strides=[stride_om, 1],
                                           block_shape=[BLOCK_M, BLOCK_D])
        desc_o.store([start_m, 0], out)


# ------------------------------------------------------------------------------- host side
_attn_fwd_tuned = triton.autotune(
    configs.FWD_ALL, key=["N_KEY", "HEAD_DIM", "IS_CAUSAL"],
    prune_configs_by={"early_config_prune": configs.prune_fwd},
)(_attn_fwd)


def scratch(size: int, alignment: int, stream):
    """Global memory for the descriptors built inside the kernel (128 bytes per descriptor per
    program; a few hundred KiB at the largest grids)."""
    return torch.empty(size, dtype=torch.int8, device="cuda")


def tma_addressable(t: torch.Tensor) -> bool:
    """TMA's rules for a [B, H, N, d] operand read as per-head [N, d] matrices: unit stride along
    d, every other stride and the base address a multiple of 16 bytes, rows that do not alias."""
    (sb, sh, sn, sd), size = t.stride(), t.element_size()  # read once: ~9 calls per step
    return (
        sd == 1
        and sn >= t.shape[3]
        and sb * size % 16 == 0
        and sh * size % 16 == 0
        and sn * size % 16 == 0
        and t.data_ptr() % 16 == 0
    )


def _tma_operand(t: torch.Tensor) -> torch.Tensor | None:
    """``t`` itself, a dense copy of it when only its layout is in the way, or None."""
    if tma_addressable(t):
        return t
    dense = t.contiguous()
    return dense if tma_addressable(dense) else None


def stacked_rows(t: torch.Tensor) -> bool:
    """Whether ``t``'s [B, H, N, d] elements are one [B*H*N, d] matrix of rows (heads stacked,
    as a contiguous tensor has them), so one host-side descriptor can address every head."""
    B, H, N, _ = t.shape
    s_z, s_h, s_n, _ = t.stride()
    return (H == 1 or s_h == N * s_n) and (B == 1 or s_z == H * N * s_n) and B * H * N < 2**31


def host_descriptors(q, k, v):
    """Descriptors over all heads' rows of Q, K and V, built once per call on the host. Their
    tile shape is a placeholder until ``configs.set_block_shapes`` sets the config's."""
    return [
        TensorDescriptor(t, [t.shape[0] * t.shape[1] * t.shape[2], t.shape[3]], [t.stride(2), 1],
                         [16, 16])
        for t in (q, k, v)
    ]


def launch_forward(q, k, v, o, lse, causal, sm_scale, config=None, host_desc=None):
    """Run the TMA forward; ``config`` (a dict of BLOCK_M, BLOCK_N, num_warps, num_stages)
    bypasses autotuning, for the tuning script. ``host_desc`` picks host-side descriptors over
    all heads (default: when every operand's heads are stacked rows and HOST_DESCRIPTORS is on)
    or per-head descriptors built in the kernel."""
    B, H, n_q, d = q.shape
    if host_desc is None:
        host_desc = HOST_DESCRIPTORS and all(stacked_rows(t) for t in (q, k, v))
    operands = host_descriptors(q, k, v) if host_desc else (q, k, v)
    args = (*operands, o, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3],
            *o.stride()[:3], H, n_q, k.shape[2], v04._n_key(q, k), sm_scale * LOG2E)
    meta = dict(v04._meta(q, causal), SCALE_POSITIVE=sm_scale >= 0, HOST_DESC=host_desc)
    if not interpreting() and not host_desc:
        triton.set_allocator(scratch)  # a context variable: set it in the launching thread
    if interpreting() or config is not None or not autotuning():
        if config is None:
            config = configs.INTERPRETER_FWD if interpreting() else configs.first_choice(d, q.dtype)
        cfg = dict(config)
        configs.set_block_shapes({"Q": operands[0], "K": operands[1], "V": operands[2],
                                  **meta, **cfg})
        _attn_fwd[(triton.cdiv(n_q, cfg["BLOCK_M"]), B * H)](*args, **meta, **cfg)
    else:
        _attn_fwd_tuned[lambda m: (triton.cdiv(n_q, m["BLOCK_M"]), B * H)](*args, **meta)


def _forward(q, k, v, causal, sm_scale):
    operands = [_tma_operand(t) for t in (q, k, v)]
    if any(t is None for t in operands):
        return v04._forward(q, k, v, causal, sm_scale)
    B, H, n_q, _ = q.shape
    o = new_output(q.shape, q)
    lse = new_output((B, H, n_q), q, torch.float32)
    if q.numel() == 0:
        return o, lse
    if not tma_addressable(o):  # a fresh dense output, so only a row of d=20 bf16 can land here
        return v04._forward(q, k, v, causal, sm_scale)
    launch_forward(*operands, o, lse, causal, sm_scale)
    return o, lse


_Attention = v04.autograd_function(_forward)  # v04's backward, unchanged


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v05_hopper", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
