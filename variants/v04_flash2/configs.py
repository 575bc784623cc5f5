"""Autotuning spaces for v04, one short list per head-dim class.

Hopper has 228 KiB of shared memory per SM and 64K registers. At d=128 a [128, 128] bf16 Q tile
is 32 KiB and each K/V pipeline stage another 2 x 16 KiB (BLOCK_N=64), so deep pipelines only fit
the smaller head dims; the backward keeps two fp32 [BLOCK_N, d] accumulators (dK, dV) in registers,
which is why its tiles shrink as d grows (Triton's tutorial keeps its d=64 backward tiles at d=128
and collapses to 0.19x cuDNN there). fp32 inputs take the last, smallest entry (see pruner).
"""

import torch
import triton


def _cfgs(rows):
    return [
        triton.Config({"BLOCK_M": m, "BLOCK_N": n}, num_warps=w, num_stages=s)
        for m, n, w, s in rows
    ]


# (BLOCK_M, BLOCK_N, num_warps, num_stages). Four to six candidates per class: every config is
# compiled once per dtype, head dim and mask, so the space is kept to the shapes that can win.
# The first of each list is the one autotuning picked most often on an H200 (NOTES.md): it is what
# ATTN_AUTOTUNE=0 launches. The last is the one fp32 takes.
FWD = {
    64: _cfgs(
        [(128, 64, 8, 3), (128, 64, 4, 3), (128, 64, 4, 4), (128, 128, 8, 3), (64, 32, 4, 2)]
    ),
    128: _cfgs(
        [(128, 64, 8, 3), (128, 64, 8, 4), (128, 128, 8, 2), (128, 64, 4, 2), (64, 32, 4, 2)]
    ),
    256: _cfgs([(128, 64, 8, 2), (64, 64, 4, 2), (64, 32, 4, 2), (32, 32, 4, 1)]),
}
# dK/dV kernel: BLOCK_M queries walked per step, BLOCK_N keys owned by the program.
BWD_DKDV = {
    64: _cfgs([(64, 64, 4, 3), (32, 128, 4, 3), (64, 128, 8, 3), (64, 128, 8, 2), (32, 32, 4, 2)]),
    128: _cfgs(
        [
            (64, 128, 8, 2),
            (32, 128, 8, 2),
            (64, 128, 8, 3),
            (32, 64, 4, 3),
            (64, 64, 4, 3),
            (32, 32, 4, 2),
        ]
    ),
    256: _cfgs([(32, 64, 8, 2), (32, 64, 4, 2), (16, 64, 4, 2), (16, 32, 4, 1)]),
}
# dQ kernel: BLOCK_M queries owned by the program, BLOCK_N keys walked per step.
BWD_DQ = {
    64: _cfgs([(128, 64, 8, 3), (128, 32, 4, 3), (128, 64, 4, 3), (64, 64, 4, 3), (32, 32, 4, 2)]),
    128: _cfgs(
        [
            (128, 64, 8, 2),
            (128, 32, 8, 2),
            (128, 64, 8, 3),
            (64, 32, 4, 3),
            (64, 64, 4, 3),
            (32, 32, 4, 2),
        ]
    ),
    256: _cfgs([(64, 32, 8, 2), (64, 32, 4, 2), (32, 32, 4, 2), (16, 32, 4, 1)]),
}

# Under the interpreter: small tiles so CPU tests cross several tiles and ragged edges.
INTERPRETER_FWD = {"BLOCK_M": 32, "BLOCK_N": 16}
INTERPRETER_DKDV = {"BLOCK_M": 16, "BLOCK_N": 32}
INTERPRETER_DQ = {"BLOCK_M": 32, "BLOCK_N": 16}


def head_dim_class(head_dim: int) -> int:
    return 64 if head_dim <= 64 else 128 if head_dim <= 128 else 256


def first_choice(table, head_dim: int, dtype) -> dict:
    """What the pruner would keep first, as launch keywords (for ``ATTN_AUTOTUNE=0``)."""
    rows = table[head_dim_class(head_dim)]
    config = rows[-1] if dtype == torch.float32 else rows[0]
    return dict(config.all_kwargs())


def pruner(table):
    """``early_config_prune`` keeping only the configs listed for the call's head-dim class.

    fp32 inputs take the last (smallest) entry alone: their dots run as full-fp32 FMAs, not on
    tensor cores, and larger tiles only spill (one fp32 backward test spent 173 s of an H200 run
    compiling and timing the whole list)."""

    def prune(configs, named_args, **kwargs):
        head_dim = kwargs.get("HEAD_DIM", named_args.get("HEAD_DIM"))
        wanted = table[head_dim_class(head_dim)]
        q = named_args["Q"]
        if getattr(q, "base", q).dtype == torch.float32:  # a tensor, or v05's host descriptor
            wanted = wanted[-1:]
        return [c for c in configs if any(c is w for w in wanted)]

    return prune


def all_configs(table):
    return [c for rows in table.values() for c in rows]
