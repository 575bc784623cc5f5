"""v10: v08's Gluon forward and v09's Gluon backward as persistent kernels.

The kernels are ``gluon_fwd.attn_fwd`` and ``gluon_bwd.attn_bwd``; ``schedule.py`` deals the row
blocks (forward) and key blocks (backward) to their programs. The forward takes the calls v08's
kernel takes (``v08.applies``: Hopper, fp16/bf16, head dims padded to 16-128, a positive scale,
TMA-addressable layouts) with the same descriptors and consumer counts, the backward those v09's
takes (``v09.applies``), with v09's tiles and switches; everything else goes to v08's forward and
v04's backward (every CPU run: Gluon has no interpreter path).
"""

import functools
import math

import torch
import triton

from common.grid_limits import split_batch_heads
from common.validation import check_inputs
from variants.v04_flash2 import kernel as v04
from variants.v08_gluon import configs as v08_configs
from variants.v08_gluon import kernel as v08
from variants.v09_gluon_bwd import kernel as v09

from . import CAPABILITIES
from .gluon_bwd import BLOCK_N as BWD_BLOCK_N
from .gluon_bwd import attn_bwd
from .gluon_fwd import ROWS, attn_fwd
from .schedule import key_schedule, schedule

LOG2E = math.log2(math.e)


# Shared memory per program at d=128 with two consumers: Q double-buffered (4 x 16 KiB), O's
# staging (2 x 16 KiB) and 64 KiB per K/V ring stage: 224 KiB at two stages (ptxas: 229784
# bytes with the barriers), within the 227 KiB of an SM; a third stage does not fit.
SMEM_BYTES = 227 * 1024


def _smem_bytes(block_d: int, consumers: int, stages: int) -> int:
    """16-bit tiles: two Q buffers and one O buffer per consumer, a K and a V tile per stage."""
    return 2 * (3 * consumers * ROWS.value * block_d + 2 * stages * v08_configs.BLOCK_N * block_d)


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def launch_forward(q, k, v, o, lse, causal, sm_scale, config=None):
    """Run the persistent forward; ``config`` ({"STAGES", "CONSUMERS"} as in v08, and "PROGRAMS",
    by default one per SM) overrides the defaults (tuning script, tests)."""
    B, H, n_q, d = q.shape
    block_d = v08._block_d(d)
    config = {**v08_configs.tiles(block_d, n_q, causal), **(config or {})}
    consumers, stages = config["CONSUMERS"], config["STAGES"]
    if _smem_bytes(block_d, consumers, stages) > SMEM_BYTES:
        raise ValueError(
            f"config: {stages} stages x {consumers} consumers at head dim {block_d} need "
            f"{_smem_bytes(block_d, consumers, stages)} bytes of shared memory (limit {SMEM_BYTES})"
        )
    rows = ROWS.value * consumers
    n_blocks = B * H * triton.cdiv(n_q, rows)
    programs = min(config.get("PROGRAMS", _sm_count(q.device.index)), n_blocks)
    blocks, starts = schedule(
        B, H, n_q, k.shape[2], causal, rows, v08_configs.BLOCK_N, programs, q.device
    )
    descs = v08.operand_descriptors(q, k, v, o, block_d)
    attn_fwd[(programs,)](
        *descs, lse, blocks, starts, H, n_q, k.shape[2], sm_scale * LOG2E,
        IS_CAUSAL=causal, BLOCK_N=v08_configs.BLOCK_N, STAGES=stages, CONSUMERS=consumers,
        CONSUMER_REGS=v08_configs.CONSUMER_REGS[consumers], num_warps=4,
    )  # fmt: skip


# v08's call handling around this launch; what v08's kernel does not take goes to v08's forward
# (looked up at call time, so tests can wrap either side).
_forward = v08.gluon_forward(
    lambda *args: launch_forward(*args), lambda *args: v08._forward(*args)
)


# v09's switches less HOST_DESC (every operand here is a [B, H, N, d] descriptor), and PROGRAMS.
BWD_CONFIG_KEYS = (v09.CONFIG_KEYS - {"HOST_DESC"}) | {"PROGRAMS"}


def launch_backward(do, q, k, v, lse, delta, dq_acc, dk, dv, causal, sm_scale, config=None):
    """Run the persistent backward (v09's arguments: ``dq_acc`` fp32 [B*H, N_pad, BLOCK_D],
    zeroed); ``config`` takes v09's keys (BLOCK_M, STAGES, DIAG_LAST, DQ_ROWS, DQ_UNDER_DK,
    DQ_PERM), defaulting to v09's configs.py, and PROGRAMS (by default one per SM)."""
    B, H, n_q, d = q.shape
    n_kv = k.shape[2]
    block_d = v08._block_d(d)
    config = v09.resolve_config(config, block_d, causal, BWD_CONFIG_KEYS)
    block_m = config["BLOCK_M"]
    n_blocks = B * H * triton.cdiv(n_kv, BWD_BLOCK_N.value)
    programs = min(config.get("PROGRAMS", _sm_count(q.device.index)), n_blocks)
    if programs == 0:  # no keys: dK and dV are empty
        return
    blocks, starts = key_schedule(
        B, H, n_q, n_kv, causal, BWD_BLOCK_N.value, block_m, programs, q.device
    )
    rows = (block_m, BWD_BLOCK_N.value, BWD_BLOCK_N.value, block_m)
    descs = [v08.head_descriptor(t, r, block_d) for t, r in zip((q, k, v, do), rows, strict=True)]
    n_pad = dq_acc.shape[1]
    attn_bwd[(programs,)](
        *descs, v09.dq_descriptor(dq_acc, config, block_d), dk, dv,
        *v09.vector_descriptors(lse, delta, n_pad, block_m), blocks, starts,
        *dk.stride()[:3], *dv.stride()[:3], H, n_q, n_kv, n_pad, sm_scale, sm_scale * LOG2E,
        IS_CAUSAL=causal, HEAD_DIM=d, BLOCK_M=block_m, STAGES=config["STAGES"],
        CONSUMER_REGS=v09.configs.CONSUMER_REGS, DIAG_LAST=config["DIAG_LAST"],
        DQ_ROWS=config["DQ_ROWS"], DQ_UNDER_DK=config["DQ_UNDER_DK"], DQ_PERM=config["DQ_PERM"],
        num_warps=4,
    )  # fmt: skip


# v09's call handling around this launch (looked up at call time, so tests can wrap it).
_backward = v09.gluon_backward(lambda *args: launch_backward(*args))


_Attention = v04.autograd_function(_forward, _backward)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v10_persistent", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
