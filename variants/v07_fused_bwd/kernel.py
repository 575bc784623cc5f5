"""v07: one backward pass that computes every score once; dQ is summed by TMA reduce-adds.

v04's backward runs two kernels: one owns a key block and accumulates dK and dV, the other owns a
query block and accumulates dQ, so each rebuilds P (= exp2(QK^T - LSE)) and dP (= dO V^T) for
every tile: seven tile matmuls where five suffice. Here a program owns BLOCK_N keys and, for each
step of BLOCK_M queries, does the five once:

    S^T = K Q^T      dV += P^T dO      dP^T = V dO^T      dK += dS^T Q      dQ_part = dS K

dK and dV stay in registers, as in v04; dQ_part belongs to queries that every key block touches,
so it is added into an fp32 buffer in global memory: on Hopper by a TMA reduce-add
(``desc.atomic_add``: the tile goes to shared memory and the copy engine adds it in L2, without
the warps issuing one atomic per element), under the interpreter by ``tl.atomic_add``. A last
copy converts the buffer to dQ's dtype. Counted MMA work falls from 3.5x to 2.5x the forward's.

The softmax scale is folded in once: dS = P * (dP * scale - Delta * scale) costs one FMA per
score and gives dK and dQ their scale for free. Non-causal key blocks walk their query tiles
starting at their own index (rotated), so a head's programs, launched together, add into
different dQ rows at any moment instead of all into the first tile.

Measured on an H200 with Triton 3.6, this is slower than v04's backward (0.62-0.65x cuDNN at
d=128 against 0.68-0.71x): dQ's product, its fp32 staging in shared memory and the reduce-add
cost as much as the other four matmuls, and nothing overlaps them (README.md, NOTES.md).

Summation order into dQ depends on timing, so dQ may differ in its last bits between runs (dK,
dV and the forward are deterministic); v04's backward is the deterministic one. The forward is
v06's. fp32 inputs (no MMA), head dims above 128 (dK and dV would not fit the registers), and
layouts TMA cannot address take v04's backward.
"""

import math

import torch
import triton
import triton.language as tl

from common.grid_limits import split_batch_heads
from common.triton_helpers import cast, dot
from common.validation import autotuning, check_inputs, interpreting, new_output
from variants.v04_flash2 import kernel as v04
from variants.v05_hopper import kernel as v05
from variants.v06_warpspec import kernel as v06

from . import CAPABILITIES, configs

LOG2E = math.log2(math.e)


@triton.jit
def _head_desc(base, n_rows, stride, HEAD_DIM: tl.constexpr, ROWS: tl.constexpr,
               BLOCK_D: tl.constexpr):
    """A descriptor over one head's [n_rows, d] matrix, moved in [ROWS, BLOCK_D] tiles: TMA
    zero-fills what lies past the matrix on loads and drops it on stores and reduce-adds."""
    return tl.make_tensor_descriptor(base, shape=[n_rows, HEAD_DIM], strides=[stride, 1],
                                     block_shape=[ROWS, BLOCK_D])


@triton.jit
def _bwd_step(dk, dv, k, v, desc_q, desc_do, desc_dq, dq_head, stride_dqm, lse_head, delta_head,
              start_m, offs_n, offs_d, N_Q, N_KV, qk_scale, sm_scale,
              MASKED: tl.constexpr, IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr,
              BLOCK_M: tl.constexpr, INTERP_BF16: tl.constexpr, DQ_TMA: tl.constexpr):
    """One step of BLOCK_M queries against the program's keys: the five matmuls."""
    rows = start_m + tl.arange(0, BLOCK_M)
    q = desc_q.load([start_m, 0])
    do = desc_do.load([start_m, 0])
    if MASKED:
        lse = tl.load(lse_head + rows, mask=rows < N_Q, other=0.0)
        delta = tl.load(delta_head + rows, mask=rows < N_Q, other=0.0)
    else:
        lse = tl.load(lse_head + rows)
        delta = tl.load(delta_head + rows)
    qk_t = dot(k, tl.trans(q), None, INTERP_BF16)
    # dP^T's MMA is issued right behind S^T's, so it runs while the warps compute P (NOTES.md).
    dp_t = dot(v, tl.trans(do), None, INTERP_BF16)
    p_t = tl.math.exp2(qk_t * qk_scale - lse[None, :])
    if MASKED:
        # Rows past N_Q and keys past N_KV read as zeros through the descriptors; their P must
        # be 0 (exp2(0 - lse) is not), and causal keys after the query are not seen.
        keep = (rows[None, :] < N_Q) & (offs_n[:, None] < N_KV)
        if IS_CAUSAL:
            keep = keep & (rows[None, :] >= offs_n[:, None])
        p_t = tl.where(keep, p_t, 0.0)
    dv = dot(cast(p_t, do.dtype, INTERP_BF16), do, dv, INTERP_BF16)
    # dS^T = P^T * (dP^T - Delta), times the softmax scale: one FMA per score.
    ds_t = cast(p_t * (dp_t * sm_scale - (delta * sm_scale)[None, :]), q.dtype, INTERP_BF16)
    dk = dot(ds_t, q, dk, INTERP_BF16)
    dq = dot(tl.trans(ds_t), k, None, INTERP_BF16)
    if DQ_TMA:
        desc_dq.atomic_add([start_m, 0], dq)  # rows past N_Q, columns past d: dropped by TMA
    else:
        tl.atomic_add(dq_head + rows[:, None] * stride_dqm + offs_d[None, :], dq,
                      mask=(rows[:, None] < N_Q) & (offs_d[None, :] < HEAD_DIM))
    return dk, dv


