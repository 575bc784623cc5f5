"""v09: the backward in Gluon, with v08's forward.

The kernel is ``gluon_bwd.attn_bwd`` (its docstring has the design). This module decides which
calls it takes, prepares its inputs and launches it. Like v08's forward it has no interpreter
path: on CPU, and for anything the kernel does not cover, v04's backward runs. The kernel takes
the calls v08's forward takes (Hopper, fp16/bf16, head dims padded to 16-128, layouts TMA can
address), whatever the scale's sign.

Around the kernel, one pass before it (prepare.py): Delta = rowsum(dO * O) and the forward's LSE,
each in per-head buffers padded to whole query blocks (LSE with +inf, so padded queries get
P = 0 with no mask), and the zeroed fp32 [B*H, N_pad, BLOCK_D] buffer dQ is summed in (with
DQ_PERM its rows in the kernel's bank-conflict-free order); one pass after it puts dQ in order,
cuts and casts it (dq_cast.py).
Summation order into dQ depends on timing, so dQ may differ in its last bits between runs.
"""

import math

import torch
import triton
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from common.capabilities import sm_major
from common.grid_limits import split_batch_heads
from common.launch import Launcher
from common.validation import check_inputs, interpreting, new_output
from variants.v04_flash2 import kernel as v04
from variants.v05_hopper import kernel as v05
from variants.v08_gluon import kernel as v08

from . import CAPABILITIES, configs
from .dq_cast import dq_from_buffer
from .gluon_bwd import CONSUMERS, ROWS, attn_bwd
from .prepare import prepare

LOG2E = math.log2(math.e)
_ATTN_BWD = Launcher(attn_bwd)  # Triton's dispatch once per call key (common/launch.py)
BLOCK_N = CONSUMERS.value * ROWS.value
CONFIG_KEYS = {
    "BLOCK_M", "STAGES", "HOST_DESC", "DQ_UNDER_DK", "DQ_ROWS", "DQ_PERM",
    "HEAD_GROUP", "DELTA_SCALED", "TMA_DKV",
}


def applies(q, k, v, do) -> bool:
    """Whether the Gluon backward takes this call (else v04's backward runs)."""
    return (
        not interpreting()
        and q.is_cuda
        and sm_major(q.device.index) == 9
        and q.dtype in (torch.float16, torch.bfloat16)
        and v08._block_d(q.shape[-1]) in configs.HEAD_DIMS
        and all(v05.tma_addressable(t) for t in (q, k, v, do))
    )


def _rows(t: torch.Tensor) -> torch.Tensor | None:
    """``t`` as one [B*H*N, d] matrix when its heads are stacked rows (a view), else None."""
    B, H, N, d = t.shape
    if t.stride(1) == N * t.stride(2) and t.stride(0) == H * t.stride(1):
        return t.as_strided((B * H * N, d), (t.stride(2), 1))
    return None


def host_descriptor(t: torch.Tensor, block, layout) -> TensorDescriptor:
    """A host-built TMA descriptor over all of ``t``, moved in ``block`` tiles."""
    return TensorDescriptor(t, list(t.shape), list(t.stride()), block, layout)


def tile_operands(tensors, q_tile, kv_tile, host: bool) -> list:
    """The four tile operands of a Gluon kernel (Q-, K-, V- and Q-shaped again, as
    ``(block, layout)`` tiles): host descriptors over their [B*H*N, d] row views, or the tensors
    themselves, from which each program builds per-head descriptors."""
    if not host:
        triton.set_allocator(v05.scratch)  # in-kernel descriptors (a context variable)
        return list(tensors)
    tiles = (q_tile, kv_tile, kv_tile, q_tile)
    return [host_descriptor(_rows(t), *tile) for t, tile in zip(tensors, tiles, strict=True)]


