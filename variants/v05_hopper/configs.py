"""The forward's autotuning space on Hopper, per head-dim class (the backward is v04's).

Shared memory bounds the pipeline: a [128, d] bf16 Q tile plus ``num_stages`` K and V tiles of
[BLOCK_N, d] must fit in 228 KiB per SM (d=128, BLOCK_N=128: 32 KiB + 3 x 64 KiB is too much, so
that pair gets two stages). Warp specialisation (``tl.range(..., warp_specialize=True)``) is not
searched: on Hopper with Triton 3.6 it failed to compile at 4 warps and gained nothing at 8
(NOTES.md).
"""

import triton
from triton.tools.tensor_descriptor import TensorDescriptor

from variants.v04_flash2 import configs as v04_configs


def set_block_shapes(nargs):
    """A host-side descriptor carries its tile shape: give Q's and K/V's the config's tiles
    before each launch (a no-op for the per-head descriptors built in the kernel)."""
    for name, rows in (("Q", "BLOCK_M"), ("K", "BLOCK_N"), ("V", "BLOCK_N")):
        if isinstance(nargs[name], TensorDescriptor):
            nargs[name].block_shape = [nargs[rows], nargs["BLOCK_D"]]


def _cfgs(rows):
    return [
        triton.Config(
            {"BLOCK_M": m, "BLOCK_N": n, "LAZY_RESCALE": lazy},
            num_warps=w,
            num_stages=s,
            pre_hook=set_block_shapes,
        )
        for m, n, w, s in rows
        for lazy in (False, True)  # eager rescale first: it won the H200 run (NOTES.md)
    ]


# (BLOCK_M, BLOCK_N, num_warps, num_stages), each with and without lazy rescaling: the tiles
# that won somewhere in bench/tune.py's H200 sweeps, best first (run 4 of NOTES.md, host-side
# descriptors: 128x128 at d=128 is +3-4% over v04's 128x64), then a small one for fp32.
FWD = {
    64: _cfgs([(128, 64, 4, 3), (128, 64, 8, 3), (64, 32, 4, 2)]),
    128: _cfgs([(128, 128, 8, 3), (128, 64, 8, 3), (64, 32, 4, 2)]),
    256: _cfgs([(128, 64, 8, 2), (64, 64, 4, 2), (64, 32, 4, 2)]),
}
FWD_ALL = [c for rows in FWD.values() for c in rows]

# Under the interpreter: small tiles so CPU tests cross several tiles and ragged edges.
INTERPRETER_FWD = {
    "BLOCK_M": 32,
    "BLOCK_N": 16,
    "LAZY_RESCALE": True,  # the path with the branch, so CPU tests cover it
    "num_warps": 4,
    "num_stages": 1,
}


def first_choice(head_dim: int, dtype) -> dict:
    """What ``prune_fwd`` keeps first, as launch keywords (for ``ATTN_AUTOTUNE=0``)."""
    return v04_configs.first_choice(FWD, head_dim, dtype)


# The call's head-dim class; fp32 (FMA dots, no tensor cores) takes the last config.
prune_fwd = v04_configs.pruner(FWD)
