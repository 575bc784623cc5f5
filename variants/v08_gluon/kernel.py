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

import functools
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
from variants.v06_warpspec import kernel as v06

from . import CAPABILITIES, configs
from .gluon_fwd import ROWS, attn_fwd

LOG2E = math.log2(math.e)
_ATTN_FWD = Launcher(attn_fwd)  # Triton's dispatch once per call key (common/launch.py)


def _block_d(d: int) -> int:
    return max(16, triton.next_power_of_2(d))


def applies(q, k, v, causal, sm_scale) -> bool:
    """Whether the Gluon kernel takes this call (else v06's forward runs)."""
    return (
        not interpreting()
        and q.is_cuda
        and sm_major(q.device.index) == 9
        and q.dtype in (torch.float16, torch.bfloat16)
        and _block_d(q.shape[-1]) in configs.HEAD_DIMS
        and sm_scale > 0
        and k.shape[2] > 0
        and all(v05.tma_addressable(t) for t in (q, k, v))
    )


@functools.cache
def shared_layout(shape: tuple, dtype) -> gl.NVMMASharedLayout:
    """The default NVMMA shared-memory layout of a tile, built once per shape and dtype: Triton
    3.6 takes about 27 us of host time per build, and a launch needs four (v09's backward five), so
    at 1000 tokens the forward's host work (~150 us a call) outlasted its kernel."""
    return gl.NVMMASharedLayout.get_default_for(list(shape), dtype)


def head_descriptor(t: torch.Tensor, rows: int, block_d: int) -> TensorDescriptor:
    """A TMA descriptor over ``t``'s [B, H, N, d] elements where they lie, moved in
    [1, 1, rows, block_d] boxes. A box clips at its own head's N and d (zeros read past them,
    nothing written), so ragged lengths, padded head dims and strided views need no per-head
    descriptor. A broadcast batch or head dim (stride 0) is described with size 1."""
    shape, strides = list(t.shape), list(t.stride())
    for i in (0, 1):
        if strides[i] == 0 or shape[i] == 1:  # any 16-byte multiple will do for a size-1 dim
            shape[i], strides[i] = 1, t.shape[2] * t.stride(2)
    dt = gl.bfloat16 if t.dtype == torch.bfloat16 else gl.float16
    box = (1, 1, rows, block_d)
    return TensorDescriptor(t, shape, strides, list(box), shared_layout(box, dt))


def operand_descriptors(q, k, v, o, block_d: int) -> list[TensorDescriptor]:
    """The kernel's four operands as descriptors: Q and O in one consumer's 64-row boxes, K and V
    in BLOCK_N-row key tiles."""
    rows = (ROWS.value, configs.BLOCK_N, configs.BLOCK_N, ROWS.value)
    return [head_descriptor(t, r, block_d) for t, r in zip((q, k, v, o), rows, strict=True)]


def launch_forward(q, k, v, o, lse, causal, sm_scale, config=None):
    """Run the Gluon forward; ``config`` ({"STAGES": n, "CONSUMERS": 2 or 3}) overrides the
    head dim's entry in configs.py (tuning script)."""
    B, H, n_q, d = q.shape
    block_d = _block_d(d)
    config = {**configs.tiles(block_d, n_q, causal), **(config or {})}
    consumers = config["CONSUMERS"]
    descs = operand_descriptors(q, k, v, o, block_d)
    grid = (triton.cdiv(n_q, ROWS.value * consumers), H, B)
    _ATTN_FWD[grid](
        *descs, lse, H, n_q, k.shape[2], sm_scale * LOG2E,
        IS_CAUSAL=causal, BLOCK_N=configs.BLOCK_N, STAGES=config["STAGES"],
        CONSUMERS=consumers, CONSUMER_REGS=configs.CONSUMER_REGS[consumers], num_warps=4,
    )  # fmt: skip


def gluon_forward(launch, fallback):
    """A forward(q, k, v, causal, sm_scale) -> (o, lse) that runs ``launch(q, k, v, o, lse,
    causal, sm_scale)`` (this kernel, or v10's persistent one) on the calls the kernel takes and
    ``fallback(q, k, v, causal, sm_scale)`` on the others."""

    def forward(q, k, v, causal, sm_scale):
        if not applies(q, k, v, causal, sm_scale):
            return fallback(q, k, v, causal, sm_scale)
        B, H, n_q, _ = q.shape
        o = new_output(q.shape, q)
        lse = new_output((B, H, n_q), q, torch.float32)
        if q.numel() == 0:
            return o, lse
        if not v05.tma_addressable(o):  # a d=100 slice of wider rows: q addressable, dense o not
            return fallback(q, k, v, causal, sm_scale)
        launch(q, k, v, o, lse, causal, sm_scale)
        return o, lse

    return forward


# Looked up at call time (not bound here), so tests can wrap either side.
_forward = gluon_forward(
    lambda *args: launch_forward(*args), lambda *args: v06._forward(*args)
)


_Attention = v04.autograd_function(_forward)  # v04's backward, unchanged


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v08_gluon", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