def launch_backward(do, q, k, v, lse_pad, delta_pad, dq_acc, dk, dv, causal, sm_scale,
                    config=None):  # fmt: skip
    """Run the Gluon backward into ``dq_acc`` (fp32 [B*H, N_pad, BLOCK_D], zeroed; with DQ_PERM
    the rows of each group of 8 in the order dq_cast.py undoes), ``dk`` and ``dv``, from the
    forward's base-2 LSE and Delta as padded fp32 [B*H*N_pad] vectors (prepare.py; Delta times
    ``sm_scale`` where the config has DELTA_SCALED); ``config`` (any of BLOCK_M, STAGES,
    HOST_DESC, DQ_UNDER_DK, DQ_PERM, DELTA_SCALED, TMA_DKV: configs.py; DQ_ROWS)
    overrides the choices below, as does HEAD_GROUP (heads per launch group under the causal
    mask: configs.head_group)."""
    unknown = set(config or {}) - CONFIG_KEYS
    if unknown:  # a misspelt switch would otherwise run the default silently
        raise ValueError(f"config: unknown keys {sorted(unknown)}; known: {sorted(CONFIG_KEYS)}")
    B, H, n_q, d = q.shape
    n_kv = k.shape[2]
    block_d = v08._block_d(d)
    config = {**configs.tiles(block_d, causal), **(config or {})}
    block_m = config["BLOCK_M"]
    # dQ split between the consumers by query rows when each can have 64 (N=64 wgmma at d=64,
    # not N=32: +5-8% there, NOTES.md run 8), else by columns.
    dq_rows = config.get("DQ_ROWS", block_m == BLOCK_N)
    if dq_rows and block_m != BLOCK_N:
        raise ValueError(f"DQ_ROWS splits dQ into one 64-row half per consumer: BLOCK_M must be "
                         f"{BLOCK_N}, got {block_m}")  # fmt: skip
    n_pad = dq_acc.shape[1]
    dt = gl.bfloat16 if q.dtype == torch.bfloat16 else gl.float16
    q_layout = v08.shared_layout((block_m, block_d), dt)
    kv_layout = v08.shared_layout((BLOCK_N, block_d), dt)
    ds_layout = v08.shared_layout((BLOCK_N, block_m), dt)
    vec_layout = v08.shared_layout((block_m,), gl.float32)
    vecs = [host_descriptor(x, [block_m], vec_layout) for x in (lse_pad, delta_pad)]
    host = config.get(
        "HOST_DESC",
        all(_rows(t) is not None for t in (q, k, v, do))
        and n_q % block_m == 0
        and n_kv % BLOCK_N == 0,
    )
    tensors = tile_operands(
        (q, k, v, do), ([block_m, block_d], q_layout), ([BLOCK_N, block_d], kv_layout), host
    )
    # TMA boxes of at most 128 bytes (32 fp32 columns); the kernel issues one reduce per box.
    if dq_rows:  # each consumer adds 64 query rows, all columns
        dq_block = [ROWS.value, min(32, block_d)]
    else:  # each consumer adds every query row, half the columns
        dq_block = [block_m, min(32, block_d // CONSUMERS.value)]
    dq_layout = v08.shared_layout(tuple(dq_block), gl.float32)
    desc_dq = host_descriptor(dq_acc.view(-1, block_d), dq_block, dq_layout)
    grid = (triton.cdiv(n_kv, BLOCK_N), B * H)
    tma_dkv = config.get("TMA_DKV", False)
    if tma_dkv:  # dK and dV leave through [B, H, N, d] descriptors, 64 keys per box
        dk_arg, dv_arg = (v08.head_descriptor(t, ROWS.value, block_d) for t in (dk, dv))
    else:
        dk_arg, dv_arg = dk, dv
    _ATTN_BWD[grid](
        *tensors, desc_dq, dk_arg, dv_arg, *vecs,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *do.stride()[:3],
        *dk.stride()[:3], *dv.stride()[:3],
        H, n_q, n_kv, n_pad, sm_scale, sm_scale * LOG2E,
        IS_CAUSAL=causal, HEAD_DIM=d, BLOCK_D=block_d, BLOCK_M=block_m,
        STAGES=config["STAGES"],
        Q_LAYOUT=q_layout, KV_LAYOUT=kv_layout, DS_LAYOUT=ds_layout,
        CONSUMER_REGS=configs.CONSUMER_REGS, HOST_DESC=host,
        DQ_ROWS=dq_rows, DQ_UNDER_DK=config["DQ_UNDER_DK"], DQ_PERM=config["DQ_PERM"],
        HEAD_GROUP=config.get("HEAD_GROUP", configs.head_group(n_q, block_d, causal)) if causal
        else 1, DELTA_SCALED=config["DELTA_SCALED"], TMA_DKV=tma_dkv,
        DKV_LAYOUT=v08.shared_layout((ROWS.value, block_d), dt) if tma_dkv else None, num_warps=4,
    )  # fmt: skip


def _backward(do, q, k, v, o, lse, causal, sm_scale, config=None):
    if not v05.tma_addressable(do):  # e.g. the gradient of a transposed view's output
        do = do.contiguous()
    if not applies(q, k, v, do):
        return v04._backward(do, q, k, v, o, lse, causal, sm_scale)
    B, H, n_q, d = q.shape
    dk, dv = new_output(k.shape, k), new_output(v.shape, v)
    if q.numel() == 0:  # no queries: nothing flows back to the keys
        return new_output(q.shape, q), dk.zero_(), dv.zero_()
    block_d = v08._block_d(d)
    tiles = {**configs.tiles(block_d, causal), **(config or {})}
    n_pad = triton.cdiv(n_q, tiles["BLOCK_M"]) * tiles["BLOCK_M"]
    # DELTA_SCALED: the kernel takes Delta times sm_scale (configs.py).
    delta_scale = sm_scale if tiles["DELTA_SCALED"] else 1.0
    lse_pad, delta_pad, dq_acc = prepare(o, do, lse, n_pad, block_d, delta_scale)
    launch_backward(do, q, k, v, lse_pad, delta_pad, dq_acc, dk, dv, causal, sm_scale, config)
    # Back to query order (DQ_PERM), cut to N_Q and d, and cast: one pass (dq_cast.py).
    dq = dq_from_buffer(dq_acc, q, tiles["DQ_PERM"])
    return dq, dk, dv


_Attention = v04.autograd_function(v08._forward, _backward)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v09_gluon_bwd", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
