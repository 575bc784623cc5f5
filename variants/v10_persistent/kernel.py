"""v10: v08's Gluon forward as a persistent kernel, with v09's backward.

The kernel is ``gluon_fwd.attn_fwd``; ``schedule.py`` deals the row blocks to its programs. It
takes the calls v08's kernel takes (``v08.applies``: Hopper, fp16/bf16, head dims padded to
16-128, a positive scale, TMA-addressable layouts) with the same descriptors and consumer counts;
everything else goes to v08's forward, which hands on to v06 and v05 where it must (every CPU
run: Gluon has no interpreter path).
"""

import functools
import math

import torch
import triton

from common.grid_limits import split_batch_heads
from common.launch import Launcher
from common.timing import attention_flops
from common.validation import check_inputs
from variants.v04_flash2 import kernel as v04
from variants.v08_gluon import configs as v08_configs
from variants.v08_gluon import kernel as v08
from variants.v09_gluon_bwd import configs as v09_configs
from variants.v09_gluon_bwd import kernel as v09

from . import CAPABILITIES
from .gluon_fwd import ROWS, attn_fwd
from .redo import redo_nan_rows
from .schedule import held, schedule

LOG2E = math.log2(math.e)
_ATTN_FWD = Launcher(attn_fwd)  # Triton's dispatch once per call key (common/launch.py)


# Shared memory per program at d=128 with two consumers: Q double-buffered (4 x 16 KiB), O's
# staging (2 x 16 KiB) and 64 KiB per K/V ring stage: 224 KiB at two stages (ptxas: 229784
# bytes with the barriers), within the 227 KiB of an SM; a third stage does not fit.
SMEM_BYTES = 227 * 1024


# The consumers hand the K/V ring's slots back on hardware named barriers (from id 8 up; Gluon's
# partitions use the lowest) instead of mbarriers, by padded head dim. Gluon's mbarrier arrive is
# one thread's, so it costs the warpgroup a `bar.sync` first: two per key tile. On an H200, four
# runs: +1.9% median at d=128 (-0.4 to +3.4%); at d=64 with three consumers -1.8 to -4.3% causal
# and -0.7 to +1.1% without the mask, so d=64 keeps the mbarriers (NOTES.md, run 8).
FREE_BAR = {128: 8}


# Lazy rescaling (v05's tuning option, here with FlashAttention-4's threshold of 2^8 and a warp's
# vote; v08's gluon_fwd.LAZY_TAU), by padded head dim and mask: the accumulator's rescale after
# P@V's wait, 64 multiplies per thread per key tile at d=128, is skipped by every warp whose 16
# rows kept their max. On an H200, two processes: +1.0-3.9% at d=128 and +2.4-4.3% at d=64
# without the mask; at d=64 causal the three 160-register consumers spill around it (46 LDL/STL
# in the key loop, 2.2-3.1% slower), so it keeps the eager rescale there (NOTES.md, run 13).
LAZY = {(128, False): 1, (128, True): 1, (64, False): 1}


# Q held in registers as QK^T's A operand (wgmma RS), by padded head dim: loaded from its buffer
# once per row block, so each QK^T reads only K from shared memory (32 of 48 KiB per consumer and
# key tile at d=128; with P@V's V and the ring's TMA writes, 224 -> 192 KiB per tile pair, against
# 2,048 cycles of tensor work at 128 bytes a cycle). On an H200, two processes: +2.1 to +5.2% at
# d=128 except 16k causal (+2.7 / +0.4%); at d=64 three 160-register consumers spill (18 LDL/STL
# in the key loop) and ran 16-20% slower, so d=64 reads Q from shared memory (NOTES.md, run 15).
Q_REGS = {128: 1}

# The max-free softmax (v08's softmax.py): after a row block's first tile a mask-free tile takes
# no row max; the per-thread row sums guard it, a warp whose sums outgrow 2^8 rescales its rows
# by an exact power of two, and the rows no rescale repairs (a score ~118 base-2 units over the
# running max) leave the kernel with a NaN LSE for redo.py to recompute. On an H200, two
# processes, redo pass included: +8 to +13% at d=64 and d=128, with and without the mask, at
# 4k-16k tokens (83 of ~400 instructions per thread and tile gone), +6% at d=96 (padded to 128),
# +14.5% / +1% at d=32; but -8% at d=16, and the redo's launch (~12 us, host and GPU) outweighs
# the gain on short calls: 8x16x1024x64 lost 3% (a 92 us forward) and 27% causal (42 us, where
# the host sets the pace). So by padded head dim, and from 1e11 FLOPs (about 200 us here)
# (NOTES.md, run 22).
NO_MAX_DIMS = (32, 64, 128)
NO_MAX_FLOPS = 1e11


def no_max(B, H, n_q, n_kv, block_d, causal) -> int:
    """Whether the max-free softmax pays for this call (1) or not (0)."""
    flops = attention_flops(B, H, n_q, n_kv, block_d, causal)
    return int(block_d in NO_MAX_DIMS and flops >= NO_MAX_FLOPS)


# The config keys that are on/off switches, and what 0 and 1 mean.
SWITCHES = {"LAZY": "0 (eager rescale) or 1 (lazy)",
            "Q_REGS": "0 (Q read from shared memory) or 1 (Q in registers)",
            "NO_MAX": "0 (a row max per tile) or 1 (max-free, guarded by row sums)"}  # fmt: skip


