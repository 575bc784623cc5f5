"""v08: the Hopper forward in Gluon, where v06 left the split to the compiler.

The kernel is ``gluon_fwd.attn_fwd`` (its docstring has the design). This module decides which
calls it takes and launches it. Gluon kernels compile straight to TritonGPU IR, so they have no
interpreter path and no autotuner here: on CPU, and for anything the kernel does not cover, v06's
forward runs (which itself hands over to v05 where it must). The kernel takes:
- a Hopper GPU (wgmma is sm90-only);
- fp16/bf16 with head dims padded to 16, 32, 64 or 128 (d=96 runs in 128-wide tiles whose extra
  columns TMA zero-fills); above 128 the accumulator spills;
- a positive scale (the unmasked tiles fold the scale into the row max);
- layouts TMA can address, as in v05.
The backward is v04's: v07's fused backward measured slower (its README).
"""

import math

import torch
import triton
from triton.experimental.gluon import language as gl
from triton.experimental.gluon.nvidia.hopper import TensorDescriptor

from common.validation import check_inputs, interpreting, new_output
from variants.v04_flash2 import kernel as v04
from variants.v05_hopper import kernel as v05
from variants.v06_warpspec import kernel as v06

from . import CAPABILITIES, configs
from .gluon_fwd import CONSUMERS, ROWS, attn_fwd

LOG2E = math.log2(math.e)


def _block_d(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def applies(q, k, v, causal, sm_scale) -> bool:
    """Whether the Gluon kernel takes this call (else v06's forward runs)."""
    return (
        not interpreting()
        and q.is_cuda
        and torch.cuda.get_device_capability(q.device)[0] == 9
        and q.dtype in (torch.float16, torch.bfloat16)
        and _block_d(q.shape[-1]) in configs.HEAD_DIMS
        and sm_scale > 0
        and k.shape[2] > 0
        and all(v05.tma_addressable(t) for t in (q, k, v))
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


def launch_forward(q, k, v, o, lse, causal, sm_scale, config=None):
    """Run the Gluon forward; ``config`` ({"STAGES": n, "HOST_DESC": bool}) overrides the
    choices below (tuning script)."""
    config = config or {}
    B, H, n_q, d = q.shape
    n_kv = k.shape[2]
    block_d = _block_d(d)
    dt = gl.bfloat16 if q.dtype == torch.bfloat16 else gl.float16
    rows = ROWS.value
    q_layout = gl.NVMMASharedLayout.get_default_for([rows, block_d], dt)
    kv_layout = gl.NVMMASharedLayout.get_default_for([configs.BLOCK_N, block_d], dt)
    # Host-built descriptors spare every program building four (v05 measured 2-7%), but one
    # descriptor spans all heads, so a tile must never reach past its head's rows.
    host = config.get(
        "HOST_DESC",
        all(_rows(t) is not None for t in (q, k, v, o))
        and n_q % (rows * CONSUMERS.value) == 0
        and n_kv % configs.BLOCK_N == 0,
    )
    tensors = tile_operands(
        (q, k, v, o), ([rows, block_d], q_layout), ([configs.BLOCK_N, block_d], kv_layout), host
    )
    grid = (triton.cdiv(n_q, rows * CONSUMERS.value), B * H)
    attn_fwd[grid](
        *tensors, lse,
        *q.stride()[:3], *k.stride()[:3], *v.stride()[:3], *o.stride()[:3],
        H, n_q, n_kv, sm_scale * LOG2E,
        IS_CAUSAL=causal, HEAD_DIM=d, BLOCK_D=block_d, BLOCK_N=configs.BLOCK_N,
        STAGES=config.get("STAGES", configs.STAGES),
        Q_LAYOUT=q_layout, KV_LAYOUT=kv_layout,
        CONSUMER_REGS=configs.CONSUMER_REGS, HOST_DESC=host, num_warps=4,
    )  # fmt: skip


def _forward(q, k, v, causal, sm_scale):
    if not applies(q, k, v, causal, sm_scale):
        return v06._forward(q, k, v, causal, sm_scale)
    B, H, n_q, _ = q.shape
    o = new_output(q.shape, q)
    lse = new_output((B, H, n_q), q, torch.float32)
    if q.numel() == 0:
        return o, lse
    if not v05.tma_addressable(o):  # a d=100 slice of wider rows: q addressable, dense o not
        return v06._forward(q, k, v, causal, sm_scale)
    launch_forward(q, k, v, o, lse, causal, sm_scale)
    return o, lse


_Attention = v04.autograd_function(_forward)  # v04's backward, unchanged


def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v08_gluon", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
