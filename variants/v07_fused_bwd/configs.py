"""The fused backward's tiles, per head-dim class.

A program owns BLOCK_N keys and walks BLOCK_M queries per step. It keeps dK and dV for its keys
in fp32 registers for the whole walk: at d=128 and BLOCK_N=128 that is 2 x 128 x 128 fp32 over
256 threads, 128 registers each, before the step's S^T, dP^T (64 x 128 fp32 at BLOCK_M=64,
32 registers each) and dQ (another 32). So d=128 takes 8 warps and 64-query steps; d=64 has room
for 128-query steps. Shared memory: K and V (2 x 32 KiB at d=128) stay for the whole walk, each
pipeline stage adds a Q and a dO tile (2 x 16 KiB), and dQ is staged there for its TMA
reduce-add (32 KiB fp32).
"""

import triton

from variants.v04_flash2 import configs as v04_configs

# Up to 128: at d=256 dK and dV alone would take 256 registers per thread at BLOCK_N=128 and 8
# warps (the limit is 255), and smaller key blocks double dQ's atomic traffic per FLOP.
MIN_HEAD_DIM, MAX_HEAD_DIM = 16, 128


def _cfgs(rows):
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        for m, n, w, s in rows
    ]


# (BLOCK_M queries per step, BLOCK_N keys per program, num_warps, num_stages), best first: the
# first is what ATTN_AUTOTUNE=0 launches. From the H200 sweeps in NOTES.md, where 32-query steps
# (dQ's product falls back from wgmma to mma.sync) and 64-key blocks at d=128 lost everywhere.
BWD = {
    64: _cfgs([(64, 64, 4, 3), (128, 128, 8, 2)]),
    128: _cfgs([(64, 128, 8, 3), (64, 128, 8, 2)]),
}
BWD_ALL = [c for rows in BWD.values() for c in rows]

# Under the interpreter: small tiles so CPU tests cross several tiles and ragged edges.
INTERPRETER_BWD = {"BLOCK_M": 16, "BLOCK_N": 32, "num_warps": 4, "num_stages": 1}


def first_choice(head_dim: int) -> dict:
    """The first config of the call's head-dim class, as launch keywords (``ATTN_AUTOTUNE=0``)."""
    return v04_configs.first_choice(BWD, head_dim, None)


prune_bwd = v04_configs.pruner(BWD)
