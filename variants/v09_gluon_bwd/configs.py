"""The Gluon backward's tiles, per padded head dim and mask (no autotuner: one launch per class).

A program owns 128 keys (two consumer warpgroups of 64, the wgmma M-tile) and steps through
BLOCK_M queries at a time. Each consumer holds dK and dV ([64, BLOCK_D] fp32 each) for the whole
loop, plus S^T and dP^T ([64, BLOCK_M] fp32 each) and its half of dQ per step (half the columns
at BLOCK_M = 64, half the rows at 128: kernel.py): 64 + 64 + 32 + 32 + 32 registers per thread
at BLOCK_D = 128, BLOCK_M = 64, within the 240 that `setmaxnreg` gives a consumer (ptxas: no
spills). BLOCK_M = 128 at d=64 spills a little (32 LDL/STL, 3 in the loop) and is still the
fastest: without a mask (NOTES.md, run 3) and, once the causal diagonal's steps are out of the
loop, with it (runs 7 and 31).
Shared memory at BLOCK_D = 128, BLOCK_M = 64: K and V 64 KiB, Q and dO 32 KiB per stage, dS
2 x 16 KiB, the dQ staging 32 KiB: 193 KiB at two stages, 226 KiB at three (ptxas).
"""

CONSUMER_REGS = 240  # the other consumer (the default partition) gets 256, the loader 24
# Padded head dims the kernel takes: dK and dV of a 256-wide head would not fit the registers.
HEAD_DIMS = (16, 32, 64, 128)

# H200, bf16, x cuDNN's backward in the same run, median of three rounds (NOTES.md, run 7;
# 2026-11-22-exp-bwd-v09-diag-last): d=128 64-query steps, two stages: 1.02 / 1.06 (4k tokens,
# causal), 1.00 / 1.07 (16k). d=64 128-query steps: 1.04 / 1.02 (4k), 1.05 / 1.07 (16k), the
# causal ones with the diagonal's steps last in a loop of their own (in one loop with 64-query
# steps, the config before: 0.95 / 0.97; that split cost 3-6% at d=128). With dQ
# split by rows (run 8, two processes): d=64 1.05-1.11 / 1.07-1.08 (4k), 1.12 / 1.14-1.15 (16k).
# DQ_UNDER_DK (run 10, two processes): d=128 non-causal +1-3.5% (519-522 against 508-513 TFLOP/s
# at 4k, 561-570 against 548-555 at 16k); causal -7% at both head dims, d=64 non-causal +-1%.
# DQ_PERM (run 13, dQ's rows staged without bank conflicts; two processes and a rotated A/B):
# +2-4% without the mask at both head dims and with it at d=64 (16k causal 492-495 against
# 481-484), d=64 4k causal -1 to +0.5%. At d=128 causal both switches lost 3-12% with the
# programs launched head by head, and win together with HEAD_GROUP: +2.2-4.6% at 2k-16k tokens in
# one process, +2.3-5.2% at 2k, 8k and 16k and -1.1% at 4k in a second (run 21), so d=128 causal
# launches in head groups at every length.
# DELTA_SCALED (run 25, two processes): Delta times sm_scale from prepare.py, so dS costs an FFMA
# and an FMUL per element, not an FADD and two FMULs (sm_90 SASS: 391 against 423 instructions
# per step at d=128, 549 against 613 at d=64). Without the mask +0.6-0.8% (4k) and +1.6-2.5%
# (16k) at d=64, -0.5 / +0.4% (4k) and +1.1-1.5% (16k) at d=128. Under the mask ptxas spills 50
# LDL/STL into one consumer's mask-free loop at d=64 (-2.3% at 4k, -7.4% at 16k), and d=128
# read -2.0 / -4.4% at 4k and +0.2 / +2.3% at 16k. With the diagonal's steps peeled off the
# loop (run 31, gluon_bwd.py) d=64 takes it under the mask too (+1.3 / +3.7% at 16k / 4k in a
# probe), as do d=16 and d=32 (+3.0 / +2.7%); d=128 causal
# read +0.2 / -2.7 / -2.4% (16k / 4k / 8k) against the peel alone: off there.
# The peel itself (run 31, against the kernel before in one process, five rotated rounds):
# d=128 causal +0.7 / +0.2 / +2.3% at 16k / 4k / 8k against one loop with the mask in it, d=64
# causal (with DELTA_SCALED) -0.3 / +1.9% at 16k / 4k against the diagonal last in a loop of
# its own, d=32 +0.3%, d=16 -1.9%. It replaced both loop shapes.
# TMA_DKV (run 29, two processes): dK and dV leave through the dQ staging buffer and the copy
# engine, not by 64-128 plain 4-byte stores per thread. d=64: +3.1-3.4 / +4.5% at 4k (causal),
# +3.8% at 8x16x2048, -1.0-(-0.4) / +0.9-2.5% at 16k; d=128 -0.9 / +2.5% at 4k and -4.0 / -6.0%
# at 16k; d=32 -1.1% at 2x16x8192 causal. On at d=64 only (tiles()).
_TILES = {
    (128, False): dict(BLOCK_M=64, STAGES=2, DQ_UNDER_DK=True, DQ_PERM=True, DELTA_SCALED=True),
    (128, True): dict(BLOCK_M=64, STAGES=2, DQ_UNDER_DK=True, DQ_PERM=True, DELTA_SCALED=False),
    (64, False): dict(BLOCK_M=128, STAGES=2, DQ_UNDER_DK=False, DQ_PERM=True, DELTA_SCALED=True),
    (64, True): dict(BLOCK_M=128, STAGES=2, DQ_UNDER_DK=False, DQ_PERM=True, DELTA_SCALED=True),
}  # fmt: skip


# Under the causal mask the programs launch in groups of HEAD_GROUP heads, each key block of
# every head in the group before the next (gluon_bwd.py), so the last head's longest programs do
# not start last. At d=64 only while the group's Q, dO (16-bit) and fp32 dQ fit in GROUP_BYTES of
# L2: on an H200 four heads gained +1-4% at 4k tokens (two processes) and were level at 16k
# (32 MiB; NOTES.md, run 19). At d=128 groups lost 2.6% at 16k (64 MiB) with v09's first causal
# config, and gain at every length with DQ_UNDER_DK and DQ_PERM, which lose without them (run 21).
HEAD_GROUP = 4
GROUP_BYTES = 16 * 2**20


def group_for(bytes_per_head: int, causal: bool) -> int:
    """HEAD_GROUP under the causal mask while that many heads' working sets fit in GROUP_BYTES,
    else 1 (v10's forward deal uses it too, with its K and V as the working set)."""
    return HEAD_GROUP if causal and HEAD_GROUP * bytes_per_head <= GROUP_BYTES else 1


def head_group(n_q: int, block_d: int, causal: bool) -> int:
    """Heads per launch group: under the causal mask HEAD_GROUP at d=128, and below it while
    their Q, dO and dQ fit in GROUP_BYTES; else 1."""
    if causal and block_d == 128:
        return HEAD_GROUP
    return group_for(n_q * block_d * (2 + 2 + 4), causal)


def tiles(block_d: int, causal: bool) -> dict:
    """BLOCK_M, STAGES, DQ_UNDER_DK, DQ_PERM, DELTA_SCALED and TMA_DKV for a padded
    head dim (16 and 32 take d=64's tiles, not tuned apart, but not TMA_DKV: -1.1% at d=32)."""
    return {**_TILES[(max(block_d, 64), causal)], "TMA_DKV": block_d == 64}
