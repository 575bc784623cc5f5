"""The Gluon backward's tiles, per padded head dim and mask (no autotuner: one launch per class).

A program owns 128 keys (two consumer warpgroups of 64, the wgmma M-tile) and steps through
BLOCK_M queries at a time. Each consumer holds dK and dV ([64, BLOCK_D] fp32 each) for the whole
loop, plus S^T and dP^T ([64, BLOCK_M] fp32 each) and its dQ half ([BLOCK_M, BLOCK_D / 2]) per
step: 64 + 64 + 32 + 32 + 32 registers per thread at BLOCK_D = 128, BLOCK_M = 64, within the
240 that `setmaxnreg` gives a consumer (ptxas: no spills). BLOCK_M = 128 at d=64 spills a little
(30 LDL/STL) and was still the fastest without a mask (NOTES.md, run 3).
Shared memory at BLOCK_D = 128, BLOCK_M = 64: K and V 64 KiB, Q and dO 32 KiB per stage, dS
2 x 16 KiB, the dQ staging 32 KiB: 193 KiB at two stages, 226 KiB at three (ptxas).
"""

CONSUMER_REGS = 240  # the other consumer (the default partition) gets 256, the loader 24
# Padded head dims the kernel takes: dK and dV of a 256-wide head would not fit the registers.
HEAD_DIMS = (16, 32, 64, 128)

# H200, bf16, x cuDNN's backward in the same run (NOTES.md, run 3; 2026-11-22-tune-bwd-v09-tma):
# d=128 64-query steps, two stages: 0.99 / 1.03 (4k tokens, causal), 1.01 / 1.07 (16k);
# d=64 128-query steps: 0.99 / 1.04 without a mask (4k / 16k), 64-query steps with three stages
# under the causal mask (0.92 / 0.96, against 0.90 / 0.93 for 128-query steps).
_TILES = {
    (128, False): dict(BLOCK_M=64, STAGES=2),
    (128, True): dict(BLOCK_M=64, STAGES=2),
    (64, False): dict(BLOCK_M=128, STAGES=2),
    (64, True): dict(BLOCK_M=64, STAGES=3),
}


def tiles(block_d: int, causal: bool) -> dict:
    """BLOCK_M and STAGES for a padded head dim (16 and 32 take d=64's, unmeasured)."""
    return dict(_TILES[(max(block_d, 64), causal)])
