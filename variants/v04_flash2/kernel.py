"""v04: FlashAttention-2, forward and backward.

Forward, over v03: (1) deferred normalisation — the accumulator holds un-normalised sums and is
divided by the row sum once, after the last tile; (2) exp2 with log2(e) folded into the scale, one
multiply per score; (3) tiles split by the mask they need — full tiles run with no mask at all,
only the diagonal tiles of a causal block and the ragged last tile pay for ``tl.where``; (4) tiles
above the causal diagonal are never visited; (5) block sizes, warps and pipeline depth chosen by
``triton.autotune`` per head dim and length (a fixed config under the interpreter); (6) the
base-2 log-sum-exp of every row is saved so the backward can rebuild P without a second softmax.

Backward: ``_attn_bwd_preprocess`` computes Delta = rowsum(dO * O); ``_attn_bwd_dkdv`` owns a block
of keys and walks the query blocks that see it, accumulating dK and dV in registers;
``_attn_bwd_dq`` owns a block of queries and walks their keys, accumulating dQ. Two kernels instead
of one with atomics: each output is written exactly once (deterministic, no zero-fill), and each
kernel gets its own autotuned tile shape.
"""

import math

import torch
import triton
import triton.language as tl

from common.grid_limits import split_batch_heads
from common.triton_helpers import cast, dot, interp_bf16
from common.validation import autotuning, check_inputs, interpreting, new_output

from . import CAPABILITIES, configs

LOG2E = math.log2(math.e)


# ----------------------------------------------------------------------------- forward kernel
@triton.jit
def _load_tile(ptrs, rows, n_rows, offs_d, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
               CHECK_ROWS: tl.constexpr):
    """Load a [rows, BLOCK_D] tile. Full tiles of a power-of-two head dim take no mask at all, so
    they compile to unpredicated 16-byte vector loads; padded columns and ragged rows read 0."""
    if CHECK_ROWS:
        return tl.load(ptrs, mask=(rows[:, None] < n_rows) & (offs_d[None, :] < HEAD_DIM),
                       other=0.0)
    elif HEAD_DIM == BLOCK_D:
        return tl.load(ptrs)
    else:
        return tl.load(ptrs, mask=offs_d[None, :] < HEAD_DIM, other=0.0)