@triton.jit
def _attn_bwd(
    Q, K, V, DO, DK, DV, DQ, LSE, Delta,
    stride_qz, stride_qh, stride_qm,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_dz, stride_dh, stride_dm,
    stride_gz, stride_gh, stride_gn,
    stride_dqm,
    H, N_Q, N_KV, N_KEY, sm_scale, qk_scale,
    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr, DQ_TMA: tl.constexpr, BLOCK_M: tl.constexpr,
    BLOCK_N: tl.constexpr,
):  # fmt: skip
    pid_n = tl.program_id(0)
    start_n = pid_n * BLOCK_N
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)

    desc_q = _head_desc(Q + off_z * stride_qz + off_h * stride_qh, N_Q, stride_qm, HEAD_DIM,
                        BLOCK_M, BLOCK_D)
    desc_do = _head_desc(DO + off_z * stride_dz + off_h * stride_dh, N_Q, stride_dm, HEAD_DIM,
                         BLOCK_M, BLOCK_D)
    dq_head = DQ + off_hz.to(tl.int64) * N_Q * stride_dqm  # fp32, [B*H, N_Q, d rounded to 4]
    desc_dq = _head_desc(dq_head, N_Q, stride_dqm, HEAD_DIM, BLOCK_M, BLOCK_D)
    k = _head_desc(K + off_z * stride_kz + off_h * stride_kh, N_KV, stride_kn, HEAD_DIM,
                   BLOCK_N, BLOCK_D).load([start_n, 0])
    v = _head_desc(V + off_z * stride_vz + off_h * stride_vh, N_KV, stride_vn, HEAD_DIM,
                   BLOCK_N, BLOCK_D).load([start_n, 0])
    lse_head = LSE + off_hz.to(tl.int64) * N_Q
    delta_head = Delta + off_hz.to(tl.int64) * N_Q
    offs_n = start_n + tl.arange(0, BLOCK_N)
    offs_d = tl.arange(0, BLOCK_D)
    dk = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)
    dv = tl.zeros([BLOCK_N, BLOCK_D], dtype=tl.float32)

    # Query tiles split by the mask they need, as in v04: a causal key block is seen from the
    # tile holding its first key on; tiles straddling the diagonal and the ragged last tile are
    # masked. A ragged key block (the head's last) masks every tile.
    n_full = N_Q // BLOCK_M
    if IS_CAUSAL:
        first = start_n // BLOCK_M
        diag_end = tl.minimum((start_n + BLOCK_N - 1) // BLOCK_M + 1, n_full)
    else:
        first = 0
        diag_end = 0
    if start_n + BLOCK_N > N_KV:
        diag_end = n_full
    for t in range(first, diag_end):
        dk, dv = _bwd_step(dk, dv, k, v, desc_q, desc_do, desc_dq, dq_head, stride_dqm, lse_head,
                           delta_head, t * BLOCK_M, offs_n, offs_d, N_Q, N_KV, qk_scale,
                           sm_scale, True, IS_CAUSAL, HEAD_DIM, BLOCK_M, INTERP_BF16, DQ_TMA)
    # Unmasked tiles, entered at a rotation set by the key block (module docstring).
    lo = tl.maximum(first, diag_end)
    count = n_full - lo
    if IS_CAUSAL:  # already staggered: each key block starts at its own diagonal
        shift = 0
    else:
        shift = pid_n
    for i in range(0, count):
        t = lo + (i + shift) % count
        dk, dv = _bwd_step(dk, dv, k, v, desc_q, desc_do, desc_dq, dq_head, stride_dqm, lse_head,
                           delta_head, t * BLOCK_M, offs_n, offs_d, N_Q, N_KV, qk_scale,
                           sm_scale, False, IS_CAUSAL, HEAD_DIM, BLOCK_M, INTERP_BF16, DQ_TMA)
    if N_Q % BLOCK_M != 0:
        dk, dv = _bwd_step(dk, dv, k, v, desc_q, desc_do, desc_dq, dq_head, stride_dqm, lse_head,
                           delta_head, n_full * BLOCK_M, offs_n, offs_d, N_Q, N_KV, qk_scale,
                           sm_scale, True, IS_CAUSAL, HEAD_DIM, BLOCK_M, INTERP_BF16, DQ_TMA)

    # TMA drops the rows past N_KV and the columns past d.
    g_head = off_z * stride_gz + off_h * stride_gh
    _head_desc(DK + g_head, N_KV, stride_gn, HEAD_DIM, BLOCK_N, BLOCK_D).store(
        [start_n, 0], cast(dk, DK.dtype.element_ty, INTERP_BF16))
    _head_desc(DV + g_head, N_KV, stride_gn, HEAD_DIM, BLOCK_N, BLOCK_D).store(
        [start_n, 0], cast(dv, DV.dtype.element_ty, INTERP_BF16))


# ------------------------------------------------------------------------------- host side
_attn_bwd_tuned = triton.autotune(
    configs.BWD_ALL, key=["N_KEY", "HEAD_DIM", "IS_CAUSAL"],
    prune_configs_by={"early_config_prune": configs.prune_bwd},
    reset_to_zero=["DQ"],  # every timed trial adds into the buffer
)(_attn_bwd)  # fmt: skip


def applies(q, k, v, do) -> bool:
    """Whether the fused kernel takes this backward (else v04's runs)."""
    return (
        q.dtype in (torch.float16, torch.bfloat16)
        and configs.MIN_HEAD_DIM <= q.shape[-1] <= configs.MAX_HEAD_DIM
        and q.shape[-1] * q.element_size() % 16 == 0  # dK and dV leave through descriptors
        and all(v05.tma_addressable(t) for t in (q, k, v, do))
    )


def launch_backward(do, q, k, v, lse, delta, dq_acc, dk, dv, causal, sm_scale, config=None,
                    dq_tma=None):
    """Run the fused kernel; ``delta`` is rowsum(dO * O), ``dq_acc`` a zeroed fp32
    [B*H, N_Q, d rounded up to 4] buffer that receives dQ. ``config`` (BLOCK_M, BLOCK_N,
    num_warps, num_stages) bypasses autotuning and ``dq_tma=False`` picks element atomics over
    TMA reduce-adds, for the tuning script."""
    B, H, n_q, d = q.shape
    n_kv = k.shape[2]
    if dq_tma is None:
        dq_tma = not interpreting()  # the interpreter has no descriptor reduce
    args = (q, k, v, do, dk, dv, dq_acc, lse, delta, *q.stride()[:3], *k.stride()[:3],
            *v.stride()[:3], *do.stride()[:3], *dk.stride()[:3], dq_acc.stride(1),
            H, n_q, n_kv, v04._n_key(q, k), sm_scale, sm_scale * LOG2E)
    meta = dict(v04._meta(q, causal), DQ_TMA=dq_tma)
    if not interpreting():
        triton.set_allocator(v05.scratch)  # a context variable: set it in the launching thread
    if interpreting() or config is not None or not autotuning():
        if config is None:
            config = configs.INTERPRETER_BWD if interpreting() else configs.first_choice(d)
        grid = (triton.cdiv(n_kv, config["BLOCK_N"]), B * H)
        _attn_bwd[grid](*args, **meta, **config)
    else:
        _attn_bwd_tuned[lambda m: (triton.cdiv(n_kv, m["BLOCK_N"]), B * H)](*args, **meta)


def dq_buffer(q):
    """The zeroed fp32 buffer dQ is summed into: rows padded to 16 bytes for TMA."""
    B, H, n_q, d = q.shape
    return torch.zeros(B * H, n_q, (d + 3) // 4 * 4, device=q.device, dtype=torch.float32)


def _backward(do, q, k, v, o, lse, causal, sm_scale):
    dense_do = v05._tma_operand(do)  # autograd may hand over an expanded or transposed dO
    if q.numel() == 0 or dense_do is None or not applies(q, k, v, dense_do):
        return v04._backward(do, q, k, v, o, lse, causal, sm_scale)
    do = dense_do
    B, H, n_q, d = q.shape
    dk, dv = new_output(k.shape, k), new_output(v.shape, v)
    dq_acc = dq_buffer(q)
    launch_backward(do, q, k, v, lse, v04.preprocess(do, o), dq_acc, dk, dv, causal, sm_scale)
    dq = dq_acc.view(B, H, n_q, -1)[..., :d].to(q.dtype)
    return dq, dk, dv


# v06's forward, this stage's backward.
_Attention = v04.autograd_function(v06._forward, _backward)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v07_fused_bwd", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
