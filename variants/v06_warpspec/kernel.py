"""v06: v05's TMA forward run by specialised warps: one warpgroup loads, two compute.

In v05 every warp does everything, in lockstep: the SASS of its 128x128 d=128 loop has three
CTA-wide barriers per K/V tile (``BAR.SYNC``, to hand TMA buffers back), so both warpgroups wait
for their QK^T together, then both do their softmax while the tensor cores idle, then both issue
P@V. With ``tl.range(..., warp_specialize=True)`` Triton 3.6's Hopper pass rewrites the loop into
a producer warpgroup that only issues TMA loads and two consumer warpgroups that each own 64 of
the block's 128 query rows. The groups meet only at mbarriers on the shared K/V buffers, so one
consumer's softmax can run while the other's MMAs hold the tensor cores: the overlap FA3 builds
by hand, here left to the warp schedulers (no explicit ping-pong).

What the pass accepts (Triton 3.6, sm90), found by compiling, and why the kernel looks as it
does:
- ``num_warps=4`` (the kernel then runs 12 warps); at 8 warps the flag is ignored.
- descriptors built in the kernel (``tl.make_tensor_descriptor``): with v05's host-side ones
  the pass fails (as it does for pointer loads in the loop, triton-lang/triton#9728);
- two pipeline stages: every three- and four-stage config compiled but returned NaN;
- exactly one loop: v04/v05's split into unmasked tiles and a masked diagonal loop fails, and so
  does a branch on the tile index inside the loop. Ragged key counts and causal attention
  therefore mask *every* tile (``MASKED``).
- every program's rows computed apart from the scalar that addresses Q (see ``offs_m``).
Per-head descriptors zero-fill rows past N_KV, so V needs no mask; the output leaves through a
descriptor store, which drops rows past N_Q.

Measured on an H200 (NOTES.md): at d=128 without a mask the split is 6-10% faster than v05;
causal, the whole-block compare and select on every tile cost more than the overlap gained
(0.79-0.84x cuDNN against v05's 0.84-0.88x), and at d=64 the eight lockstep warps of v04/v05
were faster. So ``attention`` runs this kernel for non-causal calls at 64 < d <= 128 and hands
the rest to v05; ``launch_forward`` still takes causal calls, for the tuning script.

Elsewhere (also fp32, whose dots are not MMAs; head dims above 128, whose accumulators do not fit
the consumers' registers; layouts TMA cannot address) v05's forward runs. The backward is v04's.
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

from . import CAPABILITIES, configs

LOG2E = math.log2(math.e)


@triton.jit
def _attn_fwd(
    Q, K, V, Out, LSE,
    stride_qz, stride_qh, stride_qm,
    stride_kz, stride_kh, stride_kn,
    stride_vz, stride_vh, stride_vn,
    stride_oz, stride_oh, stride_om,
    H, N_Q, N_KV, N_KEY, qk_scale,
    IS_CAUSAL: tl.constexpr, HEAD_DIM: tl.constexpr, BLOCK_D: tl.constexpr,
    INTERP_BF16: tl.constexpr, SCALE_POSITIVE: tl.constexpr, MASKED: tl.constexpr,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, WARP_SPECIALIZE: tl.constexpr,
):  # fmt: skip
    pid_m = tl.program_id(0)
    if IS_CAUSAL:  # longest rows first (v04)
        pid_m = tl.num_programs(0) - 1 - pid_m
    start_m = pid_m * BLOCK_M
    off_hz = tl.program_id(1)
    off_z = (off_hz // H).to(tl.int64)
    off_h = (off_hz % H).to(tl.int64)
    desc_q = tl.make_tensor_descriptor(Q + off_z * stride_qz + off_h * stride_qh,
                                       shape=[N_Q, HEAD_DIM], strides=[stride_qm, 1],
                                       block_shape=[BLOCK_M, BLOCK_D])
    desc_k = tl.make_tensor_descriptor(K + off_z * stride_kz + off_h * stride_kh,
                                       shape=[N_KV, HEAD_DIM], strides=[stride_kn, 1],
                                       block_shape=[BLOCK_N, BLOCK_D])
    desc_v = tl.make_tensor_descriptor(V + off_z * stride_vz + off_h * stride_vh,
                                       shape=[N_KV, HEAD_DIM], strides=[stride_vn, 1],
                                       block_shape=[BLOCK_N, BLOCK_D])
    desc_o = tl.make_tensor_descriptor(Out + off_z * stride_oz + off_h * stride_oh,
                                       shape=[N_Q, HEAD_DIM], strides=[stride_om, 1],
                                       block_shape=[BLOCK_M, BLOCK_D])
    q = desc_q.load([start_m, 0])
    # The row indices come from their own copy of start_m: Triton 3.6's partitioning adds the
    # second consumer's 64-row offset to every use of the scalar that addresses Q *and* to the
    # arange, so ``start_m + arange`` would put its rows 64 too far (wrong causal masks, LSE rows
    # written into the next block). A subtraction that CSE cannot merge keeps the two apart.
    offs_m = ((pid_m + 1) * BLOCK_M - BLOCK_M) + tl.arange(0, BLOCK_M)
    offs_n = tl.arange(0, BLOCK_N)
    m_i = tl.full([BLOCK_M], float("-inf"), dtype=tl.float32)
    l_i = tl.zeros([BLOCK_M], dtype=tl.float32)
    acc = tl.zeros([BLOCK_M, BLOCK_D], dtype=tl.float32)
    hi = tl.minimum(start_m + BLOCK_M, N_KV) if IS_CAUSAL else N_KV
    for start_n in tl.range(0, hi, BLOCK_N, warp_specialize=WARP_SPECIALIZE):
        qk = dot(q, tl.trans(desc_k.load([start_n, 0])), None, INTERP_BF16)
        if MASKED:  # every tile: the pass takes one loop only (module docstring)
            cols = start_n + offs_n
            keep = cols[None, :] < N_KV
            if IS_CAUSAL:
                keep = keep & (cols[None, :] <= offs_m[:, None])
            qk = tl.where(keep, qk * qk_scale, float("-inf"))
            m_ij = tl.maximum(m_i, tl.max(qk, axis=1))
            p = tl.math.exp2(qk - m_ij[:, None])
        else:
            if SCALE_POSITIVE:  # row max of the raw scores, scaled per row: one FMA per score
                m_ij = tl.maximum(m_i, tl.max(qk, axis=1) * qk_scale)
            else:  # a negative scale turns the smallest raw score into the largest
                m_ij = tl.maximum(m_i, tl.min(qk, axis=1) * qk_scale)
            p = tl.math.exp2(qk * qk_scale - m_ij[:, None])
        alpha = tl.math.exp2(m_i - m_ij)
        l_i = l_i * alpha + tl.sum(p, axis=1)
        acc = acc * alpha[:, None]
        v = desc_v.load([start_n, 0])
        acc = dot(cast(p, v.dtype, INTERP_BF16), v, acc, INTERP_BF16)
        m_i = m_ij

    acc = acc / l_i[:, None]
    tl.store(LSE + off_hz.to(tl.int64) * N_Q + offs_m, m_i + tl.math.log2(l_i),
             mask=offs_m < N_Q)
    desc_o.store([start_m, 0], cast(acc, Out.dtype.element_ty, INTERP_BF16))


# ------------------------------------------------------------------------------- host side
def _masked(nargs) -> bool:
    """Whether every tile needs the key mask: causal, or a key count that is not whole tiles."""
    return bool(nargs["IS_CAUSAL"]) or nargs["N_KV"] % nargs["BLOCK_N"] != 0


_attn_fwd_tuned = triton.autotune(
    configs.FWD_ALL, key=["N_KEY", "HEAD_DIM", "IS_CAUSAL"],
    prune_configs_by={"early_config_prune": configs.prune_fwd},
)(triton.heuristics({"MASKED": _masked})(_attn_fwd))  # fmt: skip


def applies(q, k, v, causal) -> bool:
    """Whether the warp-specialised kernel takes this call (else v05's forward runs)."""
    return (
        not causal
        and q.dtype in (torch.float16, torch.bfloat16)
        and configs.MIN_HEAD_DIM <= q.shape[-1] <= configs.MAX_HEAD_DIM
        and all(v05.tma_addressable(t) for t in (q, k, v))
    )


def launch_forward(q, k, v, o, lse, causal, sm_scale, config=None):
    """Run the warp-specialised forward; ``config`` (a dict of BLOCK_M, BLOCK_N, num_warps,
    num_stages, WARP_SPECIALIZE) bypasses autotuning, for the tuning script."""
    B, H, n_q, d = q.shape
    args = (q, k, v, o, lse, *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
            H, n_q, k.shape[2], v04._n_key(q, k), sm_scale * LOG2E)
    meta = dict(v04._meta(q, causal), SCALE_POSITIVE=sm_scale >= 0)
    if not interpreting():
        triton.set_allocator(v05.scratch)  # a context variable: set it in the launching thread
    if interpreting() or config is not None or not autotuning():
        if config is None:
            config = configs.INTERPRETER_FWD if interpreting() else configs.first_choice(d)
        masked = _masked(dict(meta, N_KV=k.shape[2], BLOCK_N=config["BLOCK_N"]))
        grid = (triton.cdiv(n_q, config["BLOCK_M"]), B * H)
        _attn_fwd[grid](*args, **meta, **config, MASKED=masked)
    else:
        _attn_fwd_tuned[lambda m: (triton.cdiv(n_q, m["BLOCK_M"]), B * H)](*args, **meta)


def _forward(q, k, v, causal, sm_scale):
    if not applies(q, k, v, causal):
        return v05._forward(q, k, v, causal, sm_scale)
    B, H, n_q, _ = q.shape
    o = new_output(q.shape, q)
    lse = new_output((B, H, n_q), q, torch.float32)
    if q.numel() == 0:
        return o, lse
    if not v05.tma_addressable(o):  # a d=100 slice of wider rows: q addressable, dense o not
        return v05._forward(q, k, v, causal, sm_scale)
    launch_forward(q, k, v, o, lse, causal, sm_scale)
    return o, lse


_Attention = v04.autograd_function(_forward)  # v04's backward, unchanged


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v06_warpspec", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
