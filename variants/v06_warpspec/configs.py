"""The warp-specialised forward's autotuning space, per head-dim class.

Triton 3.6 warp-specialises an attention loop on Hopper only at ``num_warps=4`` with 128-row
query blocks (two consumer warpgroups of 64 rows, plus the producer: 12 warps per program).
Registers bound the tiles: 12 warps share 64K registers, 168 per thread, and a consumer thread
holds 64x``d``/128 fp32 accumulators plus the 64x``BLOCK_N`` scores (64 + 64 at d=128,
BLOCK_N=128). Shared memory bounds the pipeline: Q (32 KiB at d=128) plus ``num_stages`` K and V
tiles (64 KiB per stage at BLOCK_N=128) must fit in 227 KiB, so 128x128 gets two stages at d=128.
"""

import triton

from variants.v04_flash2 import configs as v04_configs

# The head dims the split runs at: above 128 a consumer's accumulator alone is 128 registers of
# its 168; at 64 and below it lost (above).
MIN_HEAD_DIM, MAX_HEAD_DIM = 65, 128


def _cfgs(rows):
    return [
        triton.Config(
            {"BLOCK_M": m, "BLOCK_N": n, "WARP_SPECIALIZE": True}, num_warps=4, num_stages=s
        )
        for m, n, s in rows
    ]


# (BLOCK_M, BLOCK_N, num_stages), best first (NOTES.md run 1). Two stages only: every
# three-stage config returned NaN on an H200 (Triton 3.6), at both head dims. Head dims up to 64
# are not listed: there the split lost to v04/v05's eight lockstep warps (NOTES.md), so v05 runs.
FWD = {
    128: _cfgs([(128, 128, 2), (128, 64, 2)]),
}
FWD_ALL = [c for rows in FWD.values() for c in rows]

# Under the interpreter: small tiles so CPU tests cross several tiles and ragged edges.
INTERPRETER_FWD = {
    "BLOCK_M": 32,
    "BLOCK_N": 16,
    "WARP_SPECIALIZE": True,
    "num_warps": 4,
    "num_stages": 1,
}


def first_choice(head_dim: int) -> dict:
    """The first config of the call's head-dim class, as launch keywords (``ATTN_AUTOTUNE=0``)."""
    return v04_configs.first_choice(FWD, head_dim, None)


prune_fwd = v04_configs.pruner(FWD)