# Under the causal mask the row blocks are dealt in groups of heads (v09's HEAD_GROUP, four), each
# row block of every head in the group before the next (schedule.py): a head-by-head deal leaves
# the last head's longest blocks to the end, where they run with SMs idle (at 4k tokens a
# modelled 5-6% of the kernel). Groups only while their K and V fit in v09's GROUP_BYTES (16 MiB)
# of L2: on an H200, four heads gained +1.5-5% at 4k tokens, +0-0.8% at 16k d=64 (16 MiB), and
# lost 1.7% at 16k d=128 (32 MiB), where the programs running together no longer share their
# heads' K/V in L2 (NOTES.md, run 12).
def head_group(n_kv: int, block_d: int, causal: bool) -> int:
    """Heads per group in the causal deal: four while their K and V (16-bit) fit in 16 MiB,
    else 1 (head by head)."""
    return v09_configs.group_for(2 * n_kv * block_d * 2, causal)


def _smem_bytes(block_d: int, consumers: int, stages: int) -> int:
    """16-bit tiles: two Q buffers and one O buffer per consumer, a K and a V tile per stage."""
    return 2 * (3 * consumers * ROWS.value * block_d + 2 * stages * v08_configs.BLOCK_N * block_d)


@functools.cache
def _sm_count(device_index: int) -> int:
    return torch.cuda.get_device_properties(device_index).multi_processor_count


def launch_forward(q, k, v, o, lse, causal, sm_scale, config=None):
    """Run the persistent forward; ``config`` ({"STAGES", "CONSUMERS"} as in v08, "PROGRAMS", by
    default one per SM, "FREE_BAR", 0 for mbarriers, "HEAD_GROUP", heads per group in the causal
    deal, "LAZY", "Q_REGS" and "NO_MAX", 0 or 1) overrides the defaults (tuning script, tests)."""
    B, H, n_q, d = q.shape
    block_d = v08._block_d(d)
    config = {**v08_configs.tiles(block_d, n_q, causal), "FREE_BAR": FREE_BAR.get(block_d, 0),
              "LAZY": LAZY.get((block_d, causal), 0), "Q_REGS": Q_REGS.get(block_d, 0),
              "NO_MAX": no_max(B, H, n_q, k.shape[2], block_d, causal),
              **(config or {})}  # fmt: skip
    consumers, stages = config["CONSUMERS"], config["STAGES"]
    for switch, choices in SWITCHES.items():
        if config[switch] not in (0, 1):
            raise ValueError(f"config: {switch} must be {choices}, got {config[switch]!r}")
    if config["FREE_BAR"] and config["FREE_BAR"] + 2 * stages > 16:  # a CTA has 16
        raise ValueError(
            f"config: FREE_BAR: {stages} stages from named barrier {config['FREE_BAR']} need ids "
            f"up to {config['FREE_BAR'] + 2 * stages - 1}; the hardware has 0-15"
        )
    if _smem_bytes(block_d, consumers, stages) > SMEM_BYTES:
        raise ValueError(
            f"config: {stages} stages x {consumers} consumers at head dim {block_d} need "
            f"{_smem_bytes(block_d, consumers, stages)} bytes of shared memory (limit {SMEM_BYTES})"
        )
    rows = ROWS.value * consumers
    n_blocks = B * H * triton.cdiv(n_q, rows)
    programs = min(config.get("PROGRAMS", _sm_count(q.device.index)), n_blocks)
    blocks, starts = held(schedule(
        B, H, n_q, k.shape[2], causal, rows, v08_configs.BLOCK_N, programs, q.device,
        config.get("HEAD_GROUP", head_group(k.shape[2], block_d, causal)),
    ))  # fmt: skip
    descs = v08.operand_descriptors(q, k, v, o, block_d)
    _ATTN_FWD[(programs,)](
        *descs, lse, blocks, starts, H, n_q, k.shape[2], sm_scale * LOG2E,
        IS_CAUSAL=causal, BLOCK_N=v08_configs.BLOCK_N, STAGES=stages, CONSUMERS=consumers,
        CONSUMER_REGS=v08_configs.CONSUMER_REGS[consumers], FREE_BAR=config["FREE_BAR"],
        LAZY=config["LAZY"], Q_REGS=config["Q_REGS"], NO_MAX=config["NO_MAX"], num_warps=4,
    )  # fmt: skip
    if config["NO_MAX"]:
        redo_nan_rows(q, k, v, o, lse, causal, sm_scale * LOG2E)


# v08's call handling around this launch; what v08's kernel does not take goes to v08's forward
# (looked up at call time, so tests can wrap either side).
_forward = v08.gluon_forward(
    lambda *args: launch_forward(*args), lambda *args: v08._forward(*args)
)


_Attention = v04.autograd_function(_forward, v09._backward)


@split_batch_heads
def attention(query, key, value, *, is_causal=False, scale=None, return_lse=False):
    """softmax(query @ key^T * scale) @ value for [batch, heads, seq, head_dim] tensors,
    differentiable in query, key and value. With ``return_lse=True`` also returns the natural
    log-sum-exp of each row's scaled scores, [batch, heads, seq_q] float32."""
    scale = check_inputs("v10_persistent", CAPABILITIES, query, key, value, is_causal, scale)
    out, lse = _Attention.apply(query, key, value, is_causal, scale)
    return (out, lse * math.log(2.0)) if return_lse else out