@triton.jit
def _key_range(start_m, N_KV, IS_CAUSAL: tl.constexpr, BLOCK_M: tl.constexpr,
               BLOCK_N: tl.constexpr):
    """Split the keys a query block visits: tiles in [0, lo) need no mask; tiles in [lo, hi) are
    the causal diagonal and/or the ragged last tile. Causal tiles at or past hi (after the block's
    last query) are never visited. Used by the forward and by the dQ kernel."""
    full_kv = (N_KV // BLOCK_N) * BLOCK_N
    if IS_CAUSAL:
        lo = tl.minimum((start_m // BLOCK_N) * BLOCK_N, full_kv)
        hi = tl.minimum(start_m + BLOCK_M, N_KV)
    else:
        lo = full_kv
        hi = N_KV
    return lo, hi


@triton.jit
def _attn_fwd_inner(acc, l_i, m_i, q, k_head, v_head, stride_kn, stride_kk, stride_vn, stride_vk,
                    lo, hi, offs_m, offs_n, offs_d, N_KV, qk_scale,
                    MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                    BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, INTERP_BF16: tl.constexpr,
                    SCALE_POSITIVE: tl.constexpr):
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _load_tile(k_head + cols[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                       cols, N_KV, offs_d, HEAD_DIM, BLOCK_D, MASKED)
        qk = dot(q, tl.trans(k), None, INTERP_BF16)
        # -- update m_i and l_i (base 2); acc stays un-normalised
        if MASKED:
            qk = qk * qk_scale
            keep = cols[None, :] < N_KV
            if IS_CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None])
            qk = tl.where(keep, qk, float("-inf"))
            m_ij = tl.maximum(m_i, tl.max(qk, axis=1))
            qk = qk - m_ij[:, None]
        else:
            # The row max is taken on the raw scores and scaled per row, so each score costs one
            # FMA (qk * scale - m) instead of a multiply and a subtract. For a negative scale the
            # largest scaled score is the smallest raw one.
            if SCALE_POSITIVE:
                m_ij = tl.maximum(m_i, tl.max(qk, axis=1) * qk_scale)
            else:
                m_ij = tl.maximum(m_i, tl.min(qk, axis=1) * qk_scale)
            qk = qk * qk_scale - m_ij[:, None]
        p = tl.math.exp2(qk)
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        v = _load_tile(v_head + cols[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                       cols, N_KV, offs_d, HEAD_DIM, BLOCK_D, MASKED)
        acc = dot(cast(p, v.dtype, INTERP_BF16), v, acc * alpha[:, None], INTERP_BF16)
        m_i = m_ij
    return acc, l_i, m_i


@triton.jit
def _attn_fwd_block(Q, K, V, Out, LSE,
                    stride_qz, stride_qh, stride_qm, stride_qk,
                    stride_kz, stride_kh, stride_kn, stride_kk,
                    stride_vz, stride_vh, stride_vn, stride_vk,
                    stride_oz, stride_oh, stride_om, stride_ok,
                    H, N_Q, N_KV, qk_scale, start_m, off_hz,
                    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                    INTERP_BF16: tl.constexpr, SCALE_POSITIVE: tl.constexpr,
                    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr):
    """Query rows start_m..start_m + BLOCK_M - 1 of (batch, head) off_hz: O and the base-2 LSE
    (also v10's redo of the rows its max-free softmax could not keep)."""
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    row_mask = (offs_m[:, None] < N_Q) & (offs_d[None, :] < HEAD_DIM)
    q = tl.load(Q + off_z * stride_qz + off_h * stride_qh
                + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                mask=row_mask, other=0.0)
    k_head = K + off_z * stride_kz + off_h * stride_kh
    v_head = V + off_z * stride_vz + off_h * stride_vh

    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    lo, hi = _key_range(start_m, N_KV, IS_CAUSAL, BLOCK_M, BLOCK_N)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, k_head, v_head,
                                    stride_kn, stride_kk, stride_vn, stride_vk,
                                    0, lo, offs_m, offs_n, offs_d, N_KV, qk_scale,
                                    False, IS_CAUSAL, HEAD_DIM, BLOCK_D, BLOCK_N, INTERP_BF16,
                                    SCALE_POSITIVE)
    acc, l_i, m_i = _attn_fwd_inner(acc, l_i, m_i, q, k_head, v_head,
                                    stride_kn, stride_kk, stride_vn, stride_vk,
                                    lo, hi, offs_m, offs_n, offs_d, N_KV, qk_scale,
                                    True, IS_CAUSAL, HEAD_DIM, BLOCK_D, BLOCK_N, INTERP_BF16,
                                    SCALE_POSITIVE)

    # -- epilogue: the one division FA2 defers to the end, and the row's log-sum-exp (base 2)
    acc = acc / l_i[:, None]
    tl.store(LSE + off_hz.to(tl.int64) * N_Q + offs_m, m_i + tl.math.log2(l_i),
             mask=offs_m < N_Q)
    tl.store(Out + off_z * stride_oz + off_h * stride_oh
             + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok,
             cast(acc, Out.dtype.element_ty, INTERP_BF16), mask=row_mask)


@triton.jit
def _attn_fwd(
    Q, K, V, Out, LSE,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_oz, stride_oh, stride_om, stride_ok,
    H, N_Q, N_KV, N_KEY, qk_scale,
    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr, SCALE_POSITIVE: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if IS_CAUSAL:
        # Longest rows first: the last query block walks the most keys, so launching it first
        # keeps the final wave from being a tail of long blocks on a few SMs.
        pid_m = tl.num_programs(0) - 1 - pid_m
    _attn_fwd_block(Q, K, V, Out, LSE,
                    stride_qz, stride_qh, stride_qm, stride_qk,
                    stride_kz, stride_kh, stride_kn, stride_kk,
                    stride_vz, stride_vh, stride_vn, stride_vk,
                    stride_oz, stride_oh, stride_om, stride_ok,
                    H, N_Q, N_KV, qk_scale, pid_m * BLOCK_M, tl.program_id(1),
                    IS_CAUSAL, HEAD_DIM, BLOCK_D, INTERP_BF16, SCALE_POSITIVE, BLOCK_M, BLOCK_N)


# ---------------------------------------------------------------------------- backward kernels
@triton.jit
def _attn_bwd_preprocess(O, DO, Delta,
                         stride_oz, stride_oh, stride_om, stride_ok,
                         stride_dz, stride_dh, stride_dm, stride_dk,
                         H, N_Q, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
                         BLOCK_M: tl.constexpr):
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = tl.program_id(0) * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    mask = (offs_m[:, None] < N_Q) & (offs_d[None, :] < HEAD_DIM)
    o = tl.load(O + off_z * stride_oz + off_h * stride_oh
                + offs_m[:, None] * stride_om + offs_d[None, :] * stride_ok, mask=mask, other=0.0)
    do = tl.load(DO + off_z * stride_dz + off_h * stride_dh
                 + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dk, mask=mask, other=0.0)
    delta = tl.sum(o.to(tl.float32) * do.to(tl.float32), axis=1)
    tl.store(Delta + off_hz.to(tl.int64) * N_Q + offs_m, delta, mask=offs_m < N_Q)


@triton.jit
def _attn_bwd_dkdv_inner(dk, dv, k, v, q_head, do_head, lse_head, delta_head,
                         stride_qm, stride_qk, stride_dm, stride_dk, lo, hi, offs_n, offs_d,
                         N_Q, qk_scale, MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr,
                         HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr, BLOCK_M: tl.constexpr,
                         INTERP_BF16: tl.constexpr):
    offs_m = tl.arange(0, BLOCK_M)
    for start_m in range(lo, hi, BLOCK_M):
        rows = start_m + offs_m
        q = _load_tile(q_head + rows[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                       rows, N_Q, offs_d, HEAD_DIM, BLOCK_D, MASKED)
        lse = tl.load(lse_head + rows, mask=rows < N_Q, other=0.0) if MASKED else \
            tl.load(lse_head + rows)
        # -- P^T for this (keys, queries) tile, rebuilt from the saved log-sum-exp
        p_t = tl.math.exp2(dot(k, tl.trans(q), None, INTERP_BF16) * qk_scale - lse[None, :])
        if MASKED:
            keep = rows[None, :] < N_Q
            if IS_CAUSAL:
                keep = keep & (rows[None, :] >= offs_n[:, None])
            p_t = tl.where(keep, p_t, 0.0)
        do = _load_tile(do_head + rows[:, None] * stride_dm + offs_d[None, :] * stride_dk,
                        rows, N_Q, offs_d, HEAD_DIM, BLOCK_D, MASKED)
        dv = dot(cast(p_t, do.dtype, INTERP_BF16), do, dv, INTERP_BF16)
        # -- dS^T = P^T * (dP^T - Delta), dP^T = V dO^T
        delta = tl.load(delta_head + rows, mask=rows < N_Q, other=0.0) if MASKED else \
            tl.load(delta_head + rows)
        ds_t = p_t * (dot(v, tl.trans(do), None, INTERP_BF16) - delta[None, :])
        dk = dot(cast(ds_t, q.dtype, INTERP_BF16), q, dk, INTERP_BF16)
    return dk, dv


@triton.jit
def _attn_bwd_dkdv(
    Q, K, V, DO, DK, DV, LSE, Delta,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_dz, stride_dh, stride_dm, stride_dk,
    stride_gz, stride_gh, stride_gn, stride_gk,
    H, N_Q, N_KV, N_KEY, sm_scale, qk_scale,
    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    start_n = tl.program_id(0) * BLOCK_N
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    kv_mask = (offs_n[:, None] < N_KV) & (offs_d[None, :] < HEAD_DIM)
    k = tl.load(K + off_z * stride_kz + off_h * stride_kh + offs_n[:, None] * stride_kn
                + offs_d[None, :] * stride_kk, mask=kv_mask, other=0.0)
    v = tl.load(V + off_z * stride_vz + off_h * stride_vh + offs_n[:, None] * stride_vn
                + offs_d[None, :] * stride_vk, mask=kv_mask, other=0.0)
    q_head = Q + off_z * stride_qz + off_h * stride_qh
    do_head = DO + off_z * stride_dz + off_h * stride_dh
    lse_head = LSE + off_hz.to(tl.int64) * N_Q
    delta_head = Delta + off_hz.to(tl.int64) * N_Q
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # Query range split, mirror of the forward: a causal key block is seen only by queries
    # >= start_n; blocks of queries that straddle the diagonal are masked, later ones are not.
    full_q = (N_Q // BLOCK_M) * BLOCK_M
    if IS_CAUSAL:
        diag_lo = (start_n // BLOCK_M) * BLOCK_M
        diag_hi = ((start_n + BLOCK_N - 1 + BLOCK_M - 1) // BLOCK_M) * BLOCK_M
        dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, q_head, do_head, lse_head, delta_head,
                                      stride_qm, stride_qk, stride_dm, stride_dk,
                                      diag_lo, tl.minimum(diag_hi, N_Q), offs_n, offs_d, N_Q,
                                      qk_scale, True, True, HEAD_DIM, BLOCK_D, BLOCK_M,
                                      INTERP_BF16)
        full_lo = diag_hi
    else:
        full_lo = 0
    full_hi = tl.maximum(full_lo, full_q)
    dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, q_head, do_head, lse_head, delta_head,
                                  stride_qm, stride_qk, stride_dm, stride_dk,
                                  full_lo, full_hi, offs_n, offs_d, N_Q, qk_scale,
                                  False, IS_CAUSAL, HEAD_DIM, BLOCK_D, BLOCK_M, INTERP_BF16)
    dk, dv = _attn_bwd_dkdv_inner(dk, dv, k, v, q_head, do_head, lse_head, delta_head,
                                  stride_qm, stride_qk, stride_dm, stride_dk,
                                  full_hi, N_Q, offs_n, offs_d, N_Q, qk_scale,
                                  True, IS_CAUSAL, HEAD_DIM, BLOCK_D, BLOCK_M, INTERP_BF16)

    # dS is the gradient of the scaled scores: dK picks up the softmax scale once, here.
    dk *= sm_scale
    g_off = off_z * stride_gz + off_h * stride_gh + offs_n[:, None] * stride_gn \
        + offs_d[None, :] * stride_gk
    tl.store(DK + g_off, cast(dk, DK.dtype.element_ty, INTERP_BF16), mask=kv_mask)
    tl.store(DV + g_off, cast(dv, DV.dtype.element_ty, INTERP_BF16), mask=kv_mask)


@triton.jit
def _attn_bwd_dq_inner(dq, q, do, lse, delta, k_head, v_head, stride_kn, stride_kk,
                       stride_vn, stride_vk, lo, hi, offs_m, offs_d, N_KV, qk_scale,
                       MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
                       BLOCK_D: tl.constexpr, BLOCK_N: tl.constexpr, INTERP_BF16: tl.constexpr):
    offs_n = tl.arange(0, BLOCK_N)
    for start_n in range(lo, hi, BLOCK_N):
        cols = start_n + offs_n
        k = _load_tile(k_head + cols[:, None] * stride_kn + offs_d[None, :] * stride_kk,
                       cols, N_KV, offs_d, HEAD_DIM, BLOCK_D, MASKED)
        v = _load_tile(v_head + cols[:, None] * stride_vn + offs_d[None, :] * stride_vk,
                       cols, N_KV, offs_d, HEAD_DIM, BLOCK_D, MASKED)
        p = tl.math.exp2(dot(q, tl.trans(k), None, INTERP_BF16) * qk_scale - lse[:, None])
        if MASKED:
            keep = cols[None, :] < N_KV
            if IS_CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None])
            p = tl.where(keep, p, 0.0)
        ds = p * (dot(do, tl.trans(v), None, INTERP_BF16) - delta[:, None])
        dq = dot(cast(ds, k.dtype, INTERP_BF16), k, dq, INTERP_BF16)
    return dq


@triton.jit
def _attn_bwd_dq(
    Q, K, V, DO, DQ, LSE, Delta,
    stride_qz, stride_qh, stride_qm, stride_qk,
    stride_kz, stride_kh, stride_kn, stride_kk,
    stride_vz, stride_vh, stride_vn, stride_vk,
    stride_dz, stride_dh, stride_dm, stride_dk,
    stride_gz, stride_gh, stride_gm, stride_gk,
    H, N_Q, N_KV, N_KEY, sm_scale, qk_scale,
    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
):
    pid_m = tl.program_id(0)
    if IS_CAUSAL:  # longest rows first, as in the forward
        pid_m = tl.num_programs(0) - 1 - pid_m
    start_m = pid_m * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    offs_m = start_m + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, BLOCK_D)
    row_mask = (offs_m[:, None] < N_Q) & (offs_d[None, :] < HEAD_DIM)
    q = tl.load(Q + off_z * stride_qz + off_h * stride_qh
                + offs_m[:, None] * stride_qm + offs_d[None, :] * stride_qk,
                mask=row_mask, other=0.0)
    do = tl.load(DO + off_z * stride_dz + off_h * stride_dh
                 + offs_m[:, None] * stride_dm + offs_d[None, :] * stride_dk,
                 mask=row_mask, other=0.0)
    lse = tl.load(LSE + off_hz.to(tl.int64) * N_Q + offs_m, mask=offs_m < N_Q, other=0.0)
    delta = tl.load(Delta + off_hz.to(tl.int64) * N_Q + offs_m, mask=offs_m < N_Q, other=0.0)
    k_head = K + off_z * stride_kz + off_h * stride_kh
    v_head = V + off_z * stride_vz + off_h * stride_vh
    dq = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)

    lo, hi = _key_range(start_m, N_KV, IS_CAUSAL, BLOCK_M, BLOCK_N)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, k_head, v_head, stride_kn, stride_kk,
                            stride_vn, stride_vk, 0, lo, offs_m, offs_d, N_KV, qk_scale,
                            False, IS_CAUSAL, HEAD_DIM, BLOCK_D, BLOCK_N, INTERP_BF16)
    dq = _attn_bwd_dq_inner(dq, q, do, lse, delta, k_head, v_head, stride_kn, stride_kk,
                            stride_vn, stride_vk, lo, hi, offs_m, offs_d, N_KV, qk_scale,
                            True, IS_CAUSAL, HEAD_DIM, BLOCK_D, BLOCK_N, INTERP_BF16)
    dq *= sm_scale
    tl.store(DQ + off_z * stride_gz + off_h * stride_gh
             + offs_m[:, None] * stride_gm + offs_d[None, :] * stride_gk,
             cast(dq, DQ.dtype.element_ty, INTERP_BF16), mask=row_mask)


# ------------------------------------------------------------------------------- host launchers
# Autotuning keys on the head dim, the mask and N_KEY, the sequence length rounded up to a power
# of two, so that every odd length does not re-run the search.
_TUNE_KEY = ["N_KEY", "HEAD_DIM", "IS_CAUSAL"]
_attn_fwd_tuned = triton.autotune(configs.all_configs(configs.FWD), key=_TUNE_KEY,
                                  prune_configs_by={"early_config_prune":
                                                    configs.pruner(configs.FWD)})(_attn_fwd)
_attn_bwd_dkdv_tuned = triton.autotune(configs.all_configs(configs.BWD_DKDV), key=_TUNE_KEY,
                                       prune_configs_by={"early_config_prune":
                                                         configs.pruner(configs.BWD_DKDV)})(
    _attn_bwd_dkdv)
_attn_bwd_dq_tuned = triton.autotune(configs.all_configs(configs.BWD_DQ), key=_TUNE_KEY,
                                     prune_configs_by={"early_config_prune":
                                                       configs.pruner(configs.BWD_DQ)})(
    _attn_bwd_dq)


def _launch(kernel, tuned, table, fixed, owned, rows, batch_heads, *args, **meta):
    """Launch ``kernel`` with its fixed interpreter config, or its autotuned twin on a GPU
    (``ATTN_AUTOTUNE=0``: the first choice of its config ``table``). ``owned`` names the block
    that tiles ``rows`` across programs (BLOCK_M or BLOCK_N)."""
    if interpreting():
        grid = (triton.cdiv(rows, fixed[owned]), batch_heads)
        kernel[grid](*args, **meta, **fixed, num_warps=4, num_stages=1)
    elif not autotuning():
        cfg = configs.first_choice(table, meta["HEAD_DIM"], args[0].dtype)
        kernel[(triton.cdiv(rows, cfg[owned]), batch_heads)](*args, **meta, **cfg)
    else:
        tuned[lambda m: (triton.cdiv(rows, m[owned]), batch_heads)](*args, **meta)


def _meta(q, causal):
    d = q.shape[-1]
    return dict(IS_CAUSAL=causal, HEAD_DIM=d, BLOCK_D=max(16, triton.next_power_of_2(d)),
                INTERP_BF16=interp_bf16(q.dtype))


def _n_key(q, k):
    return triton.next_power_of_2(max(q.shape[2], k.shape[2]))


def _forward(q, k, v, causal, sm_scale):
    B, H, n_q, _ = q.shape
    o = new_output(q.shape, q)
    lse = new_output((B, H, n_q), q, torch.float32)
    if q.numel() == 0:
        return o, lse
    _launch(_attn_fwd, _attn_fwd_tuned, configs.FWD, configs.INTERPRETER_FWD, "BLOCK_M", n_q,
            B * H, q, k, v, o, lse, *q.stride(), *k.stride(), *v.stride(), *o.stride(),
            H, n_q, k.shape[2], _n_key(q, k), sm_scale * LOG2E, SCALE_POSITIVE=sm_scale >= 0,
            **_meta(q, causal))
    return o, lse


def preprocess(do, o):
    """Delta = rowsum(dO * O) per query row, fp32 [B, H, N_Q] (v07's backward uses it too)."""
    B, H, n_q, d = o.shape
    delta = new_output((B, H, n_q), o, torch.float32)
    block = configs.INTERPRETER_FWD["BLOCK_M"] if interpreting() else 128
    _attn_bwd_preprocess[(triton.cdiv(n_q, block), B * H)](
        o, do, delta, *o.stride(), *do.stride(), H, n_q,
        HEAD_DIM=d, BLOCK_D=max(16, triton.next_power_of_2(d)), BLOCK_M=block)
    return delta


def _backward(do, q, k, v, o, lse, causal, sm_scale):
    B, H, n_q, d = q.shape
    n_kv = k.shape[2]
    dq, dk, dv = new_output(q.shape, q), new_output(k.shape, k), new_output(v.shape, v)
    if q.numel() == 0:  # no queries: nothing flows back to the keys
        return dq, dk.zero_(), dv.zero_()
    meta = _meta(q, causal)
    delta = preprocess(do, o)
    shared = (*q.stride(), *k.stride(), *v.stride(), *do.stride())
    scalars = (H, n_q, n_kv, _n_key(q, k), sm_scale, sm_scale * LOG2E)
    _launch(_attn_bwd_dkdv, _attn_bwd_dkdv_tuned, configs.BWD_DKDV, configs.INTERPRETER_DKDV,
            "BLOCK_N", n_kv, B * H,
            q, k, v, do, dk, dv, lse, delta, *shared, *dk.stride(), *scalars, **meta)
    _launch(_attn_bwd_dq, _attn_bwd_dq_tuned, configs.BWD_DQ, configs.INTERPRETER_DQ,
            "BLOCK_M", n_q, B * H,
            q, k, v, do, dq, lse, delta, *shared, *dq.stride(), *scalars, **meta)
    return dq, dk, dv


def autograd_function(forward, backward=None):
    """The ``torch.autograd.Function`` around ``forward(q, k, v, causal, sm_scale) -> (o, lse)``
    and ``backward(do, q, k, v, o, lse, causal, sm_scale) -> (dq, dk, dv)``, by default this
    stage's (later stages pass their own forward, and v07 its backward)."""
    run_backward = backward or _backward

    class _Attention(torch.autograd.Function):
        @staticmethod
        def forward(ctx, q, k, v, causal, sm_scale):
            o, lse = forward(q, k, v, causal, sm_scale)
            ctx.save_for_backward(q, k, v, o, lse)
            ctx.causal, ctx.sm_scale = causal, sm_scale
            ctx.mark_non_differentiable(lse)
            # No zero-filled gradient for the LSE (a launch per step on the host's clock, where
            # small calls are host-bound): the backward ignores it anyway.
            ctx.set_materialize_grads(False)
            return o, lse

        @staticmethod
        @torch.autograd.function.once_differentiable
        def backward(ctx, do, _dlse):
            if do is None:  # the output got no gradient: none flows back
                return None, None, None, None, None
            q, k, v, o, lse = ctx.saved_tensors
            dq, dk, dv = run_backward(do, q, k, v, o, lse, ctx.causal, ctx.sm_scale)
            return dq, dk, dv, None, None

    return _Attention


_Attention = autograd_function(_forward)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v04_flash2", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
