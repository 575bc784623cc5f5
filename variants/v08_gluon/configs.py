"""The Gluon forward's tiles, per padded head dim (no autotuner: one launch per shape class).

A program is 128 query rows (two consumer warpgroups of 64, the wgmma M-tile) and walks keys in
tiles of BLOCK_N = 128. Shared memory bounds the K/V ring: Q takes 2 x 64 x BLOCK_D and each stage
a K and a V tile of 128 x BLOCK_D, all 16-bit, within 227 KiB per program. At BLOCK_D = 128 that
is 32 KiB + 64 KiB per stage: three stages fit (224 KiB) but leave no room for a second program
per SM, which no config here could have anyway (12 warps holding 24-256 registers fill the file).
Head dims above 128 are not taken: the 64 x 256 fp32 accumulator spills (ptxas, 201 LDL/STL).
"""

BLOCK_N = 128
CONSUMER_REGS = 232  # the other consumer (the default partition) gets 256, the loader 24

# Stages of the K/V ring. Two: on an H200 three were within +-1% at d=64 and 16k-token d=128, and
# 9% slower at 4k-token causal d=128; four were 1-7% slower at d=64 (NOTES.md, run 2).
STAGES = 2
# Padded head dims the kernel takes (16-bit tiles need at least 16 columns for TMA and wgmma).
HEAD_DIMS = (16, 32, 64, 128)
